"""The persona similarity filter against the naive approach, on the same candidates.

    python benchmarks/persona_filter.py [--candidates 300] [--threshold 0.6] [--seed 0] [--threads 1]

Candidates are profile-like texts built from fact fragments with a seeded
RNG (a few sentence templates, so many of them share a template and are
close under all-MiniLM-L6-v2, as generated pools are). The pool starts as
the 20 shipped seed profiles. Both approaches judge the candidates in order
with the same rule (keep iff max cosine similarity to the pool and to the
candidates kept so far is <= threshold):

- naive: for every (candidate, item) pair, encode both texts and take their
  cosine (as the published script does: every pair re-encodes both texts);
- aloesim: encode each candidate once in a batch, keep the pool's vectors
  (cached in the store; here encoded once and counted separately), and compare
  with one matrix product per batch (``filter_candidates``).

The script asserts identical keep/discard decisions, prints the speed ratio
(CPU time of this process, naive / aloesim, so that other jobs on a shared
machine do not skew it; the wall-time ratio is reported beside it) and
writes benchmarks/results/persona_filter.json. Both run the bundled
all-MiniLM-L6-v2 on the CPU with ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

AGES = ["19", "23", "27", "31", "36", "42", "48", "55", "61", "68", "74"]
JOBS = ["nurse", "bus driver", "baker", "accountant", "student", "plumber", "teacher", "farmer", "barista",
        "software tester", "electrician", "librarian", "pharmacist", "chef", "retired miner", "taxi driver"]
PLACES = ["Lisbon", "Osaka", "a village in Wales", "Nairobi", "Ohio", "Manila", "Kraków", "Montreal", "Lagos",
          "rural Oregon", "Glasgow", "Seoul", "Lyon", "Perth", "Bogotá", "Tallinn"]
HOBBIES = ["bakes sourdough", "plays chess online", "restores old bicycles", "sings in a choir", "keeps bees",
           "surfs at dawn", "collects vinyl records", "knits jumpers", "fishes on weekends", "grows tomatoes",
           "builds model trains", "runs half-marathons", "paints watercolours", "plays the fiddle",
           "volunteers at an animal shelter", "brews beer at home"]
FAMILY = ["lives alone", "is married with two children", "is a single parent of a toddler",
          "shares a flat with three friends", "looks after an elderly mother", "has four grandchildren",
          "is engaged", "lives with a partner and twin boys"]
PETS = ["a one-eyed cat", "two greyhounds", "a parrot", "no pets", "a hamster", "a border collie", "goldfish"]
FACTS = ["never learned to drive", "is learning Portuguese", "is allergic to peanuts", "supports a local football club",
         "is saving for a trip to Japan", "commutes two hours a day", "was the first in the family at university",
         "grew up on a dairy farm", "has lived abroad for ten years", "is vegetarian", "does not own a television"]
TEMPLATES = [
    "A {age}-year-old {job} in {place} who {hobby}, {family}, has {pet}, and {fact}.",
    "{Age}, works as a {job} in {place}; {family}; {hobby} in spare time; owns {pet}; {fact}.",
    "Lives in {place} and works as a {job}. Is {age}. {Family_cap}. Likes that they {hobby}. Has {pet}. Also {fact}.",
    "Former {job} from {place}, aged {age}, who {hobby} and {fact}; {family} and has {pet}.",
]


def candidates(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        pick = {k: v[int(rng.integers(len(v)))] for k, v in
                {"age": AGES, "job": JOBS, "place": PLACES, "hobby": HOBBIES, "family": FAMILY, "pet": PETS,
                 "fact": FACTS}.items()}
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        text = template.format(Age=pick["age"], Family_cap=pick["family"][0].upper() + pick["family"][1:], **pick)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def naive(embedder, pool: list[str], cands: list[str], threshold: float) -> tuple[list[bool], int]:
    """Every pair encodes both of its texts; keep iff all similarities <= threshold."""
    kept_texts = list(pool)
    decisions: list[bool] = []
    pairs = 0
    for cand in cands:
        best = -np.inf
        for other in kept_texts:
            a, b = embedder.encode([cand, other])
            best = max(best, float(np.dot(a, b)))
            pairs += 1
        ok = best <= threshold
        decisions.append(ok)
        if ok:
            kept_texts.append(cand)
    return decisions, pairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", type=int, default=300, help="number of candidate texts")
    ap.add_argument("--threshold", type=float, default=0.6, help="similarity threshold (paper: 0.6)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the candidate texts")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for both approaches")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from aloesim.environment.personas import SentenceEmbedder, filter_candidates, seed_items

    embedder = SentenceEmbedder()
    pool = seed_items("profile")
    cands = candidates(args.candidates, args.seed)
    embedder.encode(pool[:2])  # load the model outside the timings

    def timed(fn, *a):
        """(result, wall seconds, CPU seconds of this process): CPU time is what
        the work costs even when other jobs share the machine."""
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn(*a)
        return out, time.perf_counter() - w0, time.process_time() - c0

    pool_vecs, t_pool, c_pool = timed(embedder.encode, pool)
    cand_vecs, t_encode, c_encode = timed(embedder.encode, cands)
    fast, t_filter, c_filter = timed(filter_candidates, cand_vecs, pool_vecs, args.threshold)
    t_fast, c_fast = t_encode + t_filter, c_encode + c_filter
    (slow, pairs), t_naive, c_naive = timed(naive, embedder, pool, cands, args.threshold)

    mismatches = [i for i, (a, b) in enumerate(zip(fast.keep, slow)) if a != b]
    results = {
        "candidates": len(cands),
        "pool": len(pool),
        "threshold": args.threshold,
        "torch_threads": args.threads,
        "kept": fast.n_kept,
        "discarded": len(cands) - fast.n_kept,
        "identical_decisions": not mismatches,
        "mismatches": [{"index": i, "max_similarity": fast.max_similarity[i]} for i in mismatches],
        "naive_pairs_encoded": pairs,
        "naive_s": round(t_naive, 3),
        "naive_cpu_s": round(c_naive, 3),
        "aloesim_s": round(t_fast, 4),
        "aloesim_cpu_s": round(c_fast, 4),
        "aloesim_encode_candidates_s": round(t_encode, 4),
        "aloesim_filter_s": round(t_filter, 5),
        "aloesim_pool_encode_once_s": round(t_pool, 4),
        "speed_ratio": round(c_naive / c_fast, 1),
        "speed_ratio_wall": round(t_naive / t_fast, 1),
        "speed_ratio_with_pool_encode": round(c_naive / (c_fast + c_pool), 1),
    }
    try:
        from _common import write_results

        path = write_results("persona_filter", results, directory=args.out)
    except ImportError:  # pragma: no cover - run outside the repository
        path = (args.out or Path(__file__).resolve().parent / "results") / "persona_filter.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmark": "persona_filter", "results": results}, indent=2) + "\n")
    print(json.dumps(results))
    print(f"persona filter: {len(cands)} candidates, kept {fast.n_kept}; naive {t_naive:.1f}s ({pairs} pairs "
          f"encoded), aloesim {t_fast:.3f}s -> {results['speed_ratio']}x less CPU ({results['speed_ratio_wall']}x wall); identical decisions: "
          f"{not mismatches}; results in {path}", file=sys.stderr)
    if mismatches:
        print(f"persona filter: decisions differ at {mismatches}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
