"""A judge's rating: the sampled 1-5 score and, when the endpoint returned
token log-probabilities, the judge's distribution over 1-5 and its expected
score (issue 13.2).

The distribution is read at the token where the score was written: the
first token of the reply that is a digit 1-5 on its own (in ``{"score": 4}``
that is ``4``; in ``Score: 4/5`` too). Its ``top_logprobs`` give the
probability of each of the five digits there (``" 4"`` and ``"4"`` count for
the same score); they are renormalised over 1-5, and ``mass`` keeps how much
of the probability the five digits held before that (a judge that put most
of its mass elsewhere has a distribution that means little). Endpoints report
log-probabilities before any grammar constraint (llama.cpp does), so the
digits are compared as the model weighs them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Rating", "score_distribution"]

_DIGIT = re.compile(r"^\W*([1-5])\W*$")


@dataclass(frozen=True, slots=True)
class Rating:
    """One judged reply: ``score`` as sampled (what the paper uses), and where
    log-probabilities were returned, ``distribution`` (P(1)..P(5), summing to
    1), ``expected`` (sum of k * P(k)) and ``mass`` (see the module doc)."""

    score: int
    distribution: tuple[float, float, float, float, float] | None = None
    expected: float | None = None
    mass: float | None = None


def _digit(token: Any) -> int | None:
    m = _DIGIT.match(str(token)) if token is not None else None
    return int(m.group(1)) if m else None


def score_distribution(logprobs: Mapping[str, Any] | None) -> tuple[tuple[float, ...], float] | None:
    """(P(1)..P(5), mass) from an OpenAI-shaped ``logprobs`` object
    (``{"content": [{"token", "logprob", "top_logprobs": [...]}, ...]}``), or
    None when there is no score token or no digit among its alternatives."""
    if not isinstance(logprobs, Mapping):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list):
        return None
    for tok in content:
        if not isinstance(tok, Mapping) or _digit(tok.get("token")) is None:
            continue
        probs = [0.0] * 5
        alts = tok.get("top_logprobs") or [tok]   # no alternatives asked: the chosen token alone
        for alt in alts:
            k = _digit(alt.get("token")) if isinstance(alt, Mapping) else None
            lp = alt.get("logprob") if isinstance(alt, Mapping) else None
            if k is not None and isinstance(lp, (int, float)) and math.isfinite(lp):
                probs[k - 1] += math.exp(min(0.0, float(lp)))
        mass = sum(probs)
        if mass <= 0:
            return None
        return tuple(p / mass for p in probs), min(1.0, mass)
    return None


def rating(score: int, logprobs: Mapping[str, Any] | None) -> Rating:
    """The rating of a reply scored ``score``, with its distribution when ``logprobs`` hold one."""
    found = score_distribution(logprobs)
    if found is None:
        return Rating(score)
    dist, mass = found
    expected = sum((k + 1) * p for k, p in enumerate(dist))
    return Rating(score, tuple(round(p, 6) for p in dist), round(expected, 6), round(mass, 6))  # type: ignore[arg-type]
