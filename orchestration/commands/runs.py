"""``aloe runs``: the runs recorded in a database, side by side.

    aloe runs db=aloe.db                   # a table (rich on a terminal, plain text otherwise)
    aloe runs db=aloe.db kind=generate     # only generate runs
    aloe runs db=aloe.db format=json       # one JSON list, for scripts

What each column holds: ``aloesim.inspection.runs_listing`` (the read side
builds the listing; this command prints it). The database is opened read-only.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from ...core import to_settings
from ...inspection import runs_listing
from .._schemas import RunsConfig

HELP = "list the runs of db with config differences, trees, nodes, calls, tokens, failures, limits and wall time"


def run(cfg: DictConfig) -> int:
    c: RunsConfig = to_settings(cfg, RunsConfig)
    listing = runs_listing(str(cfg.db), c.kind, fmt=c.format, terminal=sys.stdout.isatty())
    if isinstance(listing, str):
        print(listing)
    else:
        from rich.console import Console

        Console().print(listing)
    return 0
