"""SFT then DPO on exported trees with TRL (paper section 2.2).

``train(settings, ...)`` checks everything first (stage, steps, base model,
output directory, a non-empty selection, the mixing file) and only then
records a ``runs`` row (kind 'train'), exports the trees to ``DIR/data``,
converts a GGUF base model once, and runs the stages:

* SFT: ``SFTTrainer`` on the conversational prompt-completion rows with the
  loss on the completion only;
* DPO: ``DPOTrainer`` starting from the SFT model, with the SFT model (a
  second, frozen copy) as the reference.

Each stage's model is saved whole (LoRA adapters merged) to a temporary
directory and renamed into place: ``DIR/sft`` for the SFT model of
``sft+dpo``, ``DIR/final`` for the last stage. ``DIR/metrics.json`` holds
each trainer's metrics and log; each saved model gets a ``checkpoints`` row
naming the generate runs it was trained on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from aloesim.core.errors import ConfigError, InputError
from aloesim.environment.store import Checkpoints, LeaseSettings, open_run_sync, transaction

from ._base_model import check_base_model, resolve_base_model
from ._dataset import features, mix_rows
from ._export import FILES, ExportFilter, check_selection, export_dataset, open_source, read_manifest
from ._fit import FitStats, fit_rows
from ._mix import read_mix
from ._settings import StageSettings, TrainSettings

log = structlog.get_logger(__name__)


@dataclass
class StageResult:
    """One trained stage: where its model is and what the trainer reported."""

    stage: str
    path: Path
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    data: FitStats
    checkpoint_id: int | None = None


@dataclass
class TrainResult:
    run_id: int
    output_dir: Path
    base_model: Path
    stages: list[StageResult] = field(default_factory=list)

    @property
    def final(self) -> Path:
        return self.output_dir / "final"


def check(settings: TrainSettings) -> list[dict[str, Any]]:
    """Every check that needs no writing; returns the general mixing rows (if any).

    Raises ConfigError / InputError / StoreError."""
    settings.validate_batches()
    check_base_model(settings.base_model)
    out = settings.output_dir
    if out.exists() and not out.is_dir():
        raise ConfigError("training.output_dir", str(out), "a directory (this path is a file)")
    if (out / "final").exists() and not settings.overwrite:
        raise ConfigError("training.output_dir", str(out),
                          "a directory without a final/ model (or set training.overwrite=true to replace it)")
    conn = open_source(settings.db)
    try:
        check_selection(conn, ExportFilter(settings.runs, settings.include_incomplete), db=settings.db,
                        key="training.runs")
    finally:
        conn.close()
    return general_rows(settings)


def general_rows(settings: TrainSettings) -> list[dict[str, Any]]:
    """The general rows to mix into SFT (``training.mix.path``, read whole: a bad
    row fails here), or none; a warning when the preset expects them (training=paper)."""
    if "sft" not in settings.stages:
        return []
    if settings.mix_path is not None:
        return read_mix(settings.mix_path, split=settings.mix_split)
    if settings.mix_expected:
        log.warning("training.mix_missing: this preset expects general data mixed into SFT (the paper mixes "
                    "CodeActInstruct); training on the personalised data only (the paper's 'Preferred' ablation)",
                    hint="training.mix.path=FILE.jsonl or a save_to_disk folder (training.mix.split=codeact)")
    return []


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _is_main() -> bool:
    """True in the process that writes records and renames files (rank 0, or no launcher)."""
    return int(os.environ.get("RANK", "0")) == 0


def _barrier(settings: TrainSettings) -> None:
    if settings.world_size > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def _partial(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def _publish(tmp: Path, target: Path) -> None:
    """Rename a fully saved model directory into place (main process only)."""
    if not _is_main():
        return
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


@functools.cache
def _checkpointing_field() -> str:
    """The TrainingArguments field for activation checkpointing (renamed in transformers 5)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _common_args(s: TrainSettings, st: StageSettings, work: Path) -> dict[str, Any]:
    import torch

    return dict(
        output_dir=str(work),
        learning_rate=st.learning_rate,
        lr_scheduler_type=st.lr_scheduler_type,
        warmup_steps=st.warmup,
        num_train_epochs=st.epochs,
        max_steps=s.max_steps if s.max_steps is not None else -1,
        per_device_train_batch_size=st.per_device_batch_size,
        gradient_accumulation_steps=st.grad_accum(s.world_size, "training"),
        logging_steps=s.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if s.save_steps else "no",
        save_steps=s.save_steps or 500,
        report_to="none",
        seed=s.seed,
        bf16=s.bf16,
        **{_checkpointing_field(): s.gradient_checkpointing},
        max_length=s.max_length,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def _peft_config(s: TrainSettings) -> Any:
    if not s.lora.enabled:
        return None
    from peft import LoraConfig

    targets = s.lora.target_modules
    return LoraConfig(r=s.lora.r, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout, task_type="CAUSAL_LM",
                      target_modules=targets if isinstance(targets, str) else list(targets))


def _load(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return model, tokenizer


def _finish(trainer: Any, s: TrainSettings, tokenizer: Any, target: Path, stage: str, out: Any, fit: FitStats) -> StageResult:
    tmp = _partial(target)
    if _is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    if s.lora.enabled:
        # the merged full model (LoRA + ZeRO-3/FSDP merging is not supported: use full fine-tuning there)
        if _is_main():
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
    else:
        trainer.save_model(str(tmp))  # collective under DeepSpeed/FSDP; writes model + tokenizer on rank 0
        if _is_main():
            (tmp / "training_args.bin").unlink(missing_ok=True)
    _barrier(s)
    _publish(tmp, target)
    _barrier(s)
    history = list(trainer.state.log_history)
    log.info("train.stage_done", stage=stage, path=str(target), steps=trainer.state.global_step,
             loss=out.metrics.get("train_loss"))
    return StageResult(stage, target, dict(out.metrics) | {"global_step": trainer.state.global_step}, history, fit)


def run_sft(model_dir: Path, rows: list[dict[str, Any]], s: TrainSettings, target: Path, work: Path,
            general: list[dict[str, Any]] | None = None) -> StageResult:
    """Supervised fine-tuning on prompt-completion rows, loss on the completion only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _load(model_dir)
    if general:
        rows = mix_rows(rows, general, s.mix_ratio, s.seed)
    rows, fit = fit_rows(rows, tokenizer, s.max_length, trim=s.trim_history)
    if not rows:
        raise InputError(str(s.db), f"no SFT example fits training.max_length={s.max_length} tokens")
    args = SFTConfig(**_common_args(s, s.sft, work), completion_only_loss=True, packing=False)
    with _quiet_deprecations():
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows, features=features("sft")),
                             processing_class=tokenizer, peft_config=_peft_config(s))
        out = trainer.train()
    return _finish(trainer, s, tokenizer, target, "sft", out, fit)


@contextlib.contextmanager
def _quiet_deprecations() -> Any:
    """Without a deprecation notice that TRL and PEFT trigger inside transformers
    (``is_gradient_checkpointing``): nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def run_dpo(model_dir: Path, rows: list[dict[str, Any]], s: TrainSettings, target: Path, work: Path) -> StageResult:
    """DPO from ``model_dir``, with a frozen copy of ``model_dir`` as the reference
    (with LoRA: the adapter-free model, i.e. the same weights)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = _load(model_dir)
    rows, fit = fit_rows(rows, tokenizer, s.max_length, trim=s.trim_history)
    if not rows:
        raise InputError(str(s.db), f"no DPO example fits training.max_length={s.max_length} tokens")
    ref_model = None if s.lora.enabled else _load(model_dir)[0]
    args = DPOConfig(**_common_args(s, s.dpo, work), beta=s.dpo.beta)
    with _quiet_deprecations():
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args,
                             train_dataset=Dataset.from_list(rows, features=features("dpo")),
                             processing_class=tokenizer, peft_config=_peft_config(s))
        out = trainer.train()
    return _finish(trainer, s, tokenizer, target, "dpo", out, fit)


def _stats(result: TrainResult, manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "output_dir": str(result.output_dir),
        "base_model": str(result.base_model),
        "source_runs": manifest["source_runs"],
        "data_sha256": {name: info["sha256"] for name, info in manifest["files"].items()},
        "stages": {r.stage: {"path": str(r.path), "train_loss": r.metrics.get("train_loss"),
                             "global_step": r.metrics.get("global_step"), "data": r.data.as_dict()}
                   for r in result.stages},
    }


def _record_checkpoint(settings: TrainSettings, run_id: int, r: StageResult, manifest: dict[str, Any]) -> int:
    data_file = FILES[settings.sft_data if r.stage == "sft" else "dpo"]
    metrics = {**r.metrics, "data": r.data.as_dict(), "data_sha256": manifest["files"][data_file]["sha256"]}
    base = settings.base_model or str(check_base_model(None))
    return transaction(settings.db, lambda c: Checkpoints(c).add(run_id, str(r.path), r.stage, base,
                                                                 manifest["source_runs"], metrics))


def _write_metrics(out: Path, run_id: int, stages: list[StageResult]) -> None:
    metrics = {"run_id": run_id, "stages": {r.stage: {"path": str(r.path), "metrics": r.metrics,
                                                      "data": r.data.as_dict(), "log_history": r.log_history}
                                            for r in stages}}
    tmp = out / ".metrics.json.partial"
    tmp.write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out / "metrics.json")
    for stage_dir in [*(out / "trainer").glob("*"), out / "trainer"]:  # drop empty trainer work dirs
        if stage_dir.is_dir() and not any(stage_dir.iterdir()):
            stage_dir.rmdir()


def train(settings: TrainSettings, config: dict[str, Any] | None = None, config_hash: str = "", *,
          lease: LeaseSettings | None = None) -> TrainResult:
    """Run the configured stages; see the module docstring. Returns where everything went.

    The run (kind 'train', always a new one) is held with ``open_run_sync``:
    its end is recorded whatever happens (``interrupted`` on Ctrl-C or
    SIGTERM, ``failed`` with the error). Under ``accelerate launch`` every
    process runs this; only rank 0 writes the database, the exported data,
    the GGUF conversion and the final directories, the others wait for it
    at barriers."""
    general = check(settings)
    main = _is_main()
    held = (open_run_sync(settings.db, "train", config or {}, config_hash or "train", resume=False,
                          lease=lease or LeaseSettings()) if main else contextlib.nullcontext(None))
    with held as run:
        run_id = run.id if run is not None else 0
        out = settings.output_dir.resolve()
        result = TrainResult(run_id, out, Path())
        data = out / "data"
        if main:
            out.mkdir(parents=True, exist_ok=True)
            export_dataset(settings.db, data, ExportFilter(settings.runs, settings.include_incomplete))
            result.base_model = resolve_base_model(settings.base_model, settings.model_cache_dir)
        _barrier(settings)
        manifest = read_manifest(data)
        if not main:
            result.base_model = resolve_base_model(settings.base_model, settings.model_cache_dir)
        current = result.base_model
        for i, stage in enumerate(settings.stages):
            target = out / "final" if i == len(settings.stages) - 1 else out / stage
            work = out / "trainer" / stage
            if stage == "sft":
                res = run_sft(current, _read_rows(data / FILES[settings.sft_data]), settings, target, work, general)
            else:
                res = run_dpo(current, _read_rows(data / FILES["dpo"]), settings, target, work)
            if main:
                res.checkpoint_id = _record_checkpoint(settings, run_id, res, manifest)
            result.stages.append(res)
            current = target
        if run is not None:
            _write_metrics(out, run_id, result.stages)
            run.finish("complete", _stats(result, manifest))
    log.info("train.done", run_id=run_id, final=str(result.final))
    return result
