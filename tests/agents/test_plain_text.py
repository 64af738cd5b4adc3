"""The readers of the paper's plain-text outputs (``prompts=paper_verbatim``), on
replies of the shapes models really give: the format asked for, extra words,
markdown, bullets, scores in sentences, "nothing revealed yet"; and the replies
they must refuse (so the gateway retries them) rather than guess."""

from __future__ import annotations

import pytest

from aloesim.agents import InducerText, JudgeText, PreferenceText
from aloesim.agents._plain_text import read_choice_text, read_persona_text, read_score_text

# -- B.3: the judge's bare score ------------------------------------------------------------

SCORES = [
    ("4", 4),
    ("4.", 4),
    (" 5\n", 5),
    ("**4**", 4),
    ("`3`", 3),
    ("(4)", 4),
    ("Score: 4/5", 4),
    ("**Score:** 5", 5),
    ("Score (1-5): 2", 2),
    ("Rating: four", 4),
    ("4/5", 4),
    ("5 out of 5", 5),
    ("I'd give it a 4 out of 5", 4),
    ("On a scale of 1-5, I would rate this response a 4.", 4),
    ("3\n\nThe reply mentions 2 of her hobbies but ignores her humour.", 3),
    ("The response deserves a score of 2 because it is generic.", 2),
    ("Alignment level: 1", 1),
]


@pytest.mark.parametrize(("reply", "score"), SCORES, ids=[r for r, _ in SCORES])
def test_score_reader_takes_what_the_reply_says(reply: str, score: int) -> None:
    assert read_score_text(reply) == score
    assert JudgeText.from_text(reply).score == score


REFUSED_SCORES = [
    "None",                       # no score at all
    "",                           # empty
    "The response is well tailored to the user.",
    "4.5",                        # not a whole score
    "Score: 4.5/5",
    "7",                          # outside 1-5
    "Score: 0",
    "10/10",
    "3 or 4",                     # two readings
    "between 3 and 4",
    "4-5",
    "Score: 4\nScore: 5",
]


@pytest.mark.parametrize("reply", REFUSED_SCORES)
def test_score_reader_refuses_what_it_cannot_read(reply: str) -> None:
    with pytest.raises(ValueError):
        read_score_text(reply)


# -- B.2.2: "Profile: ... / Personalities: ..." ----------------------------------------------

PERSONAS = [
    ("Profile: He/She is a college student studying anthropology.\nPersonalities: None",
     ("He/She is a college student studying anthropology.", None)),
    ("**Profile:** He/She plays the guitar, loves indie films.\n**Personalities:** He/She has a strong sense of humor.",
     ("He/She plays the guitar, loves indie films.", "He/She has a strong sense of humor.")),
    (("Here are my findings:\n\nProfile: He/She is a nurse.\nPersonalities: None evident yet.\n\n"
      "Note: I only used what A said."),
     ("He/She is a nurse.", None)),
    ("### Profile\n- He/She is a nurse\n- has two kids\n\n### Personalities\n- witty\n- patient",
     ("He/She is a nurse; has two kids", "witty; patient")),
    ("Profile: He/She lives in LA. Personalities: extroverted, lively",
     ("He/She lives in LA.", "extroverted, lively")),
    ("Personalities: cheerful and talkative\nProfile: N/A", (None, "cheerful and talkative")),
    ("Inferred profile: He/She is an artist.\nInferred personality traits: None", ("He/She is an artist.", None)),
    ("Profile - He/She is an artist\nPersonalities - None", ("He/She is an artist", None)),
    ("Profile: He/She works night shifts\nat the hospital.\nPersonalities: dry humour",
     ("He/She works night shifts at the hospital.", "dry humour")),
    ("Profile: No kids, lives in Paris.\nPersonalities: Not a morning person.",
     ("No kids, lives in Paris.", "Not a morning person.")),
    ("Profile: He/She is a baker.", ("He/She is a baker.", None)),
    # nothing revealed yet, said in the ways models say it
    ("Profile: None\nPersonalities: None", (None, None)),
    ("Profile: Nothing revealed yet.\nPersonalities: No personality traits are evident yet.", (None, None)),
    ("Profile:\nPersonalities:", (None, None)),
    ("Profile: [inferred user profile details]\nPersonalities: [inferred user personality traits]", (None, None)),
    ("None", (None, None)),
    ("Nothing has been revealed yet.", (None, None)),
    ("The user has not revealed any profile details or personality traits yet.", (None, None)),
]


@pytest.mark.parametrize(("reply", "expected"), PERSONAS, ids=[r[:40] for r, _ in PERSONAS])
def test_persona_reader_takes_both_fields(reply: str, expected: tuple[str | None, str | None]) -> None:
    assert read_persona_text(reply) == expected
    parsed = InducerText.from_text(reply)
    assert (parsed.profile, parsed.personalities) == expected


@pytest.mark.parametrize("reply", [
    "He/She is a student who likes guitar.",   # no label: profile or personality? not guessed
    "Sure! Let me analyse the conversation step by step.",
    "",
])
def test_persona_reader_refuses_unlabelled_text(reply: str) -> None:
    if not reply:
        assert read_persona_text(reply) == (None, None)  # an empty reply says nothing (the gateway retries it anyway)
        return
    with pytest.raises(ValueError, match="label"):
        read_persona_text(reply)


# -- the preference check: "A" or "B" ------------------------------------------------------------

CHOICES = [("A", "A"), ("B", "B"), ("**A**", "A"), ("Response B.", "B"), ("The better response is A.", "A"),
           ("A is better than B.", "A"), ("A better reply is B", "B"), ("I prefer B over A", "B"), ("b", "B"), ("a.", "A")]


@pytest.mark.parametrize(("reply", "choice"), CHOICES)
def test_choice_reader(reply: str, choice: str) -> None:
    assert read_choice_text(reply) == PreferenceText.from_text(reply).better == choice


@pytest.mark.parametrize("reply", ["Neither", "Both A and B", "It depends.", "a response would be nice"])
def test_choice_reader_refuses(reply: str) -> None:
    with pytest.raises(ValueError):
        read_choice_text(reply)
