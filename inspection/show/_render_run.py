"""Terminal rendering (rich) of a run summary: counts, calls by role, one
page of its tree ids, its config (only what differs from the command's
defaults), failed trees and calls."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aloesim.core import terminal_safe
from aloesim.environment.store import dollars_text

from ._render import _json, _num, _secs, _when
from ._runs import RunView
from ._text import config_diff, flatten
from ._trees import TreeRow

__all__ = ["render_run"]


def _value(value: Any, limit: int = 100) -> Text:
    text = "-" if value is None else _json(value)
    text = " ".join(text.split())  # a whole prompt on one line
    return Text(text if len(text) <= limit else text[: limit - 1] + f"… ({len(text):,} chars)")


def _config(run: RunView, defaults: dict[str, Any] | None) -> RenderableType:
    """The run's config: only what differs from ``aloe <kind>``'s defaults when
    they are known (else every key), long values cut to one short line."""
    if defaults is None or not isinstance(run.config, dict):
        table = Table(title="Config", title_justify="left", show_header=False)
        table.add_column("key", style="cyan")
        table.add_column("value")
        flat = flatten(run.config) if isinstance(run.config, dict) else {"(config)": run.config}
        for k, v in flat.items():
            table.add_row(Text(k), _value(v, 200))
        return table
    base = flatten(defaults)
    diff = [(k, a, b) for k, a, b in config_diff(defaults, run.config) if k in flatten(run.config) or k not in base]
    table = Table()
    table.add_column("key", style="cyan")
    table.add_column("default")
    table.add_column("this run")
    for k, a, b in diff:
        table.add_row(Text(k), _value(a), _value(b))
    title = Text(f"Config: {len(diff)} keys differ from `aloe {run.kind}` defaults", style="italic")
    return Group(title, table) if diff else title


def _trees(trees: list[TreeRow], total: int, page: int, pages: int) -> Table:
    title = f"Trees: {total:,}" + (f" (page {page} of {pages}; show.page=N for another)" if pages > 1 else "")
    table = Table(title=title, title_justify="left")
    for col in ("tree", "status", "nodes", "persona"):
        table.add_column(col, justify="right" if col in ("tree", "nodes") else "left")
    for t in trees:
        persona = t.profile if len(t.profile) <= 60 else t.profile[:59] + "…"
        table.add_row(f"#{t.id}", Text(t.status), _num(t.nodes), Text(persona))
    return table


def _dollars(run: RunView) -> str:
    """The run's dollars, with each model's (an unknown price says "unknown", never $0)."""
    cost = run.call_stats.cost if run.call_stats else None
    if cost is None:
        return "-"
    models = ", ".join(f"{terminal_safe(m.model)} {dollars_text(m.cost_usd, m.unpriced)}" for m in cost.by_model)
    return f"{cost.text()} ({models})" if models else cost.text()


def render_run(
    run: RunView,
    *,
    trees: list[TreeRow] | None = None,
    total: int = 0,
    page: int = 1,
    pages: int = 1,
    defaults: dict[str, Any] | None = None,
) -> RenderableType:
    """A run summary: trees by status, nodes, calls, tokens, failures, wall
    time, one page of its tree ids, and its config (what differs from
    ``defaults``, the command's default config, when given)."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for k, v in (
        ("kind", run.kind),
        ("status", run.status),
        ("started", _when(run.started_at)),
        ("finished", _when(run.finished_at)),
        ("wall time", f"{run.wall_s:,.2f} s"),  # as `aloe runs` shows it (inspection.wall_text)
        ("trees", _num(run.trees)),
        ("nodes", _num(run.nodes)),
        ("LLM calls", _num(run.calls)),
        ("tokens", f"{run.prompt_tokens:,} prompt + {run.completion_tokens:,} completion"),
        ("failed calls", _num(run.call_error_count)),
        ("dollars", _dollars(run)),
        ("config hash", run.config_hash),
    ):
        head.add_row(k, Text(str(v)))
    status = Table(title="Trees by status", title_justify="left")
    status.add_column("status")
    status.add_column("trees", justify="right")
    for k, v in sorted(run.trees_by_status.items()):
        status.add_row(Text(k), _num(v))
    roles = Table(title="Calls by role", title_justify="left")
    for col in (
        "role",
        "calls",
        "errors",
        "attempts",
        "prompt tok",
        "compl. tok",
        "mean latency",
        "max latency",
        "dollars",
    ):
        roles.add_column(col, justify="left" if col == "role" else "right")
    for r in run.roles:
        roles.add_row(
            Text(r.role),
            _num(r.calls),
            _num(r.errors),
            _num(r.attempts),
            _num(r.prompt_tokens),
            _num(r.completion_tokens),
            _secs(r.mean_latency_s),
            _secs(r.max_latency_s),
            dollars_text(r.cost_usd, r.unpriced),
        )
    parts: list[RenderableType] = [head, status, roles]
    if trees:
        parts.append(_trees(trees, total, page, pages))
    parts.append(_config(run, defaults))
    if run.failed_trees:
        failed = Table(title=f"Failed trees (first {len(run.failed_trees)})", title_justify="left")
        failed.add_column("tree", justify="right")
        failed.add_column("error")
        for i, e in run.failed_trees:
            failed.add_row(f"#{i}", Text(e or "", style="red"))
        parts.append(failed)
    if run.call_errors:
        errs = Table(
            title=f"Failed calls (first {len(run.call_errors)} of {run.call_error_count})",
            title_justify="left",
        )
        errs.add_column("call", justify="right")
        errs.add_column("role")
        errs.add_column("error")
        for i, role, e, _tree in run.call_errors:
            errs.add_row(f"#{i}", Text(role), Text(e, style="red"))
        parts.append(errs)
    if run.stats is not None:
        parts.append(Text("stats: " + _json(run.stats)))
    if run.evaluations:
        parts.append(Text("evaluations: " + ", ".join(f"#{e}" for e in run.evaluations)))
    return Panel(Group(*parts), title=Text(f"Run #{run.id}", style="bold"), title_align="left")
