"""Quality reports of generate runs (``aloe quality``): per turn and overall,
revelation (does the inferred persona approach the true one), leakage, role
flips, truncation, empty and duplicated replies, length bias, diversity and
judge agreement, each against a threshold of the ``quality`` config group.
``build_quality_report`` reads a run into a JSON-ready dict,
``write_quality_report`` writes ``quality.json``, ``quality.md`` and
``quality.png``, ``summary_lines`` gives a few terminal lines;
``report_run`` is ``aloe quality`` in one call and ``quality_summary(db,
run_id)`` the summary lines in one call (``aloe demo``);
``run_quality_summary`` is the viewer's run-page section. The
node flags are ``aloesim.environment.quality``'s, shared with export.
"""

from ._metrics import METRICS, distinct_n, mean_pairwise_distance
from ._report import REPORT_VERSION, build_quality_report
from ._run import QualityFiles, load_embedder, quality_summary, report_run
from ._view import VIEW_MAX_TREES, run_quality_summary
from ._write import render_markdown, render_plot, summary_lines, write_quality_report

__all__ = [
    "METRICS",
    "REPORT_VERSION",
    "VIEW_MAX_TREES",
    "QualityFiles",
    "build_quality_report",
    "distinct_n",
    "load_embedder",
    "mean_pairwise_distance",
    "quality_summary",
    "render_markdown",
    "render_plot",
    "report_run",
    "run_quality_summary",
    "summary_lines",
    "write_quality_report",
]
