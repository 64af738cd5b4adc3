"""``aloe show``: a tree, run, evaluation or benchmark case in the terminal
(rich), or exported to Markdown / JSON.

    aloe show db=aloe.db tree=12                 # turns, persona changes, replies, calls
    aloe show db=aloe.db tree=12 show.calls=true # ... plus the exact prompts
    aloe show db=aloe.db run=3                   # run summary
    aloe show db=aloe.db evaluation=2            # AL(k) and case transcripts
    aloe show db=aloe.db case=5 show.format=md show.out=case5.md

Opens the database read-only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from ...core import json_safe, terminal_safe, terminal_safe_data, to_settings
from ...core.errors import ConfigError
from ...environment.store import connect
from ...inspection import show as views
from .._config import compose_config
from .._runs import plain_config
from .._schemas import ShowConfig

HELP = "show a tree, run, evaluation or benchmark case in the terminal, or export it to Markdown/JSON"

def _options(cfg: DictConfig) -> tuple[str, int, dict[str, Any]]:
    """Validate the config; return (target kind, id, show options)."""
    c: ShowConfig = to_settings(cfg, ShowConfig)
    kind, ident = c.target
    s = c.show
    out = None
    if s.out is not None:
        path = Path(s.out).expanduser()
        if path.is_dir():
            raise ConfigError("show.out", s.out, "a file path (this is a folder)")
        if not path.parent.is_dir():
            raise ConfigError("show.out", s.out, "a file in an existing folder")
        out = path
    return kind, ident, {"format": s.format, "calls": s.calls, "width": s.width, "cases": s.cases, "out": out,
                         "page": s.page}


TREES_PER_PAGE = 50


def _defaults(kind: str) -> dict[str, Any] | None:
    """The default config of ``aloe <kind>`` (what a run's config is compared
    with), or None when ``kind`` is not a command with a config."""
    try:
        return plain_config(compose_config(kind, []))
    except Exception:  # noqa: BLE001 - an old or unknown kind: show the whole config
        return None


def _run_extra(conn, run: Any, page: int) -> dict[str, Any]:
    """What ``aloe show run=`` prints beside the run: one page of its tree ids
    and its config's differences from the command's defaults."""
    total = views.count_trees(conn, run.id)
    pages = max(1, -(-total // TREES_PER_PAGE))
    page = min(page, pages)
    trees = views.list_trees(conn, run.id, limit=TREES_PER_PAGE, offset=(page - 1) * TREES_PER_PAGE)
    defaults = _defaults(run.kind)
    return {"trees": trees, "total": total, "page": page, "pages": pages, "defaults": defaults}


def _load(conn, kind: str, ident: int, cases: int, page: int = 1) -> Any:
    loader = {
        "tree": views.load_tree,
        "run": views.load_run,
        "evaluation": views.load_evaluation,
        "case": views.load_case,
    }[kind]
    view = loader(conn, ident)
    if view is None:
        raise ConfigError(
            kind, ident, f"the id of a {'benchmark case' if kind == 'case' else kind} in this database"
        )
    if kind == "evaluation":
        rows = views.list_cases(conn, ident, limit=cases) if cases else []
        return view, [views.load_case(conn, r.id) for r in rows]
    if kind == "run":
        return view, _run_extra(conn, view, page)
    return view, None


def export_text(view: Any, extra: Any, kind: str, opts: dict[str, Any]) -> str:
    """A loaded view as Markdown or JSON text. Both are safe to print on a
    terminal: JSON escapes control and bidi characters (the same data), and
    Markdown shows them visibly (``terminal_safe``)."""
    if opts["format"] == "json":
        if kind != "evaluation":
            return json_safe(views.to_json(view))
        data = view.as_dict()
        data["cases"] = [c.as_dict() for c in extra]
        return json_safe(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    md = views.tree_markdown if kind == "tree" else views.case_markdown
    return terminal_safe(md(view, prompts=opts["calls"]))


def render(view: Any, extra: Any, kind: str, opts: dict[str, Any], console: Console) -> None:
    """Print a loaded view on a rich console, every text from the database
    made terminal-safe first."""
    view, extra = terminal_safe_data(view), terminal_safe_data(extra)
    if kind == "tree":
        side = console.width >= views.SIDE_BY_SIDE_MIN_WIDTH
        marks = console.no_color or console.color_system is None  # piped: [-old-]{+new+}
        console.print(views.render_tree(view, side_by_side=side, calls=opts["calls"], marks=marks))
    elif kind == "run":
        console.print(views.render_run(view, **extra))
    elif kind == "evaluation":
        console.print(views.render_evaluation(view, extra, calls=opts["calls"]))
    else:
        console.print(views.render_case(view, calls=opts["calls"]))


def validate(cfg: DictConfig) -> None:
    """The config checks that need no database (the CLI runs them before any -m job)."""
    _options(cfg)


def run(cfg: DictConfig) -> int:
    kind, ident, opts = _options(cfg)
    conn = connect(cfg.db, readonly=True)  # one-line StoreError when missing / not a database
    try:
        view, extra = _load(
            conn, kind, ident, opts["cases"], opts["page"]
        )  # unknown id: ConfigError before any file is touched
    finally:
        conn.close()
    out = opts["out"]
    if opts["format"] != "rich":
        text = export_text(view, extra, kind, opts)
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text, encoding="utf-8")
    elif out is None:
        render(view, extra, kind, opts, Console(width=opts["width"], highlight=False))
    else:
        with open(out, "w", encoding="utf-8") as fh:
            render(
                view,
                extra,
                kind,
                opts,
                Console(file=fh, width=opts["width"] or 120, no_color=True, highlight=False),
            )
    if out is not None:
        print(f"wrote {out}", file=sys.stderr)
    return 0
