"""The quality report of one generate run: per turn and overall, every metric
with its threshold and whether it is flagged (docs/quality.md defines them).

Node flags come from ``aloesim.environment.quality`` (the same detectors
export uses). Revelation and diversity need sentence embeddings; without an
embedder they are reported as not measured. A metric that could not be
measured is ``None`` with a ``note`` saying why, never a made-up number.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aloesim.core.errors import ConfigError
from aloesim.environment import stable_int
from aloesim.environment.personas import Embedder, normalise
from aloesim.environment.quality import QualitySettings, TreeChecks, iter_tree_checks
from aloesim.environment.store import Runs, Trees

from ._metrics import distinct_n, mean_pairwise_distance, run_metrics

REPORT_VERSION = 1
EXAMPLES = 3  # flagged nodes quoted per flag


@dataclass
class TurnCounts:
    """What one turn's nodes add up to (before embeddings)."""

    nodes: int = 0
    leaked: int = 0
    role_flip: int = 0
    empty: int = 0
    duplicate: int = 0
    calls_known: int = 0
    calls_truncated: int = 0
    calls_unknown: int = 0
    calls_inferred: int = 0  # finishes inferred from completion_tokens vs max_tokens
    judged: int = 0
    agree: int = 0
    disagree: int = 0
    split: int = 0
    p_words: int = 0
    r_words: int = 0
    p_longer_words: float = 0.0
    p_tokens: int = 0
    r_tokens: int = 0
    p_longer_tokens: float = 0.0
    token_pairs: int = 0  # nodes where both replies' completion tokens are known
    # per node, text ids (see _Texts): (inferred, persona, inferred profile, profile, inferred traits, personality)
    revelation: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    sample: list[tuple[int, int, str]] = field(default_factory=list)  # min-heap of (hash, tree id, user message)


class _Texts:
    """Distinct texts, each embedded once; id 0 is the empty text ('nothing inferred')."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {"": 0}

    def id(self, text: str | None) -> int:
        return self.ids.setdefault((text or "").strip(), len(self.ids))


def _longer(a: int, b: int) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def _excerpt(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class Accumulator:
    """Adds up checked trees turn by turn, keeping only counts, text ids and a
    bounded sample of user messages per turn (so a large run fits in memory)."""

    def __init__(self, settings: QualitySettings) -> None:
        self.s = settings
        self.turns: dict[int, TurnCounts] = defaultdict(TurnCounts)
        self.texts = _Texts()
        self.trees = 0
        self.patterns: Counter[str] = Counter()
        self.truncated_by_role: Counter[str] = Counter()
        self.finish_reasons: Counter[str] = Counter()
        self.empty_by_role: Counter[str] = Counter()
        self.duplicate_kinds: Counter[str] = Counter()
        self.swapped = 0
        self.examples: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, tree: TreeChecks) -> None:
        self.trees += 1
        pr = tree.persona
        persona = (self.texts.id(f"{pr.profile} {pr.personality}"), self.texts.id(pr.profile),
                   self.texts.id(pr.personality))
        sampled: set[int] = set()
        for c in tree.checks:
            n = c.node
            t = self.turns[n.turn]
            t.nodes += 1
            t.leaked += "leaked" in c.flags
            t.role_flip += "role_flip" in c.flags
            t.empty += "empty" in c.flags
            t.duplicate += "duplicate" in c.flags
            if c.role_flip:
                self.patterns[c.role_flip] += 1
            t.calls_inferred += len(c.finish_inferred)
            for role, reason in c.finish:
                if reason is None:
                    t.calls_unknown += 1
                    continue
                t.calls_known += 1
                self.finish_reasons[reason] += 1
                if reason == "length":
                    t.calls_truncated += 1
                    self.truncated_by_role[role] += 1
            self.empty_by_role.update(c.empty_roles)
            self.duplicate_kinds.update(c.duplicate)
            if c.judge is not None:
                t.judged += 1
                t.agree += c.judge == "agree"
                t.disagree += c.judge == "disagree"
                t.split += c.judge == "split"
                self.swapped += c.swapped
            pw, rw = c.preferred_words, c.rejected_words
            t.p_words, t.r_words = t.p_words + pw, t.r_words + rw
            t.p_longer_words += _longer(pw, rw)
            if c.preferred_tokens is not None and c.rejected_tokens is not None:
                t.token_pairs += 1
                t.p_tokens += c.preferred_tokens
                t.r_tokens += c.rejected_tokens
                t.p_longer_tokens += _longer(c.preferred_tokens, c.rejected_tokens)
            inferred = " ".join(x for x in (n.inferred.profile, n.inferred.personalities) if x)
            t.revelation.append((self.texts.id(inferred), persona[0], self.texts.id(n.inferred.profile), persona[1],
                                 self.texts.id(n.inferred.personalities), persona[2]))
            if n.turn not in sampled:  # one message per tree and turn: diversity is across trees
                sampled.add(n.turn)
                key = (stable_int(tree.tree_id, n.turn, "diversity"), tree.tree_id, n.user_message)
                if len(t.sample) < self.s.diversity_sample:
                    heapq.heappush(t.sample, (-key[0], key[1], key[2]))  # keep the smallest hashes
                elif -t.sample[0][0] > key[0]:
                    heapq.heapreplace(t.sample, (-key[0], key[1], key[2]))
            for flag in sorted(c.flags):
                if len(self.examples[flag]) < EXAMPLES:
                    self.examples[flag].append(self._example(tree, c, flag))

    @staticmethod
    def _example(tree: TreeChecks, c: Any, flag: str) -> dict[str, Any]:
        n = c.node
        detail: str
        if flag == "leaked":
            r = c.recited
            detail = f"{r.words} words recited, longest run from the {r.source}: \"{_excerpt(r.text)}\""
        elif flag == "role_flip":
            detail = f"pattern {c.role_flip}"
        elif flag == "truncated":
            detail = "stopped at max_tokens: " + ", ".join(
                f"{role} (inferred)" if role in c.finish_inferred else role for role in c.truncated_roles)
        elif flag == "empty":
            detail = "empty: " + ", ".join(c.empty_roles)
        elif flag == "duplicate":
            detail = ", ".join(c.duplicate)
        else:
            detail = "judge preferred the rejected reply in both orders"
        return {"tree_id": tree.tree_id, "turn": n.turn, "branch": n.branch, "detail": detail,
                "user_message": _excerpt(n.user_message)}


def embed_all(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Unit vectors of ``texts``; the empty text gets the zero vector (similarity 0)."""
    nonempty = [i for i, t in enumerate(texts) if t]
    vecs = normalise(embedder.encode([texts[i] for i in nonempty])) if nonempty else np.zeros((0, 1), np.float32)
    out = np.zeros((len(texts), vecs.shape[1] if len(vecs) else 1), dtype=np.float32)
    if nonempty:
        out[nonempty] = vecs
    return out


def _turn_embeddings(acc: Accumulator, embedder: Embedder | None) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, Any]]]:
    """Per turn: mean revelation (all, profile, personality) and diversity of the sampled messages."""
    revelation: dict[int, dict[str, float]] = {}
    diversity: dict[int, dict[str, Any]] = {}
    for turn, t in acc.turns.items():
        msgs = [m for _, _, m in t.sample]
        diversity[turn] = {"messages": len(msgs), "distinct_2": distinct_n(msgs, 2), "distance": None}
    if embedder is None:
        return revelation, diversity
    texts = [""] * len(acc.texts.ids)
    for text, i in acc.texts.ids.items():
        texts[i] = text
    vecs = embed_all(embedder, texts)
    for turn, t in acc.turns.items():
        ids = np.asarray(t.revelation, dtype=np.int64).reshape(-1, 6)
        sims = [np.einsum("ij,ij->i", vecs[ids[:, 2 * k]], vecs[ids[:, 2 * k + 1]]) for k in range(3)]
        revelation[turn] = {"all": float(sims[0].mean()), "profile": float(sims[1].mean()),
                            "personality": float(sims[2].mean())}
        msgs = [m for _, _, m in t.sample]
        if len(msgs) >= 2:
            diversity[turn]["distance"] = mean_pairwise_distance(embed_all(embedder, msgs))
    return revelation, diversity


def _run_info(conn: sqlite3.Connection, run_id: Any) -> dict[str, Any]:
    if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 1:
        raise ConfigError("run", run_id, "the integer id of a generate run (see `aloe runs`)")
    run = Runs(conn).get(run_id)
    if run is None or run.kind != "generate":
        known = Runs(conn).ids("generate")
        raise ConfigError("run", run_id, f"the id of a generate run in this database (have {known or 'none'})")
    by_status = dict(sorted(Trees(conn).status_counts([run_id])[run_id].items()))
    return {"id": run.id, "kind": run.kind, "status": run.status, "trees": sum(by_status.values()),
            "trees_by_status": by_status}


def build_quality_report(conn: sqlite3.Connection, run_id: int, settings: QualitySettings | None = None, *,
                         embedder: Embedder | None = None, max_trees: int | None = None) -> dict[str, Any]:
    """The quality report of generate run ``run_id`` as a JSON-ready dict.

    Reads every node of the run's trees (whatever their status), or of its
    first ``max_trees`` trees (the report then says it is a sample).
    ``embedder`` (e.g. ``SentenceEmbedder()``) enables revelation and diversity
    distance. Raises ConfigError for an id that is not a generate run."""
    settings = settings or QualitySettings()
    run = _run_info(conn, run_id)
    bound = Trees(conn).nth_id(run_id, max_trees) if max_trees else None
    acc = Accumulator(settings)
    for tree in iter_tree_checks(conn, [run_id], settings, include_incomplete=True, max_tree_id=bound):
        acc.add(tree)
    revelation, diversity = _turn_embeddings(acc, embedder)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "run": {**run, "checked_trees": acc.trees, "nodes": sum(t.nodes for t in acc.turns.values()),
                "sampled": bound is not None},
        "embedder": None if embedder is None else embedder.name,
        "thresholds": settings.thresholds(),
    }
    report.update(run_metrics(acc, revelation, diversity, settings, embedded=embedder is not None))
    report["examples"] = {k: v for k, v in sorted(acc.examples.items())}
    return report
