"""The stored config of a run (``runs.config``), read back: the one query the
benchmark report needs to name the case set an evaluation scored."""

from __future__ import annotations

import json
from typing import Any

from ._store import Store

__all__ = ["stored_run_config"]


async def stored_run_config(store: Store, run_id: int) -> dict[str, Any] | None:
    """The run's resolved config as stored (None for an unknown run or unreadable JSON)."""
    row = await store.fetchone("SELECT config FROM runs WHERE id = ?", (run_id,))
    if row is None:
        return None
    try:
        config = json.loads(row[0])
    except (TypeError, ValueError):
        return None
    return config if isinstance(config, dict) else None
