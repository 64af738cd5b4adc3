"""The SQLite store: the schema and its migrations, the batching writer and
the reader (``Store``, async) or a plain connection (``connect``, sync), and
the typed repositories that are the only code reading or writing tables:
``Runs`` (and ``Checkpoints``), ``Personas``, ``Trees``, ``Calls`` (and ``Batches``, the batch mode's journal),
``Evaluations`` (and ``JudgeProbes``, the judge check of an evaluation).
A repository wraps a ``sqlite3.Connection``; commands run it through the store (``await store.write(lambda c: Trees(c).fail(id, why))``,
``await store.read(lambda c: Runs(c).get(id))``), tools on a connection.
``open_run`` (``open_run_sync``) is a run's lifecycle: find-or-create by
identity, the lease that lets one process at a time hold it, the end.
``merge_databases`` copies whole databases into one."""

from ._batches import Batches
from ._calls import (
    CallOutcomeRow,
    CallRow,
    Calls,
    CallTotals,
    ModelCost,
    NewCall,
    RoleTotals,
    RunCost,
    dollars_text,
)
from ._evaluations import (
    CaseListing,
    CaseRecord,
    EvaluationListing,
    EvaluationRecord,
    Evaluations,
    JudgedTurn,
    TurnRecord,
)
from ._judge_probes import JudgeProbes, ProbeRow
from ._lifecycle import (
    ActiveRun,
    LeaseSettings,
    claim_run,
    holder_alive,
    open_run,
    open_run_sync,
    shown_status,
)
from ._merge import EVAL_TABLES, TREE_TABLES, MergeResult, database_bytes, merge_databases, shard_database
from ._personas import Personas, PoolItem
from ._rows import dumps, loads
from ._runs import Checkpoints, Lease, RunRecord, Runs
from ._schema import SCHEMA_VERSION
from ._store import Store, connect, open_readonly, transaction
from ._trees import CheckedNode, EventRecord, NodeRecord, TreeListing, TreeRecord, Trees

__all__ = [
    "EVAL_TABLES",
    "SCHEMA_VERSION",
    "TREE_TABLES",
    "ActiveRun",
    "Batches",
    "CallOutcomeRow",
    "CallRow",
    "CallTotals",
    "Calls",
    "CaseListing",
    "CaseRecord",
    "CheckedNode",
    "Checkpoints",
    "EvaluationListing",
    "EvaluationRecord",
    "Evaluations",
    "EventRecord",
    "JudgeProbes",
    "JudgedTurn",
    "Lease",
    "LeaseSettings",
    "MergeResult",
    "ModelCost",
    "NewCall",
    "NodeRecord",
    "Personas",
    "PoolItem",
    "ProbeRow",
    "RoleTotals",
    "RunCost",
    "RunRecord",
    "Runs",
    "Store",
    "TreeListing",
    "TreeRecord",
    "Trees",
    "TurnRecord",
    "claim_run",
    "connect",
    "database_bytes",
    "dollars_text",
    "dumps",
    "holder_alive",
    "loads",
    "merge_databases",
    "open_readonly",
    "open_run",
    "open_run_sync",
    "shard_database",
    "shown_status",
    "transaction",
]
