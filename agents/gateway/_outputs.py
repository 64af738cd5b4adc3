"""How a reply's form is asked for and read: a JSON schema sent as
``response_format`` in each server family's dialect (``schema_json``,
``response_format``), or a ``TextOutput`` that sends nothing and reads the
plain reply with its ``from_text`` (the paper's verbatim prompts). Either
way a reply that cannot be read is an invalid output the gateway retries.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel

__all__ = ["TextOutput", "is_text_output", "read_cached", "response_format", "schema_json"]


@functools.lru_cache(maxsize=256)
def schema_json(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``schema``, built once per class (pydantic rebuilds
    it on every call, about 0.1 ms). Shared: do not modify it."""
    return schema.model_json_schema()


def response_format(schema: type[BaseModel], dialect: str) -> dict[str, Any]:
    """The ``response_format`` each server family understands for a JSON schema."""
    js = schema_json(schema)
    if dialect == "llamacpp":
        return {"type": "json_object", "schema": js}
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": js}}


class TextOutput(BaseModel):
    """A typed reply read from plain text: passed as ``schema``, it sends no JSON
    schema (the prompt asks for its own format) and ``from_text`` reads the
    reply; a ``ValueError`` there is an invalid output, retried like a reply
    that fails its JSON schema. The call's ``text`` stays the reply as sent."""

    @classmethod
    def from_text(cls, text: str) -> Self:
        raise NotImplementedError(f"{cls.__name__}.from_text")


def is_text_output(schema: type[BaseModel] | None) -> bool:
    """True for a ``TextOutput`` schema (read from plain text, no JSON schema sent)."""
    return isinstance(schema, type) and issubclass(schema, TextOutput)


def request_schema(schema: type[BaseModel] | None) -> dict[str, Any] | None:
    """What identifies a call's output form in its cache key: the JSON schema, or the text reader's name."""
    if schema is None:
        return None
    return {"text": schema.__name__} if is_text_output(schema) else schema_json(schema)


def read_cached(schema: type[BaseModel] | None, hit: Mapping[str, Any] | None) -> tuple[Any, Mapping[str, Any] | None]:
    """(the cached reply read as ``schema``, the entry), or (None, None) when there is
    no entry or it cannot be read as ``schema`` (then it is a miss)."""
    if hit is None:
        return None, None
    try:
        if schema is None:
            return None, hit
        text = hit["text"]
        parsed = schema.from_text(text) if is_text_output(schema) else schema.model_validate_json(text)  # type: ignore[attr-defined]
        return parsed, hit
    except (KeyError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return None, None
