"""The quality report of a stored run in one call: what ``aloe quality`` does
(``report_run``) and the short summary ``aloe demo`` prints (``quality_summary``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloesim.core.errors import ConfigError
from aloesim.environment.personas import SentenceEmbedder
from aloesim.environment.quality import QualitySettings
from aloesim.environment.store import Runs, connect

from ._report import build_quality_report
from ._write import summary_lines, write_quality_report


@dataclass(frozen=True)
class QualityFiles:
    """What ``report_run`` wrote: the report, its files, and the summary lines."""

    run_id: int
    report: dict[str, Any]
    paths: dict[str, Path]
    lines: tuple[str, ...]


def newest_generate_run(conn: sqlite3.Connection, db: str | Path) -> int:
    """The newest generate run's id (ConfigError when there is none)."""
    known = Runs(conn).ids("generate")
    if not known:
        raise ConfigError("run", None, f"the id of a generate run; {db} has none (run `aloe generate`)")
    return known[-1]


def load_embedder(name: str | None) -> SentenceEmbedder | None:
    """``quality.embedder``: default = the bundled MiniLM, a model path or name, None = none.
    Loaded now, so a bad model is a one-line ConfigError rather than a traceback later."""
    if name is None:
        return None
    looks_like_path = name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1
    if name != "default" and looks_like_path and not Path(name).expanduser().is_dir():
        raise ConfigError("quality.embedder", name, "default, null or a sentence-transformers model (no such folder)")
    embedder = SentenceEmbedder(None if name == "default" else str(Path(name).expanduser()) if looks_like_path else name)
    try:
        embedder.encode(["probe"])
    except Exception as exc:  # noqa: BLE001 -- sentence-transformers raises many kinds (OSError, ValueError, ...)
        reason = " ".join(str(exc).split())[:160]
        raise ConfigError("quality.embedder", name, f"default, null or a sentence-transformers model ({reason})") from None
    return embedder


def report_run(db: str | Path, run_id: int | None, settings: QualitySettings) -> QualityFiles:
    """Check generate run ``run_id`` of ``db`` (the newest when None), opened read-only, and write
    ``quality.json``, ``quality.md`` and ``quality.png`` into ``settings.out_dir``
    (``quality-run<ID>`` when null)."""
    conn = connect(db, readonly=True)  # one-line StoreError when missing / not a database
    try:
        run_id = newest_generate_run(conn, db) if run_id is None else run_id
        report = build_quality_report(conn, run_id, settings, embedder=load_embedder(settings.embedder))
    finally:
        conn.close()
    out = Path(settings.out_dir or f"quality-run{run_id}")
    if out.exists() and not out.is_dir():
        raise ConfigError("quality.out_dir", str(out), "a directory (this path is a file)")
    paths = write_quality_report(report, out)
    return QualityFiles(run_id, report, paths, tuple(summary_lines(report)))


def quality_summary(db: str | Path, run_id: int | None = None, *, settings: QualitySettings | None = None,
                    embedder: Any = None) -> str:
    """A short quality summary of a generate run (the newest when ``run_id`` is None)
    for printing, e.g. at the end of ``aloe demo``: the lines of ``summary_lines``.
    Opens ``db`` read-only; ``embedder`` (e.g. the demo's ``SentenceEmbedder``)
    adds revelation and diversity. Raises ConfigError when there is no such run."""
    conn = connect(db, readonly=True)
    try:
        run_id = newest_generate_run(conn, db) if run_id is None else run_id
        report = build_quality_report(conn, run_id, settings, embedder=embedder)
    finally:
        conn.close()
    return "\n".join(summary_lines(report))
