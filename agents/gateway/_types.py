"""The gateway's typed surface: what a role sends and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling parameters of one call. ``seed`` makes llama.cpp / vLLM / OpenAI
    replies reproducible where the backend supports it. ``logprobs``: how many
    top log-probabilities per token to ask for (OpenAI ``top_logprobs``;
    None = none); the reply carries them in ``ChatResult.extra["logprobs"]``."""

    temperature: float = 0.7
    max_tokens: int = 256
    top_p: float = 1.0
    seed: int | None = None
    logprobs: int | None = None

    def as_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens, "top_p": self.top_p}
        if self.seed is not None:
            params["seed"] = self.seed
        if self.logprobs is not None:
            params["logprobs"] = True
            params["top_logprobs"] = self.logprobs
        return params


@dataclass(frozen=True, slots=True)
class CallContext:
    """Where a call belongs, so its record can be found again (tree/turn/branch
    for generation, case_id for evaluation)."""

    run_id: int | None = None
    tree_id: int | None = None
    turn: int | None = None
    branch: str | None = None
    case_id: int | None = None


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    parsed: BaseModel | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 1
    cached: bool = False
    endpoint: str = ""
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. "logprobs": choices[0].logprobs as plain JSON
    finish_reason: str | None = None  # "stop", "length" (cut at max_tokens or max_reply_chars), ...; None = unknown


class ChatModel(Protocol):
    """What every role talks to: one async call. The real implementation is
    ``aloesim.agents.gateway.Gateway``'s per-backend client; tests use
    ``aloesim.agents.testing.ScriptedModel``."""

    name: str

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        role: str,
        sampling: Sampling | None = None,
        schema: type[BaseModel] | None = None,  # JSON schema output, or a TextOutput read from plain text
        context: CallContext | None = None,
    ) -> ChatResult: ...
