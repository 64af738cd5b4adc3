"""Reading a database for people: read-only views of trees, runs, evaluations
and cases, their terminal rendering (``aloe show``) and their export to
Markdown and JSON. The web viewer (``aloesim.inspection.viewer``) reads
through the same views. One private module per concept: ``_runs``, ``_trees``,
``_calls``, ``_evaluations`` (and cases), ``_text`` (word diffs, config
differences); ``_render*`` and ``_export`` present them."""

from aloesim.environment.store import loads

from ._calls import CallStats, CallView, run_call_stats, run_calls_version
from ._evaluations import (
    CaseView,
    EvaluationView,
    Point,
    al_curves,
    list_cases,
    list_evaluations,
    load_case,
    load_evaluation,
)
from ._export import case_markdown, to_json, tree_markdown
from ._render import SIDE_BY_SIDE_MIN_WIDTH, render_case, render_evaluation, render_tree
from ._render_run import render_run
from ._runs import RunView, first_of_kind, list_runs, load_run
from ._text import config_diff, config_differences, diff_words
from ._trees import NodeView, TreeView, count_trees, list_trees, load_tree, tree_events

__all__ = [
    "SIDE_BY_SIDE_MIN_WIDTH",
    "CallStats",
    "CallView",
    "CaseView",
    "EvaluationView",
    "NodeView",
    "Point",
    "RunView",
    "TreeView",
    "al_curves",
    "case_markdown",
    "config_diff",
    "config_differences",
    "count_trees",
    "diff_words",
    "first_of_kind",
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
