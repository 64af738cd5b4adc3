"""``aloe export``: write the preference trees of a database as TRL datasets.

    aloe export db=aloe.db export.dir=data                  # complete trees of every run
    aloe export db=aloe.db export.dir=data export.run=3     # one generate run ([3,5] for several)
    aloe export db=aloe.db export.dir=data export.include_incomplete=true
    aloe export db=aloe.db export.dir=data export.exclude=[truncated,leaked,role_flip,judge_disagree]

Writes ``sft.jsonl``, ``sft_rejected.jsonl``, ``dpo.jsonl`` and
``manifest.json`` (counts, source runs, sha256 of each file). The database
is opened read-only. ``export.exclude`` drops flagged nodes and what is built
on them (docs/quality.md); the manifest counts them under ``excluded``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ...core import to_settings
from ...training import ExportFilter, export_dataset, parse_runs
from .._schemas import ExportConfig

HELP = "write the trees of db as TRL datasets (sft.jsonl, sft_rejected.jsonl, dpo.jsonl, manifest.json)"


def run(cfg: DictConfig) -> int:
    """Export ``cfg.db`` into ``cfg.export.dir``; returns the exit code."""
    c: ExportConfig = to_settings(cfg, ExportConfig)
    e = c.export
    flt = ExportFilter(runs=parse_runs(e.run, "export.run"), include_incomplete=e.include_incomplete,
                       exclude=e.exclude)
    result = export_dataset(c.db, e.dir, flt, quality=c.quality)
    m = result.manifest
    counts = " ".join(f"{k}={v}" for k, v in m["counts"].items())
    print(f"exported {m['nodes']} nodes of {m['trees']} trees (runs {m['source_runs']}) to {result.dir}: {counts}")
    if e.exclude:
        x = m["excluded"]
        why = " ".join(f"{k}={v}" for k, v in x.items() if k not in ("total", "dependents"))
        print(f"excluded {x['total']} nodes: {why} dependents={x['dependents']}")
    return 0
