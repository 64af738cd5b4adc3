"""The read side: transcript inspection. Run listings, ``aloe show`` in the
terminal, the ``aloe view`` web viewer and run summaries, all reading one set
of view models through the store. Depends on ``environment`` (the store) and
``evaluation`` (metrics), never on ``agents`` or ``orchestration``."""
