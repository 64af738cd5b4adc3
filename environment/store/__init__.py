"""The SQLite store: schema, migrations, the batching writer, and readers."""

from ._run_config import stored_run_config
from ._schema import SCHEMA_VERSION
from ._store import Store, connect, now
from ._trees import PERSONAS_SQL, create_run, finish_run, insert_node, node_from_row, persona_from_row

__all__ = [
    "PERSONAS_SQL", "SCHEMA_VERSION", "Store", "connect", "create_run", "finish_run", "insert_node", "node_from_row",
    "now", "persona_from_row", "stored_run_config",
]
