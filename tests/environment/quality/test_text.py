"""The text detectors on realistic text: persona recitation (leakage) and
the simulated user speaking as the AI (role flips)."""

from __future__ import annotations

import pytest

from aloesim.environment.quality import (
    PersonaOverlap,
    QualitySettings,
    normalized,
    role_flip,
    template_text,
    words,
)

PROFILE = ("I am a retired history teacher from Lyon who grows tomatoes and heirloom beans in a community garden"
           " and volunteers at the local library on weekends.")
PERSONALITY = "Warm, talkative and curious; loves long stories and gentle humour."
S = QualitySettings()


def leaks(message: str) -> bool:
    overlap = PersonaOverlap(PROFILE, PERSONALITY, run_words=S.leak_run_words)
    return overlap.recited(message).leaks(S.leak_min_words)


def test_words_fold_case_apostrophes_and_punctuation() -> None:
    assert words("I’m  RETIRED, from Lyon!") == ["i'm", "retired", "from", "lyon"]
    assert normalized("  Okay...  SURE!! ") == "okay sure"
    assert words("") == []


def test_recited_words_count_runs_of_four_or_more_in_any_order() -> None:
    overlap = PersonaOverlap(PROFILE, PERSONALITY, run_words=4)
    r = overlap.recited("Honestly, I grow tomatoes and heirloom beans in a community garden, it keeps me busy.")
    # "tomatoes and heirloom beans in a community garden": 8 of the 15 words ("grow" != "grows")
    assert (r.words, r.longest, r.source, r.text) == (8, 8, "profile", "tomatoes and heirloom beans in a community garden")
    assert r.share == pytest.approx(8 / 15)
    # two clauses, in the opposite order of the profile, plus personality traits: 6 + 5 + 4 words
    r = overlap.recited("I volunteer at the local library on weekends, I'm a retired history teacher from Lyon, "
                        "and I'm warm, talkative and curious.")
    assert (r.words, r.longest) == (6 + 6 + 4, 6)
    # runs of three words or fewer are ordinary English, not recitation
    assert overlap.recited("I love long stories and my garden.").words == 0
    assert overlap.recited("").words == 0 and overlap.recited("Bonjour!").source is None


@pytest.mark.parametrize("message", [
    # recites a long stretch of the profile
    "Hi! I am a retired history teacher from Lyon who grows tomatoes and heirloom beans.",
    # several facts copied clause by clause, reordered
    "I volunteer at the local library on weekends and I'm a retired history teacher from Lyon.",
    # the persona card read out, traits included
    "Well, I'm warm, talkative and curious; loves long stories and gentle humour, that's me.",
])
def test_recitations_leak(message: str) -> None:
    assert leaks(message)


@pytest.mark.parametrize("message", [
    "Hi! I spent the morning in my garden, the tomatoes are finally turning red.",
    "I used to teach history, so I can't help correcting people about dates.",
    "Do you have any tips for keeping slugs off beans?",
    "I love long stories, so take your time!",  # a trait in the user's own words
    "Retired history teacher from Lyon here!",  # one fact, verbatim: partial revelation, as the prompt asks
    "Lyon is lovely in the spring, you should visit the local library there.",
])
def test_natural_self_disclosure_does_not_leak(message: str) -> None:
    assert not leaks(message)


ROLE_FLIPS = [
    ("As an AI, I don't have personal experiences, but I can tell you about gardening.", "ai_self_reference"),
    ("I'm just an AI language model, so I can't taste food.", "ai_self_reference"),
    ("I am a chatbot designed to help you with your questions.", "ai_self_reference"),
    ("I’m an AI, so I don’t really have a favourite movie.", "ai_self_reference"),
    ("I don't have personal opinions, but many people enjoy hiking.", "no_human_experience"),
    ("I don't have feelings like humans do, but thanks for asking!", "no_human_experience"),
    ("Based on my training data, that is quite rare.", "model_limits"),
    ("My knowledge cutoff is 2023, so I may not know the latest results.", "model_limits"),
    ("I can't browse the internet, but generally speaking it is safe.", "model_limits"),
    ("Hello! How can I help you today?", "offers_help"),
    ("Hi there! How may I assist you?", "offers_help"),
    ("That's a great plan. Is there anything else I can help you with?", "offers_help"),
    ("What can I help you with today?", "offers_help"),
    ("I'm here to help you with anything you need.", "offers_help"),
    ("I'd be happy to help you with that!", "offers_help"),
    ("Glad I could help! Enjoy your trip.", "offers_help"),
    ("Let me know if you have any other questions.", "assistant_closing"),
    ("Feel free to ask if you need more tips!", "assistant_closing"),
    ("Here's a recipe for sourdough. I hope this helps!", "assistant_closing"),
    ("Certainly! Here are some tips for growing tomatoes: 1. Water regularly.", "assistant_opener"),
    ("Sure! Here's a quick workout plan for you.", "assistant_opener"),
    ("I'm sorry, but I can't assist with that request.", "refusal"),
]

HUMAN = [
    "Can you help me plan a trip to Lisbon?",
    "I'm a nurse and I help patients every day.",
    "As an artist, I love playing with colors.",
    "I was wondering how I can help my son with his math homework.",
    "I'm an AI researcher at a university lab, so this topic is close to my heart.",
    "As an AI engineer I spend my days debugging models.",
    "Do you think AI will take over my job as a translator?",
    "I don't have personal experience with boats, to be honest.",
    "I don't have feelings for him anymore, it's over.",
    "I hope this rain helps my tomatoes grow.",
    "I'm here to help my mom move house this weekend.",
    "I'd be happy to help my neighbor with her garden.",
    "Let me know if you have any good book ideas!",
    "Sure, I'd love to hear more about that.",
    "Of course I remember! We went there last summer.",
    "I work as a virtual assistant for a law firm, mostly scheduling.",
    "I'm sorry, but I can't stand pineapple on pizza.",
    "My training data for the marathon is all in a spreadsheet.",
    "What can I cook with leftover rice?",
    "How can I help my dog get over his fear of thunder?",
    "Feel free to tell me what you think!",
    "I'm a teaching assistant at the high school.",
    "Honestly, chatbots like you are pretty impressive.",
    "I asked an AI to write my wedding speech, is that bad?",
]


@pytest.mark.parametrize(("message", "pattern"), ROLE_FLIPS)
def test_role_flips_are_detected_with_the_pattern_that_matched(message: str, pattern: str) -> None:
    assert role_flip(message) == pattern


@pytest.mark.parametrize("message", HUMAN)
def test_human_messages_about_ai_help_or_assistants_are_not_role_flips(message: str) -> None:
    assert role_flip(message) is None


USER_PROMPT = ("Your task is to play the role of a person with the following profile and personalities traits and"
               " chat with a chatbot:\nProfile: {profile}\nPersonalities: {personality}\nPlease follow the"
               " requirements:\n1. You should determine the topic of conversation based on the given profile.")


def test_reciting_the_role_play_instructions_leaks_too() -> None:
    assert template_text("a {profile} b {{\"score\": N}} c {personality}.") == ["a ", ' b {"score": N} c ', "."]
    overlap = PersonaOverlap(PROFILE, PERSONALITY, instructions=template_text(USER_PROMPT))
    # seen from SmolLM2-135M as the user role-player
    r = overlap.recited("(Impromptitón:)\n1. You should determine the topic of conversation based on the given "
                        "profile, not include a blank line.")
    assert (r.words, r.source) == (13, "instructions") and r.leaks(S.leak_min_words)
    assert not overlap.recited("Let's chat about the topic of gardening!").leaks(S.leak_min_words)
