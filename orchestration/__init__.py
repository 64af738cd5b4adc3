"""The top of the house: the ``aloe`` command line and the use cases it runs.

``cli.main`` parses ``aloe COMMAND key=value ...``, composes the command's
Hydra config against its typed schema (``_config``, ``_schemas``) and calls
``commands/<command>.run``. A command is thin: config, then one call into a
use case (``_generate_run.generate_trees``, ``_personas_run``,
``aloesim.evaluation.evaluate``, ``aloesim.training``, ``aloesim.inspection``),
then printing. Tree growth is here because it joins every room: the four
roles run as actors (``_actors``) on the async event bus (``_bus``) with flat
messages (``_messages``), and every run is held through the one run lifecycle
(``aloesim.environment.store.open_run``). Public: ``compose_config`` (a
command's config as ``aloe`` composes it), ``check_config`` (its keys
checked) and ``configure_logging``. Nothing imports this package;
docs/architecture.md draws the rooms.
"""

from ._config import check_config, compose_config
from ._logging import configure_logging

__all__ = ["check_config", "compose_config", "configure_logging"]
