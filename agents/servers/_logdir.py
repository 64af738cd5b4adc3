"""Where a managed server's log goes when ``backend.log_dir`` is not set: a
temporary folder ``$TMPDIR/aloe-llama-<pid>-XXXX`` (``aloe-vllm-`` for vLLM)
that lives as long as the servers do.

* When the servers stop normally the folder is removed.
* When a server failed (did not start, or exited on its own) the folder is
  kept, marked with a ``FAILED`` file, and the ``ServerError`` or warning
  names the log path in it.
* A folder left behind by a process that was killed (SIGKILL: no cleanup)
  is removed by the next launch of the same kind, once its process is gone
  (only folders of this user, named with a pid, and not marked ``FAILED``).

With ``backend.log_dir=DIR`` the logs go to ``DIR/llama-I.log`` (appended,
never removed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import structlog

__all__ = ["FAILED_MARKER", "finish_log_dir", "sweep_stale_log_dirs", "temporary_log_dir"]

log = structlog.get_logger(__name__)

FAILED_MARKER = "FAILED"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_stale_log_dirs(prefix: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the ``<prefix><pid>-*`` folders of this user whose process is gone
    and that hold no ``FAILED`` marker. Returns the folders removed."""
    root = Path(root or tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[^/]+$")
    removed = []
    with contextlib.suppress(OSError):
        for path in root.glob(prefix + "*"):
            m = pattern.match(path.name)
            try:
                if (not m or not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid()
                        or _alive(int(m.group(1))) or (path / FAILED_MARKER).exists()):
                    continue
            except OSError:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.debug("stale server log folders removed", count=len(removed), prefix=prefix)
    return removed


def temporary_log_dir(prefix: str) -> Path:
    """A fresh ``$TMPDIR/<prefix><pid>-XXXX`` folder (after sweeping stale ones)."""
    sweep_stale_log_dirs(prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def finish_log_dir(folder: Path, failed: str | None) -> None:
    """Remove a temporary log folder, or keep it (marked) when a server failed."""
    if failed is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        (folder / FAILED_MARKER).write_text(failed + "\n", encoding="utf-8")
