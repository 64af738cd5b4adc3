"""Dollars per call (issue 16.2): prices from genai-prices (asserted against the
library's own calculation, never a number written here), the user's overrides
first, embedded/vLLM free by default, an unknown model unknown (None / NULL,
never $0), and each call's price stored in ``llm_calls.cost_usd`` by the
gateway talking to a real loopback HTTP server (benchmarks/latency_server.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import genai_prices
import pytest
from latency_server import ServerConfig, serve_in_thread

from aloesim.agents.gateway import (
    Backend,
    BackendSettings,
    ModelPrice,
    Pricer,
    PricingSettings,
    StoreRecorder,
    price,
)
from aloesim.core import to_settings
from aloesim.core.errors import ConfigError, LLMError
from aloesim.environment.store import Calls, Store, connect

MSGS = [{"role": "user", "content": "hello there, how are you today?"}]


def library(model: str, prompt: int, completion: int, **kw) -> float:
    usage = genai_prices.Usage(input_tokens=prompt, output_tokens=completion)
    return float(genai_prices.calc_price(usage, model, **kw).total_price)


@pytest.mark.parametrize(("prompt", "completion"), [(1, 0), (1200, 300), (1_000_000, 1_000_000), (0, 7)])
def test_gpt4o_costs_what_genai_prices_says(prompt: int, completion: int) -> None:
    assert price("gpt-4o", prompt, completion) == pytest.approx(library("gpt-4o", prompt, completion), rel=1e-12)
    assert price("gpt-4o", prompt, completion) > 0 or prompt + completion == 0


def test_batch_rates_are_the_librarys_and_unknown_where_it_has_none() -> None:
    batch = library("gpt-4o", 1000, 500, price_context={"processing": "batch"})
    assert price("gpt-4o", 1000, 500, batch=True) == pytest.approx(batch, rel=1e-12)
    assert batch < library("gpt-4o", 1000, 500)
    assert price("no-such-model-xyz", 1000, 500, batch=True) is None


def test_tiered_prices_use_the_librarys_own_calculation() -> None:
    # gemini-2.5-pro charges more past 200k prompt tokens: the flat fast path must not apply
    for prompt in (100_000, 300_000):
        assert price("gemini-2.5-pro", prompt, 1000) == pytest.approx(library("gemini-2.5-pro", prompt, 1000))


def test_the_table_is_warmed_only_where_a_price_comes_from_it() -> None:
    """A backend's pool loads the table in a worker thread (``warm``) only when its prices come from it."""
    pricer = Pricer(PricingSettings(models=(ModelPrice(model="mine", input=1.0, output=2.0),)))
    assert pricer.uses_table("gpt-4o", kind="openai")
    assert not pricer.uses_table("mine", kind="openai")  # an override
    assert not pricer.uses_table("gpt-4o", kind="embedded")  # a free kind
    assert not Pricer(PricingSettings(library=False)).uses_table("gpt-4o", kind="openai")
    pricer.warm("gpt-4o", kind="openai")
    assert pricer.price("gpt-4o", 1000, 100) == pytest.approx(library("gpt-4o", 1000, 100))


def test_an_unknown_model_is_unknown_not_free() -> None:
    pricer = Pricer()
    assert pricer.price("my-finetune-7b", 1000, 100, kind="openai") is None
    assert pricer.source("my-finetune-7b", kind="openai") == "unknown"
    assert Pricer(PricingSettings(library=False)).price("gpt-4o", 1000, 100) is None


def test_embedded_and_vllm_are_free_by_default_unless_overridden() -> None:
    pricer = Pricer()
    for kind in ("embedded", "vllm"):
        assert pricer.price("SmolLM2-135M-Instruct", 5000, 500, kind=kind) == 0.0
        assert pricer.source("SmolLM2-135M-Instruct", kind=kind) == "free"
    paid_gpu = Pricer(PricingSettings(models=(ModelPrice("Qwen/Qwen2.5-7B-Instruct", 0.2, 0.6),)))
    assert paid_gpu.price("Qwen/Qwen2.5-7B-Instruct", 1_000_000, 500_000, kind="vllm") == pytest.approx(0.5)
    assert Pricer(PricingSettings(free=())).price("SmolLM2-135M-Instruct", 10, 10, kind="embedded") is None


def test_an_override_beats_the_library() -> None:
    pricer = Pricer(PricingSettings(models=(ModelPrice("gpt-4o", 1.0, 2.0),)))
    assert pricer.price("gpt-4o", 2_000_000, 1_000_000) == pytest.approx(4.0)
    assert pricer.source("gpt-4o") == "override"
    assert pricer.price("gpt-4o", 1, 1, batch=True) is None  # no batch rate given: unknown
    with_batch = Pricer(PricingSettings(models=(ModelPrice("m", 1.0, 2.0, batch_input=0.5, batch_output=1.0),)))
    assert with_batch.price("m", 1_000_000, 1_000_000, batch=True) == pytest.approx(1.5)


def test_the_pricing_config_is_typed() -> None:
    s = to_settings({"models": [{"model": "mine", "input": 0.1, "output": 0.3}], "free": ["embedded"]},
                    PricingSettings, "pricing")
    assert s.models == (ModelPrice("mine", 0.1, 0.3),) and s.free == ("embedded",)
    with pytest.raises(ConfigError, match=r"pricing\.models\[0\]\.input=-1"):
        to_settings({"models": [{"model": "mine", "input": -1, "output": 0.3}]}, PricingSettings, "pricing")
    with pytest.raises(ConfigError, match=r"pricing\.free"):
        to_settings({"free": ["gpus"]}, PricingSettings, "pricing")
    with pytest.raises(ConfigError, match=r"pricing\.models\[0\]\.model"):
        to_settings({"models": [{"input": 1, "output": 1}]}, PricingSettings, "pricing")


def _backend(root: str, model: str, recorder: StoreRecorder, kind: str = "openai", **kw) -> Backend:
    settings = BackendSettings(kind=kind, model=model, base_url=f"{root}/v1", api_key_env=None, dialect="openai",
                               backoff_base=0.001, backoff_max=0.01, max_retries=1, **kw)
    return Backend(settings, settings.urls, recorder=recorder)


@pytest.mark.anyio
async def test_each_call_stores_its_price_cached_free_unknown_null(tmp_path: Path) -> None:
    db = tmp_path / "cost.db"
    with serve_in_thread(ServerConfig(latency=0.0, seed=3)) as root:
        async with Store.open(db) as store:
            rec = StoreRecorder(store)
            paid, unknown = _backend(root, "gpt-4o", rec), _backend(root, "house-model-x", rec)
            local = _backend(root, "SmolLM2-135M-Instruct", rec, kind="embedded")
            first = await paid.chat(MSGS, role="user")
            again = await paid.chat(MSGS, role="user")             # the same request: from the cache
            await unknown.chat(MSGS, role="inducer")
            await local.chat(MSGS, role="preferred")
            for b in (paid, unknown, local):
                await b.aclose()
        assert again.cached and first.prompt_tokens > 0
    conn = connect(db, readonly=True)
    rows = conn.execute("SELECT model, cached, prompt_tokens, completion_tokens, cost_usd FROM llm_calls"
                        " ORDER BY id").fetchall()
    (m1, c1, p1, k1, cost1), (_, c2, _, _, cost2), (_, _, _, _, cost3), (_, _, _, _, cost4) = rows
    assert (m1, c1) == ("gpt-4o", 0) and cost1 == pytest.approx(library("gpt-4o", p1, k1), rel=1e-12) and cost1 > 0
    assert (c2, cost2) == (1, 0.0)   # a cached reply costs nothing
    assert cost3 is None             # unknown model: NULL, not 0
    assert cost4 == 0.0              # embedded: free
    conn.close()


@pytest.mark.anyio
async def test_a_failed_paid_call_has_an_unknown_price(tmp_path: Path) -> None:
    db = tmp_path / "fail.db"
    with serve_in_thread(ServerConfig(latency=0.0, fault_rate=1.0, fault_mix={"500": 1}, seed=1)) as root:
        async with Store.open(db) as store:
            rec = StoreRecorder(store)
            paid, local = _backend(root, "gpt-4o", rec), _backend(root, "SmolLM2-135M-Instruct", rec, kind="vllm")
            for b in (paid, local):
                with pytest.raises(LLMError):
                    await b.chat(MSGS, role="user")
                await b.aclose()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT model, cost_usd FROM llm_calls ORDER BY id").fetchall() == [
            ("gpt-4o", None), ("SmolLM2-135M-Instruct", 0.0)]


def test_run_totals_sum_known_prices_and_count_unknown_ones(tmp_path: Path) -> None:
    conn = connect(tmp_path / "t.db", create=True)
    run = conn.execute("INSERT INTO runs (kind, config, config_hash, status, started_at)"
                       " VALUES ('generate', '{}', 'h', 'running', 0)"
                       ).lastrowid
    for model, role, cost in (("gpt-4o", "user", 0.25), ("gpt-4o", "inducer", 0.5), ("mine", "user", None)):
        conn.execute("INSERT INTO llm_calls (run_id, role, endpoint, model, request, prompt_tokens, completion_tokens,"
                     " created_at, cost_usd) VALUES (?, ?, 'e', ?, '{}', 10, 5, 0, ?)", (run, role, model, cost))
    calls = Calls(conn)
    t = calls.totals(run)
    assert (t.cost_usd, t.unpriced) == (pytest.approx(0.75), 1)
    assert {r.role: (r.cost_usd, r.unpriced) for r in calls.by_role(run)} == {"inducer": (0.5, 0), "user": (0.25, 1)}
    assert {m.model: (m.cost_usd, m.unpriced) for m in calls.by_model(run)} == {"gpt-4o": (0.75, 0), "mine": (None, 1)}
    assert calls.spent(run) == pytest.approx(0.75)
    conn.close()
