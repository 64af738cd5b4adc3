"""Reading a database for people: read-only views of trees, runs, evaluations
and cases, their terminal rendering (``aloe show``) and their export to
Markdown and JSON. The web viewer (``aloesim.inspection.viewer``) reads
through the same views."""

from aloesim.environment.store import loads

from ._data import (
    CallStats,
    CallView,
    CaseView,
    EvaluationView,
    NodeView,
    RunView,
    TreeView,
    al_curves,
    config_diff,
    count_trees,
    diff_words,
    first_of_kind,
    fit_line,
    list_cases,
    list_evaluations,
    list_runs,
    list_trees,
    load_case,
    load_evaluation,
    load_run,
    load_tree,
    run_call_stats,
    run_calls_version,
    tree_events,
)
from ._export import case_markdown, to_json, tree_markdown
from ._render import SIDE_BY_SIDE_MIN_WIDTH, render_case, render_evaluation, render_tree
from ._render_run import render_run

__all__ = [
    "SIDE_BY_SIDE_MIN_WIDTH",
    "CallStats",
    "CallView",
    "CaseView",
    "EvaluationView",
    "NodeView",
    "RunView",
    "TreeView",
    "al_curves",
    "case_markdown",
    "config_diff",
    "count_trees",
    "diff_words",
    "first_of_kind",
    "fit_line",
    "list_cases",
    "list_evaluations",
    "list_runs",
    "list_trees",
    "load_case",
    "load_evaluation",
    "load_run",
    "load_tree",
    "loads",
    "render_case",
    "render_evaluation",
    "render_run",
    "render_tree",
    "run_call_stats",
    "run_calls_version",
    "to_json",
    "tree_events",
    "tree_markdown",
]
