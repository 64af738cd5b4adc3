"""A managed vLLM server (``vllm serve MODEL``) for GPU machines, behind the
same launcher as the embedded model.  Not exercised on CPU-only machines:
tests cover the command line and the "not installed" error."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aloesim.core.errors import ConfigError, ServerError

from ._embedded import check_timeout
from ._logdir import temporary_log_dir
from ._ports import HOST, check_ports_free, free_ports
from ._process import ServerSpec, launch_servers

__all__ = ["vllm_command", "vllm_executable", "vllm_server", "vllm_specs"]


def vllm_executable() -> str:
    """The ``vllm`` console script of this environment (next to the Python
    interpreter, else on PATH).  Raises ``ServerError`` if vLLM is missing."""
    if importlib.util.find_spec("vllm") is None:
        raise ServerError("vllm", "vLLM is not installed; on a GPU machine: pip install 'aloesim[vllm]'")
    beside = Path(sys.executable).with_name("vllm")
    if beside.is_file():
        return str(beside)
    found = shutil.which("vllm")
    if found is None:
        raise ServerError("vllm", "the 'vllm' command is not on PATH; reinstall vLLM")
    return found


def vllm_command(
    model: str,
    port: int,
    *,
    executable: str = "vllm",
    served_model_name: str | None = None,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    dtype: str = "auto",
    seed: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """argv of ``vllm serve MODEL --host 127.0.0.1 --port PORT ...``."""
    argv = [
        executable,
        "serve",
        model,
        "--host",
        HOST,
        "--port",
        str(port),
        "--tensor-parallel-size",
        str(tensor_parallel_size),
        "--gpu-memory-utilization",
        str(gpu_memory_utilization),
        "--dtype",
        dtype,
    ]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    if max_model_len is not None:
        argv += ["--max-model-len", str(max_model_len)]
    if max_num_seqs is not None:
        argv += ["--max-num-seqs", str(max_num_seqs)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv + [str(a) for a in extra_args]


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "a positive integer")
    return value


def vllm_specs(
    model: str,
    n: int = 1,
    port: int | None = None,
    *,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    dtype: str = "auto",
    seed: int | None = None,
    served_model_name: str | None = None,
    extra_args: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    executable: str | None = None,
) -> list[ServerSpec]:
    """Validated launch specs of ``n`` vLLM replicas.  With ``n > 1`` replica
    ``i`` sees GPUs ``i*tp .. i*tp+tp-1`` (``CUDA_VISIBLE_DEVICES``)."""
    if not isinstance(model, str) or not model:
        raise ConfigError("backend.model", model, "a Hugging Face model id or local model folder for vLLM")
    n = _positive_int("backend.servers", n)
    tp = _positive_int("backend.tensor_parallel_size", tensor_parallel_size)
    if isinstance(gpu_memory_utilization, bool) or not 0 < float(gpu_memory_utilization) <= 1:
        raise ConfigError("backend.gpu_memory_utilization", gpu_memory_utilization, "a fraction in (0, 1]")
    exe = executable or vllm_executable()
    ports = free_ports(n) if port is None else check_ports_free(port, n)
    folder = Path(log_dir) if log_dir is not None else temporary_log_dir("aloe-vllm-")

    def command(p: int) -> list[str]:
        return vllm_command(
            model,
            p,
            executable=exe,
            served_model_name=served_model_name,
            tensor_parallel_size=tp,
            gpu_memory_utilization=float(gpu_memory_utilization),
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            dtype=dtype,
            seed=seed,
            extra_args=extra_args,
        )

    specs = []
    for i, p in enumerate(ports):
        env = (
            {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(i * tp, (i + 1) * tp))} if n > 1 else None
        )
        specs.append(
            ServerSpec(
                name="vllm",
                command=command,
                port=p,
                port_fixed=port is not None,
                log_path=folder / f"vllm-{i}.log",
                env=env,
                health_path="/health",
                temporary_log=log_dir is None,
            )
        )
    return specs


@contextlib.asynccontextmanager
async def vllm_server(
    model: str,
    port: int | None = None,
    *,
    n: int = 1,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 600,
    **options: Any,
) -> AsyncIterator[list[str]]:
    """Start ``n`` ``vllm serve MODEL`` replicas on 127.0.0.1 (the first on
    ``port``, or free ports) and yield their base URLs; stopped like the
    embedded servers (SIGTERM to the process group, 30 s grace, SIGKILL).
    ``options`` are the keyword arguments of ``vllm_specs``
    (tensor_parallel_size, gpu_memory_utilization, max_model_len,
    max_num_seqs, dtype, seed, served_model_name, log_dir)."""
    timeout = check_timeout(startup_timeout)
    specs = vllm_specs(model, n, port, extra_args=extra_args, **options)
    async with launch_servers(specs, startup_timeout=timeout, grace=30.0) as servers:
        yield [s.url for s in servers]
