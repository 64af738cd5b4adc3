"""Training on preference trees: export to TRL datasets, then SFT and DPO.

``export_dataset`` writes ``sft.jsonl``, ``sft_rejected.jsonl``, ``dpo.jsonl``
and ``manifest.json``; ``load_dataset`` gives the same examples as a
``datasets.Dataset``; ``train`` runs TRL's SFTTrainer then DPOTrainer
(``torch``/``transformers``/``trl`` are imported only when training).
"""

from ._base_model import bundled_gguf, check_base_model, convert_gguf, default_cache_dir, resolve_base_model
from ._dataset import features, load_dataset, mix_rows, read_general_messages
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
from ._fit import FitStats, fit_rows
from ._settings import STAGES, LoraSettings, MixSettings, StageSettings, TrainingSettings, TrainSettings
from ._train import StageResult, TrainResult, check, run_dpo, run_sft, train

__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "KINDS",
    "STAGES",
    "Example",
    "ExportFilter",
    "ExportResult",
    "FitStats",
    "LoraSettings",
    "MixSettings",
    "StageResult",
    "StageSettings",
    "TrainResult",
    "TrainSettings",
    "TrainingSettings",
    "bundled_gguf",
    "check",
    "check_base_model",
    "convert_gguf",
    "default_cache_dir",
    "export_dataset",
    "features",
    "fit_rows",
    "iter_examples",
    "load_dataset",
    "mix_rows",
    "parse_runs",
    "read_general_messages",
    "read_manifest",
    "resolve_base_model",
    "run_dpo",
    "run_sft",
    "train",
    "verify_export",
]
