"""Preference trees -> TRL's conversational datasets, streamed from SQLite.

Every node of an exported tree gives one example of each kind:

* ``sft``          ``{"prompt": [m_1, s_1, ..., m_i], "completion": [p_i]}``
* ``sft_rejected`` the same with ``r_i`` as the completion (the SFT-Rejected ablation)
* ``dpo``          ``{"prompt": [m_1, s_1, ..., m_i], "chosen": [p_i], "rejected": [r_i]}``

The prompt is the *real* history of the node: the user messages of its
ancestors, each followed by the ancestor's reply that the conversation
actually continued with (the node's branch letters say which), then its own
user message m_i. (The paper's published script repeats m_1 in place of the
later user messages; that is a bug and not reproduced here.)

Nodes are read with one ordered query and grouped per tree, so memory holds
one tree at a time. Files are written to temporary names and renamed once
complete; ``manifest.json`` is renamed last, so its presence marks a whole
export. The order (tree id, turn, branch) and the JSON encoding are fixed,
so identical databases give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from aloesim.core.errors import ConfigError, InputError, StoreError
from aloesim.environment import Message, Node, history_for
from aloesim.environment.store import Runs, Trees, open_readonly

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
"""Version of the export layout (file names, fields, manifest keys)."""

Kind = Literal["sft", "sft_rejected", "dpo"]
KINDS: tuple[Kind, ...] = ("sft", "sft_rejected", "dpo")
FILES: dict[str, str] = {"sft": "sft.jsonl", "sft_rejected": "sft_rejected.jsonl", "dpo": "dpo.jsonl"}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExportFilter:
    """Which trees to export: complete ones by default, optionally only some runs."""

    runs: tuple[int, ...] = ()  # empty = every run
    include_incomplete: bool = False  # also export nodes of pending/running/failed trees


@dataclass(frozen=True)
class Example:
    """One node's examples, with where it came from."""

    tree_id: int
    run_id: int
    turn: int
    branch: str
    prompt: tuple[Message, ...]
    preferred: str
    rejected: str

    def record(self, kind: Kind) -> dict[str, Any]:
        """The TRL row of ``kind`` for this node."""
        prompt = [m.as_dict() for m in self.prompt]
        if kind == "sft":
            return {"prompt": prompt, "completion": [{"role": "assistant", "content": self.preferred}]}
        if kind == "sft_rejected":
            return {"prompt": prompt, "completion": [{"role": "assistant", "content": self.rejected}]}
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": self.preferred}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }


@dataclass
class ExportResult:
    """What an export wrote (the manifest, as a dict, plus the directory)."""

    dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"])


def _tree_examples(db: Path, run_id: int, nodes: list[Node]) -> Iterator[Example]:
    by_branch = {n.branch: n for n in nodes}
    for node in nodes:
        if node.turn != len(node.branch) + 1 or any(c not in "pr" for c in node.branch):
            raise StoreError(str(db), f"tree {node.tree_id}: node {node.id} has turn {node.turn} "
                             f"but branch {node.branch!r} (turn must be len(branch)+1, letters p/r)")
        path: list[Node] = []
        for k in range(len(node.branch)):
            parent = by_branch.get(node.branch[:k])
            if parent is None:
                raise StoreError(str(db), f"tree {node.tree_id}: node {node.id} (branch {node.branch!r}) "
                                 f"has no ancestor at branch {node.branch[:k]!r}")
            path.append(parent)
        path.append(node)
        history = history_for(path, upto_turn=node.turn)
        prompt = history.then(Message("user", node.user_message)).messages
        yield Example(node.tree_id, run_id, node.turn, node.branch, prompt, node.preferred, node.rejected)


def iter_examples(conn: sqlite3.Connection, flt: ExportFilter = ExportFilter(), *, db: Path = Path("?")) -> Iterator[Example]:
    """Examples of every selected node in (tree id, turn, branch) order.

    One query, read row by row; nodes are buffered one tree at a time."""
    tree: list[Node] = []
    tree_run = -1
    for run_id, node in Trees(conn).export_nodes(flt.runs, include_incomplete=flt.include_incomplete):
        if tree and node.tree_id != tree[0].tree_id:
            yield from _tree_examples(db, tree_run, tree)
            tree = []
        tree_run = run_id
        tree.append(node)
    if tree:
        yield from _tree_examples(db, tree_run, tree)


def open_source(db: str | Path) -> sqlite3.Connection:
    """Open the database read-only (export never writes its data). A database
    of an older schema version is first migrated, as every command does."""
    path = Path(db)
    if not path.exists():
        raise StoreError(str(path), "no such database (check db=)")
    return open_readonly(path)


def check_selection(conn: sqlite3.Connection, flt: ExportFilter, *, db: Path, key: str = "export.run") -> tuple[int, int]:
    """Validate the filter against the database; return (nodes, trees) selected.

    Raises ConfigError for an unknown run and InputError when nothing would
    be exported, so callers can stop before writing anything."""
    runs = Runs(conn)
    for run in flt.runs:
        if runs.get(run) is None:
            known = runs.ids("generate")
            raise ConfigError(key, run, f"the id of a generate run in {db} (have {known or 'none'})")
    n_nodes, n_trees = Trees(conn).count_export(flt.runs, include_incomplete=flt.include_incomplete)
    if n_nodes == 0:
        what = "trees" if flt.include_incomplete else "complete trees"
        scope = f" in run(s) {list(flt.runs)}" if flt.runs else ""
        raise InputError(str(db), f"no {what} with nodes{scope} to export (run `aloe generate` first"
                         + ("" if flt.include_incomplete else ", or set export.include_incomplete=true") + ")")
    return n_nodes, n_trees


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_runs(value: Any, key: str = "export.run") -> tuple[int, ...]:
    """``null`` | an id | a list of ids -> a sorted tuple of distinct ids."""
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, (str, int, float)) else list(value)
    out: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(key, value, "null, a run id, or a list of run ids")
        try:
            run = int(item)
        except (TypeError, ValueError):
            raise ConfigError(key, value, "null, a run id, or a list of run ids") from None
        if run <= 0 or str(item).strip() != str(run):
            raise ConfigError(key, value, "null, a run id, or a list of run ids")
        out.add(run)
    return tuple(sorted(out))


def export_dataset(
    db: str | Path,
    out_dir: str | Path,
    flt: ExportFilter = ExportFilter(),
    *,
    kinds: Sequence[Kind] = KINDS,
) -> ExportResult:
    """Write the TRL files and ``manifest.json`` for the selected trees into ``out_dir``.

    Validates everything (database, runs, non-empty selection, output
    directory) before creating any file; on failure no output file changes.
    """
    db = Path(db)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("export.dir", str(out), "a directory (this path is a file)")
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError("export.kinds", kind, f"one of {list(KINDS)}")
    conn = open_source(db)
    try:
        n_nodes, _ = check_selection(conn, flt, db=db)
        out.mkdir(parents=True, exist_ok=True)
        tmp = {k: out / f".{FILES[k]}.partial-{os.getpid()}" for k in kinds}
        handles = {k: tmp[k].open("wb") for k in kinds}
        hashes = {k: hashlib.sha256() for k in kinds}
        sizes = {k: 0 for k in kinds}
        counts = {k: 0 for k in kinds}
        runs: set[int] = set()
        trees: set[int] = set()
        turns: dict[int, int] = {}
        try:
            for ex in iter_examples(conn, flt, db=db):
                runs.add(ex.run_id)
                trees.add(ex.tree_id)
                turns[ex.turn] = turns.get(ex.turn, 0) + 1
                for kind in kinds:
                    line = (_dumps(ex.record(kind)) + "\n").encode("utf-8")
                    handles[kind].write(line)
                    hashes[kind].update(line)
                    sizes[kind] += len(line)
                    counts[kind] += 1
        except BaseException:
            for fh in handles.values():
                fh.close()
            for p in tmp.values():
                p.unlink(missing_ok=True)
            raise
        for fh in handles.values():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
    finally:
        conn.close()

    files = {FILES[k]: {"kind": k, "examples": counts[k], "bytes": sizes[k], "sha256": hashes[k].hexdigest()}
             for k in kinds}
    manifest = {
        "format": "aloesim-trl-export",
        "format_version": FORMAT_VERSION,
        "source_runs": sorted(runs),
        "filter": {"runs": list(flt.runs), "include_incomplete": flt.include_incomplete},
        "trees": len(trees),
        "nodes": n_nodes,
        "turns": {str(t): turns[t] for t in sorted(turns)},
        "counts": {k: counts[k] for k in kinds},
        "files": files,
    }
    for k in kinds:
        os.replace(tmp[k], out / FILES[k])
    mtmp = out / f".{MANIFEST}.partial-{os.getpid()}"
    mtmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(mtmp, out / MANIFEST)
    log.info("export.done", dir=str(out), trees=len(trees), nodes=n_nodes, runs=sorted(runs))
    return ExportResult(out, manifest)


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of an export directory (InputError if missing or unreadable)."""
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), "no manifest.json here; is this an `aloe export` directory?") from None
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    if manifest.get("format") != "aloesim-trl-export" or manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(str(path), f"unsupported export format {manifest.get('format')!r} "
                         f"version {manifest.get('format_version')!r} (expected version {FORMAT_VERSION})")
    return manifest


def verify_export(out_dir: str | Path) -> dict[str, Any]:
    """Check every file against the manifest's sha256; return the manifest."""
    manifest = read_manifest(out_dir)
    for name, info in manifest["files"].items():
        path = Path(out_dir) / name
        if not path.exists():
            raise InputError(str(path), "listed in manifest.json but missing")
        if _sha256(path) != info["sha256"]:
            raise InputError(str(path), "sha256 differs from manifest.json (file changed after export)")
    return manifest
