"""What a generate run will ask of its models, before the first call: the
number of LLM calls per role (exact, retries aside) and the tokens they
come to when every reply reaches its ``max_tokens``, from the prompts'
lengths, the personas' lengths and each role's limit.

Every reply at its limit makes every later prompt carry the longest
history, so the reply lengths are a ceiling; the conversion is about four
characters per token (English text with GPT-4o's or Llama's tokenizers),
plus a few tokens of chat template per message: an approximation, not a
tokenizer count (benchmarks/generation_estimate.py measures it against a
real server). Retries are not counted. Path mode grows ``turns`` nodes per
tree; full mode grows up to ``node_budget`` nodes per tree, counted
breadth-first (depth d holds 2^(d-1) nodes).

    estimate = estimate_generation(settings, prompts, limits, personas)
    print(estimate.line())          # one sentence for people
    estimate.as_dict()              # for the run's stats
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..environment import Persona
from ._generate import GenerationSettings

__all__ = ["CHARS_PER_TOKEN", "EVALUATION_ROLES", "GenerationEstimate", "RoleLoad", "estimate_evaluation",
           "estimate_generation"]

CHARS_PER_TOKEN = 4.0       # English text: about four characters per token (an approximation)
MESSAGE_OVERHEAD = 4        # chat-template tokens around each message (role markers)
CUE_TOKENS = 16             # the user role-player's "(Continue the conversation. ...)" cue
PROBE_TEXT_TOKENS = 60      # a judge probe's user message and reply template, without the persona's pieces

_PROMPT_OF = {"user": "user", "inducer": "inducer", "preferred": "preferred", "rejected": "rejected",
              "preference_judge": "preference"}


def _tokens(chars: float) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def _template_chars(template: str) -> int:
    """Characters of a prompt template without its {placeholders}."""
    return sum(len(literal) for literal, *_ in string.Formatter().parse(template))


@dataclass(frozen=True)
class RoleLoad:
    """One role's share: calls, and its prompt and completion tokens with every reply at its limit."""

    calls: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class GenerationEstimate:
    trees: int
    turns: int
    mode: str
    nodes: int
    roles: dict[str, RoleLoad]

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.roles.values())

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.roles.values())

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.roles.values())

    def as_dict(self) -> dict:
        return {"trees": self.trees, "turns": self.turns, "mode": self.mode, "nodes": self.nodes,
                "calls": self.calls, "prompt_tokens_at_limits": self.prompt_tokens,
                "completion_tokens_at_limits": self.completion_tokens,
                "roles": {k: vars(v) for k, v in self.roles.items()},
                "basis": f"every reply at its max_tokens, about {CHARS_PER_TOKEN:g} characters per token, retries "
                         "not counted"}

    def line(self) -> str:
        per_role = ", ".join(f"{role} {load.calls:,}" for role, load in self.roles.items())
        return (f"{self.trees:,} trees x {self.turns} turns ({self.mode}) = {self.nodes:,} nodes: {self.calls:,} "
                f"LLM calls ({per_role}); ~{_short(self.prompt_tokens)} prompt + "
                f"~{_short(self.completion_tokens)} completion tokens if every reply reaches its max_tokens "
                f"(about {CHARS_PER_TOKEN:g} characters per token; retries not counted)")


def _short(n: int) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:,.1f}{unit}"
    return str(n)


def _depths(settings: GenerationSettings) -> list[int]:
    """How many nodes each tree has at turn 1, 2, ... (index 0 = turn 1)."""
    if settings.mode == "path":
        return [1] * settings.turns
    left, counts = settings.node_budget, []
    for d in range(1, settings.turns + 1):
        n = min(2 ** (d - 1), left)
        if n <= 0:
            break
        counts.append(n)
        left -= n
    return counts


def estimate_generation(settings: GenerationSettings, prompts: Mapping[str, str], limits: Mapping[str, int],
                        personas: Sequence[Persona]) -> GenerationEstimate:
    """The calls and token bound of growing one tree per persona in ``personas``
    (``limits``: each role's max_tokens; ``prompts``: the prompt templates)."""
    trees = len(personas)
    persona_chars = (sum(len(p.profile) + len(p.personality) for p in personas) / trees) if trees else 0.0
    persona = _tokens(persona_chars)
    roles = ["user", "inducer", "preferred", "rejected"] + (["preference_judge"] if settings.preference_check else [])
    template = {r: _tokens(_template_chars(str(prompts.get(_PROMPT_OF[r], "")))) for r in roles}
    m, s = limits["user"], max(limits["preferred"], limits["rejected"])
    counts = _depths(settings)
    totals = {r: [0, 0, 0] for r in roles}
    for i, n in enumerate(counts, start=1):
        history = (i - 1) * (m + s + 2 * MESSAGE_OVERHEAD)  # m_1, s_1, ..., m_{i-1}, s_{i-1}
        prompt = {
            "user": template["user"] + persona + history + CUE_TOKENS + 2 * MESSAGE_OVERHEAD,
            "inducer": template["inducer"] + persona + history + m + MESSAGE_OVERHEAD,
            "preferred": template["preferred"] + history + m + limits["inducer"] + MESSAGE_OVERHEAD,
            "rejected": template["rejected"] + history + m + MESSAGE_OVERHEAD,
            "preference_judge": template.get("preference_judge", 0) + persona + history + m
            + limits["preferred"] + limits["rejected"] + MESSAGE_OVERHEAD,
        }
        for r in roles:
            calls = n * trees * (2 if r == "preference_judge" else 1)  # the check asks in both orders
            totals[r][0] += calls
            totals[r][1] += calls * prompt[r]
            totals[r][2] += calls * limits[r]
    return GenerationEstimate(trees, settings.turns, settings.mode, sum(counts) * trees,
                              {r: RoleLoad(*totals[r]) for r in roles})


# the roles of an evaluation's calls as ``llm_calls`` records them (the preference judge's probes are
# recorded as judge_check too; the plan shows them apart because their model may differ)
EVALUATION_ROLES = ("user", "evaluated", "judge", "judge_check", "judge_check_preference", "second_judge")


def estimate_evaluation(cases: Sequence[Persona], turns: int, prompts: Mapping[str, str], limits: Mapping[str, int],
                        *, probes: int, preference_probes: int, second_judge: bool) -> dict[str, RoleLoad]:
    """The calls and token bound of an evaluation of ``cases`` x ``turns``: the
    role-play user and the evaluated model once per turn, the judge once per
    reply (a second judge again), ``probes`` judge-check probes of two judge
    calls each and ``preference_probes`` of two preference-judge calls each.
    ``limits``: max_tokens of user, evaluated, judge and preference_judge.
    Every reply at its limit, as ``estimate_generation`` counts them."""
    n = len(cases)
    persona = _tokens(sum(len(c.profile) + len(c.personality) for c in cases) / n) if n else 0
    template = {k: _tokens(_template_chars(str(prompts.get(k, "")))) for k in ("user", "judge", "preference")}
    m, s = limits["user"], limits["evaluated"]
    totals = {r: [0, 0, 0] for r in EVALUATION_ROLES}

    def add(role: str, calls: int, prompt: int, completion: int) -> None:
        totals[role][0] += calls
        totals[role][1] += calls * prompt
        totals[role][2] += calls * completion

    judge_prompt = template["judge"] + persona + m + s + MESSAGE_OVERHEAD  # one message, one reply
    for i in range(1, turns + 1):
        history = (i - 1) * (m + s + 2 * MESSAGE_OVERHEAD)
        add("user", n, template["user"] + persona + history + CUE_TOKENS + 2 * MESSAGE_OVERHEAD, m)
        add("evaluated", n, history + m + MESSAGE_OVERHEAD, s)
        add("judge", n, judge_prompt, limits["judge"])
        if second_judge:
            add("second_judge", n, judge_prompt, limits["judge"])
    probe_reply = PROBE_TEXT_TOKENS + persona // 2  # a template naming two facts and one trait of a persona
    add("judge_check", 2 * probes, template["judge"] + persona + probe_reply + MESSAGE_OVERHEAD, limits["judge"])
    add("judge_check_preference", 2 * preference_probes,
        template["preference"] + persona + 2 * probe_reply + MESSAGE_OVERHEAD, limits["preference_judge"])
    return {r: RoleLoad(*t) for r, t in totals.items() if t[0]}
