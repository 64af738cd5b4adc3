"""Terminal renderings (rich) of a tree, a run summary, an evaluation and a case.

Everything from the database goes into ``rich.text.Text`` objects, never into
markup strings, so text such as ``[bold]`` or ``<script>`` in a persona or a
reply prints as itself.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ._calls import CallView
from ._evaluations import CaseView, EvaluationView
from ._text import Segment
from ._trees import NodeView, TreeView

__all__ = ["SIDE_BY_SIDE_MIN_WIDTH", "render_case", "render_evaluation", "render_tree"]

SIDE_BY_SIDE_MIN_WIDTH = 110
"""Terminals at least this wide show preferred and rejected replies side by side."""

CONTINUED = "▶ continued"


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _secs(s: float | None) -> str:
    return "-" if s is None else f"{s:.2f}s"


def _num(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _segments(label: str, segs: list[Segment], empty: str = "None", marks: bool = False) -> Text:
    """Inferred-persona changes: new words bold green, dropped ones struck red;
    with ``marks`` (no colour: piped, redirected, NO_COLOR) also ``{+new+}`` and
    ``[-dropped-]``, so a replaced value never reads as the old text run into the new."""
    out = Text(f"{label}: ", style="bold")
    if not segs:
        out.append(empty, style="dim")
        return out
    for s in segs:
        if s.kind == "added":
            out.append("{+" + s.text + "+}" if marks else s.text, style="bold green")
        elif s.kind == "removed":
            out.append("[-" + s.text + "-]" if marks else s.text, style="strike red")
        else:
            out.append(s.text)
    return out


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=None)


def calls_table(calls: list[CallView], title: str | None = None) -> Table:
    """Per-call latency, tokens, attempts and errors."""
    table = Table(title=title, show_edge=False, pad_edge=False, expand=False, title_justify="left")
    for col, justify in (
        ("call", "right"),
        ("role", "left"),
        ("latency", "right"),
        ("prompt tok", "right"),
        ("compl. tok", "right"),
        ("attempts", "right"),
        ("cached", "left"),
        ("error", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in calls:
        table.add_row(
            f"#{c.id}",
            Text(c.role),
            _secs(c.latency_s),
            _num(c.prompt_tokens),
            _num(c.completion_tokens),
            Text(str(c.attempts), style="yellow" if c.attempts > 1 else ""),
            "yes" if c.cached else "",
            Text(c.error or "", style="red"),
        )
    return table


def prompts(calls: list[CallView]) -> RenderableType:
    """The exact messages each call sent, and what came back."""
    parts: list[RenderableType] = []
    for c in calls:
        body = Text()
        for m in c.messages:
            body.append(f"[{m['role']}] ", style="bold cyan")
            body.append(m["content"] + "\n")
        if not c.messages:
            body.append(_json(c.request) + "\n")
        if c.params:
            body.append("params: ", style="dim")
            body.append(_json(c.params) + "\n", style="dim")
        body.append("→ ", style="bold magenta")
        body.append(c.response if c.response is not None else "(no response)")
        parts.append(
            Panel(
                body,
                title=Text(f"call #{c.id} · {c.role} · {c.model}"),
                title_align="left",
                border_style="red" if c.error else "blue",
            )
        )
    return Group(*parts)


def _replies(node: NodeView, side_by_side: bool) -> RenderableType:
    def panel(which: str, text: str) -> Panel:
        cont = node.continued in (which, "both")
        title = Text(which + ("  " + CONTINUED if cont else ""), style="bold green" if cont else "bold")
        return Panel(Text(text), title=title, title_align="left", border_style="green" if cont else "dim")

    pref, rej = panel("preferred", node.preferred), panel("rejected", node.rejected)
    if side_by_side:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(pref, rej)
        return grid
    return Group(pref, rej)


def node_panel(node: NodeView, *, side_by_side: bool, calls: bool, marks: bool = False) -> Panel:
    """One turn: user message, inferred persona with its changes, both replies,
    the judge's verdict and the calls that made it."""
    parts: list[RenderableType] = []
    user = Text("User: ", style="bold")
    user.append(node.user_message)
    parts.append(user)
    head = Text("Inferred persona ", style="bold")
    head.append(
        "(changed)" if node.persona_changed else "(unchanged)",
        style="bold yellow" if node.persona_changed else "dim",
    )
    parts += [
        head,
        _segments("  profile", node.profile_diff, marks=marks),
        _segments("  personalities", node.personalities_diff, marks=marks),
    ]
    parts.append(_replies(node, side_by_side))
    if node.judge is not None:
        j = Text("Judge: ", style="bold")
        j.append(_json(node.judge))
        parts.append(j)
    if node.calls:
        parts.append(calls_table(node.calls))
        if calls:
            parts.append(prompts(node.calls))
    title = Text(f"Turn {node.turn} · branch {node.branch or '(root)'}", style="bold")
    sub = Text(f"continued: {node.continued} · {_secs(node.latency_s)} · {node.tokens:,} tokens")
    return Panel(Group(*parts), title=title, title_align="left", subtitle=sub, subtitle_align="right")


def render_tree(
    tree: TreeView, *, side_by_side: bool = True, calls: bool = False, marks: bool = False
) -> RenderableType:
    """A tree as a rich Tree: chains of single children stay at one level, a
    node with both replies continued branches. ``marks``: write persona changes
    as ``[-old-]{+new+}`` too (for output without colour)."""
    head = Text(f"Tree #{tree.id}", style="bold")
    head.append(f" · run {tree.run_id} · {tree.mode} · {tree.turns} turns · seed {tree.seed} · ")
    head.append(
        tree.status,
        style="red" if tree.status == "failed" else "green" if tree.status == "complete" else "yellow",
    )
    root = Tree(head, guide_style="dim")
    persona = Text("Persona: ", style="bold")
    persona.append(tree.profile)
    persona.append("\nPersonality: ", style="bold")
    persona.append(tree.personality)
    root.add(persona)
    if tree.error:
        root.add(Text("Error: " + tree.error, style="bold red"))
    by_id = {n.id: n for n in tree.nodes}

    def add(node: NodeView, parent: Tree) -> None:
        branch = parent.add(node_panel(node, side_by_side=side_by_side, calls=calls, marks=marks))
        kids = sorted((by_id[c] for c in node.children), key=lambda n: n.branch)
        if len(kids) == 1:
            add(kids[0], parent)  # a chain stays at one level
        else:
            for kid in kids:
                add(kid, branch)

    for r in tree.roots:
        add(r, root)
    if not tree.nodes:
        root.add(Text("(no nodes yet)", style="dim"))
    if tree.stray_calls:
        stray = root.add(Text("Calls without a committed node", style="bold red"))
        stray.add(calls_table(tree.stray_calls))
        if calls:
            stray.add(prompts(tree.stray_calls))
    return root


def _bar(value: float | None, width: int = 20) -> Text:
    if value is None:
        return Text("")
    n = round((value - 1) / 4 * width)
    return Text("█" * max(0, n), style="green")


def render_evaluation(ev: EvaluationView, cases: list[CaseView], *, calls: bool = False) -> RenderableType:
    """AL(k) per turn, IR and R², then each case's transcript with its scores
    (and, with ``calls``, every call of the case: the judge's prompt and raw reply)."""
    ir, r2 = ev.improvement
    head = Text(f"Evaluation #{ev.id} · ", style="bold")
    head.append(ev.label)
    head.append(f" · {ev.status} · {ev.cases} cases · {ev.turns} turns")
    table = Table(title="Alignment level per turn", title_justify="left")
    for col in ("k", "AL(k)", "scored", "AL on 1 to 5"):
        table.add_column(col, justify="left" if col.startswith("AL on") else "right")
    for p in ev.curve:
        table.add_row(str(p.k), "-" if p.al is None else f"{p.al:.2f}", str(p.n), _bar(p.al))
    summary = Text(
        f"average AL {'-' if ev.average is None else f'{ev.average:.2f}'} · "
        f"IR {'-' if ir is None else f'{ir:.3f}'} · R² {'-' if r2 is None else f'{r2:.3f}'} · "
        f"judge failures {ev.judge_failures}"
    )
    parts: list[RenderableType] = [head, table, summary]
    for case in cases:
        parts.append(Rule())
        parts.append(render_case(case, calls=calls))
    return Group(*parts)


def render_case(case: CaseView, *, calls: bool = False) -> RenderableType:
    """One benchmark case: persona, then each turn's message, reply and score."""
    persona = Text("Profile: ", style="bold")
    persona.append(case.profile)
    persona.append("\nPersonality: ", style="bold")
    persona.append(case.personality)
    table = Table(show_lines=True, expand=True)
    table.add_column("k", justify="right")
    table.add_column("user", ratio=1)
    table.add_column("reply", ratio=2)
    table.add_column("score", justify="right")
    for t in case.turns:
        score = Text("-" if t.score is None else str(t.score), style="red" if t.score is None else "bold")
        if t.judge_error:
            score.append("\n" + t.judge_error, style="red")
        table.add_row(str(t.turn), Text(t.user_message), Text(t.reply), score)
    parts: list[RenderableType] = [persona, table]
    if case.error:
        parts.append(Text("Error: " + case.error, style="bold red"))
    all_calls = [c for t in case.turns for c in t.calls] + case.stray_calls
    if calls and all_calls:
        parts += [calls_table(all_calls), prompts(all_calls)]
    mean = "-" if case.mean_score is None else f"{case.mean_score:.2f}"
    title = Text(
        f"Case #{case.id} (index {case.case_index}) · {case.status} · mean score {mean}", style="bold"
    )
    return Panel(Group(*parts), title=title, title_align="left")
