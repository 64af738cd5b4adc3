"""Quality flags of stored preference trees, in one home for the two places
that use them: the quality report (``aloesim.inspection.quality``) reads
``iter_tree_checks``; the export (``aloesim.training``) drops what
``find_exclusions`` selects. ``QualitySettings`` is the ``quality`` config
group (detector and report thresholds); ``REASONS`` names the flags
(truncated, leaked, role_flip, judge_disagree, empty, duplicate);
``PersonaOverlap`` and ``role_flip`` are the text detectors. Pure rules over
text and call records: no model, no network.
"""

from ._checks import (
    CALL_ROLES,
    CallOutcome,
    Exclusion,
    NodeCheck,
    TreeChecks,
    check_tree,
    find_exclusions,
    iter_tree_checks,
)
from ._settings import REASONS, QualitySettings, parse_reasons
from ._text import ROLE_FLIP_PATTERNS, PersonaOverlap, Recitation, normalized, role_flip, template_text, words

__all__ = [
    "CALL_ROLES",
    "REASONS",
    "ROLE_FLIP_PATTERNS",
    "CallOutcome",
    "Exclusion",
    "NodeCheck",
    "PersonaOverlap",
    "QualitySettings",
    "Recitation",
    "TreeChecks",
    "check_tree",
    "find_exclusions",
    "iter_tree_checks",
    "normalized",
    "parse_reasons",
    "role_flip",
    "template_text",
    "words",
]
