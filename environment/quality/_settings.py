"""The ``quality`` config group as a typed schema (``QualitySettings``).

Its defaults are the only ones (``conf/quality/default.yaml`` changes
none of them); every field's ``help`` says what it flags. A bad value
raises ``ConfigError`` naming ``quality.<key>``, the value and what is
allowed (``aloesim.core.Settings`` checks every field).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from aloesim.core import Settings, setting, to_settings
from aloesim.core.errors import ConfigError

REASONS: tuple[str, ...] = ("truncated", "leaked", "role_flip", "judge_disagree", "empty", "duplicate")
"""Why a node can be flagged (and dropped by ``aloe export export.exclude=[...]``)."""


def _rate(default: float, help: str) -> Any:
    return setting(default, help=help, ge=0, le=1)


@dataclass(frozen=True)
class QualitySettings(Settings):
    """Detector thresholds (what flags a node) and report thresholds (what flags a run)."""

    out_dir: str | None = setting(None, nonempty=True, allowed="null or a directory path", help=(
        "aloe quality: folder for quality.json, quality.md and quality.png; null = quality-run<ID> in the current"
        " folder"))
    embedder: str | None = setting("default", nonempty=True, allowed="null, default or a sentence-transformers model",
                                   help="sentence-transformers model for revelation and diversity: default = the"
                                        " bundled all-MiniLM-L6-v2, a model path, or null to skip both")
    # -- node detectors -------------------------------------------------------------
    leak_min_words: int = setting(8, ge=1, le=100_000, help=(
        "a user message leaks when at least this many of its words recite the profile or personality text ..."))
    leak_run_words: int = setting(4, ge=1, le=100_000, help=(
        "... counting only runs of at least this many consecutive words shared with that text (shorter ones are"
        " ordinary English)"))
    # -- run thresholds: a metric past its threshold is flagged in the report ----------
    max_leak_rate: float = _rate(0.05, "share of user messages that leak")
    max_role_flip_rate: float = _rate(0.02, "share of user messages that speak as the AI (\"As an AI\", \"How can"
                                            " I help you?\", ...)")
    max_truncation_rate: float = _rate(0.02, "share of calls with a known finish_reason that stopped at max_tokens"
                                             " (\"length\")")
    max_empty_rate: float = _rate(0.0, "share of nodes with an empty user message or reply")
    max_duplicate_rate: float = _rate(0.05, "share of nodes whose two replies are the same, or that repeat an"
                                            " earlier turn of their conversation")
    max_length_ratio: float = setting(1.5, ge=1, help=(
        "mean preferred length / mean rejected length above this, or below its inverse (DPO learns length)"))
    min_revelation_slope: float = setting(0.01, help=(
        "slope per turn of the mean revelation at or below this: the inferred persona does not approach the true"
        " one (flat within noise)"))
    min_diversity: float = _rate(0.3, "mean pairwise embedding distance (1 - cosine) of user messages across"
                                      " trees, at any turn, below this")
    diversity_sample: int = setting(200, ge=2, le=1_000_000, help=(
        "user messages (one per tree) compared per turn; a seeded sample when there are more"))
    min_judge_agreement: float = _rate(0.6, "share of judged nodes where the preference judge chose the preferred"
                                            " reply in both orders, below this")

    @classmethod
    def from_config(cls, cfg: Any) -> QualitySettings:
        """Build from the ``quality`` config node or mapping (missing keys keep their defaults)."""
        return to_settings(cfg, cls, "quality")

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
