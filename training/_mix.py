"""General multi-turn data mixed into SFT (paper section 2.2: the authors mix
CodeActInstruct's agent data into the SFT stage), read from a local copy:
nothing is downloaded.

``read_mix(path)`` takes either

* a JSONL file, one conversation per line: ``{"messages": [{"role", "content"}, ...]}``
  (``read_general_messages``); or
* a folder written by ``datasets``' ``save_to_disk`` (a ``Dataset``, or a
  ``DatasetDict`` with ``split`` naming the split, e.g. ``codeact`` of
  CodeActInstruct), with a ``messages`` or ``conversations`` column of
  ``{"role", "content"}`` lists.

Each conversation becomes a prompt-completion row (prompt = every message
before the last, completion = the last, which must be the assistant's), the
format of the personalised SFT rows. A row that does not fit is an
``InputError`` naming the file (and line, or row) before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aloesim.core.errors import ConfigError, InputError

from ._dataset import read_general_messages

__all__ = ["MESSAGE_COLUMNS", "read_mix"]

MESSAGE_COLUMNS = ("messages", "conversations")  # conversations: CodeActInstruct's column
_ROLES = ("system", "user", "assistant")


def read_mix(path: str | Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """The prompt-completion rows of a local general dataset (see the module doc)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _from_saved(p, split)
    if p.is_file():
        return read_general_messages(p)
    raise ConfigError("training.mix.path", str(path), "an existing JSONL file of {\"messages\": [...]} lines or a "
                                                      "folder saved by datasets' save_to_disk")


def _load(p: Path) -> Any:
    from datasets import load_from_disk

    try:
        return load_from_disk(str(p))
    except FileNotFoundError:
        raise InputError(str(p), "not a folder saved by datasets' save_to_disk (no dataset_info.json / "
                                 "dataset_dict.json)") from None
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(str(p), f"cannot be loaded with datasets.load_from_disk ({reason})") from None


def _from_saved(p: Path, split: str | None) -> list[dict[str, Any]]:
    from datasets import DatasetDict

    data = _load(p)
    if isinstance(data, DatasetDict):
        splits = sorted(data.keys())
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in data:
            raise ConfigError("training.mix.split", split, "one of the saved splits: " + " | ".join(splits))
        data = data[split]
    column = next((c for c in MESSAGE_COLUMNS if c in data.column_names), None)
    if column is None:
        raise InputError(str(p), f"no '{MESSAGE_COLUMNS[0]}' or '{MESSAGE_COLUMNS[1]}' column (columns: "
                                 f"{', '.join(data.column_names)})")
    rows = [_row(messages, p, i) for i, messages in enumerate(data[column])]
    if not rows:
        raise InputError(str(p), "no conversations in the dataset")
    return rows


def _row(messages: Any, p: Path, i: int) -> dict[str, Any]:
    where = f"row {i}"
    if not isinstance(messages, Iterable) or isinstance(messages, (str, bytes, Mapping)):
        raise InputError(str(p), f"{where}: expected a list of messages")
    clean = []
    for m in messages:
        if (not isinstance(m, Mapping) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str)):
            raise InputError(str(p), f"{where}: each message needs role system|user|assistant and a string content")
        clean.append({"role": m["role"], "content": m["content"]})
    if len(clean) < 2:
        raise InputError(str(p), f"{where}: expected at least two messages")
    if clean[-1]["role"] != "assistant":
        raise InputError(str(p), f"{where}: the last message must be the assistant's (it is the completion)")
    return {"prompt": clean[:-1], "completion": clean[-1:]}
