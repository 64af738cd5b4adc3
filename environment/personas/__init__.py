"""The persona pool (paper section 2.1): profile and personality pools grown
by self-generation and kept diverse by a semantic-similarity filter, then
paired into personas.

    read_items / write_items     the published JSONL format (one JSON string per line;
    read_jsonl, JsonlItems       read_jsonl also names lines that held several values)
    SentenceEmbedder, embed      text -> normalised float32 vectors, off the event loop
    embedder_identity            which embedding model exactly (name, source, weights hash)
    filter_candidates            the acceptance rule (max cosine similarity <= threshold)
    similarity_stats, calibrate_threshold
                                 choose a threshold that fits the embedder
    describe_filter              how a run filtered (unfiltered / threshold / calibrated), stated
    load_pool, import_items, ensure_seeds
                                 pools in the store, embeddings cached per item
    grow_pool                    the iterative growth loop (generator injected)
    pair_personas, load_personas profile x personality pairs per split
    export_pool, pool_vectors    read-only tools
    PersonasSettings             the typed schema of the ``personas`` config group
    import_files, export_files, pool_stats, pair_only
                                 the model-free actions of ``aloe personas`` (one run each)
"""

from ._actions import (
    PoolActionSettings,
    RunIdentity,
    export_files,
    import_files,
    pair_only,
    pair_pools,
    pool_stats,
    reference_vectors,
    seed_pools,
    threshold_for,
)
from ._embed import (
    DEFAULT_EMBEDDER,
    Embedder,
    SentenceEmbedder,
    embed,
    embedder_identity,
    from_blob,
    normalise,
    to_blob,
)
from ._export import export_pool, pool_vectors
from ._filter import (
    THRESHOLD_GRID,
    FilterResult,
    calibrate_threshold,
    describe_filter,
    filter_candidates,
    greedy_keep_count,
    similarity_stats,
)
from ._grow import (
    Generate,
    GenerationRequest,
    GrowthReport,
    GrowthSettings,
    grow_pool,
    iteration_seed,
)
from ._jsonl import JsonlItems, read_items, read_jsonl, write_items, write_objects
from ._pairs import PairReport, load_personas, pair_personas
from ._pool import (
    KINDS,
    SPLITS,
    ImportReport,
    Pool,
    add_items,
    ensure_seeds,
    import_items,
    load_pool,
    seed_items,
    warn_if_collapsing,
)
from ._settings import ACTIONS, PersonasSettings

__all__ = [
    "ACTIONS",
    "DEFAULT_EMBEDDER",
    "KINDS",
    "SPLITS",
    "THRESHOLD_GRID",
    "Embedder",
    "FilterResult",
    "Generate",
    "GenerationRequest",
    "GrowthReport",
    "GrowthSettings",
    "ImportReport",
    "JsonlItems",
    "PairReport",
    "PersonasSettings",
    "Pool",
    "PoolActionSettings",
    "RunIdentity",
    "SentenceEmbedder",
    "add_items",
    "calibrate_threshold",
    "describe_filter",
    "embed",
    "embedder_identity",
    "ensure_seeds",
    "export_files",
    "export_pool",
    "filter_candidates",
    "from_blob",
    "greedy_keep_count",
    "grow_pool",
    "import_files",
    "import_items",
    "iteration_seed",
    "load_personas",
    "load_pool",
    "normalise",
    "pair_only",
    "pair_personas",
    "pair_pools",
    "pool_stats",
    "pool_vectors",
    "read_items",
    "read_jsonl",
    "reference_vectors",
    "seed_items",
    "seed_pools",
    "similarity_stats",
    "threshold_for",
    "to_blob",
    "warn_if_collapsing",
    "write_items",
    "write_objects",
]
