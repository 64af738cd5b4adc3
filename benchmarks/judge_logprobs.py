"""What does ``--logits_all`` cost the embedded llama.cpp server (issue 13.2)?

llama-cpp-python's server returns token log-probabilities (the judge's score
distribution) only when started with ``--logits_all True``; otherwise it
answers HTTP 500. This script starts, one after another, a fresh server
(SmolLM2-135M-Instruct, the embedded default, same threads) in each of
three setups and sends it, one request at a time through the real gateway,
ALOE judge calls (prompt B.3, the benchmark's eval personas and probe
replies, structured output ``{"score": N}``) and, on the shared setups,
multi-turn user-like chat calls (64 output tokens):

- ``shared``: the server every role shares today (logits_all off, 256 MB
  prompt cache, n_ctx 4096), judge calls without logprobs;
- ``shared_logits``: the same server with logits_all on, judge calls asking
  for ``top_logprobs=5``: what every role would pay if the one shared server
  kept the logits;
- ``judge_own``: the judge's own server as ``evaluation.judge_logprobs``
  starts it (logits_all on, no prompt cache, n_ctx 2048), judge calls with
  logprobs.

Reported per setup: the server's CPU seconds per call (psutil; the work
done, far less sensitive to other load on the machine than wall time), wall
seconds per call, and the server's resident memory after the run (RSS); and
the ratios to ``shared``. Run it on an otherwise idle machine for wall
times; the CPU and memory ratios hold under load.

    python benchmarks/judge_logprobs.py               # 24 judge calls, 8 chat calls per setup
    python benchmarks/judge_logprobs.py --judge 8 --chat 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import psutil
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results

from aloesim.agents import AlignmentJudge
from aloesim.agents.gateway import Backend, BackendSettings, Sampling
from aloesim.agents.servers import launch_servers
from aloesim.agents.servers._embedded import embedded_specs
from aloesim.evaluation import cases_from_files
from aloesim.evaluation._probes import build_probe, persona_pool

PROMPTS = OmegaConf.create(resources.files("aloesim.conf").joinpath("prompts", "paper.yaml").read_text())
SEEDS = resources.files("aloesim.environment.personas").joinpath("seeds")


def _chat_messages(i: int, cases: list) -> list[dict[str, str]]:
    c = cases[i % len(cases)]
    system = PROMPTS.user.format(profile=c.profile, personality=c.personality)
    turns = [{"role": "system", "content": system}]
    for k in range(1 + i % 4):
        turns += [{"role": "user", "content": f"Tell me about your day, part {k}."},
                  {"role": "assistant", "content": "It was long: work, a walk by the water, then cooking dinner."}]
    return turns + [{"role": "user", "content": "(Continue the conversation. Reply with your next message only.)"}]


SETUPS = {
    "shared": {"logits_all": False, "prompt_cache_mb": 256, "n_ctx": 4096, "logprobs": None, "chat": True},
    "shared_logits": {"logits_all": True, "prompt_cache_mb": 256, "n_ctx": 4096, "logprobs": 5, "chat": True},
    "judge_own": {"logits_all": True, "prompt_cache_mb": 0, "n_ctx": 2048, "logprobs": 5, "chat": False},
}


async def _run(name: str, n_judge: int, n_chat: int, log_dir: Path) -> dict[str, Any]:
    setup = SETUPS[name]
    cases = cases_from_files(str(SEEDS / "eval_profiles.jsonl"), str(SEEDS / "eval_personalities.jsonl"))
    pool = persona_pool(cases)
    specs = embedded_specs(log_dir=log_dir / name, logits_all=setup["logits_all"], n_ctx=setup["n_ctx"],
                           prompt_cache_mb=setup["prompt_cache_mb"])
    out: dict[str, Any] = {"setup": {k: v for k, v in setup.items() if k != "chat"}}
    async with launch_servers(specs, startup_timeout=300) as servers:
        server = servers[0]
        proc = psutil.Process(server.pid)
        settings = BackendSettings(kind="embedded", base_url=server.url, concurrency=1, timeout=600, max_retries=0)
        backend = Backend(settings, [server.url], cache=False)
        judge = AlignmentJudge(backend, PROMPTS.judge,
                               Sampling(temperature=0.0, max_tokens=16, logprobs=setup["logprobs"]))
        got = 0
        with _measure(backend, proc, n_judge) as m:
            for i in range(n_judge):
                p = build_probe(pool, 0, "reply_swap", i)
                r = await judge.rate(p.persona_a, p.message, p.reply_a if i % 2 else p.reply_b, seed=i)
                got += r.distribution is not None
        out["judge"] = {**m, "with_distribution": got}
        if setup["chat"]:
            with _measure(backend, proc, n_chat) as m:
                for i in range(n_chat):
                    await backend.chat(_chat_messages(i, cases), role="user",
                                       sampling=Sampling(0.8, 64, 0.95, seed=i))
            out["chat"] = m
        out["server_rss_mb"] = round(proc.memory_info().rss / 2**20, 1)
        await backend.aclose()
    return out


@contextlib.contextmanager
def _measure(backend: Backend, proc: psutil.Process, n: int) -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    before, cpu0, t0 = dict(backend.stats), sum(proc.cpu_times()[:2]), time.perf_counter()
    yield out
    wall, cpu = time.perf_counter() - t0, sum(proc.cpu_times()[:2]) - cpu0
    prompt = backend.stats["prompt_tokens"] - before["prompt_tokens"]
    completion = backend.stats["completion_tokens"] - before["completion_tokens"]
    out.update(calls=n, wall_s=round(wall, 2), s_per_call=round(wall / n, 3), server_cpu_s_per_call=round(cpu / n, 3),
               prompt_tokens=prompt, completion_tokens=completion,
               prompt_tok_per_cpu_s=round(prompt / max(cpu, 1e-9), 1), tok_per_s=round((prompt + completion) / wall, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", type=int, default=24, help="judge calls per setup")
    ap.add_argument("--chat", type=int, default=8, help="chat calls per shared setup")
    args = ap.parse_args()
    results: dict[str, Any] = {"load_before": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="aloe-logits-") as tmp:
        for name in SETUPS:
            results[name] = anyio.run(_run, name, args.judge, args.chat, Path(tmp))
    results["load_after"] = list(os.getloadavg())
    base = results["shared"]

    def ratio(setup: str, part: str, key: str) -> float:
        return round(results[setup][part][key] / base[part][key], 2)

    results["ratios"] = {
        "judge_cpu/shared": {s: ratio(s, "judge", "server_cpu_s_per_call") for s in SETUPS},
        "judge_wall/shared": {s: ratio(s, "judge", "s_per_call") for s in SETUPS},
        "chat_cpu_shared_logits/shared": ratio("shared_logits", "chat", "server_cpu_s_per_call"),
        "rss/shared": {s: round(results[s]["server_rss_mb"] / base["server_rss_mb"], 2) for s in SETUPS},
    }
    path = write_results("judge_logprobs", results)
    for name in SETUPS:
        r = results[name]
        print(f"{name:14s} RSS {r['server_rss_mb']:7.1f} MB")
        for part in ("judge", "chat"):
            if part in r:
                x = r[part]
                print(f"  {part:6s} server CPU {x['server_cpu_s_per_call']:.3f} s/call  wall {x['s_per_call']:.3f} s/call  "
                      f"prompt {x['prompt_tok_per_cpu_s']:.0f} tok per CPU-s  {x['tok_per_s']:.0f} tok/s"
                      + (f"  distributions {x['with_distribution']}/{x['calls']}" if part == "judge" else ""))
    print("ratios:", json.dumps(results["ratios"]))
    print(f"load average before/after: {results['load_before'][0]:.1f} / {results['load_after'][0]:.1f}; "
          f"written to {path}")


if __name__ == "__main__":
    main()
