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

from omegaconf import DictConfig, OmegaConf

from ...environment.quality import QualitySettings, parse_reasons
from ...training import ExportFilter, export_dataset, parse_runs

HELP = "write the trees of db as TRL datasets (sft.jsonl, sft_rejected.jsonl, dpo.jsonl, manifest.json)"


def run(cfg: DictConfig) -> int:
    """Export ``cfg.db`` into ``cfg.export.dir``; returns the exit code."""
    e = cfg.export
    raw = e.get("exclude")
    exclude = parse_reasons(OmegaConf.to_container(raw) if OmegaConf.is_config(raw) else raw)
    flt = ExportFilter(runs=parse_runs(e.run, "export.run"), include_incomplete=bool(e.include_incomplete),
                       exclude=exclude)
    quality = QualitySettings.from_config(OmegaConf.to_container(cfg.quality) if cfg.get("quality") else None)
    result = export_dataset(cfg.db, str(e.dir), flt, quality=quality)
    m = result.manifest
    counts = " ".join(f"{k}={v}" for k, v in m["counts"].items())
    print(f"exported {m['nodes']} nodes of {m['trees']} trees (runs {m['source_runs']}) to {result.dir}: {counts}")
    if exclude:
        x = m["excluded"]
        why = " ".join(f"{k}={v}" for k, v in x.items() if k not in ("total", "dependents"))
        print(f"excluded {x['total']} nodes: {why} dependents={x['dependents']}")
    return 0
