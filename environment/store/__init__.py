"""The SQLite store: schema, migrations, the batching writer, and readers."""

from ._schema import SCHEMA_VERSION
from ._store import Store, connect, now

__all__ = ["SCHEMA_VERSION", "Store", "connect", "now"]
