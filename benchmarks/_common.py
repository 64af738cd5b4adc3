"""Shared helpers of the benchmark scripts: the latency server in its own
process, CPU / memory meters, machine info and the results files.

Scripts in ``benchmarks/`` import it as ``from _common import ...`` (their
directory is on ``sys.path`` when run as ``python benchmarks/x.py``); tests
import it the same way (pyproject's pytest ``pythonpath`` lists ``benchmarks``).
``run_benchmark`` is the one ``main()`` tail of the async benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Self

__all__ = [
    "BENCH_DIR",
    "RESULTS_DIR",
    "Meter",
    "ServerProcess",
    "current_rss_mb",
    "latency_server",
    "machine_info",
    "peak_rss_mb",
    "raise_fd_limit",
    "write_results",
]

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SERVER_SCRIPT = BENCH_DIR / "latency_server.py"


@dataclass
class ServerProcess:
    """A running latency server: ``base_url`` is what ``AsyncOpenAI(base_url=...)``
    takes (``.../v1``); ``url`` is its root (``/stats``, ``/config``)."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self, log: bool = False) -> dict[str, Any]:
        """``GET /stats`` (``log=True`` adds the per-request decisions)."""
        with urllib.request.urlopen(self.url + "/stats" + ("?log=1" if log else ""), timeout=30) as resp:
            return json.loads(resp.read())

    def configure(self, **changes: Any) -> dict[str, Any]:
        """``POST /config``: e.g. ``configure(fault_rate=1.0, fault_mix="429", reset=True)``."""
        request = urllib.request.Request(
            self.url + "/config", data=json.dumps(changes).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise ValueError(json.loads(err.read())["error"]["message"]) from None

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        import psutil

        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system


@contextlib.contextmanager
def latency_server(
    latency: float = 0.05,
    *,
    fault_rate: float = 0.0,
    fault_mix: str = "all",
    seed: int = 0,
    retry_after: float = 1.0,
    hang: float = 300.0,
    extra_args: tuple[str, ...] = (),
    ready_timeout: float = 30.0,
    log_path: Path | None = None,
) -> Iterator[ServerProcess]:
    """Start ``latency_server.py`` in a subprocess on a free port of 127.0.0.1,
    wait until it answers ``/v1/models``, yield it, terminate it at exit.
    Its stderr goes to ``log_path`` (default: discarded)."""
    args = [
        sys.executable, str(SERVER_SCRIPT), "--port", "0", "--latency", str(latency),
        "--fault-rate", str(fault_rate), "--fault-mix", fault_mix, "--seed", str(seed),
        "--retry-after", str(retry_after), "--hang", str(hang), *extra_args,
    ]
    stderr = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
    try:
        line = process.stdout.readline().decode() if process.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"latency server did not start (exit {process.wait(5)}): {line!r}")
        server = ServerProcess(f"http://127.0.0.1:{int(line.split()[1])}", process, log_path)
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                with urllib.request.urlopen(server.base_url + "/models", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("latency server did not become ready") from None
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        if log_path:
            stderr.close()  # type: ignore[union-attr]


@dataclass
class Meter:
    """Wall time and CPU time of this process (and of finished children) over
    a ``with`` block::

        with Meter() as m:
            ...
        m.wall_s, m.cpu_s, m.children_cpu_s
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0
    children_cpu_s: float = 0.0
    _start: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0), repr=False)

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> Self:
        self._start = (time.perf_counter(), time.process_time(), self._children())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, children = self._start
        self.wall_s = time.perf_counter() - wall
        self.cpu_s = time.process_time() - cpu
        self.children_cpu_s = self._children() - children


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Current resident memory of this process, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (thousands of sockets in
    flight need it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=5,
                             check=False)
        return out.stdout.strip() or None
    return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import psutil

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # others' work skews figures
        "packages": {
            name: _version(name)
            for name in ("openai", "httpx2", "anyio", "uvicorn", "starlette", "uvloop", "httptools", "aloesim")
        },
        "git_commit": _git_commit(),
    }


def run_benchmark(main: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]], args: argparse.Namespace) -> int:
    """The one ``main()`` tail of the async benchmarks: raise the open-files
    limit, run ``main(args)`` under anyio, write its results to
    ``benchmarks/results/{args.name}.json`` and say where; returns exit code 0."""
    import anyio

    raise_fd_limit()
    results = anyio.run(main, args)
    print(f"wrote {write_results(args.name, results)}")
    return 0


def write_results(name: str, results: dict[str, Any], *, directory: Path | None = None) -> Path:
    """Write ``benchmarks/results/NAME.json``: ``{"benchmark", "timestamp",
    "machine", "results"}``; returns the path."""
    directory = directory or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {
        "benchmark": name,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
