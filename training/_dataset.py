"""Exported trees as Hugging Face ``datasets.Dataset`` objects, and general
multi-turn data for mixing into SFT."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from aloesim.core import check_json_line, decode_utf8
from aloesim.core.errors import ConfigError, InputError

from ._export import FILES, KINDS, ExportFilter, Kind, export_dataset, verify_export


def features(kind: str):
    """The ``datasets.Features`` of one export kind (messages as role/content structs)."""
    from datasets import Features, List, Value

    msgs = List({"role": Value("string"), "content": Value("string")})
    if kind == "dpo":
        return Features({"prompt": msgs, "chosen": msgs, "rejected": msgs})
    return Features({"prompt": msgs, "completion": msgs})


def _from_jsonl(path: Path, kind: str, cache_dir: Path | None):
    from datasets import Dataset

    return Dataset.from_json(
        str(path), features=features(kind), keep_in_memory=True, cache_dir=str(cache_dir) if cache_dir else None
    )


def load_dataset(
    source: str | Path,
    kind: Kind = "sft",
    *,
    runs: tuple[int, ...] = (),
    include_incomplete: bool = False,
    verify: bool = True,
):
    """Load one kind of example (``"sft"``, ``"sft_rejected"`` or ``"dpo"``) as a
    ``datasets.Dataset`` in TRL's conversational format.

    ``source`` is either an ``aloe export`` directory (its files are checked
    against the manifest's hashes unless ``verify=False``) or an aloesim
    database, which is exported on the fly to a temporary directory
    (``runs`` and ``include_incomplete`` select the trees, as for ``aloe export``).
    """
    if kind not in KINDS:
        raise ConfigError("kind", kind, f"one of {list(KINDS)}")
    src = Path(source)
    if src.is_dir():
        if verify:
            verify_export(src)
        path = src / FILES[kind]
        if not path.exists():
            raise InputError(str(path), f"no {kind} file in this export directory")
        return _from_jsonl(path, kind, None)
    with tempfile.TemporaryDirectory(prefix="aloesim-export-") as tmp:
        export_dataset(src, Path(tmp) / "data", ExportFilter(runs, include_incomplete), kinds=(kind,))
        return _from_jsonl(Path(tmp) / "data" / FILES[kind], kind, Path(tmp) / "cache")


def read_general_messages(path: str | Path) -> list[dict[str, Any]]:
    """Read general multi-turn SFT data (JSONL, ``{"messages": [{role, content}, ...]}``
    per line) as prompt-completion rows: the prompt is every message before the
    last, the completion the last (which must be the assistant's)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("training.mix.path", str(path), "an existing JSONL file of {\"messages\": [...]} lines")
    rows: list[dict[str, Any]] = []
    try:
        text = decode_utf8(p, p.read_bytes()).removeprefix("\ufeff")
    except OSError as exc:
        raise InputError(str(p), f"cannot be read ({exc.strerror})") from None
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deep"
            raise InputError(str(p), f"not valid JSON: {msg}", lineno,
                             exc.colno if isinstance(exc, json.JSONDecodeError) else None) from None
        check_json_line(p, line, lineno)  # a lone surrogate, NUL, U+FFFF, ... raw or escaped
        msgs = obj.get("messages") if isinstance(obj, dict) else None
        if not isinstance(msgs, list) or len(msgs) < 2:
            raise InputError(str(p), "expected {\"messages\": [...]} with at least two messages", lineno)
        clean = []
        for m in msgs:
            if (not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                    or not isinstance(m.get("content"), str)):
                raise InputError(str(p), "each message needs role system|user|assistant and a string content",
                                 lineno)
            clean.append({"role": m["role"], "content": m["content"]})
        if clean[-1]["role"] != "assistant":
            raise InputError(str(p), "the last message must be the assistant's (it is the completion)", lineno)
        rows.append({"prompt": clean[:-1], "completion": clean[-1:]})
    if not rows:
        raise InputError(str(p), "no conversations in the file")
    return rows


def mix_rows(rows: list[dict[str, Any]], general_rows: list[dict[str, Any]], ratio: float | None,
             seed: int) -> list[dict[str, Any]]:
    """Add ``round(ratio * len(rows))`` general rows (sampled without replacement;
    all of them if there are fewer, or if ``ratio`` is None) and shuffle the whole with ``seed``."""
    rng = random.Random(seed)
    want = len(general_rows) if ratio is None else min(len(general_rows), round(ratio * len(rows)))
    if want <= 0:
        return list(rows)
    mixed = list(rows) + rng.sample(general_rows, want)
    rng.shuffle(mixed)
    return mixed
