"""Text detectors: a simulated user reciting its persona (or its role-play
instructions), or speaking as the AI.

Both work on words: the text case-folded, curly apostrophes made straight,
split into runs of letters and digits (``I'm`` is one word). They are rules,
not models, so their mistakes can be read off the patterns below (docs/quality.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def words(text: str) -> list[str]:
    """The words of ``text``: case-folded, apostrophes straightened, punctuation dropped."""
    return _WORD.findall(text.translate(_QUOTES).casefold())


def template_text(template: str) -> list[str]:
    """The fixed pieces of a prompt template: the text between its ``{placeholders}``."""
    return [piece.replace("{{", "{").replace("}}", "}") for piece in re.split(r"(?<!\{)\{[a-z_]+\}(?!\})", template)]


def normalized(text: str) -> str:
    """``text`` as its words joined by single spaces (for equality up to case, spacing and punctuation)."""
    return " ".join(words(text))


@dataclass(frozen=True, slots=True)
class Recitation:
    """How much of a message repeats its persona's text word for word.

    Only runs of at least ``run_words`` consecutive words count: shorter
    shared phrases ("in the local", "I have two") are ordinary English."""

    words: int  # message words inside shared runs (0: nothing recited)
    longest: int  # length of the longest shared run
    share: float  # words / the message's length in words
    source: str | None  # where the longest run is: "profile" | "personality" | "instructions" (None: nothing)
    text: str  # the longest run, for reports

    def leaks(self, min_words: int) -> bool:
        """The leakage rule: at least ``min_words`` words recited."""
        return self.words >= min_words


NOTHING_RECITED = Recitation(0, 0, 0.0, None, "")


class PersonaOverlap:
    """Word runs a message shares with the hidden text its writer was given:
    the persona's profile and personality, and the fixed text of the
    role-play instructions (the user prompt without its placeholders).

    Each text is indexed once (``difflib.SequenceMatcher``'s second
    sequence), so checking the many messages of a tree is cheap. Runs are
    taken longest first, in any order (a recitation may reorder clauses),
    each message word counted once."""

    def __init__(self, profile: str, personality: str, *, instructions: Sequence[str] = (),
                 run_words: int = 4) -> None:
        self.run_words = run_words
        self._sources: list[tuple[str, int, SequenceMatcher]] = []
        texts = [("profile", profile), ("personality", personality), *(("instructions", t) for t in instructions)]
        for name, text in texts:
            ws = words(text)
            if len(ws) >= run_words:
                matcher = SequenceMatcher(None, autojunk=False)
                matcher.set_seq2(ws)
                self._sources.append((name, len(ws), matcher))

    def recited(self, message: str) -> Recitation:
        mw = words(message)
        if not mw or not self._sources:
            return NOTHING_RECITED
        for _, _, matcher in self._sources:
            matcher.set_seq1(mw)
        gaps = [(0, len(mw))]  # message ranges not yet covered by a run
        total, best = 0, (0, None, "")
        while gaps:
            found = None  # (size, start in message, gap index, source)
            for gi, (lo, hi) in enumerate(gaps):
                for name, n, matcher in self._sources:
                    m = matcher.find_longest_match(lo, hi, 0, n)
                    if m.size >= self.run_words and (found is None or m.size > found[0]):
                        found = (m.size, m.a, gi, name)
            if found is None:
                break
            size, a, gi, name = found
            lo, hi = gaps.pop(gi)
            gaps += [g for g in ((lo, a), (a + size, hi)) if g[1] - g[0] >= self.run_words]
            total += size
            if size > best[0]:
                best = (size, name, " ".join(mw[a:a + size]))
        if total == 0:
            return NOTHING_RECITED
        return Recitation(total, best[0], total / len(mw), best[1], best[2])


# -- role flips ------------------------------------------------------------------------------
# Each pattern is matched against the case-folded text with straight apostrophes. They aim at
# precision: a human may mention AI, help people or offer a hand; these phrasings are the ones
# an assistant uses about itself or to its user. Tested on positives and negatives in
# tests/environment/quality/test_text.py.
def _rx(*alternatives: str) -> re.Pattern[str]:
    """One pattern from alternatives written with plain spaces (a space matches any run of whitespace)."""
    return re.compile("|".join(f"(?:{a})" for a in alternatives).replace(" ", r"\s+"))


_AI = (r"(?:ai|a\.i\.|artificial intelligence|(?:large )?language model|ai (?:language )?model|ai assistant"
       r"|ai chatbot|chatbot|chat bot)")
# what follows "as an AI" when it is the speaker's nature, not a job ("As an AI researcher, ...")
_AFTER_AI = (r"(?=\s*(?:[,.;:!?)]|$)|\s+(?:and|so|but|i|without|with no|trained|developed|designed|created|made|built"
             r"|programmed|here|that|who|which|by|from)\b)")

ROLE_FLIP_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # "As an AI, I ...", "I'm just an AI language model trained by ...", "I am a chatbot and ..."
    ("ai_self_reference", _rx(rf"(?:\bi am|\bi'm|\bim|\bas) (?:just |only |merely |simply )?an? {_AI}{_AFTER_AI}")),
    # "I don't have personal experiences/opinions", "... feelings like humans do", "... a physical body"
    ("no_human_experience", _rx(
        r"\bi (?:don't|do not|can't|cannot) (?:have|form|hold) (?:any )?personal "
        r"(?:experiences|opinions|preferences|feelings|beliefs)",
        r"\bi (?:don't|do not) have (?:feelings|emotions) (?:like|as|the way) (?:humans|a human|people)",
        r"\bi (?:don't|do not) have a (?:physical )?body\b",
    )),
    # "based on my training data", "my knowledge cutoff", "I can't browse the internet", "as of my last update"
    ("model_limits", _rx(
        r"\b(?:in|from|on|to|of) my training data\b",
        r"\bmy training data (?:only )?(?:goes|includes|ends|cuts|extends|covers)\b",
        r"\bmy (?:training|knowledge) cut-?off\b",
        r"\bi (?:can't|cannot|don't|do not|am unable to) (?:browse|access|search) the (?:internet|web)\b",
        r"\bas of my (?:last )?(?:update|training|knowledge)\b",
    )),
    # "How can I help you today?", "What can I help you with?", "I'd be happy to help you with that!"
    ("offers_help", _rx(
        r"\bhow (?:can|may|could|might) i (?:help|assist) you\b",
        r"\bwhat can i (?:help you with|do for you)\b",
        r"\bis there (?:anything|something) (?:else )?(?:i can|i could) (?:help|assist|do)\b",
        r"\b(?:i'm|i am) (?:always )?here to (?:help|assist)(?: you)?\b(?! (?:out|my|our|with my|with the))",
        r"\bi(?:'d| would) be (?:happy|glad|delighted) to (?:help|assist)(?: you)?"
        r"(?: with (?:that|this|anything(?: else)?))?\s*[.!]",
        r"\b(?:happy|glad) to (?:help|assist)(?: you)?\s*[!.]\s*(?:let me|if you|feel free|is there)",
        r"\bglad i could (?:help|assist)\b",
    )),
    # "Let me know if you have any other questions", "Feel free to ask", "I hope this helps!"
    ("assistant_closing", _rx(
        r"\blet me know if you (?:have|need) (?:any )?(?:other |more |further |additional )?"
        r"(?:questions|help|assistance|clarification)",
        r"\bfeel free to (?:ask|reach out)\b",
        r"\bi hope (?:this|that|my (?:answer|response|explanation)) (?:helps|was helpful)\s*(?:[.!]|$)",
    )),
    # "Certainly! Here are ...", "Sure! Here's a ..." at the start of the message
    ("assistant_opener", _rx(r"^\s*(?:certainly|absolutely|of course|sure)\s*[!,.]\s*here(?:'s| is| are)\b")),
    # "I'm sorry, but I can't assist with that", "I cannot help with this request."
    ("refusal", _rx(
        r"\b(?:i'm|i am) (?:sorry|afraid),? (?:but )?i (?:can't|cannot|am unable to|'m unable to|am not able to) "
        r"(?:help|assist|provide|fulfill|comply)",
        r"\bi (?:can't|cannot) (?:assist|help) with (?:that|this)(?: request)?\s*[.!]",
    )),
)


def role_flip(text: str) -> str | None:
    """The name of the first role-flip pattern ``text`` matches, or None.

    A role flip is the simulated user speaking as the assistant or as an AI:
    naming itself an AI, disclaiming human experience, citing its training,
    offering help, closing like a help desk, opening with "Certainly! Here
    are", or refusing like a model."""
    t = text.translate(_QUOTES).casefold()
    for name, rx in ROLE_FLIP_PATTERNS:
        if rx.search(t):
            return name
    return None
