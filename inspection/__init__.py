"""The read side: transcript inspection. Run listings (``runs_listing``, what
``aloe runs`` prints, from ``list_run_rows``), ``aloe show`` in the
terminal, the ``aloe view`` web viewer and run summaries, all reading one set
of view models through the store, and the quality report of generate runs
(``quality``; ``quality_summary(db, run_id=None)`` is its short summary);
``end_of_command`` ends a long command with a human summary on a terminal
(``generate_lines``, ``evaluate_lines``, ``personas_lines``) before its JSON line.
Depends on ``environment`` (the store) and
``evaluation`` (metrics), never on ``agents`` or ``orchestration``."""

from ._run_listing import limit_text, list_run_rows, runs_listing, runs_plain_table, runs_rich_table
from ._summaries import end_of_command, evaluate_lines, generate_lines, personas_lines, wall_text
from .quality import quality_summary

__all__ = [
    "end_of_command",
    "evaluate_lines",
    "generate_lines",
    "limit_text",
    "list_run_rows",
    "personas_lines",
    "quality_summary",
    "runs_listing",
    "runs_plain_table",
    "runs_rich_table",
    "wall_text",
]
