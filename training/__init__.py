"""Training on preference trees: export to TRL datasets, then SFT and DPO.

``export_dataset`` writes ``sft.jsonl``, ``sft_rejected.jsonl``, ``dpo.jsonl``
and ``manifest.json``; ``load_dataset`` gives the same examples as a
``datasets.Dataset``; ``train`` runs TRL's SFTTrainer then DPOTrainer
(``torch``/``transformers``/``trl`` are imported only when training).
"""

from ._dataset import load_dataset, mix_general, read_general_messages
from ._export import (
    FILES,
    FORMAT_VERSION,
    KINDS,
    Example,
    ExportFilter,
    ExportResult,
    export_dataset,
    iter_examples,
    parse_runs,
    read_manifest,
    verify_export,
)

__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "KINDS",
    "Example",
    "ExportFilter",
    "ExportResult",
    "export_dataset",
    "iter_examples",
    "load_dataset",
    "mix_general",
    "parse_runs",
    "read_general_messages",
    "read_manifest",
    "verify_export",
]
