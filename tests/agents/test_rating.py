"""The judge's score distribution read from token log-probabilities, on the
shapes real endpoints return (llama.cpp's server, OpenAI)."""

from __future__ import annotations

import math

import pytest

from aloesim.agents import score_distribution
from aloesim.agents._rating import rating


def tok(token: str, lp: float, top: list[tuple[str, float]] | None = None) -> dict:
    return {"token": token, "logprob": lp, "bytes": None,
            "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in (top or [])]}


# what llama-cpp-python 0.3.36 returned for {"score": 1} from SmolLM2-135M (top 10; recorded in this repo's probe)
LLAMACPP = {"content": [
    tok('{"', -0.953, [('{"', -0.95), ("{", -0.98)]),
    tok("score", -2.214, [("title", -2.13), ("score", -2.21)]),
    tok('":', -0.067, [('":', -0.07), ("1", -6.55), ("2", -8.94)]),      # digits before the score: not the score
    tok(" ", -0.973, [(" ", -0.97), ("1", -3.77), ("5", -5.27)]),
    tok("1", -0.846, [("1", -0.85), ("5", -1.97), ("4", -2.45), ("3", -2.49), ("2", -2.51), ("0", -2.72), ("9", -3.22)]),
    tok("}", -2.202, [(',"', -1.19), ("}", -2.2)]),
]}


def test_llamacpp_shape() -> None:
    dist, mass = score_distribution(LLAMACPP)
    raw = [math.exp(v) for v in (-0.85, -2.51, -2.49, -2.45, -1.97)]
    assert dist == pytest.approx([r / sum(raw) for r in raw])
    assert mass == pytest.approx(sum(raw)) and 0.8 < mass < 0.9
    r = rating(1, LLAMACPP)
    assert r.score == 1 and r.expected == pytest.approx(sum((k + 1) * p for k, p in enumerate(dist)), abs=1e-5)


def test_openai_shape_with_split_digits_and_spaces() -> None:
    lp = {"content": [tok("Score", -0.1), tok(":", -0.01), tok(" 4", math.log(0.5), [(" 4", math.log(0.5)),
                                                                                    ("4", math.log(0.1)),
                                                                                    (" 5", math.log(0.3)),
                                                                                    (" three", -5.0)]),
                      tok("/", -0.1), tok("5", -0.01)]}
    dist, mass = score_distribution(lp)
    assert dist == pytest.approx([0, 0, 0, 0.6 / 0.9, 0.3 / 0.9]) and mass == pytest.approx(0.9)


@pytest.mark.parametrize("lp", [None, {}, {"content": None}, {"content": [tok("great", -0.1)]},
                                {"content": [tok("4", 0.0, [("four", -0.1)])]}, "junk"])
def test_no_distribution(lp) -> None:
    assert score_distribution(lp) is None
    assert rating(3, lp).expected is None and rating(3, lp).score == 3


def test_no_alternatives_asked_gives_the_chosen_token_alone() -> None:
    dist, mass = score_distribution({"content": [tok("3", math.log(0.8))]})
    assert dist == (0, 0, 1.0, 0, 0) and mass == pytest.approx(0.8)
