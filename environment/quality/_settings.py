"""The ``quality`` config group as a typed, checked dataclass.

The defaults here equal ``conf/quality/default.yaml`` (a test compares
them); every field's ``help`` is the YAML comment. A bad value raises
``ConfigError`` naming ``quality.<key>``, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from aloesim.core.errors import ConfigError

REASONS: tuple[str, ...] = ("truncated", "leaked", "role_flip", "judge_disagree", "empty", "duplicate")
"""Why a node can be flagged (and dropped by ``aloe export export.exclude=[...]``)."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class QualitySettings:
    """Detector thresholds (what flags a node) and report thresholds (what flags a run)."""

    out_dir: str | None = field(default=None, metadata=_help(
        "folder for quality.json, quality.md and quality.png; null = quality-run<ID> in the current folder"))
    embedder: str | None = field(default="default", metadata=_help(
        "sentence-transformers model for revelation and diversity: default = the bundled all-MiniLM-L6-v2,"
        " a model path, or null to skip both"))
    # -- node detectors -------------------------------------------------------------
    leak_min_words: int = field(default=8, metadata=_help(
        "a user message leaks when at least this many of its words recite the profile or personality text"))
    leak_run_words: int = field(default=4, metadata=_help(
        "... counting only runs of at least this many consecutive words shared with that text"))
    # -- run thresholds (a metric is flagged past them) ------------------------------
    max_leak_rate: float = field(default=0.05, metadata=_help("share of user messages that leak"))
    max_role_flip_rate: float = field(default=0.02, metadata=_help("share of user messages that speak as the AI"))
    max_truncation_rate: float = field(default=0.02, metadata=_help(
        "share of calls with a known finish_reason that stopped at max_tokens"))
    max_empty_rate: float = field(default=0.0, metadata=_help("share of nodes with an empty message or reply"))
    max_duplicate_rate: float = field(default=0.05, metadata=_help(
        "share of nodes whose replies are identical or that repeat an earlier turn"))
    max_length_ratio: float = field(default=1.5, metadata=_help(
        "mean preferred length / mean rejected length above this (or below its inverse)"))
    min_revelation_slope: float = field(default=0.01, metadata=_help(
        "slope per turn of the mean revelation at or below this (revelation should rise; flat within noise)"))
    min_diversity: float = field(default=0.3, metadata=_help(
        "mean pairwise embedding distance of user messages across trees, at any turn, below this"))
    diversity_sample: int = field(default=200, metadata=_help(
        "user messages (one per tree) compared per turn, a seeded sample when there are more"))
    min_judge_agreement: float = field(default=0.6, metadata=_help(
        "share of judged nodes where the preference judge chose the preferred reply in both orders"))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> QualitySettings:
        """Build from the ``quality`` config mapping (missing keys keep their defaults)."""
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        for key in cfg:
            if key not in known:
                raise ConfigError(f"quality.{key}", cfg[key], f"one of the keys {sorted(known)}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in cfg:
                continue
            v = cfg[f.name]
            if f.name in ("out_dir", "embedder"):
                if v is not None and (not isinstance(v, str) or not v.strip()):
                    raise ConfigError(f"quality.{f.name}", v, "null or a non-empty path/name")
            elif isinstance(f.default, int):
                minimum = 2 if f.name == "diversity_sample" else 1
                if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                    raise ConfigError(f"quality.{f.name}", v, f"an integer >= {minimum}")
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ConfigError(f"quality.{f.name}", v, "a number")
                v = float(v)
                if f.name == "max_length_ratio" and v < 1:
                    raise ConfigError("quality.max_length_ratio", v, "a number >= 1")
                if f.name not in ("max_length_ratio", "min_revelation_slope") and not 0 <= v <= 1:
                    raise ConfigError(f"quality.{f.name}", v, "a number in [0, 1]")
            values[f.name] = v
        return cls(**values)

    def thresholds(self) -> dict[str, Any]:
        """Every setting but the output folder, as shown in reports."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "out_dir"}


def parse_reasons(value: Any, key: str = "export.exclude") -> tuple[str, ...]:
    """``null`` | a reason | a list of reasons -> the distinct reasons in ``REASONS`` order."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        items = list(value)
    else:
        raise ConfigError(key, value, f"a list of reasons from {list(REASONS)}")
    for item in items:
        if item not in REASONS:
            raise ConfigError(key, item, f"one of {list(REASONS)}")
    return tuple(r for r in REASONS if r in items)
