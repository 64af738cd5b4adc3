"""Where server logs go without ``backend.log_dir`` (issue 18: 15 ``aloe-llama-*``
folders were left in the temp folder after a few runs): a temporary folder
removed when the servers stop normally, kept (marked FAILED, its path named)
when a server failed, and swept by the next launch when its process was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aloesim.agents.servers import embedded_servers, launch_servers
from aloesim.agents.servers._embedded import embedded_specs
from aloesim.agents.servers._logdir import FAILED_MARKER, sweep_stale_log_dirs, temporary_log_dir
from aloesim.core.errors import ServerError


@pytest.fixture
def tmpdir_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp folder of this process, for this test only."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_folders_of_dead_processes_without_a_failure(tmpdir_root: Path) -> None:
    dead = _dead_pid()
    stale = tmpdir_root / f"aloe-llama-{dead}-abcd"
    failed = tmpdir_root / f"aloe-llama-{dead}-efgh"
    mine = tmpdir_root / f"aloe-llama-{os.getpid()}-ijkl"
    unnamed = tmpdir_root / "aloe-llama-q1w2e3r4"  # an older aloesim's folder: whose it is cannot be known
    other = tmpdir_root / f"aloe-vllm-{dead}-mnop"
    for folder in (stale, failed, mine, unnamed, other):
        folder.mkdir()
        (folder / "llama-0.log").write_text("log\n")
    (failed / FAILED_MARKER).write_text("server error: ...\n")
    assert sweep_stale_log_dirs("aloe-llama-") == [stale]
    assert sorted(p.name for p in tmpdir_root.iterdir()) == sorted(p.name for p in (failed, mine, unnamed, other))
    fresh = temporary_log_dir("aloe-vllm-")  # a launch sweeps its own kind first
    assert fresh.name.startswith(f"aloe-vllm-{os.getpid()}-") and not other.exists() and failed.exists()


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_normal_run_leaves_no_log_folder(tmpdir_root: Path) -> None:
    async with embedded_servers() as urls:
        assert urls
        (folder,) = tmpdir_root.iterdir()
        assert folder.name.startswith(f"aloe-llama-{os.getpid()}-")
        assert (folder / "llama-0.log").stat().st_size > 0  # the server writes there while it runs
    assert list(tmpdir_root.iterdir()) == []


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_server_that_died_keeps_its_log(tmpdir_root: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        async with launch_servers(embedded_specs(), startup_timeout=120) as servers:
            os.killpg(servers[0].pid, signal.SIGKILL)
            servers[0].process.wait()
    (folder,) = tmpdir_root.iterdir()
    assert (folder / "llama-0.log").is_file()
    assert "exited with code" in (folder / FAILED_MARKER).read_text()
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["log_path"] == str(folder / "llama-0.log")


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_server_that_did_not_start_keeps_its_log_and_names_it(tmpdir_root: Path) -> None:
    with pytest.raises(ServerError) as info:
        async with embedded_servers(extra_args=["--no_such_flag", "1"], startup_timeout=120):
            pass
    (folder,) = tmpdir_root.iterdir()
    log = folder / "llama-0.log"
    assert f"log {log}" in str(info.value) and log.is_file()
    assert (folder / FAILED_MARKER).read_text().startswith("server error: ")


@pytest.mark.integration
def test_aloe_generate_leaves_no_server_folder_behind(tmp_path: Path) -> None:
    """A real run of the CLI on the embedded backend, with its own temp folder."""
    root = tmp_path / "tmp"
    root.mkdir()
    aloe = str(Path(sys.executable).with_name("aloe"))
    proc = subprocess.run(
        [aloe, "generate", f"db={tmp_path / 'g.db'}", "generation.trees=1", "generation.turns=1",
         "agents.user.max_tokens=16", "agents.preferred.max_tokens=16", "agents.rejected.max_tokens=16",
         "log.level=WARNING"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(root)})
    assert proc.returncode in (0, 3), proc.stderr[-2000:]  # 3: finished, a tree failed (a 135M model's JSON)
    assert list(root.glob("aloe-llama-*")) == []
