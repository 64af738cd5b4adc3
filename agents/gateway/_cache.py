"""Request identity for the response cache: a hash of everything that
decides a reply (model, messages, sampling parameters with seed, schema)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], schema: dict | None) -> str:
    blob = json.dumps(
        {"model": model, "messages": messages, "params": params, "schema": schema},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
