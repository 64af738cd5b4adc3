"""The ALOE metrics (paper section 3), as pure numpy functions.

Scores come as a matrix ``scores[case, turn]`` (turn 1 in column 0) with
``NaN`` where the judge could not score a reply (or the case stopped early).

- ``AL(k)``: mean score over the cases scored at turn k (``alignment_levels``).
- Average AL: mean of AL(k) over the turns that have a value.
- IR: least-squares slope b of ``AL(k) = b*k + a`` over k = 1..K; R² of that fit.
- N-IR, N-R²: the same fit after min-max normalising AL over all K turns,
  ``N-AL(k) = (AL(k) - min_i AL(i)) / (max_i AL(i) - min_i AL(i))``.
  The paper's text prints min/max over i = 1..k, but its Table 1 is
  consistent with all K turns (Qwen2 Base: IR 0.254 / range 1.83 = 0.139).
- Bootstrap 95% confidence intervals over cases (``bootstrap``).
- Cohen's kappa between two sets of 1-5 scores (``cohen_kappa``).

Undefined values are ``None`` (never 0 or NaN in a report); ``reasons(al)``
says why each one is undefined.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core import check_text_line, decode_utf8
from ..core.errors import InputError

__all__ = [
    "SUMMARY_KEYS",
    "alignment_levels",
    "bootstrap",
    "cohen_kappa",
    "fit_line",
    "normalize",
    "paired",
    "read_labels",
    "reasons",
    "summarize",
]

SUMMARY_KEYS = ("average", "ir", "r2", "n_ir", "n_r2")


def _as_curve(al: Iterable[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in al], dtype=float)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def alignment_levels(scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """AL(k) for each turn and the number of cases scored at that turn.

    ``scores`` is a cases x turns array-like with NaN (or None) for missing
    scores. A turn no case was scored at has AL = NaN and count 0."""
    m = np.array(scores, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"scores must be a cases x turns matrix, got shape {m.shape}")
    counts = np.sum(~np.isnan(m), axis=0)
    sums = np.nansum(m, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        al = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return al, counts


def fit_line(y: Any, x: Any | None = None) -> tuple[float | None, float | None, float | None]:
    """Least-squares line ``y = b*x + a`` over the finite points (x defaults
    to 1..len(y)). Returns (slope b, intercept a, R²); the slope is None with
    fewer than two points, R² is None when y is constant (0/0)."""
    y = _as_curve(y)
    x = np.arange(1, len(y) + 1, dtype=float) if x is None else np.asarray(x, dtype=float)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < 2:
        return None, None, None
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    b = float(np.sum((x - xm) * (y - ym)) / sxx)
    a = float(ym - b * xm)
    ss_tot = float(np.sum((y - ym) ** 2))
    if ss_tot <= 1e-12 * max(1.0, float(np.sum(y**2))):
        return b, a, None
    ss_res = float(np.sum((y - (b * x + a)) ** 2))
    return b, a, 1.0 - ss_res / ss_tot


def normalize(al: Iterable[float | None]) -> np.ndarray | None:
    """Min-max normalised curve over all turns with a value (NaN kept), or
    None when the curve is flat or has no value."""
    y = _as_curve(al)
    ok = np.isfinite(y)
    if not ok.any():
        return None
    lo, hi = float(np.min(y[ok])), float(np.max(y[ok]))
    if hi - lo <= 1e-12:
        return None
    return (y - lo) / (hi - lo)


def summarize(al: Iterable[float | None]) -> dict[str, float | None]:
    """Summary metrics of one AL curve (AL(1..K), None/NaN for a turn with no
    score): ``{"average", "ir", "r2", "n_ir", "n_r2"}``; undefined values are
    None (see ``reasons``)."""
    y = _as_curve(al)
    ok = np.isfinite(y)
    average = float(np.mean(y[ok])) if ok.any() else None
    ir, _, r2 = fit_line(y)
    n = normalize(y)
    n_ir, n_r2 = (None, None) if n is None else fit_line(n)[::2]
    return {"average": _num(average), "ir": _num(ir), "r2": _num(r2), "n_ir": _num(n_ir), "n_r2": _num(n_r2)}


def reasons(al: Iterable[float | None]) -> dict[str, str]:
    """Why each undefined value of ``summarize(al)`` is undefined (key -> reason)."""
    y = _as_curve(al)
    ok = np.isfinite(y)
    out: dict[str, str] = {}
    if not ok.any():
        return {k: "no turn has a score" for k in SUMMARY_KEYS}
    missing = [str(i + 1) for i in np.flatnonzero(~ok)]
    if missing:
        out["turns"] = "no score at turn(s) " + ", ".join(missing) + "; fitted over the other turns"
    if ok.sum() < 2:
        why = "fewer than two turns with a score: no slope"
        out.update(ir=why, r2=why, n_ir=why, n_r2=why)
        return out
    if normalize(y) is None:
        out["r2"] = "flat curve: R² is 0/0"
        out["n_ir"] = "flat curve: max AL = min AL, cannot normalise"
        out["n_r2"] = out["n_ir"]
    return out


def _ci(samples: np.ndarray, level: float) -> list[float | None]:
    s = samples[np.isfinite(samples)]
    if len(s) == 0:
        return [None, None]
    lo, hi = np.percentile(s, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return [float(lo), float(hi)]


def bootstrap(scores: Any, *, n: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap over cases: resample the cases (rows) with
    replacement ``n`` times and recompute AL(k), average AL and IR.

    Returns ``{"al": [[lo, hi] per turn], "average": [lo, hi], "ir": [lo, hi]}``
    (None bounds where a statistic is undefined in every resample). Seeded,
    so the same scores and seed give the same intervals."""
    m = np.array(scores, dtype=float)
    cases, turns = m.shape
    if cases == 0 or turns == 0:
        return {"al": [[None, None]] * turns, "average": [None, None], "ir": [None, None]}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cases, size=(n, cases))
    sample = m[idx]                                   # n x cases x turns
    counts = np.sum(~np.isnan(sample), axis=1)        # n x turns
    with np.errstate(invalid="ignore", divide="ignore"):
        al = np.nansum(sample, axis=1) / np.where(counts > 0, counts, np.nan)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(al)
        average = np.where(finite.any(axis=1), np.nansum(al, axis=1) / np.maximum(finite.sum(axis=1), 1), np.nan)
    # vectorised least-squares slope per resample over its finite turns
    k = np.broadcast_to(np.arange(1, turns + 1, dtype=float), al.shape)
    w = finite.astype(float)
    nw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        km = (w * k).sum(axis=1) / nw
        ym = np.nansum(w * np.nan_to_num(al), axis=1) / nw
        dk = (k - km[:, None]) * w
        sxx = (dk**2).sum(axis=1)
        sxy = (dk * (np.nan_to_num(al) - ym[:, None])).sum(axis=1)
        ir = np.where((nw >= 2) & (sxx > 0), sxy / sxx, np.nan)
    return {
        "al": [_ci(al[:, t], level) for t in range(turns)],
        "average": _ci(average, level),
        "ir": _ci(ir, level),
    }


def cohen_kappa(a: Sequence[int | None], b: Sequence[int | None], *, labels: Sequence[int] = (1, 2, 3, 4, 5),
                weights: str | None = None) -> float | None:
    """Cohen's kappa between two raters' scores of the same items.

    Pairs where either score is missing are left out. ``weights`` None gives
    the plain kappa, "linear"/"quadratic" the weighted ones. None when no pair
    is left or chance agreement is total (both raters constant and equal)."""
    if len(a) != len(b):
        raise ValueError(f"two score lists of different lengths: {len(a)} and {len(b)}")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None
             and not (isinstance(x, float) and math.isnan(x)) and not (isinstance(y, float) and math.isnan(y))]
    if not pairs:
        return None
    pos = {lab: i for i, lab in enumerate(labels)}
    q = len(labels)
    obs = np.zeros((q, q))
    for x, y in pairs:
        if int(x) not in pos or int(y) not in pos:
            raise ValueError(f"score outside the labels {list(labels)}: {x!r}, {y!r}")
        obs[pos[int(x)], pos[int(y)]] += 1
    obs /= obs.sum()
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    i, j = np.indices((q, q))
    if weights is None:
        wt = (i != j).astype(float)
    elif weights == "linear":
        wt = np.abs(i - j) / (q - 1)
    elif weights == "quadratic":
        wt = ((i - j) / (q - 1)) ** 2
    else:
        raise ValueError(f"weights={weights!r}; expected None, 'linear' or 'quadratic'")
    denom = float((wt * exp).sum())
    if denom <= 1e-12:
        return None
    return 1.0 - float((wt * obs).sum()) / denom


def read_labels(path: str | Path) -> dict[tuple[int, int], int]:
    """Human (or second-judge) labels from a CSV with a header naming the
    columns ``case`` (the case index, from 0), ``turn`` (from 1) and ``score``
    (1-5); a row with an empty score (not rated) is skipped. Returns
    {(case, turn): score}. Any bad row is an InputError naming the file and
    line; nothing is returned from a bad file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such file")
    try:
        text = decode_utf8(path, path.read_bytes()).removeprefix("\ufeff")
    except OSError as exc:
        raise InputError(str(path), f"cannot be read ({exc.strerror})") from None
    for lineno, line in enumerate(text.split("\n"), start=1):  # NUL, controls, U+FFFF: file:line:column
        check_text_line(path, line, lineno)
    out: dict[tuple[int, int], int] = {}
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"case", "turn", "score"}
        if reader.fieldnames is None or not need <= {f.strip() for f in reader.fieldnames}:
            raise InputError(str(path), f"header must name the columns case, turn, score; got {reader.fieldnames}", line=1)
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not row.get("score"):
                continue
            try:
                case, turn, score = int(row["case"]), int(row["turn"]), int(row["score"])
            except ValueError:
                raise InputError(str(path), f"case, turn and score must be integers: {row}", line=reader.line_num) from None
            if not 1 <= score <= 5 or turn < 1 or case < 0:
                raise InputError(str(path), f"need case >= 0, turn >= 1, score 1-5: {row}", line=reader.line_num)
            out[(case, turn)] = score
    return out


def paired(first: Mapping[tuple[int, int], int | None], second: Mapping[tuple[int, int], int | None]
           ) -> tuple[list[int | None], list[int | None]]:
    """The scores of the items both raters saw, in a fixed order."""
    keys = sorted(set(first) & set(second))
    return [first[k] for k in keys], [second[k] for k in keys]
