"""Plain-text structured output (``TextOutput``, the paper's verbatim prompts):
no JSON schema goes out, the reply is read by ``from_text``, a reply it cannot
read is retried like one that fails its schema (with more room), one never
readable is a ``StructuredOutputError``, and the cache replays the raw text
and reads it again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from gateway_fakes import FakeServer, make_backend

from aloesim.agents import InducerText, JudgeText
from aloesim.agents.gateway import Sampling, StoreRecorder, TextOutput, is_text_output
from aloesim.core.errors import StructuredOutputError
from aloesim.environment.store import Store

pytestmark = pytest.mark.anyio

ASK = [{"role": "user", "content": "score it"}]


def test_text_outputs_are_recognised() -> None:
    assert is_text_output(JudgeText) and is_text_output(InducerText)
    assert not is_text_output(None) and not is_text_output(TextOutput.__mro__[1])  # BaseModel itself


async def test_no_schema_goes_out_and_the_reply_is_read_from_text() -> None:
    server = FakeServer(["**Score:** 4/5"])
    backend = make_backend(server, dialect="llamacpp")
    result = await backend.chat(ASK, role="judge", schema=JudgeText)
    await backend.aclose()
    assert "response_format" not in server.seen[0].body
    assert isinstance(result.parsed, JudgeText) and result.parsed.score == 4
    assert result.text == "**Score:** 4/5"  # the reply as sent, for the records and the viewer


@pytest.mark.parametrize("bad", ["The response is fine.", "Score: 4.5", "3 or 4", "9"])
async def test_unreadable_reply_is_retried_with_more_room(bad: str) -> None:
    server = FakeServer([bad, "5"])
    backend = make_backend(server)
    result = await backend.chat(ASK, role="judge", schema=JudgeText, sampling=Sampling(max_tokens=32))
    await backend.aclose()
    assert server.count == 2 and result.attempts == 2 and result.parsed.score == 5  # type: ignore[union-attr]
    assert [s.body["max_tokens"] for s in server.seen] == [32, 64]


async def test_never_readable_is_a_structured_output_error() -> None:
    server = FakeServer(default="He/She seems nice.")
    backend = make_backend(server, max_retries=2)
    with pytest.raises(StructuredOutputError) as info:
        await backend.chat(ASK, role="inducer", schema=InducerText)
    await backend.aclose()
    assert server.count == 3 and info.value.role == "inducer"
    assert "invalid structured output (plain text)" in info.value.reason and "label" in info.value.reason
    assert "\n" not in str(info.value)


async def test_cache_replays_the_raw_text_and_reads_it_again(tmp_path: Path) -> None:
    db = tmp_path / "text.db"
    server = FakeServer(["Profile: He/She bakes bread.\nPersonalities: None"])
    async with Store.open(db) as store:
        backend = make_backend(server, recorder=StoreRecorder(store))
        first = await backend.chat(ASK, role="inducer", schema=InducerText)
        again = await backend.chat(ASK, role="inducer", schema=InducerText)
        plain = await backend.chat(ASK, role="inducer")  # the same request without a reader is another key
        await backend.aclose()
    assert again.cached and not first.cached and server.count == 2 and not plain.cached
    assert again.parsed == first.parsed == InducerText(profile="He/She bakes bread.", personalities=None)
    with sqlite3.connect(db) as conn:
        request, response = conn.execute("SELECT request, response FROM llm_calls ORDER BY id").fetchone()
    assert '"schema"' not in request and response.startswith("Profile: He/She bakes bread.")
