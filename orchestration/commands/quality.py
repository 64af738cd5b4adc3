"""``aloe quality``: the quality report of a generate run.

    aloe quality db=aloe.db run=3                       # writes quality-run3/quality.{json,md,png}
    aloe quality db=aloe.db run=3 quality.out_dir=q3
    aloe quality db=aloe.db run=3 quality.embedder=null # no embeddings: skips revelation and diversity

Per turn and overall: revelation, leakage, role flips, truncation, empty and
duplicated replies, length bias, diversity, judge agreement, each against
its threshold in the ``quality`` group (docs/quality.md). Opens the
database read-only (records no run); prints the summary and where the files went.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ...core import to_settings
from ...inspection.quality import report_run
from .._schemas import QualityConfig

HELP = "the quality report of a generate run: revelation, leakage, role flips, truncation, ... (quality.json/md/png)"


def validate(cfg: DictConfig) -> None:
    """The config checks that need no database (the CLI runs them before any -m job)."""
    to_settings(cfg, QualityConfig)


def run(cfg: DictConfig) -> int:
    c: QualityConfig = to_settings(cfg, QualityConfig)
    result = report_run(c.db, c.run, c.quality)
    print("\n".join(result.lines))
    print(f"wrote {result.paths['json']}, {result.paths['md']}, {result.paths['png']}")
    return 0
