"""Store and export speed (issue 8, item 6).

1. **Node inserts per second through the Store writer**, the way the tree
   environment writes: many trees in flight, each awaiting the commit of a
   node (``await store.write(lambda c: Trees(c).insert_node(node))``) before asking for the next, so
   the writer batches whatever is waiting into one transaction.
2. **Export time of 100,000 nodes** to the TRL files (``sft.jsonl``,
   ``sft_rejected.jsonl``, ``dpo.jsonl`` + manifest), streamed from SQLite,
   with the process's peak memory (the export holds one tree at a time).

Node texts have realistic sizes (a user message ~250 characters, replies
~900), so the files are the size real data would give.

    python benchmarks/store_export.py                      # 100,000 nodes: 20,000 path trees x 5 turns
    python benchmarks/store_export.py --nodes 20000 --in-flight 64
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Meter, current_rss_mb, peak_rss_mb, write_results

from aloesim.environment import InferredPersona, Node
from aloesim.environment.store import Store, Trees
from aloesim.training import ExportFilter, export_dataset, load_dataset

WORDS = ["the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could", "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its", "now", "find", "long", "down", "day"]


def text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    n = 0
    while n < chars:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


async def _setup(store: Store, trees: int, turns: int) -> tuple[int, list[int]]:
    def fn(c: Any) -> tuple[int, list[int]]:
        run = c.execute("INSERT INTO runs (kind, config, config_hash, status, started_at) "
                        "VALUES ('generate', '{}', 'bench', 'complete', ?)", (time.time(),)).lastrowid
        ids = []
        for i in range(trees):
            p = c.execute("INSERT INTO persona_items (kind, text, source, created_at) VALUES ('profile', ?, 'seed', 0)",
                          (f"profile {i}",)).lastrowid
            q = c.execute("INSERT INTO persona_items (kind, text, source, created_at) VALUES ('personality', ?, 'seed', 0)",
                          (f"personality {i}",)).lastrowid
            persona = c.execute("INSERT INTO personas (profile_id, personality_id, created_at) VALUES (?, ?, 0)",
                                (p, q)).lastrowid
            ids.append(c.execute("INSERT INTO trees (run_id, persona_id, mode, turns, seed, status, created_at) "
                                 "VALUES (?, ?, 'path', ?, ?, 'complete', 0)", (run, persona, turns, i)).lastrowid)
        return run, ids

    return await store.write(fn)


async def insert_nodes(db: Path, trees: int, turns: int, in_flight: int, seed: int) -> dict[str, Any]:
    """Grow ``trees`` path trees of ``turns`` nodes, ``in_flight`` trees at a time."""
    rng = random.Random(seed)
    # texts made up front so the timing is the store's, not the text generator's
    pool = [(text(rng, 250), text(rng, 900), text(rng, 900)) for _ in range(512)]
    async with Store.open(db) as store:
        _, tree_ids = await _setup(store, trees, turns)
        limiter = anyio.CapacityLimiter(in_flight)

        async def grow(tree_id: int) -> None:
            async with limiter:
                branch = ""
                for turn in range(1, turns + 1):
                    m, p, r = pool[(tree_id * 7 + turn) % len(pool)]
                    choice = "rejected" if (tree_id + turn) % 3 == 0 else "preferred"
                    node = Node(tree_id, turn, branch, m, InferredPersona("p", None), p, r, choice)
                    await store.write(lambda c, n=node: Trees(c).insert_node(n))
                    branch += "r" if choice == "rejected" else "p"

        batches0, ops0 = store.batches, store.ops
        with Meter() as meter:
            async with anyio.create_task_group() as tg:
                for tree_id in tree_ids:
                    tg.start_soon(grow, tree_id)
        batches, ops = store.batches - batches0, store.ops - ops0
    nodes = trees * turns
    return {
        "nodes": nodes,
        "trees": trees,
        "turns_per_tree": turns,
        "trees_in_flight": in_flight,
        "wall_s": round(meter.wall_s, 3),
        "cpu_s": round(meter.cpu_s, 3),
        "nodes_per_s": round(nodes / meter.wall_s, 1),
        "commits": batches,
        "mean_nodes_per_commit": round(ops / max(batches, 1), 1),
    }


def export(db: Path, out: Path) -> dict[str, Any]:
    rss_before = current_rss_mb()
    with Meter() as meter:
        result = export_dataset(db, out, ExportFilter())
    m = result.manifest
    return {
        "nodes": m["nodes"],
        "trees": m["trees"],
        "wall_s": round(meter.wall_s, 3),
        "cpu_s": round(meter.cpu_s, 3),
        "nodes_per_s": round(m["nodes"] / meter.wall_s, 1),
        "files_mb": {name: round(info["bytes"] / 2**20, 1) for name, info in m["files"].items()},
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def load(out: Path) -> dict[str, Any]:
    with Meter() as meter:
        ds = load_dataset(out, "dpo")
    return {"examples": len(ds), "wall_s": round(meter.wall_s, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100_000, help="nodes to insert and export")
    ap.add_argument("--turns", type=int, default=5, help="nodes per (path) tree")
    ap.add_argument("--in-flight", type=int, default=64, help="trees growing at once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load", action="store_true", help="also time datasets.Dataset loading of dpo.jsonl")
    ap.add_argument("--no-write", action="store_true", help="print, do not write benchmarks/results/store_export.json")
    args = ap.parse_args(argv)
    trees = max(1, args.nodes // args.turns)
    with tempfile.TemporaryDirectory(prefix="aloesim-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        ins = anyio.run(insert_nodes, db, trees, args.turns, args.in_flight, args.seed)
        print(f"insert: {ins['nodes']} nodes in {ins['wall_s']} s = {ins['nodes_per_s']} nodes/s "
              f"({ins['commits']} commits, {ins['mean_nodes_per_commit']} nodes/commit, {ins['trees_in_flight']} trees in flight)")
        results: dict[str, Any] = {"insert": ins, "db_mb": round(db.stat().st_size / 2**20, 1)}
        exp = export(db, Path(tmp) / "export")
        print(f"export: {exp['nodes']} nodes in {exp['wall_s']} s = {exp['nodes_per_s']} nodes/s, "
              f"files {exp['files_mb']} MB, peak RSS {exp['peak_rss_mb']} MB")
        results["export"] = exp
        if args.load:
            results["load_dpo_dataset"] = load(Path(tmp) / "export")
            print(f"load dpo as datasets.Dataset: {results['load_dpo_dataset']}")
    if not args.no_write:
        path = write_results("store_export", results)
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
