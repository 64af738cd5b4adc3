"""``aloe report``: one comparison report over stored evaluations.

    aloe report db=run.db report.evaluations=[1,2,3] evaluation.out_dir=reports/compare

Writes report.json, report.md (one row per evaluation, in the layout of the
paper's Table 1) and al_curve.png (one AL(k) line per evaluation) into
``evaluation.out_dir``; prints one JSON line. Reads the database only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from omegaconf import DictConfig

from ...core import json_safe, terminal_safe, to_settings
from ...core.errors import ConfigError
from ...environment.store import Evaluations, Store, connect
from ...evaluation import EvaluationSettings, build_report, load_evaluation, metrics, write_report
from .._judging import warn_if_unreliable
from .._schemas import ReportConfig

HELP = "compare stored ALOE evaluations (base vs SFT vs DPO) in one report: JSON, Markdown table, AL(k) plot"


def run(cfg: DictConfig) -> int:
    c: ReportConfig = to_settings(cfg, ReportConfig)
    ids, e = list(c.report.evaluations), c.evaluation
    out = Path(e.out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError("evaluation.out_dir", e.out_dir, "a folder (this path is a file)")
    n_boot, level = e.bootstrap, e.ci_level
    labels = metrics.read_labels(e.labels) if e.labels else None
    connect(cfg.db, create=False).close()    # a one-line StoreError if there is no usable database
    summary = anyio.run(_report, cfg, ids, out, n_boot, level, labels)
    # people read the table it wrote (stderr); scripts read the JSON line (stdout)
    table = Path(summary["report"]["md"]).read_text(encoding="utf-8")
    print(terminal_safe(table.rstrip()) + "\n", file=sys.stderr)
    print(json_safe(json.dumps(summary, ensure_ascii=False)))
    warn_if_unreliable(summary["judge_check"], "report")
    return 0


async def _report(cfg: DictConfig, ids: list[int], out: Path, n_boot: int, level: float,
                  labels: dict[tuple[int, int], int] | None) -> dict[str, Any]:
    async with Store.open(cfg.db, create=False) as store:
        if not ids:
            ids = await store.read(lambda c: Evaluations(c).ids())
            if not ids:
                raise ConfigError("report.evaluations", [], f"stored evaluations (none in {cfg.db}; run aloe evaluate)")
        data = [await load_evaluation(store, i) for i in ids]
    e: EvaluationSettings = to_settings(cfg.get("evaluation"), EvaluationSettings, "evaluation")
    report = await anyio.to_thread.run_sync(
        lambda: build_report(data, n_boot=n_boot, seed=int(cfg.get("seed", 0)), level=level, labels=labels,
                             scoring=e.judge_scoring, judge_threshold=e.judge_check.threshold))
    paths = await anyio.to_thread.run_sync(write_report, report, out)
    return {
        "evaluations": [{"id": e["id"], "label": e["label"], "cases": e["cases"], "summary": e["summary"],
                         "judge_reliable": e["judge_reliable"]} for e in report["evaluations"]],
        "judge_reliable": report["judge_check"]["reliable"],
        "judge_check": {k: report["judge_check"].get(k) for k in ("pairs", "accuracy", "ci", "threshold", "reliable",
                                                                  "reason")},
        "report": {k: str(v) for k, v in paths.items()},
    }
