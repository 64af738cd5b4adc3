"""The world the agents act in: personas, conversation trees, and the store.

Knows nothing of LLMs or of the event bus."""

from ._tree import MAX_TURNS, MODES, TreePlan, TreeSpec, call_seed, continued_choice, stable_int
from ._types import (
    CHOICE_LETTER,
    Choice,
    Conversation,
    InferredPersona,
    Message,
    Node,
    Persona,
    PreferenceCheck,
    history_for,
)

__all__ = [
    "CHOICE_LETTER",
    "MAX_TURNS",
    "MODES",
    "Choice",
    "Conversation",
    "InferredPersona",
    "Message",
    "Node",
    "Persona",
    "PreferenceCheck",
    "TreePlan",
    "TreeSpec",
    "call_seed",
    "continued_choice",
    "history_for",
    "stable_int",
]
