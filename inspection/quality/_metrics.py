"""From per-turn counts to the report's metrics, thresholds and flags.

Every metric is ``{"value": ..., "threshold": ..., "flagged": bool | None,
"note": str | None, ...details}``; ``flagged`` is None when the metric
could not be measured (the note says why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aloesim.environment.quality import QualitySettings, words
from aloesim.evaluation.metrics import fit_line

if TYPE_CHECKING:
    from ._report import Accumulator

METRICS: tuple[str, ...] = ("revelation", "leakage", "role_flips", "truncation", "empty", "duplicates",
                            "length_bias", "diversity", "judge_agreement")


NO_EMBEDDER = "not measured: no embedder (quality.embedder=null)"


def distinct_n(texts: Sequence[str], n: int = 2) -> float | None:
    """Distinct word n-grams / all word n-grams over ``texts`` (None without any n-gram)."""
    grams = [tuple(ws[i:i + n]) for ws in map(words, texts) for i in range(len(ws) - n + 1)]
    return None if not grams else len(set(grams)) / len(grams)


def mean_pairwise_distance(vectors: np.ndarray) -> float | None:
    """Mean cosine distance (1 - cos) over all pairs of unit row vectors (None below two rows)."""
    k = len(vectors)
    if k < 2:
        return None
    sims = vectors @ vectors.T
    mean_sim = (float(sims.sum()) - float(np.trace(sims))) / (k * (k - 1))
    return 1.0 - mean_sim


def slope(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of y over x (None below two distinct x), by
    ``aloesim.evaluation.metrics.fit_line``."""
    if len({x for x, _ in points}) < 2:
        return None
    return fit_line([p[1] for p in points], [p[0] for p in points])[0]


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _rate(n: float, d: int) -> float | None:
    return None if d == 0 else n / d


def _metric(value: float | None, threshold: float, flagged: bool | None, note: str | None = None,
            **details: Any) -> dict[str, Any]:
    return {"value": _r(value), "threshold": threshold, "flagged": flagged, "note": note, **details}


def _over(value: float | None, limit: float) -> bool | None:
    return None if value is None else value > limit


def run_metrics(acc: Accumulator, revelation: dict[int, dict[str, float]], diversity: dict[int, dict[str, Any]],
                s: QualitySettings, *, embedded: bool) -> dict[str, Any]:
    """``{"metrics": {...}, "per_turn": [...], "flags": [one line per flagged metric]}``."""
    turns = sorted(acc.turns)
    T = acc.turns
    nodes = sum(T[k].nodes for k in turns)
    tot = {f: sum(getattr(T[k], f) for k in turns) for f in (
        "leaked", "role_flip", "empty", "duplicate", "calls_known", "calls_truncated", "calls_unknown",
        "calls_inferred", "judged",
        "agree", "disagree", "split", "p_words", "r_words", "p_longer_words", "p_tokens", "r_tokens",
        "p_longer_tokens", "token_pairs")}
    tokens = nodes > 0 and tot["token_pairs"] == nodes
    unit = "tokens" if tokens else "words"

    def length(t: Any) -> tuple[float | None, float | None]:
        p, r, longer, n = ((t["p_tokens"], t["r_tokens"], t["p_longer_tokens"], t["token_pairs"]) if tokens
                           else (t["p_words"], t["r_words"], t["p_longer_words"], t["nodes"]))
        return (None if r == 0 or n == 0 else (p / n) / (r / n)), _rate(longer, n)

    per_turn = []
    for k in turns:
        t = vars(T[k])
        ratio, _ = length(t)
        rev = revelation.get(k, {})
        per_turn.append({
            "turn": k, "nodes": t["nodes"],
            "revelation": _r(rev.get("all")), "revelation_profile": _r(rev.get("profile")),
            "revelation_personality": _r(rev.get("personality")),
            "leakage": _r(_rate(t["leaked"], t["nodes"])), "role_flips": _r(_rate(t["role_flip"], t["nodes"])),
            "truncation": _r(_rate(t["calls_truncated"], t["calls_known"])),
            "empty": _r(_rate(t["empty"], t["nodes"])), "duplicates": _r(_rate(t["duplicate"], t["nodes"])),
            "length_ratio": _r(ratio), "diversity": _r(diversity.get(k, {}).get("distance")),
            "distinct_2": _r(diversity.get(k, {}).get("distinct_2")),
            "judge_agreement": _r(_rate(t["agree"], t["judged"])),
        })
    m: dict[str, dict[str, Any]] = {}

    # revelation: mean similarity of inferred to true persona, and its slope over turns
    if not embedded:
        m["revelation"] = _metric(None, s.min_revelation_slope, None, NO_EMBEDDER)
    elif not revelation:
        m["revelation"] = _metric(None, s.min_revelation_slope, None, "no nodes")
    else:
        pts = [(k, revelation[k]["all"]) for k in turns]
        overall = sum(revelation[k]["all"] * T[k].nodes for k in turns) / max(1, nodes)
        b = slope(pts)
        m["revelation"] = _metric(
            overall, s.min_revelation_slope, None if b is None else b <= s.min_revelation_slope,
            None if b is not None else "slope needs two or more turns", slope=_r(b),
            first=_r(pts[0][1]), last=_r(pts[-1][1]))
    m["leakage"] = _metric(_rate(tot["leaked"], nodes), s.max_leak_rate,
                           _over(_rate(tot["leaked"], nodes), s.max_leak_rate), count=tot["leaked"], of=nodes)
    m["role_flips"] = _metric(_rate(tot["role_flip"], nodes), s.max_role_flip_rate,
                              _over(_rate(tot["role_flip"], nodes), s.max_role_flip_rate), count=tot["role_flip"],
                              of=nodes, patterns=dict(sorted(acc.patterns.items())))
    known, unknown = tot["calls_known"], tot["calls_unknown"]
    trunc = _rate(tot["calls_truncated"], known)
    note = None
    if known == 0 and unknown:
        note = (f"unknown: no finish_reason recorded for any of {unknown} calls (a database from before it was"
                " stored, or the server did not say)")
    elif unknown:
        note = f"{unknown} of {known + unknown} calls have no finish_reason and are not counted"
    if tot["calls_inferred"]:
        inferred = (f"{tot['calls_inferred']} of {known} finishes inferred from completion_tokens vs max_tokens"
                    " (no finish_reason recorded)")
        note = inferred if note is None else f"{note}; {inferred}"
    m["truncation"] = _metric(trunc, s.max_truncation_rate, _over(trunc, s.max_truncation_rate), note,
                              count=tot["calls_truncated"], of=known, unknown=unknown, inferred=tot["calls_inferred"],
                              by_role=dict(sorted(acc.truncated_by_role.items())),
                              finish_reasons=dict(sorted(acc.finish_reasons.items())))
    m["empty"] = _metric(_rate(tot["empty"], nodes), s.max_empty_rate, _over(_rate(tot["empty"], nodes), s.max_empty_rate),
                         count=tot["empty"], of=nodes, by_role=dict(sorted(acc.empty_by_role.items())))
    m["duplicates"] = _metric(_rate(tot["duplicate"], nodes), s.max_duplicate_rate,
                              _over(_rate(tot["duplicate"], nodes), s.max_duplicate_rate), count=tot["duplicate"],
                              of=nodes, kinds=dict(sorted(acc.duplicate_kinds.items())))
    ratio, longer = length({**tot, "nodes": nodes})
    lim = s.max_length_ratio
    m["length_bias"] = _metric(
        ratio, lim, None if ratio is None else (ratio > lim or ratio < 1 / lim),
        None if tokens or nodes == 0 else "measured in words: completion tokens are not recorded for every reply",
        unit=unit, preferred_longer=_r(longer))
    dists = {k: diversity[k]["distance"] for k in turns if diversity.get(k, {}).get("distance") is not None}
    if not embedded:
        m["diversity"] = _metric(None, s.min_diversity, None, NO_EMBEDDER,
                                 distinct_2=_r(_mean([diversity[k]["distinct_2"] for k in turns])))
    elif not dists:
        m["diversity"] = _metric(None, s.min_diversity, None, "needs user messages of two or more trees at a turn")
    else:
        low = [k for k, d in dists.items() if d < s.min_diversity]
        m["diversity"] = _metric(_mean(list(dists.values())), s.min_diversity, bool(low),
                                 None if not low else f"below the threshold at turn(s) {low}",
                                 lowest=_r(min(dists.values())), lowest_turn=min(dists, key=dists.get),
                                 distinct_2=_r(_mean([diversity[k]["distinct_2"] for k in turns])))
    judged = tot["judged"]
    agree = _rate(tot["agree"], judged)
    m["judge_agreement"] = _metric(
        agree, s.min_judge_agreement, None if agree is None else agree < s.min_judge_agreement,
        "not measured: the preference check did not run (generation.preference_check=true)" if not judged else None,
        judged=judged, agree=tot["agree"], disagree=tot["disagree"], split=tot["split"], swapped=acc.swapped)
    return {"metrics": m, "per_turn": per_turn, "flags": [_flag_line(k, v) for k, v in m.items() if v["flagged"]]}


def _mean(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return None if not xs else sum(xs) / len(xs)


def _flag_line(name: str, v: dict[str, Any]) -> str:
    """One line saying what is wrong, with the number and the threshold."""
    val = v["value"]
    if name == "revelation":
        return f"revelation does not rise: slope {v['slope']:+.4f} per turn <= {v['threshold']}"
    if name == "length_bias":
        return (f"length bias: preferred/rejected mean {v['unit']} ratio {val:.2f} is outside "
                f"[{1 / v['threshold']:.2f}, {v['threshold']}] (DPO learns length)")
    if name == "diversity":
        return f"low diversity: mean pairwise distance {v['lowest']:.3f} at turn {v['lowest_turn']} < {v['threshold']}"
    if name == "judge_agreement":
        return f"judge agreement {val:.2f} < {v['threshold']} ({v['agree']} of {v['judged']} judged nodes)"
    what = {"leakage": "user messages recite the persona (or their instructions)", "role_flips": "user messages speak as the AI",
            "truncation": "calls stopped at max_tokens", "empty": "nodes have an empty text",
            "duplicates": "nodes repeat a reply or an earlier turn"}[name]
    return f"{name.replace('_', ' ')} {val:.3f} > {v['threshold']}: {v['count']} of {v['of']} {what}"
