"""Per-node checks of stored preference trees: the one home of the flags that
``aloe quality`` reports and ``aloe export export.exclude=[...]`` drops.

A node is flagged

- ``leaked``          when its user message recites the persona or the role-play
                      instructions of its run's user prompt (``Recitation.leaks``);
- ``role_flip``       when its user message speaks as the AI (``role_flip``);
- ``truncated``       when a call that made it (user, inducer, preferred, rejected)
                      stopped at ``max_tokens`` (``finish_reason == "length"``; where no
                      finish_reason was recorded: its completion used all of ``max_tokens``);
- ``empty``           when its user message or a reply is blank;
- ``duplicate``       when its two replies are the same text, or its user message
                      or a reply repeats an earlier turn of its own conversation;
- ``judge_disagree``  when the preference check preferred the rejected reply in
                      both orders (and the pair was not swapped to follow it).

Calls are joined to nodes by (tree, turn, branch, role), the last successful
call of each. When a run swapped a pair to follow the judge, the node's
preferred text came from the rejected call, and the join follows the swap.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .._types import Node, Persona, PreferenceCheck
from ..store import CallOutcomeRow, Calls, CheckedNode, RunRecord, Runs, Trees
from ._settings import REASONS, QualitySettings
from ._text import PersonaOverlap, Recitation, normalized, role_flip, template_text

CALL_ROLES: tuple[str, ...] = ("user", "inducer", "preferred", "rejected")
TEXT_ROLES: tuple[str, ...] = ("user", "preferred", "rejected")


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How one recorded call ended: ``finish_reason`` None = not recorded."""

    finish_reason: str | None
    completion_tokens: int | None
    max_tokens: int | None = None  # what the request allowed

    def finish(self) -> tuple[str | None, bool]:
        """(finish reason, inferred?). Where none was recorded, a call whose completion
        used all of ``max_tokens`` stopped for length and one that used fewer did not
        ("stop"); without both numbers the finish is unknown (None)."""
        if self.finish_reason is not None:
            return self.finish_reason, False
        if self.completion_tokens is None or not isinstance(self.max_tokens, int):
            return None, False
        return ("length" if self.completion_tokens >= self.max_tokens else "stop"), True


@dataclass(frozen=True, slots=True)
class NodeCheck:
    """What the detectors found in one node."""

    node: Node
    flags: frozenset[str]
    recited: Recitation  # how much of its user message repeats the persona word for word
    role_flip: str | None  # name of the matching role-flip pattern
    finish: tuple[tuple[str, str | None], ...]  # (role, finish_reason or None = unknown) per role of CALL_ROLES
    finish_inferred: tuple[str, ...]  # roles whose finish was inferred from completion_tokens vs max_tokens
    truncated_roles: tuple[str, ...]
    empty_roles: tuple[str, ...]
    duplicate: tuple[str, ...]  # "pair" | "user_repeat" | "reply_repeat"
    judge: str | None  # "agree" | "disagree" | "split" (position-dependent) | None = not checked
    swapped: bool  # the pair was swapped to follow the judge
    preferred_tokens: int | None  # completion tokens of the call that wrote the preferred text
    rejected_tokens: int | None
    preferred_words: int
    rejected_words: int


@dataclass(frozen=True, slots=True)
class TreeChecks:
    tree_id: int
    run_id: int
    status: str
    persona: Persona
    checks: tuple[NodeCheck, ...]


def _verdict(judge: PreferenceCheck | None) -> tuple[str | None, bool]:
    if judge is None:
        return None, False
    if judge.agrees:
        return "agree", judge.swapped
    if judge.disagrees:
        return "disagree", judge.swapped
    return "split", judge.swapped


def check_tree(persona: Persona, nodes: Sequence[Node], calls: dict[tuple[int, str, str], CallOutcome],
               settings: QualitySettings, *, instructions: Sequence[str] = ()) -> list[NodeCheck]:
    """Run every detector on the nodes of one tree. ``calls`` maps (turn, branch,
    role) to the last successful call of that role there; ``instructions`` are the
    fixed pieces of the user role's prompt (a message reciting them leaks too)."""
    overlap = PersonaOverlap(persona.profile, persona.personality, instructions=instructions,
                             run_words=settings.leak_run_words)
    # each text normalised once: (user message, preferred, rejected) per branch
    norms = {n.branch: (normalized(n.user_message), normalized(n.preferred), normalized(n.rejected)) for n in nodes}
    out: list[NodeCheck] = []
    for node in nodes:
        flags: set[str] = set()
        recited = overlap.recited(node.user_message)
        if recited.leaks(settings.leak_min_words):
            flags.add("leaked")
        flip = role_flip(node.user_message)
        if flip is not None:
            flags.add("role_flip")
        judge, swapped = _verdict(node.judge)
        if judge == "disagree" and not swapped:
            flags.add("judge_disagree")
        # which call wrote each text (a swapped pair's preferred text is the rejected call's)
        source = {"user": "user", "inducer": "inducer", "preferred": "preferred", "rejected": "rejected"}
        if swapped:
            source["preferred"], source["rejected"] = "rejected", "preferred"
        found = {role: calls.get((node.turn, node.branch, source[role])) for role in CALL_ROLES}
        ends = {role: c.finish() if c else (None, False) for role, c in found.items()}
        finish = tuple((role, end[0]) for role, end in ends.items())
        truncated = tuple(role for role, reason in finish if reason == "length")
        if truncated:
            flags.add("truncated")
        texts = {"user": node.user_message, "preferred": node.preferred, "rejected": node.rejected}
        empty = tuple(role for role in TEXT_ROLES if not texts[role].strip())
        if empty:
            flags.add("empty")
        duplicate = _duplicates(node.branch, norms)
        if duplicate:
            flags.add("duplicate")
        pc, rc = found["preferred"], found["rejected"]
        out.append(NodeCheck(
            node=node, flags=frozenset(flags), recited=recited, role_flip=flip, finish=finish,
            finish_inferred=tuple(role for role, end in ends.items() if end[1]),
            truncated_roles=truncated, empty_roles=empty, duplicate=duplicate, judge=judge, swapped=swapped,
            preferred_tokens=pc.completion_tokens if pc else None, rejected_tokens=rc.completion_tokens if rc else None,
            preferred_words=_count(norms[node.branch][1]), rejected_words=_count(norms[node.branch][2]),
        ))
    return out


def _count(norm: str) -> int:
    return norm.count(" ") + 1 if norm else 0


def _duplicates(branch: str, norms: dict[str, tuple[str, str, str]]) -> tuple[str, ...]:
    m, p, r = norms[branch]
    found: list[str] = []
    if p and p == r:
        found.append("pair")
    earlier_user: set[str] = set()
    earlier_replies: set[str] = set()
    for k in range(len(branch)):
        anc = norms.get(branch[:k])
        if anc is None:
            continue
        earlier_user.add(anc[0])
        earlier_replies.add(anc[1] if branch[k] == "p" else anc[2])  # the reply the conversation continued
    if m and m in earlier_user:
        found.append("user_repeat")
    if (p and p in earlier_replies) or (r and r in earlier_replies):
        found.append("reply_repeat")
    return tuple(found)


def iter_tree_checks(conn: sqlite3.Connection, run_ids: Iterable[int], settings: QualitySettings, *,
                     include_incomplete: bool = True, max_tree_id: int | None = None) -> Iterator[TreeChecks]:
    """Check every node of the runs' trees, one tree at a time (by run, then tree id).

    ``include_incomplete=False`` reads complete trees only (what export reads
    by default); ``max_tree_id`` stops after that tree."""
    for run_id in run_ids:
        template = _user_prompt(Runs(conn).get(run_id))
        instructions = template_text(template) if template else ()
        calls = Calls(conn).outcomes(run_id, include_incomplete=include_incomplete, max_tree_id=max_tree_id)
        pending = next(calls, None)
        tree: list[CheckedNode] = []
        for row in Trees(conn).checked_nodes(run_id, include_incomplete=include_incomplete, max_tree_id=max_tree_id):
            if tree and row.node.tree_id != tree[0].node.tree_id:
                pending, checked = _finish_tree(tree, calls, pending, settings, instructions)
                yield checked
                tree = []
            tree.append(row)
        if tree:
            yield _finish_tree(tree, calls, pending, settings, instructions)[1]


def _user_prompt(run: RunRecord | None) -> str | None:
    """The prompt template the user role had in a run (from its stored config), or None."""
    prompts = run.config.get("prompts") if run is not None and isinstance(run.config, dict) else None
    user = prompts.get("user") if isinstance(prompts, dict) else None
    return user if isinstance(user, str) else None


def _finish_tree(rows: list[CheckedNode], calls: Iterator[CallOutcomeRow], pending: CallOutcomeRow | None,
                 settings: QualitySettings, instructions: Sequence[str]) -> tuple[CallOutcomeRow | None, TreeChecks]:
    tree_id = rows[0].node.tree_id
    found: dict[tuple[int, str, str], CallOutcome] = {}
    while pending is not None and pending.tree_id <= tree_id:
        if pending.tree_id == tree_id and pending.turn is not None:  # calls of trees without nodes are skipped
            found[(pending.turn, pending.branch or "", pending.role)] = CallOutcome(
                pending.finish_reason, pending.completion_tokens, pending.max_tokens)
        pending = next(calls, None)
    first = rows[0]
    checks = check_tree(first.persona, [r.node for r in rows], found, settings, instructions=instructions)
    return pending, TreeChecks(tree_id, first.run_id, first.tree_status, first.persona, tuple(checks))


@dataclass
class Exclusion:
    """Which nodes an export drops for the chosen reasons, and why.

    A flagged node is dropped with every node below it: a descendant's
    prompt is the conversation through its ancestors, so it would train on
    the flagged turn's text."""

    reasons: tuple[str, ...]
    dropped: set[tuple[int, str]] = field(default_factory=set)  # (tree id, branch)
    by_reason: dict[str, int] = field(default_factory=dict)  # flagged nodes per reason (a node may have several)
    dependents: int = 0  # dropped only because an ancestor was
    unknown_finish: int = 0  # checked nodes with a call whose finish_reason is unknown (truncation unverifiable)

    def add(self, tree: TreeChecks) -> None:
        chosen = set(self.reasons)
        dropped_here: set[str] = set()
        for c in sorted(tree.checks, key=lambda c: len(c.node.branch)):
            own = c.flags & chosen
            for reason in own:
                self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
            if "truncated" in chosen and any(reason is None for _, reason in c.finish):
                self.unknown_finish += 1
            branch = c.node.branch
            inherited = any(branch[:k] in dropped_here for k in range(len(branch)))
            if own or inherited:
                dropped_here.add(branch)
                self.dropped.add((tree.tree_id, branch))
                self.dependents += int(not own)

    def drops(self, tree_id: int, branch: str) -> bool:
        return (tree_id, branch) in self.dropped

    def summary(self) -> dict[str, int]:
        """Counts for ``manifest.json``: per reason, dependents, total, and (when
        truncation was asked for) nodes whose finish_reason was unknown."""
        out = {r: self.by_reason.get(r, 0) for r in self.reasons}
        out["dependents"] = self.dependents
        out["total"] = len(self.dropped)
        if "truncated" in self.reasons:
            out["unknown_finish"] = self.unknown_finish
        return out


def find_exclusions(conn: sqlite3.Connection, run_ids: Iterable[int] | None, reasons: Sequence[str],
                    settings: QualitySettings, *, include_incomplete: bool) -> Exclusion:
    """The nodes of the runs' trees (None = every run's) that ``reasons`` (a subset of ``REASONS``) drop."""
    unknown = [r for r in reasons if r not in REASONS]
    if unknown:
        raise ValueError(f"unknown exclusion reasons {unknown}; expected some of {list(REASONS)}")
    exclusion = Exclusion(tuple(r for r in REASONS if r in reasons))
    if exclusion.reasons:
        runs = Trees(conn).run_ids() if run_ids is None else run_ids
        for tree in iter_tree_checks(conn, runs, settings, include_incomplete=include_incomplete):
            exclusion.add(tree)
    return exclusion
