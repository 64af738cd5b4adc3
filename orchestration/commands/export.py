"""``aloe export``: write the preference trees of a database as TRL datasets.

    aloe export db=aloe.db export.dir=data                  # complete trees of every run
    aloe export db=aloe.db export.dir=data export.run=3     # one generate run ([3,5] for several)
    aloe export db=aloe.db export.dir=data export.include_incomplete=true

Writes ``sft.jsonl``, ``sft_rejected.jsonl``, ``dpo.jsonl`` and
``manifest.json`` (counts, source runs, sha256 of each file). The database
is opened read-only.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ...core import to_settings
from ...training import ExportFilter, export_dataset, parse_runs
from .._schemas import ExportSettings

HELP = "write the trees of db as TRL datasets (sft.jsonl, sft_rejected.jsonl, dpo.jsonl, manifest.json)"


def run(cfg: DictConfig) -> int:
    """Export ``cfg.db`` into ``cfg.export.dir``; returns the exit code."""
    e: ExportSettings = to_settings(cfg.get("export"), ExportSettings, "export")
    flt = ExportFilter(runs=parse_runs(e.run, "export.run"), include_incomplete=e.include_incomplete)
    result = export_dataset(cfg.db, e.dir, flt)
    m = result.manifest
    counts = " ".join(f"{k}={v}" for k, v in m["counts"].items())
    print(f"exported {m['nodes']} nodes of {m['trees']} trees (runs {m['source_runs']}) to {result.dir}: {counts}")
    return 0
