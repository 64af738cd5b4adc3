"""``aloe report``: one comparison report over stored evaluations.

    aloe report db=run.db report.evaluations=[1,2,3] evaluation.out_dir=reports/compare

Writes report.json, report.md (one row per evaluation, in the layout of the
paper's Table 1) and al_curve.png (one AL(k) line per evaluation) into
``evaluation.out_dir``; prints one JSON line. Reads the database only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from omegaconf import DictConfig, ListConfig

from ...core.errors import ConfigError
from ...environment.store import Store, connect
from ...evaluation import build_report, load_evaluation, metrics, write_report
from .._judging import judge_options, warn_if_unreliable

HELP = "compare stored ALOE evaluations (base vs SFT vs DPO) in one report: JSON, Markdown table, AL(k) plot"


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple, ListConfig)):
        raise ConfigError("report.evaluations", value, "a list of evaluation ids, e.g. [1,2]")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError("report.evaluations", list(value), "a list of evaluation ids (integers >= 1)")
        out.append(v)
    return out


def run(cfg: DictConfig) -> int:
    ids = _ids((cfg.get("report") or {}).get("evaluations"))
    e = cfg.evaluation
    out_dir = e.get("out_dir")
    if not out_dir:
        raise ConfigError("evaluation.out_dir", out_dir, "a folder for the report files")
    out = Path(str(out_dir)).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError("evaluation.out_dir", str(out_dir), "a folder (this path is a file)")
    n_boot = e.get("bootstrap", 2000)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ConfigError("evaluation.bootstrap", n_boot, "an integer >= 100")
    level = e.get("ci_level", 0.95)
    if not isinstance(level, float) or not 0.5 <= level < 1:
        raise ConfigError("evaluation.ci_level", level, "a number in [0.5, 1)")
    labels = metrics.read_labels(str(e.labels)) if e.get("labels") else None
    connect(cfg.db, create=False).close()    # a one-line StoreError if there is no usable database
    summary = anyio.run(_report, cfg, ids, out, n_boot, level, labels)
    print(json.dumps(summary, ensure_ascii=False))
    warn_if_unreliable(summary["judge_check"], "report")
    return 0


async def _report(cfg: DictConfig, ids: list[int], out: Path, n_boot: int, level: float,
                  labels: dict[tuple[int, int], int] | None) -> dict[str, Any]:
    async with Store.open(cfg.db, create=False) as store:
        if not ids:
            ids = [int(r[0]) for r in await store.fetchall("SELECT id FROM evaluations ORDER BY id")]
            if not ids:
                raise ConfigError("report.evaluations", [], f"stored evaluations (none in {cfg.db}; run aloe evaluate)")
        data = [await load_evaluation(store, i) for i in ids]
    judge = judge_options(cfg)
    report = await anyio.to_thread.run_sync(
        lambda: build_report(data, n_boot=n_boot, seed=int(cfg.get("seed", 0)), level=level, labels=labels,
                             scoring=judge.scoring, judge_threshold=judge.check.threshold))
    paths = await anyio.to_thread.run_sync(write_report, report, out)
    return {
        "evaluations": [{"id": e["id"], "label": e["label"], "cases": e["cases"], "summary": e["summary"],
                         "judge_reliable": e["judge_reliable"]} for e in report["evaluations"]],
        "judge_reliable": report["judge_check"]["reliable"],
        "judge_check": {k: report["judge_check"].get(k) for k in ("pairs", "accuracy", "ci", "threshold", "reliable",
                                                                  "reason")},
        "report": {k: str(v) for k, v in paths.items()},
    }
