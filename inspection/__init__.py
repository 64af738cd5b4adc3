"""The read side: transcript inspection. Run listings, ``aloe show`` in the
terminal, the ``aloe view`` web viewer and run summaries, all reading one set
of view models through the store, and the quality report of generate runs
(``quality``; ``quality_summary(db, run_id=None)`` is its short summary).
Depends on ``environment`` (the store) and
``evaluation`` (metrics), never on ``agents`` or ``orchestration``."""

from .quality import quality_summary

__all__ = ["quality_summary"]
