"""The judge validity probes: replies built from templates whose right
answer is known whatever the judge's competence (issue 13.1).

A probe takes two personas A and B from the evaluation's own cases (their
profiles differ) and a neutral user message, and builds, from one template,
a reply that names two facts of A's profile and one trait of A's personality
(``reply_a``), and the same template filled with B's (``reply_b``):

- ``persona_swap``: ``reply_a`` judged against persona A and against persona
  B. The reply is about A and not about B, so it is better tailored to A,
  however good or bad it is otherwise: a judge that reads the persona scores
  A's side higher. Probe i + 1 is probe i mirrored (B's reply, B vs A).
- ``reply_swap``: under persona A, ``reply_a`` against ``reply_b``. Same
  template, same message, same place: only the persona content differs, so
  style, quality and (on average) length are matched; only tailoring is not.
- ``order_swap`` (the pairwise preference judge): the reply_swap pair shown
  as A/B and then as B/A. A judge that always picks one position is right
  exactly once per probe: 0.5.

A judge that ignores the persona (constant, random, looking at length or
position) scores each side from the same distribution, so its expected
accuracy is 0.5, ties counting half. Each probe is a function of (cases,
seed, kind, index) alone: asking for more probes adds new ones and keeps the
old ones.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..environment import Persona
from ._cases import Case

__all__ = ["CONTRAST_PERSONAS", "KINDS", "Probe", "build_probe", "persona_pool", "pieces"]

KINDS = ("persona_swap", "reply_swap", "order_swap")

MESSAGES = (
    "Any ideas for what I could do this weekend?",
    "I have a free evening coming up. What would you suggest?",
    "I'm trying to pick a new hobby project. Thoughts?",
    "What should I cook for dinner tonight?",
    "I need a little break from my routine. Any suggestions?",
    "Can you recommend something to read or watch?",
    "I want to plan a small treat for myself. What do you think?",
    "How should I spend my Saturday morning?",
)

TEMPLATES = (
    ('Thinking of what you told me ("{f1}"; "{f2}"), I\'d build on exactly that. And given your style ("{t}"), '
    "pick one thing from that world you haven't tried yet and give it an afternoon."),
    ('Knowing this about you: "{f1}", and also "{f2}". Here is my take, in your own spirit ("{t}"): lean into it; '
    "a plan that fits your own life beats a generic one."),
    ('You told me: "{f1}"; also "{f2}". With that in mind, and matching your way of being ("{t}"), try a small '
    "project tied to those, something you can finish and enjoy."),
    ('Given your life ("{f1}"; "{f2}") and your manner ("{t}"), I\'d suggest something connected to exactly that '
    "rather than the usual ideas."),
)

# Stand-in B personas for an evaluation whose cases hold fewer than two distinct profiles.
CONTRAST_PERSONAS = (
    (("A retired deep-sea welder in Aberdeen; keeps racing snails; collects shipwreck maps; "
     "sings in a sea-shanty group; never owned a phone."), "Gruff, laconic, suspicious of novelty."),
    (("A 27-year-old glassblower in Murano; trains as a competitive fencer; grows bonsai olives; "
     "speaks four dialects of Italian; rides a red Vespa."), "Bubbly, theatrical, talks with her hands."),
    (("A 63-year-old beekeeping astronomer in the Atacama desert; repairs telescopes; bakes empanadas; "
     "plays the charango; has nine grandchildren."), "Patient, methodical, speaks in long stories."),
)


@dataclass(frozen=True)
class Probe:
    """One probe: ``reply_a`` (built for persona A) is the side that should win."""

    kind: str
    index: int
    case_a: int | None
    case_b: int | None
    persona_a: Persona
    persona_b: Persona
    message: str
    reply_a: str
    reply_b: str

    def detail(self) -> dict:
        return {"persona_a": {"profile": self.persona_a.profile, "personality": self.persona_a.personality},
                "persona_b": {"profile": self.persona_b.profile, "personality": self.persona_b.personality},
                "message": self.message, "reply_a": self.reply_a, "reply_b": self.reply_b}


def pieces(text: str, min_words: int = 3) -> list[str]:
    """A persona text cut into its facts (or traits): the pieces between ``.``,
    ``;`` and ``,`` of at least ``min_words`` words (the whole text if none is)."""
    out = [re.sub(r"^(?:and|but|also|who)\s+", "", p.strip(), flags=re.IGNORECASE)
           for p in re.split(r"[.;,\n]", text) if len(p.split()) >= min_words]
    return out or [text.strip()]


def persona_pool(cases: Sequence[Case]) -> list[tuple[int | None, Persona]]:
    """The personas probes are drawn from: the cases, plus the built-in
    contrast personas when fewer than two profiles are distinct."""
    pool: list[tuple[int | None, Persona]] = [(c.index, c.persona()) for c in cases]
    if len({c.profile for c in cases}) < 2:
        pool += [(None, Persona(id=-1 - i, profile=p, personality=q, split="eval"))
                 for i, (p, q) in enumerate(CONTRAST_PERSONAS)]
    return pool


def _rng(seed: int, *key: object) -> random.Random:
    digest = hashlib.sha256(json.dumps([seed, *key], default=str).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _fill(template: str, persona: Persona, other: Persona, rng: random.Random) -> str:
    """The template filled with two facts and one trait of ``persona`` that do
    not appear in ``other`` (so the reply is about this persona only)."""
    low = (other.profile + " " + other.personality).lower()
    facts = [f for f in pieces(persona.profile) if f.lower() not in low] or pieces(persona.profile)
    traits = [t for t in pieces(persona.personality, 1) if t.lower() not in low] or [persona.personality]
    f1, f2 = (rng.sample(facts, 2) if len(facts) >= 2 else (facts[0], facts[0]))
    return template.format(f1=f1.strip(), f2=f2.strip(), t=rng.choice(traits).strip())


def build_probe(pool: Sequence[tuple[int | None, Persona]], seed: int, kind: str, index: int) -> Probe:
    """Probe ``index`` of ``kind`` over ``pool`` (see the module doc). Probes
    2j and 2j + 1 share a persona pair, the second one mirrored."""
    pair = _rng(seed, kind, "pair", index // 2)
    a = pair.choice([p for p in pool if p[0] is not None] or list(pool))   # A is one of the cases
    b = pair.choice([p for p in pool if p[1].profile != a[1].profile])
    if index % 2:
        a, b = b, a
    rng = _rng(seed, kind, "text", index)
    message = rng.choice(MESSAGES)
    template = rng.choice(TEMPLATES)
    fill_seed = rng.random()
    reply_a = _fill(template, a[1], b[1], random.Random(fill_seed))
    reply_b = _fill(template, b[1], a[1], random.Random(fill_seed))
    return Probe(kind, index, a[0], b[0], a[1], b[1], message, reply_a, reply_b)
