"""A scripted stand-in for a model, behind the same ``ChatModel`` protocol.

For fast unit tests of logic only; every feature also has an integration
test against the real embedded server.

    model = ScriptedModel(lambda req: f"reply to {req.messages[-1]['content']}")
    result = await model.chat([{"role": "user", "content": "hi"}], role="user")
    model.requests[0].role == "user"
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from pydantic import BaseModel, ValidationError

from ..core.errors import LLMError, StructuredOutputError
from .gateway._outputs import is_text_output
from .gateway._types import CallContext, ChatResult, Sampling

__all__ = ["ScriptedModel", "ScriptedRequest"]


@dataclass(frozen=True)
class ScriptedRequest:
    role: str
    messages: list[dict[str, str]]
    sampling: Sampling | None
    schema: type[BaseModel] | None
    context: CallContext | None


Reply = str | dict | BaseModel | Exception
Script = Callable[[ScriptedRequest], Reply | Awaitable[Reply]]


class ScriptedModel:
    """Answers each call with ``script(request)``. A dict (or model) answer to a
    call with a schema is validated against it; a text answer to a call with a
    ``TextOutput`` schema is read by its ``from_text``; an Exception is raised as an
    ``LLMError`` carrying the role. ``delay`` seconds are awaited per call.
    ``peak_in_flight`` records the most concurrent calls seen."""

    def __init__(self, script: Script, *, name: str = "scripted", delay: float = 0.0) -> None:
        self.script, self.name, self.delay = script, name, delay
        self.requests: list[ScriptedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        role: str,
        sampling: Sampling | None = None,
        schema: type[BaseModel] | None = None,
        context: CallContext | None = None,
    ) -> ChatResult:
        req = ScriptedRequest(role, [dict(m) for m in messages], sampling, schema, context)
        self.requests.append(req)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await anyio.sleep(self.delay)
            answer = self.script(req)
            if isinstance(answer, Awaitable):
                answer = await answer
        finally:
            self.in_flight -= 1
        if isinstance(answer, Exception):
            raise LLMError(role, "scripted", str(answer))
        parsed = None
        if is_text_output(schema) and isinstance(answer, str):
            try:
                parsed = schema.from_text(answer)  # type: ignore[union-attr]
            except ValueError as exc:
                raise StructuredOutputError(role, "scripted", f"reply not readable as {schema.__name__}: {exc}") from None
            text = answer
        elif schema is not None:
            if isinstance(answer, BaseModel):
                answer = answer.model_dump()
            try:
                parsed = schema.model_validate(answer if isinstance(answer, dict) else json.loads(answer))
            except (ValueError, ValidationError) as exc:
                raise StructuredOutputError(role, "scripted", f"reply does not match schema: {exc}") from None
            text = parsed.model_dump_json()
        else:
            text = answer if isinstance(answer, str) else json.dumps(answer)
        return ChatResult(text=text, parsed=parsed, endpoint="scripted", model=self.name,
                          prompt_tokens=sum(len(m["content"].split()) for m in messages),
                          completion_tokens=len(text.split()))
