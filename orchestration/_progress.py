"""Progress of a generation run: a live rich display on a TTY, one
structured log line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import structlog

log = structlog.get_logger(__name__)


def snapshot(progress: Any, backends: list[Any], batches: list[Any] = ()) -> dict[str, Any]:
    elapsed = max(1e-9, time.monotonic() - progress.started)
    calls = sum(b.stats["calls"] for b in backends)
    waves: dict[str, Any] = {}
    if batches:  # batch mode: turn waves so far and batches by state
        states: dict[str, int] = {}
        for model in batches:
            for state, n in model.progress()["batches"].items():
                states[state] = states.get(state, 0) + n
        waves = {"waves": sum(m.waves for m in batches), "batches": states}
    return {
        **waves,
        "trees_done": progress.trees_done,
        "trees_failed": progress.trees_failed,
        "trees_total": progress.trees_total,
        "nodes": progress.nodes,
        "calls": calls,
        "in_flight": sum(ep.limit.in_flight for b in backends for ep in b.endpoints),
        "limit": sum(ep.limit.total for b in backends for ep in b.endpoints),  # adaptive: it moves
        "adaptive": any(getattr(getattr(b, "settings", None), "adaptive", False) for b in backends),
        "tokens": sum(b.stats["prompt_tokens"] + b.stats["completion_tokens"] for b in backends),
        "retries": sum(b.stats["retries"] for b in backends),
        "errors": sum(b.stats["failures"] for b in backends),
        "calls_per_s": round(calls / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
    }


def limits(backends: list[Any]) -> list[dict[str, Any]]:
    """Each backend's in-flight limit at the end (``Backend.limits``), for the run's stats."""
    return [b.limits() for b in backends if hasattr(b, "limits")]


def reporter(mode: str, interval: float, backends: list[Any], batches: list[Any] = ()):
    """An async callable ``(progress, actors)`` that reports until cancelled."""
    if mode == "auto":
        mode = "live" if sys.stderr.isatty() else "log"

    async def log_lines(progress: Any, actors: Any) -> None:
        while True:
            await anyio.sleep(interval)
            log.info("generate.progress", **snapshot(progress, backends, batches))

    async def live(progress: Any, actors: Any) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        def render() -> Table:
            s = snapshot(progress, backends, batches)
            t = Table(title="aloe generate", show_header=False)
            t.add_row("trees", f"{s['trees_done']} done / {s['trees_failed']} failed / {s['trees_total']}")
            t.add_row("nodes", str(s["nodes"]))
            t.add_row("calls", f"{s['calls']} ({s['in_flight']} in flight, {s['calls_per_s']}/s)")
            t.add_row("in-flight limit", f"{s['limit']}" + (" (adaptive)" if s["adaptive"] else ""))
            t.add_row("tokens", str(s["tokens"]))
            t.add_row("retries / errors", f"{s['retries']} / {s['errors']}")
            if "waves" in s:
                t.add_row("batch waves", f"{s['waves']} ({', '.join(f'{n} {k}' for k, n in s['batches'].items())})")
            t.add_row("elapsed", f"{s['elapsed_s']} s")
            return t

        with Live(render(), console=Console(stderr=True), refresh_per_second=4, transient=True) as view:
            while True:
                await anyio.sleep(0.25)
                view.update(render())

    async def off(progress: Any, actors: Any) -> None:
        return None

    return {"live": live, "log": log_lines, "off": off}[mode]
