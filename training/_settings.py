"""Typed, validated training settings built from the ``training`` config group.

Every check happens here, before anything is loaded or written, and raises
``ConfigError`` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aloesim.core.errors import ConfigError

from ._export import parse_runs

Stage = Literal["sft", "dpo", "sft+dpo"]
STAGES: tuple[str, ...] = ("sft", "dpo", "sft+dpo")


@dataclass(frozen=True)
class StageSettings:
    """Optimizer settings of one stage (paper 2.2: lr 1e-5 linear, batch 48)."""

    learning_rate: float
    lr_scheduler_type: str
    warmup: float  # steps (int >= 1) or a ratio of the total steps (0 <= x < 1)
    epochs: float
    effective_batch: int
    per_device_batch_size: int
    beta: float | None = None  # DPO only

    def grad_accum(self, world_size: int, key: str) -> int:
        per_step = self.per_device_batch_size * world_size
        if self.effective_batch % per_step:
            raise ConfigError(f"{key}.effective_batch", self.effective_batch,
                              f"a multiple of per_device_batch_size x devices = {self.per_device_batch_size} x {world_size}")
        return self.effective_batch // per_step


@dataclass(frozen=True)
class LoraSettings:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``aloe train`` needs, checked."""

    db: Path
    stage: Stage
    base_model: str | None
    model_cache_dir: Path | None
    output_dir: Path
    overwrite: bool
    runs: tuple[int, ...]
    include_incomplete: bool
    sft_data: str
    max_steps: int | None
    max_length: int
    trim_history: bool
    seed: int
    logging_steps: int
    save_steps: int | None
    bf16: bool
    gradient_checkpointing: bool
    sft: StageSettings
    dpo: StageSettings
    lora: LoraSettings = field(default_factory=LoraSettings)
    mix_path: Path | None = None
    mix_ratio: float = 0.0
    world_size: int = 1

    @property
    def stages(self) -> list[str]:
        return self.stage.split("+")

    @classmethod
    def from_config(cls, cfg: Any) -> TrainSettings:
        """Build from a composed ``aloe train`` config (keys ``db``, ``seed``, ``training``)."""
        t = cfg.training
        stage = str(t.stage)
        if stage not in STAGES:
            raise ConfigError("training.stage", stage, " | ".join(STAGES))
        if t.sft_data not in ("sft", "sft_rejected"):
            raise ConfigError("training.sft_data", t.sft_data, "sft | sft_rejected")
        max_steps = _opt_int(t.max_steps, "training.max_steps", minimum=1)
        if t.output_dir in (None, ""):
            raise ConfigError("training.output_dir", t.output_dir, "a directory path")
        mix_path = Path(str(t.mix.path)).expanduser() if t.mix.path not in (None, "") else None
        ratio = _float(t.mix.ratio, "training.mix.ratio", minimum=0.0)
        if mix_path is not None and ratio <= 0:
            raise ConfigError("training.mix.ratio", t.mix.ratio, "a number > 0 when training.mix.path is set")
        if mix_path is not None and not mix_path.is_file():
            raise ConfigError("training.mix.path", str(t.mix.path), "an existing JSONL file of {\"messages\": [...]} lines")
        targets = t.lora.target_modules
        targets = str(targets) if isinstance(targets, str) else tuple(str(x) for x in targets)
        return cls(
            db=Path(str(cfg.db)),
            stage=stage,  # type: ignore[arg-type]
            base_model=None if t.base_model in (None, "") else str(t.base_model),
            model_cache_dir=Path(str(t.model_cache_dir)).expanduser() if t.model_cache_dir else None,
            output_dir=Path(str(t.output_dir)).expanduser(),
            overwrite=bool(t.overwrite),
            runs=parse_runs(t.runs, "training.runs"),
            include_incomplete=bool(t.include_incomplete),
            sft_data=str(t.sft_data),
            max_steps=max_steps,
            max_length=_int(t.max_length, "training.max_length", minimum=16),
            trim_history=bool(t.trim_history),
            seed=_int(t.seed if t.seed is not None else cfg.seed, "training.seed", minimum=0),
            logging_steps=_int(t.logging_steps, "training.logging_steps", minimum=1),
            save_steps=_opt_int(t.save_steps, "training.save_steps", minimum=1),
            bf16=bool(t.bf16),
            gradient_checkpointing=bool(t.gradient_checkpointing),
            sft=_stage(t.sft, "training.sft", dpo=False),
            dpo=_stage(t.dpo, "training.dpo", dpo=True),
            lora=LoraSettings(
                enabled=bool(t.lora.enabled),
                r=_int(t.lora.r, "training.lora.r", minimum=1),
                alpha=_int(t.lora.alpha, "training.lora.alpha", minimum=1),
                dropout=_float(t.lora.dropout, "training.lora.dropout", minimum=0.0, maximum=1.0),
                target_modules=targets,
            ),
            mix_path=mix_path,
            mix_ratio=ratio,
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
        )

    def validate_batches(self) -> None:
        for name in self.stages:
            getattr(self, name).grad_accum(self.world_size, f"training.{name}")


_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
               "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")


def _stage(s: Any, key: str, *, dpo: bool) -> StageSettings:
    if s.lr_scheduler_type not in _SCHEDULERS:
        raise ConfigError(f"{key}.lr_scheduler_type", s.lr_scheduler_type, " | ".join(_SCHEDULERS))
    warmup = _float(s.warmup, f"{key}.warmup", minimum=0.0)
    if warmup >= 1 and warmup != int(warmup):
        raise ConfigError(f"{key}.warmup", s.warmup, "a ratio in [0, 1) or a whole number of steps")
    return StageSettings(
        learning_rate=_float(s.learning_rate, f"{key}.learning_rate", minimum=0.0, strict=True),
        lr_scheduler_type=str(s.lr_scheduler_type),
        warmup=int(warmup) if warmup >= 1 else warmup,
        epochs=_float(s.epochs, f"{key}.epochs", minimum=0.0, strict=True),
        effective_batch=_int(s.effective_batch, f"{key}.effective_batch", minimum=1),
        per_device_batch_size=_micro_batch(s, key),
        beta=_float(s.beta, f"{key}.beta", minimum=0.0, strict=True) if dpo else None,
    )


def auto_micro_batch(per_device_share: int) -> int:
    """Largest micro-batch that divides the per-device share of the effective
    batch and is at most 8 on a GPU, 1 on CPU (compute-bound there anyway;
    long multi-turn sequences stay within memory)."""
    import torch

    cap = 8 if torch.cuda.is_available() else 1
    return max(d for d in range(1, cap + 1) if per_device_share % d == 0)


def _micro_batch(s: Any, key: str) -> int:
    if s.per_device_batch_size in (None, "auto"):
        effective = _int(s.effective_batch, f"{key}.effective_batch", minimum=1)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return auto_micro_batch(max(1, effective // world))
    return _int(s.per_device_batch_size, f"{key}.per_device_batch_size", minimum=1)


def _int(value: Any, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"an integer >= {minimum}")
    return value


def _opt_int(value: Any, key: str, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"null or an integer >= {minimum}")
    return value


def _float(value: Any, key: str, *, minimum: float, maximum: float | None = None, strict: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > minimum if strict else v >= minimum) and (maximum is None or v <= maximum)
    if not ok:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        if maximum is not None:
            bound += f" and <= {maximum}"
        raise ConfigError(key, value, f"a number {bound}")
    return float(value)
