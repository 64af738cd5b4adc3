"""Adaptive concurrency against a hidden rate limit (issue 16.1).

The latency server in budget mode (``--rpm``/``--tpm``: a token bucket that
refuses with a 429 what it cannot pay, see ``latency_server.py``) is driven
through the gateway (``Backend.chat``) by more callers than the ceiling, for
``--seconds``; the first ``--warmup`` seconds are left out. Per scenario
(the budget that binds: requests or tokens per minute; with or without
rate-limit headers) it runs the gateway adaptive (``backend.adaptive=true``,
limit in [1, ceiling]) and fixed (``adaptive=false``, the ceiling), and
prints, after warm-up:

- ``rate_ratio``: the allowed rate the run used in the window: what the
  server admitted, less what its bucket gave up over the window (a burst
  saved before it is not the rate), over the budget's refill in the window
  (requests or tokens: the binding one);
- ``refused_share``: 429s of the budget over all requests in the window;
- the limit the adaptive controller ended on, next to the concurrency that
  exactly fits the budget (allowed calls/s x latency).

    python benchmarks/adaptive_rate.py                      # all scenarios, 20 s each
    python benchmarks/adaptive_rate.py --seconds 8 --warmup 3
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import latency_server, write_results

from aloesim.agents.gateway import Backend, BackendSettings, Sampling

# binding budget -> server options (at 0.5 s latency; ~15-35 tokens per call). Rates are kept low so
# that a loaded 2-core machine drives them with CPU to spare: the ceiling (64) is far above what fits.
SCENARIOS: dict[str, dict[str, float]] = {
    "rpm": {"rpm": 1200.0},                     # 20 calls/s: 10 in flight fit
    "tpm": {"tpm": 48_000.0, "rpm": 6000.0},   # 800 tokens/s: ~32 calls/s
}


async def drive(base_url: str, stats: Any, *, adaptive: bool, ceiling: int, callers: int, seconds: float,
                warmup: float) -> dict[str, Any]:
    """Call ``base_url`` through the gateway for ``seconds``; the server's counters
    (``stats()``: its /stats) at the end of warm-up and at the end."""
    settings = BackendSettings(kind="openai", api_key_env=None, base_url=base_url, model="latency-server",
                               concurrency=ceiling, adaptive=adaptive, min_concurrency=1, max_retries=100,
                               backoff_base=0.05, backoff_max=1.0, timeout=30.0)
    backend = Backend(settings, [base_url], cache=False)
    limiter = backend.endpoints[0].adaptive
    sampling = Sampling(max_tokens=32)
    marks: dict[str, Any] = {}
    counter = iter(range(10**9))

    async def caller() -> None:
        while True:  # bounded by time (below); every call is retried until admitted
            await backend.chat([{"role": "user", "content": f"question {next(counter)}"}], role="user",
                               sampling=sampling)

    async def mark() -> None:
        await anyio.sleep(warmup)
        marks["start"] = (time.monotonic(), await anyio.to_thread.run_sync(stats))

    try:
        with anyio.move_on_after(seconds):  # the calls still waiting or in flight then are cancelled
            async with anyio.create_task_group() as tg:
                tg.start_soon(mark)
                for _ in range(callers):
                    tg.start_soon(caller)
        end = (time.monotonic(), await anyio.to_thread.run_sync(stats))
    finally:
        await backend.aclose()
    (t0, s0), (t1, s1) = marks["start"], end
    window = t1 - t0
    cfg = s1["config"]
    admitted, refused = s1["admitted"] - s0["admitted"], s1["refused"] - s0["refused"]
    tokens = s1["admitted_tokens"] - s0["admitted_tokens"]
    drawn = {k: s0["budget_level"][k] - s1["budget_level"][k] for k in ("requests", "tokens")}
    ratios = {}  # what the refill paid for (the admitted less what the buckets gave up) over the refill
    if cfg["rpm"]:
        ratios["requests"] = (admitted - drawn["requests"]) / (cfg["rpm"] / 60 * window)
    if cfg["tpm"]:
        ratios["tokens"] = (tokens - drawn["tokens"]) / (cfg["tpm"] / 60 * window)
    allowed_calls = min([cfg["rpm"] / 60] * bool(cfg["rpm"])
                        + [cfg["tpm"] / 60 / max(1.0, tokens / max(1, admitted))] * bool(cfg["tpm"]))
    return {
        "adaptive": adaptive, "ceiling": ceiling, "window_s": round(window, 2),
        "rate_ratio": round(max(ratios.values()), 3), "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "refused_share": round(refused / max(1, admitted + refused), 4), "admitted": admitted, "refused": refused,
        "calls_per_s": round(admitted / window, 1), "allowed_calls_per_s": round(allowed_calls, 1),
        "fitting_concurrency": round(allowed_calls * cfg["latency"], 1),
        "final_limit": limiter.as_dict() if limiter is not None else {"limit": ceiling},
    }


def scenario(name: str, headers: bool, *, seconds: float, warmup: float, ceiling: int, latency: float,
             burst: float) -> list[dict[str, Any]]:
    budget = SCENARIOS[name]
    args = [f"--{k}={v:g}" for k, v in budget.items()] + [f"--burst={burst:g}"]
    if not headers:
        args.append("--no-rate-headers")
    out = []
    for adaptive in (True, False):
        with latency_server(latency, extra_args=tuple(args)) as server:
            point = anyio.run(lambda a=adaptive: drive(server.base_url, server.stats, adaptive=a, ceiling=ceiling,
                                                       callers=2 * ceiling, seconds=seconds, warmup=warmup))
        point |= {"scenario": name, "headers": headers}
        out.append(point)
        print(f"{name:4} headers={headers!s:5} adaptive={adaptive!s:5}: rate {point['rate_ratio']:.3f} of "
              f"allowed, refused {100 * point['refused_share']:.2f}%, {point['calls_per_s']} calls/s "
              f"(allowed {point['allowed_calls_per_s']}), limit {point['final_limit']['limit']} "
              f"(fits {point['fitting_concurrency']})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out at the start")
    parser.add_argument("--ceiling", type=int, default=64, help="backend.concurrency (the adaptive ceiling)")
    parser.add_argument("--latency", type=float, default=0.5, help="server latency, seconds")
    parser.add_argument("--burst", type=float, default=1.0, help="seconds of budget the server's buckets hold")
    parser.add_argument("--scenarios", default="rpm,tpm", help="comma list of " + ",".join(SCENARIOS))
    parser.add_argument("--out", default="adaptive_rate", help="results/NAME.json")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    points = []
    for name in args.scenarios.split(","):
        for headers in (True, False):
            points += scenario(name, headers, seconds=args.seconds, warmup=args.warmup, ceiling=args.ceiling,
                               latency=args.latency, burst=args.burst)
    path = write_results(args.out, {"seconds": args.seconds, "warmup_s": args.warmup, "ceiling": args.ceiling,
                                    "latency_s": args.latency, "burst_s": args.burst, "points": points})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
