"""The ALOE benchmark (paper section 3): simulated multi-turn conversations
between a role-play user and the evaluated model, scored turn by turn by an
LLM judge whose validity is checked on probes of known answer (the judge
check); the metrics AL(k), IR, N-IR and their fits (``metrics``); and
reports (JSON, Markdown in the layout of Table 1, the AL(k) curve as PNG)
that mark every figure of a judge that failed its check."""

from . import metrics
from ._cases import Case, cases_from_db, cases_from_files, read_items
from ._judge_check import CHECK_ROLE, JudgeCheckSettings, run_judge_check, summarize_probes
from ._rejudge import rejudge
from ._report import (
    build_report,
    load_evaluation,
    render_markdown,
    render_plot,
    summarize_evaluation,
    write_report,
)
from ._runner import EVALUATED_ROLE, BenchmarkSpec, RunOutcome, run_benchmark

__all__ = [
    "CHECK_ROLE",
    "EVALUATED_ROLE",
    "BenchmarkSpec",
    "Case",
    "JudgeCheckSettings",
    "RunOutcome",
    "build_report",
    "cases_from_db",
    "cases_from_files",
    "load_evaluation",
    "metrics",
    "read_items",
    "rejudge",
    "render_markdown",
    "render_plot",
    "run_benchmark",
    "run_judge_check",
    "summarize_evaluation",
    "summarize_probes",
    "write_report",
]
