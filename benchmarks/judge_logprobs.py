"""What does ``--logits_all`` cost the embedded llama.cpp server (issue 13.2)?

llama-cpp-python's server returns token log-probabilities (the judge's score
distribution) only when started with ``--logits_all True``; otherwise it
answers HTTP 500. This script starts one server per setting in turn
(SmolLM2-135M-Instruct, the embedded default, same threads) and runs, one
request at a time, through the real gateway:

1. ``judge``: ALOE judge calls (prompt B.3, the benchmark's eval personas and
   probe replies, structured output ``{"score": N}``), on a server with
   logits_all off, on one with it on, and on that one asking for
   ``top_logprobs=5`` (what ``evaluation.judge_logprobs`` does);
2. ``chat``: multi-turn user/responder-like chat calls (longer prompts, 64
   output tokens): what every other role would pay if the one shared server
   ran with logits_all on.

Reported: wall time per call, prompt and output tokens per second, the
server's resident memory after the run (RSS, psutil), and the ratios
logits_all on / off. Numbers vary with the machine and its load; run it on
an otherwise idle machine and read the ratios, not the absolutes.

    python benchmarks/judge_logprobs.py               # 40 judge calls, 16 chat calls per setting
    python benchmarks/judge_logprobs.py --judge 10 --chat 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
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


async def _run(logits_all: bool, n_judge: int, n_chat: int, log_dir: Path) -> dict[str, Any]:
    cases = cases_from_files(str(SEEDS / "eval_profiles.jsonl"), str(SEEDS / "eval_personalities.jsonl"))
    pool = persona_pool(cases)
    specs = embedded_specs(log_dir=log_dir / f"logits_all-{logits_all}", logits_all=logits_all)
    out: dict[str, Any] = {"logits_all": logits_all}
    async with launch_servers(specs, startup_timeout=120) as servers:
        server = servers[0]
        settings = BackendSettings(kind="embedded", base_url=server.url, concurrency=1, timeout=300, max_retries=0)
        backend = Backend(settings, [server.url], cache=False)
        variants = [("judge", None)] + ([("judge_logprobs", 5)] if logits_all else [])
        for name, top in variants:
            judge = AlignmentJudge(backend, PROMPTS.judge, Sampling(temperature=0.0, max_tokens=16, logprobs=top))
            before = dict(backend.stats)
            t0 = time.perf_counter()
            got_dist = 0
            for i in range(n_judge):
                p = build_probe(pool, 0, "reply_swap", i)
                r = await judge.rate(p.persona_a, p.message, p.reply_a if i % 2 else p.reply_b, seed=i)
                got_dist += r.distribution is not None
            out[name] = _rates(backend.stats, before, time.perf_counter() - t0, n_judge)
            out[name]["with_distribution"] = got_dist
        before = dict(backend.stats)
        t0 = time.perf_counter()
        for i in range(n_chat):
            await backend.chat(_chat_messages(i, cases), role="user", sampling=Sampling(0.8, 64, 0.95, seed=i))
        out["chat"] = _rates(backend.stats, before, time.perf_counter() - t0, n_chat)
        out["server_rss_mb"] = round(psutil.Process(server.pid).memory_info().rss / 2**20, 1)
        await backend.aclose()
    return out


def _rates(stats: dict, before: dict, wall: float, n: int) -> dict[str, float]:
    prompt = stats["prompt_tokens"] - before["prompt_tokens"]
    completion = stats["completion_tokens"] - before["completion_tokens"]
    return {"calls": n, "wall_s": round(wall, 2), "s_per_call": round(wall / n, 3),
            "prompt_tok_s": round(prompt / wall, 1), "completion_tok_s": round(completion / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", type=int, default=40, help="judge calls per setting")
    ap.add_argument("--chat", type=int, default=16, help="chat calls per setting")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aloe-logits-") as tmp:
        off = anyio.run(_run, False, args.judge, args.chat, Path(tmp))
        on = anyio.run(_run, True, args.judge, args.chat, Path(tmp))
    ratios = {
        "judge_s_per_call_on/off": round(on["judge"]["s_per_call"] / off["judge"]["s_per_call"], 2),
        "judge_logprobs_s_per_call_on/off": round(on["judge_logprobs"]["s_per_call"] / off["judge"]["s_per_call"], 2),
        "chat_s_per_call_on/off": round(on["chat"]["s_per_call"] / off["chat"]["s_per_call"], 2),
        "chat_prompt_tok_s_on/off": round(on["chat"]["prompt_tok_s"] / off["chat"]["prompt_tok_s"], 2),
        "server_rss_on/off": round(on["server_rss_mb"] / off["server_rss_mb"], 2),
    }
    results = {"off": off, "on": on, "ratios": ratios}
    path = write_results("judge_logprobs", results)
    for name, r in (("logits_all off", off), ("logits_all on", on)):
        print(f"{name}: RSS {r['server_rss_mb']} MB")
        for k in ("judge", "judge_logprobs", "chat"):
            if k in r:
                print(f"  {k:15s} {r[k]['s_per_call']:.3f} s/call  prompt {r[k]['prompt_tok_s']:.0f} tok/s  "
                      f"output {r[k]['completion_tok_s']:.1f} tok/s" +
                      (f"  distributions {r[k]['with_distribution']}/{r[k]['calls']}" if "with_distribution" in r[k]
                       else ""))
    print("ratios (on / off):", ratios)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
