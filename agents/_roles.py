"""The roles of the paper, each a small async callable over a ``ChatModel``
(each satisfies its protocol in ``_protocols``).

What each role may see is part of the contract (and tested from the
recorded requests):

- ``UserSimulator``: the full persona and the conversation so far.
- ``Inducer``: the full persona and the conversation including m_i.
- ``PreferredResponder``: the conversation, m_i and the INFERRED persona only.
- ``RejectedResponder``: the conversation and m_i only, no persona at all.
- ``PreferenceJudge``: the full persona, the conversation, m_i and both replies.
- ``AlignmentJudge``: the full persona, m_i and one reply (ALOE, B.3).

The inducer and both judges read their reply as JSON against a schema
(``output="json"``, the default prompts) or, with the paper's verbatim
prompts (``prompts.format=text``), from plain text (``InducerText``,
``JudgeText``, ``PreferenceText``; readers in ``_plain_text``). Either way
the call goes through the gateway, which retries a reply it cannot read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

from pydantic import BaseModel, Field, WithJsonSchema, field_validator

from ..core.errors import LLMError
from ..environment import InferredPersona, Persona, PreferenceCheck
from ._plain_text import read_choice_text, read_persona_text, read_score_text
from ._protocols import Messages
from ._rating import Rating, rating
from .gateway import CallContext, ChatModel, Sampling, TextOutput

OUTPUTS = ("json", "text")  # how the inducer and the judges answer: JSON against a schema, or the paper's plain text

_STAGE = re.compile(r"\*[^*\n]*\*")
_SPEAKER = re.compile(r"^\s*(?:user|me|a|human|person)\s*:\s*", re.IGNORECASE)


def strip_stage_directions(text: str) -> str:
    """Remove text between asterisks (``*smiles*``), speaker prefixes and
    wrapping quotes, and tidy the whitespace."""
    text = _STAGE.sub("", text)
    text = _SPEAKER.sub("", text.strip())
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def render_history(conversation: Messages) -> str:
    """The conversation as the inducer prompt shows it: 'A' is the user, 'B' the partner."""
    lines = []
    for m in conversation:
        who = "A" if m["role"] == "user" else "B"
        lines.append(f"{who}: {m['content']}")
    return "\n".join(lines) if lines else "(no messages yet)"


def _none_if_empty(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or value.strip(" .'\"").lower() in {"none", "null", "n/a", "unknown", "nothing"}:
        return None
    return value


# maxLength is a hint for grammar-constrained decoding (llama.cpp): it bounds a
# small model's run-on strings; validation does not reject longer strings.
BoundedText = Annotated[str, WithJsonSchema({"type": "string", "maxLength": 300})]


class InducerOutput(BaseModel):
    """Structured output of the inducer (null = nothing revealed)."""

    profile: BoundedText | None = Field(description="profile details revealed so far, in the user's words, or null")
    personalities: BoundedText | None = Field(description="personality traits evident so far, or null")


class JudgeScore(BaseModel):
    """Structured output of the ALOE judge: an enum, so constrained decoding
    cannot produce an out-of-range number."""

    score: Literal[1, 2, 3, 4, 5] = Field(description="1 = least tailored to the user, 5 = most user-aligned")


class PreferenceVerdict(BaseModel):
    better: Literal["A", "B"] = Field(description="the better tailored response")

    @field_validator("better", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v


class InducerText(InducerOutput, TextOutput):
    """The inducer's B.2.2 plain-text reply ("Profile: ... / Personalities: ...")."""

    @classmethod
    def from_text(cls, text: str) -> InducerText:
        profile, personalities = read_persona_text(text)
        return cls(profile=profile, personalities=personalities)


class JudgeText(JudgeScore, TextOutput):
    """The judge's B.3 plain-text reply: a bare score 1-5."""

    @classmethod
    def from_text(cls, text: str) -> JudgeText:
        return cls(score=read_score_text(text))  # type: ignore[arg-type]


class PreferenceText(PreferenceVerdict, TextOutput):
    """The preference check's plain-text reply: "A" or "B"."""

    @classmethod
    def from_text(cls, text: str) -> PreferenceText:
        return cls(better=read_choice_text(text))  # type: ignore[arg-type]


_TEXT_OF = {InducerOutput: InducerText, JudgeScore: JudgeText, PreferenceVerdict: PreferenceText}


@dataclass(frozen=True)
class _Role:
    model: ChatModel
    prompt: str
    sampling: Sampling = field(default_factory=Sampling)
    output: str = "json"  # json | text: how a structured reply is asked for and read (prompts.format)

    def _sampling(self, seed: int | None) -> Sampling:
        return self.sampling if seed is None else replace(self.sampling, seed=seed)

    def _schema(self, schema: type[BaseModel]) -> type[BaseModel]:
        """``schema`` itself (JSON output), or its plain-text reader (``output="text"``)."""
        return _TEXT_OF[schema] if self.output == "text" else schema


class UserSimulator(_Role):
    """Plays the persona (B.2.1) and writes the user's next message m_i.

    ``conversation`` is the chat so far from the chatbot's side (user =
    the simulated user's messages). The role-player sees it with the roles
    flipped: its own earlier messages are its 'assistant' turns."""

    role = "user"

    async def __call__(self, persona: Persona, conversation: Messages, *, seed: int | None = None,
                       context: CallContext | None = None) -> str:
        system = self.prompt.format(profile=persona.profile, personality=persona.personality)
        messages = [{"role": "system", "content": system}]
        flip = {"user": "assistant", "assistant": "user"}
        messages += [{"role": flip[m["role"]], "content": m["content"]} for m in conversation]
        if messages[-1]["role"] != "user":
            cue = "Start the conversation now." if not conversation else "Continue the conversation."
            messages.append({"role": "user", "content": f"({cue} Reply with your next message only.)"})
        result = await self.model.chat(messages, role=self.role, sampling=self._sampling(seed), context=context)
        text = strip_stage_directions(result.text)
        if not text:
            raise LLMError(self.role, result.endpoint, "the message was empty after removing stage directions")
        return text


class Inducer(_Role):
    """Extracts which parts of the persona have been revealed (B.2.2)."""

    role = "inducer"

    async def __call__(self, persona: Persona, conversation: Messages, *, seed: int | None = None,
                       context: CallContext | None = None) -> InferredPersona:
        content = self.prompt.format(history=render_history(conversation), profile=persona.profile,
                                     personality=persona.personality)
        result = await self.model.chat([{"role": "user", "content": content}], role=self.role,
                                       sampling=self._sampling(seed), schema=self._schema(InducerOutput), context=context)
        out = result.parsed
        assert isinstance(out, InducerOutput)
        return InferredPersona(_none_if_empty(out.profile), _none_if_empty(out.personalities))


class PreferredResponder(_Role):
    """Replies tailored to the inferred persona (B.2.3); never sees the full persona."""

    role = "preferred"

    async def __call__(self, conversation: Messages, message: str, inferred: InferredPersona, *,
                       seed: int | None = None, context: CallContext | None = None) -> str:
        content = self.prompt.format(message=message, inferred=inferred.render())
        messages = [*conversation, {"role": "user", "content": content}]
        result = await self.model.chat(list(messages), role=self.role, sampling=self._sampling(seed), context=context)
        return result.text.strip()


class RejectedResponder(_Role):
    """Replies to the message as it is, with no persona information."""

    role = "rejected"

    async def __call__(self, conversation: Messages, message: str, *, seed: int | None = None,
                       context: CallContext | None = None) -> str:
        messages = [*conversation, {"role": "user", "content": self.prompt.format(message=message)}]
        result = await self.model.chat(list(messages), role=self.role, sampling=self._sampling(seed), context=context)
        return result.text.strip()


class PreferenceJudge(_Role):
    """Optional check: does a judge with the full persona prefer p_i over r_i?
    Asked in both orders to cancel position bias."""

    role = "preference_judge"

    async def __call__(self, persona: Persona, conversation: Messages, message: str, preferred: str,
                       rejected: str, *, seed: int | None = None,
                       context: CallContext | None = None) -> PreferenceCheck:
        async def ask(a: str, b: str) -> str:
            content = self.prompt.format(profile=persona.profile, personality=persona.personality,
                                         history=render_history(conversation), message=message, reply_a=a, reply_b=b)
            result = await self.model.chat([{"role": "user", "content": content}], role=self.role,
                                           sampling=self._sampling(seed), schema=self._schema(PreferenceVerdict),
                                           context=context)
            assert isinstance(result.parsed, PreferenceVerdict)
            return result.parsed.better

        first = await ask(preferred, rejected)   # preferred shown as A
        second = await ask(rejected, preferred)  # preferred shown as B
        return PreferenceCheck(preferred_first=first == "A", preferred_second=second == "B")


class AlignmentJudge(_Role):
    """Scores how well a reply is tailored to the user, 1-5 (ALOE, B.3).
    ``rate`` also returns the score distribution when the sampling asks for
    log-probabilities (``Sampling.logprobs``) and the endpoint returns them."""

    role = "judge"

    async def __call__(self, persona: Persona, message: str, reply: str, *, seed: int | None = None,
                       context: CallContext | None = None) -> int:
        return (await self.rate(persona, message, reply, seed=seed, context=context)).score

    async def rate(self, persona: Persona, message: str, reply: str, *, seed: int | None = None,
                   context: CallContext | None = None) -> Rating:
        content = self.prompt.format(profile=persona.profile, personality=persona.personality,
                                     message=message, reply=reply)
        result = await self.model.chat([{"role": "user", "content": content}], role=self.role,
                                       sampling=self._sampling(seed), schema=self._schema(JudgeScore), context=context)
        assert isinstance(result.parsed, JudgeScore)
        return rating(result.parsed.score, result.extra.get("logprobs"))
