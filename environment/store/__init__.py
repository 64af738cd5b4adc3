"""The SQLite store: schema, migrations, the batching writer, and readers."""

from ._judging import ProbeRow, probe_rows, save_probe, set_distribution, turn_distributions
from ._schema import SCHEMA_VERSION
from ._store import Store, connect, now
from ._trees import PERSONAS_SQL, create_run, finish_run, insert_node, node_from_row, persona_from_row

__all__ = [
    "PERSONAS_SQL", "SCHEMA_VERSION", "ProbeRow", "Store", "connect", "create_run", "finish_run", "insert_node",
    "node_from_row", "now", "persona_from_row", "probe_rows", "save_probe", "set_distribution", "turn_distributions",
]
