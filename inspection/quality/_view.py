"""The quality section of the viewer's run page: the report without
embeddings (revelation and diversity distance need the model; ``aloe
quality`` computes them), over the run's first trees only, so a page stays
fast on any run; cached until a node is committed or a tree of the run changes status."""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from typing import Any

from aloesim.environment.quality import QualitySettings
from aloesim.environment.store import Runs, Trees

from ._metrics import METRICS
from ._report import build_quality_report
from ._write import LABELS, _scope, _threshold, _value

VIEW_MAX_TREES = 100  # trees checked per run page: about 0.3 s cold on 10-turn trees, then cached (the section says it is a sample)

_cache: OrderedDict[tuple[str, int], tuple[Any, dict[str, Any]]] = OrderedDict()
_lock = threading.Lock()


def run_quality_summary(conn: sqlite3.Connection, run_id: int, settings: QualitySettings | None = None, *,
                        max_trees: int = VIEW_MAX_TREES, db_key: str = "") -> dict[str, Any] | None:
    """``{"scope", "flags", "rows": [{"metric", "value", "threshold", "status", "note"}]}`` for a
    generate run with nodes; None for other runs. ``db_key`` names the database in the cache
    (the viewer passes its path)."""
    run = Runs(conn).get(run_id)
    if run is None or run.kind != "generate":
        return None
    version = Trees(conn).nodes_version(run_id)
    if version is None:
        return None
    key = (db_key, run_id)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
    report = build_quality_report(conn, run_id, settings or QualitySettings(), max_trees=max_trees)
    m = report["metrics"]
    view = {
        "scope": _scope(report),
        "flags": report["flags"],
        "rows": [{"metric": LABELS[name], "value": _value(name, m[name]), "threshold": _threshold(name, m[name]),
                  "status": "not measured" if m[name]["flagged"] is None else "flagged" if m[name]["flagged"] else "ok",
                  "note": m[name]["note"] or ""} for name in METRICS],
    }
    with _lock:
        _cache[key] = (version, view)
        while len(_cache) > 32:
            _cache.popitem(last=False)
    return view
