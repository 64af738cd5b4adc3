"""Readers of the paper's plain-text outputs (``prompts=paper_verbatim``).

The Appendix B prompts ask the inducer for ``Profile: ... / Personalities:
...`` (B.2.2) and the judge for a bare score 1-5 (B.3); models add words,
markdown and layouts of their own. Each reader takes what such a reply
plainly says and raises ``ValueError`` (with the reason) when it says
nothing usable, so the gateway retries it like a reply that fails its JSON
schema. They never guess between two readings: a reply that names two
different scores, or text without a ``Profile:``/``Personalities:`` label
that is not a plain "nothing revealed", is refused.

    read_persona_text(text) -> (profile | None, personalities | None)
    read_score_text(text)   -> 1..5
    read_choice_text(text)  -> "A" | "B"
"""

from __future__ import annotations

import re

__all__ = ["read_choice_text", "read_persona_text", "read_score_text"]

_MARKUP = re.compile(r"(\*\*|__|`+|~~)")
_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d+[.)])\s+")
_HEADING = re.compile(r"^\s*#+\s*")


def _plain(text: str) -> str:
    """Markdown emphasis, headings and code ticks removed; line structure kept."""
    lines = [_HEADING.sub("", line) for line in _MARKUP.sub("", text).splitlines()]
    return "\n".join(lines).strip()


# -- B.2.2: "Profile: ... / Personalities: ..." ------------------------------------------

_FIELD = (r"(?:(?:inferred|revealed|disclosed|user(?:'s)?|the\s+user(?:'s)?)\s+)?"
          r"(?P<field>profile|personalit(?:y|ies))(?:\s+(?:traits?|details|descriptions?|information))?"
          r"[ \t]*(?:\([^)\n]{0,40}\))?")
_LABEL = re.compile(  # "Profile:" anywhere (also "Profile - "), or "Profile" alone on its line (a heading)
    rf"(?<![\w'])(?:{_FIELD}[ \t]*(?:[:：]|[ \t][-–—][ \t])|^[ \t]*{_FIELD.replace('?P<field>', '?P<alone>')}[ \t]*$)",
    re.IGNORECASE | re.MULTILINE,
)
_TRAILER = re.compile(r"^\s*(?:note|notes|explanation|analysis|reasoning|justification|evidence|comment)s?\s*[:：]",
                      re.IGNORECASE | re.MULTILINE)
_PLACEHOLDER = re.compile(r"^\[[^\]]*\]$")
_NONE_WORDS = {"none", "nothing", "null", "n/a", "na", "nil", "unknown", "unclear", "-", "--", "—"}
_NONE_HINTS = {"revealed", "evident", "mentioned", "available", "identified", "inferred", "disclosed", "information",
               "details", "known", "clear", "specified", "shared", "apparent", "indicated", "enough"}


def _is_nothing(value: str, *, whole_reply: bool = False) -> bool:
    """True for the ways a model says 'nothing revealed' ('None', 'N/A', 'None revealed yet.',
    'No personality traits are evident yet', '[inferred user profile details]'). A whole
    reply may also say it in a sentence ('The user has not revealed anything yet.')."""
    v = value.strip().strip("\"'“”").strip()
    if not v or _PLACEHOLDER.match(v):
        return True
    words = re.findall(r"[\w/'-]+|—", v.lower())
    if not words:
        return True
    if words[0] in _NONE_WORDS and len(words) <= 6:
        return True
    hinted = bool(_NONE_HINTS & set(words))
    if words[0] in ("no", "not", "nothing") and len(words) <= 9 and hinted:
        return True
    negated = any(w in ("no", "not", "nothing", "none", "never", "yet") or w.endswith("n't") for w in words)
    return whole_reply and negated and hinted and len(words) <= 20


def _section(value: str) -> str | None:
    """The text of one field: bullets and line breaks joined into one line; None for 'nothing'."""
    trailer = _TRAILER.search(value)
    if trailer:
        value = value[: trailer.start()]
    lines = [line for line in value.splitlines() if line.strip()]
    bullets = sum(bool(_BULLET.match(line)) for line in lines) > 1
    parts = [_BULLET.sub("", line).strip().rstrip(";") for line in lines]
    text = ("; " if bullets else " ").join(parts)
    text = text.strip().strip("\"“”").strip()
    return None if _is_nothing(text) else text


def read_persona_text(text: str) -> tuple[str | None, str | None]:
    """(profile, personalities) of an inducer reply in B.2.2's format; None where
    nothing is revealed. A reply without either label counts only when it says,
    as a whole, that nothing is revealed yet; otherwise ``ValueError``."""
    plain = _plain(text)
    found: dict[str, str | None] = {}
    matches = list(_LABEL.finditer(plain))
    for i, m in enumerate(matches):
        name = m.group("field") or m.group("alone")
        field = "profile" if name.lower() == "profile" else "personalities"
        end = matches[i + 1].start() if i + 1 < len(matches) else len(plain)
        if field not in found:  # the first of each label (a model may repeat the template after it)
            found[field] = _section(plain[m.end():end])
    if not found:
        if _is_nothing(" ".join(plain.split()), whole_reply=True):
            return None, None
        raise ValueError("no 'Profile:' or 'Personalities:' label in the reply")
    return found.get("profile"), found.get("personalities")


# -- B.3: a bare score 1-5 ----------------------------------------------------------------

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NUM = r"(?P<n>\d+(?:\.\d+)?|one|two|three|four|five)"
_LABELLED = [
    re.compile(r"\b(?:score|rating|rate|grade|alignment(?:\s+level)?)\b\s*(?:is|of|would\s+be|:|=|-|–)?\s*" + _NUM,
               re.IGNORECASE),
    re.compile(_NUM + r"\s*(?:/|out\s+of)\s*(?:5|five)\b", re.IGNORECASE),
    re.compile(r"\b(?:give|gave|rate|score|assign)\w*\s+(?:it|this|this\s+response|the\s+response)?\s*"
               r"(?:an?\s+)?" + _NUM + r"\b", re.IGNORECASE),
]
_LEADING = re.compile(r"^[(\[]?\s*(\d+(?:\.\d+)?)(?!\s*(?:/|out\s+of|-|–|to|and|or)\s*\d)\s*[)\]]?(?:[.:,;!\-–]|\s|$)",
                      re.IGNORECASE)
_RANGE = re.compile(r"\b[1-5]\s*(?:-|–|to|and)\s*[1-5]\b|(?:/|out\s+of)\s*5\b", re.IGNORECASE)
_BARE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w]|\.\d)")


def _score(token: str) -> int:
    value = _WORDS.get(token.lower())
    if value is None:
        number = float(token)
        if number != int(number):
            raise ValueError(f"the score {token} is not a whole number 1-5")
        value = int(number)
    if not 1 <= value <= 5:
        raise ValueError(f"the score {token} is outside 1-5")
    return value


def read_score_text(text: str) -> int:
    """The score 1-5 of a judge reply asked for a bare score: "4", "4.", "**4**",
    "Score: 4/5", "I'd give it a 4 out of 5", "Rating: four". ``ValueError`` when
    the reply holds no score, a score outside 1-5, or two different ones."""
    plain = " ".join(_plain(text).split())
    lead = _LEADING.match(plain)
    if lead:  # the bare score asked for, then words
        return _score(lead.group(1))
    for pattern in _LABELLED:
        values = {_score(m.group("n")) for m in pattern.finditer(plain)}
        if len(values) == 1:
            return values.pop()
        if len(values) > 1:
            raise ValueError(f"the reply names several scores ({', '.join(map(str, sorted(values)))})")
    candidates = {m.group(1) for m in _BARE.finditer(_RANGE.sub(" ", plain))}
    if not candidates:
        raise ValueError("no score 1-5 in the reply")
    values = {_score(c) for c in candidates}
    if len(values) > 1:
        raise ValueError(f"the reply names several scores ({', '.join(map(str, sorted(values)))})")
    return values.pop()


# -- the preference check: "A" or "B" -------------------------------------------------------

_CHOICE = re.compile(r"(?:\bresponse\s+|\boption\s+|\breply\s+)?(?<![\w'])(?P<c>[AB])(?![\w'])", re.IGNORECASE)
_PREFERRED = re.compile(
    r"(?:better|preferred|prefer|choose|choice|pick|answer|winner)\w*\s*(?:response|reply|option)?\s*"
    r"(?:is|would\s+be|:|=)?\s*(?:response\s+|option\s+)?(?P<c>[AB])(?![\w'])"
    r"|(?:response\s+|option\s+)?(?<![\w'])(?P<d>[AB])\s+is\s+(?:the\s+)?(?:better|preferred|more)",
    re.IGNORECASE,
)


def read_choice_text(text: str) -> str:
    """"A" or "B" from a preference reply: "B", "**A**", "Response B.", "The better
    response is A". ``ValueError`` when it names neither, or both without saying which is better."""
    plain = " ".join(_plain(text).split())
    if plain.strip(" .!()[]\"'").upper() in ("A", "B"):  # the bare letter asked for, in any case
        return plain.strip(" .!()[]\"'").upper()
    direct = {m.group("c").upper() for m in _CHOICE.finditer(plain)
              if m.group("c").isupper() or m.group(0).lower().startswith(("response", "option", "reply"))}
    if len(direct) == 1:
        return direct.pop()
    stated = {(m.group("c") or m.group("d")).upper() for m in _PREFERRED.finditer(plain)}
    if len(stated) == 1:
        return stated.pop()
    raise ValueError("the reply names neither A nor B" if not direct else "the reply names both A and B")
