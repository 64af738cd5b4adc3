"""Speed of the quality report (docs/quality.md).

    python benchmarks/quality.py                          # 10,000 trees x 10 nodes (the viewer benchmark's database)
    python benchmarks/quality.py --trees 2000 --embed-trees 100
    python benchmarks/quality.py --db /tmp/viewer-bench.db   # reuse a database (written if missing)

Times, on a synthetic database (tests/support/sample_db.write_synthetic):

1. the report without embeddings over every tree (every detector, the call
   join): nodes per second;
2. the report with the bundled MiniLM over the first ``--embed-trees`` trees
   (revelation and diversity embed every distinct inferred persona and a
   sample of user messages): nodes per second, and texts embedded per second;
3. the viewer's run-page section: first view (100 trees) and cached view.

Prints the figures and writes ``benchmarks/results/quality.json``. The
machine's load average is recorded with them: other jobs on the CPU slow
every figure here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support holds the synthetic database
from aloesim.environment.personas import SentenceEmbedder
from aloesim.environment.store import Runs, connect
from aloesim.inspection.quality import _view, build_quality_report, run_quality_summary
from tests.support.sample_db import write_synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=10, help="nodes (turns) per tree")
    ap.add_argument("--embed-trees", type=int, default=200, help="trees checked with embeddings")
    ap.add_argument("--views", type=int, default=20, help="cached viewer sections timed")
    ap.add_argument("--db", type=Path, default=None, help="reuse or keep the database here")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="aloe-quality-bench-")
    db = args.db or Path(tmp.name) / "quality-bench.db"
    if not db.exists():
        write_synthetic(db, trees=args.trees, nodes_per_tree=args.nodes, calls_per_node=4, cases=10)
    conn = connect(db, readonly=True)
    run = Runs(conn).ids("generate")[0]
    results: dict[str, object] = {}

    t0 = time.perf_counter()
    report = build_quality_report(conn, run)
    wall = time.perf_counter() - t0
    nodes = report["run"]["nodes"]
    results["no_embedder"] = {"trees": report["run"]["checked_trees"], "nodes": nodes, "seconds": round(wall, 2),
                              "nodes_per_s": round(nodes / wall)}
    print(f"no embedder: {nodes} nodes in {wall:.1f} s ({nodes / wall:.0f} nodes/s)")

    embedder = SentenceEmbedder()
    embedder.encode(["load the model first"])
    texts = [0]
    encode = embedder.encode

    def counting(batch):  # how many texts the report embeds
        texts[0] += len(batch)
        return encode(batch)

    embedder.encode = counting  # type: ignore[method-assign]
    t0 = time.perf_counter()
    report = build_quality_report(conn, run, embedder=embedder, max_trees=args.embed_trees)
    wall = time.perf_counter() - t0
    n = report["run"]["nodes"]
    results["with_embedder"] = {"trees": report["run"]["checked_trees"], "nodes": n, "texts_embedded": texts[0],
                                "seconds": round(wall, 2), "nodes_per_s": round(n / wall, 1),
                                "texts_per_s": round(texts[0] / wall, 1)}
    print(f"with MiniLM: {n} nodes, {texts[0]} texts embedded in {wall:.1f} s ({texts[0] / wall:.1f} texts/s)")

    _view._cache.clear()
    t0 = time.perf_counter()
    run_quality_summary(conn, run)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.views):
        run_quality_summary(conn, run)
    cached = (time.perf_counter() - t0) / args.views
    results["viewer_section"] = {"trees": _view.VIEW_MAX_TREES, "first_view_ms": round(cold * 1000, 1),
                                 "cached_view_ms": round(cached * 1000, 2)}
    print(f"viewer section: first view {cold * 1000:.0f} ms, cached {cached * 1000:.1f} ms")
    conn.close()
    results["notes"] = ("Single process, one core for the checks; MiniLM runs on the CPU with torch's threads. "
                        "The machine is shared: see machine.load_average_1_5_15.")
    print(f"wrote {write_results('quality', results)}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
