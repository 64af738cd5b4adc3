"""``aloe quality``: the quality report of a generate run.

    aloe quality db=aloe.db run=3                       # writes quality-run3/quality.{json,md,png}
    aloe quality db=aloe.db run=3 quality.out_dir=q3
    aloe quality db=aloe.db run=3 quality.embedder=null # no embeddings: skips revelation and diversity

Per turn and overall: revelation, leakage, role flips, truncation, empty and
duplicated replies, length bias, diversity, judge agreement, each against
its threshold in the ``quality`` group (docs/quality.md). Opens the
database read-only; prints the summary and where the files went.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ...core.errors import ConfigError
from ...environment.personas import SentenceEmbedder
from ...environment.quality import QualitySettings
from ...environment.store import _quality_reads as reads
from ...environment.store import connect
from ...inspection.quality import build_quality_report, summary_lines, write_quality_report

HELP = "the quality report of a generate run: revelation, leakage, role flips, truncation, ... (quality.json/md/png)"


def _settings(cfg: DictConfig) -> QualitySettings:
    return QualitySettings.from_config(OmegaConf.to_container(cfg.quality) if cfg.get("quality") else None)


def _embedder(name: str | None) -> SentenceEmbedder | None:
    if name is None:
        return None
    looks_like_path = name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1
    if name != "default" and looks_like_path and not Path(name).expanduser().is_dir():
        raise ConfigError("quality.embedder", name, "default, null or a sentence-transformers model (no such folder)")
    embedder = SentenceEmbedder(None if name == "default" else str(Path(name).expanduser()) if looks_like_path else name)
    try:
        embedder.encode(["probe"])  # load it now: a bad model is a config error, not a traceback
    except Exception as exc:  # noqa: BLE001 -- sentence-transformers raises many kinds (OSError, ValueError, ...)
        reason = " ".join(str(exc).split())[:160]
        raise ConfigError("quality.embedder", name, f"default, null or a sentence-transformers model ({reason})") from None
    return embedder


def validate(cfg: DictConfig) -> None:
    """The config checks that need no database (the CLI runs them before any -m job)."""
    _settings(cfg)
    run = cfg.get("run")
    if run is not None and (isinstance(run, bool) or not isinstance(run, int) or run < 1):
        raise ConfigError("run", run, "null or the integer id of a generate run (see `aloe runs`)")


def run(cfg: DictConfig) -> int:
    validate(cfg)
    settings = _settings(cfg)
    conn = connect(cfg.db, readonly=True)  # one-line StoreError when missing / not a database
    try:
        run_id = cfg.get("run")
        if run_id is None:
            known = reads.generate_run_ids(conn)
            if not known:
                raise ConfigError("run", None, f"the id of a generate run; {cfg.db} has none (run `aloe generate`)")
            run_id = known[-1]
        embedder = _embedder(settings.embedder)
        report = build_quality_report(conn, run_id, settings, embedder=embedder)
    finally:
        conn.close()
    out = Path(settings.out_dir or f"quality-run{run_id}")
    if out.exists() and not out.is_dir():
        raise ConfigError("quality.out_dir", str(out), "a directory (this path is a file)")
    paths = write_quality_report(report, out)
    print("\n".join(summary_lines(report)))
    print(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    return 0
