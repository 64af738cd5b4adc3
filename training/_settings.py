"""Typed, validated training settings: ``TrainingSettings`` is the schema of
the ``training`` config group (with ``StageSettings``, ``MixSettings`` and
``LoraSettings`` inside); ``TrainSettings`` is what ``aloe train`` runs with,
built from it (paths resolved, run ids parsed, ``auto`` micro-batches sized
for this machine).

Every check happens here, before anything is loaded or written, and raises
``ConfigError`` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from aloesim.core import Settings, setting, to_settings
from aloesim.core.errors import ConfigError

from ._export import parse_runs

Stage = Literal["sft", "dpo", "sft+dpo"]
STAGES: tuple[str, ...] = ("sft", "dpo", "sft+dpo")


_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
               "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")


@dataclass(frozen=True)
class StageSettings(Settings):
    """Optimizer settings of one stage (paper 2.2: lr 1e-5 linear, batch 48)."""

    learning_rate: float = setting(1.0e-5, help="paper: 1e-5", gt=0, le=1)
    lr_scheduler_type: str = setting("linear", help="paper: linear decay", choices=_SCHEDULERS)
    warmup: float = setting(0.0, help="warmup steps (whole number) or ratio of total steps (< 1)", ge=0,
                            le=1_000_000_000, allowed="a ratio in [0, 1) or a whole number of steps")
    epochs: float = setting(3.0, help="passes over the data", gt=0, le=10_000)
    effective_batch: int = setting(48, help="paper: 48 = per_device_batch_size x gradient accumulation x devices",
                                   ge=1, le=1_000_000)
    per_device_batch_size: int | str = setting(
        "auto", help="micro-batch per device (auto = up to 8 on GPU, 1 on CPU); accumulation = effective / "
                     "(micro x devices)", choices=("auto",), ge=1, le=1_000_000,
        allowed="auto or an integer in [1, 1_000_000]")
    beta: float | None = setting(None, help="DPO's beta (paper: 0.9; TRL's default 0.1); unused by SFT", gt=0,
                                 le=1000)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise ConfigError("warmup", self.warmup, "a ratio in [0, 1) or a whole number of steps")
        if self.warmup >= 1:
            object.__setattr__(self, "warmup", int(self.warmup))

    def grad_accum(self, world_size: int, key: str) -> int:
        per_step = self.micro_batch(world_size) * world_size
        if self.effective_batch % per_step:
            raise ConfigError(f"{key}.effective_batch", self.effective_batch,
                              f"a multiple of per_device_batch_size x devices = {self.per_device_batch_size} x {world_size}")
        return self.effective_batch // per_step

    def micro_batch(self, world_size: int) -> int:
        """``per_device_batch_size``, with ``auto`` resolved for this machine."""
        if self.per_device_batch_size == "auto":
            return auto_micro_batch(max(1, self.effective_batch // world_size))
        return int(self.per_device_batch_size)


@dataclass(frozen=True)
class LoraSettings(Settings):
    enabled: bool = setting(False, help="train LoRA adapters through peft (merged into the saved model) instead "
                                        "of all weights")
    r: int = setting(16, help="adapter rank", ge=1, le=65_536)
    alpha: int = setting(32, help="adapter scaling", ge=1, le=65_536)
    dropout: float = setting(0.05, help="adapter dropout", ge=0, le=1)
    target_modules: Any = setting("all-linear", help="peft target modules: all-linear or a list of module names",
                                  allowed="all-linear or a list of module names")

    def __post_init__(self) -> None:
        super().__post_init__()
        targets = self.target_modules
        if isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) and t for t in targets):
            object.__setattr__(self, "target_modules", tuple(targets))
        elif not (isinstance(targets, str) and targets):
            raise ConfigError("target_modules", targets, "all-linear or a list of module names")


@dataclass(frozen=True)
class MixSettings(Settings):
    path: str | None = setting(None, help="JSONL of general multi-turn chats {\"messages\": [...]} to mix into SFT "
                                          "(paper: CodeActInstruct)", nonempty=True)
    ratio: float = setting(0.0, help="general examples added per personalised SFT example (e.g. 0.5); needs path",
                           ge=0, le=1000)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.path is not None and self.ratio <= 0:
            raise ConfigError("ratio", self.ratio, "a number > 0 when training.mix.path is set")


@dataclass(frozen=True)
class TrainingSettings(Settings):
    """The ``training`` config group (paper section 2.2): TRL SFTTrainer, then DPOTrainer starting from the SFT
    model with the SFT model as the reference. Paper values are the defaults (TRL's own differ)."""

    stage: str = setting("sft+dpo", help="sft | dpo | sft+dpo (dpo alone starts from base_model and uses it as "
                                         "the reference)", choices=STAGES)
    base_model: str | None = setting(None, help="HF model directory or .gguf file; null = the bundled "
                                                "SmolLM2-135M-Instruct GGUF", nonempty=True)
    model_cache_dir: str | None = setting(None, help="where GGUF base models are converted to safetensors once; "
                                                     "null = $ALOESIM_CACHE or ~/.cache/aloesim, /models",
                                          nonempty=True)
    output_dir: str = setting("checkpoints/aloe", help="DIR: DIR/final = last stage's model, DIR/sft = SFT model "
                                                       "of sft+dpo, DIR/data = exported data, DIR/metrics.json",
                              nonempty=True, allowed="a directory path")
    overwrite: bool = setting(False, help="allow replacing an existing DIR/final (and DIR/sft, DIR/data)")
    runs: Any = setting(None, help="generate run id or list of ids to train on; null = all runs",
                        allowed="null, a run id, or a list of run ids")
    include_incomplete: bool = setting(False, help="also train on nodes of trees whose generation did not "
                                                   "complete")
    sft_data: str = setting("sft", help="sft (preferred replies p_i) | sft_rejected (the paper's SFT-Rejected "
                                        "ablation, r_i)", choices=("sft", "sft_rejected"))
    max_steps: int | None = setting(None, help="at most this many optimizer steps per stage; null = the "
                                               "configured epochs", ge=1, le=1_000_000_000)
    max_length: int = setting(2048, help="max tokens per example (chat-templated prompt + completion)", ge=16,
                              le=1_048_576)
    trim_history: bool = setting(True, help="drop the oldest turns of a prompt until the example fits max_length "
                                            "(else TRL truncates the end)")
    seed: int | None = setting(None, help="trainer seed (data order, dropout, LoRA init); null = the top-level "
                                          "seed", ge=0, le=2**32 - 1)
    logging_steps: int = setting(10, help="log loss/lr every N optimizer steps (metrics.json keeps the log)", ge=1,
                                 le=1_000_000_000)
    save_steps: int | None = setting(None, help="also keep intermediate trainer checkpoints every N steps; null = "
                                                "only the final model", ge=1, le=1_000_000_000)
    bf16: bool = setting(False, help="bfloat16 mixed precision (GPUs with bf16 support)")
    gradient_checkpointing: bool = setting(False, help="trade compute for memory on long conversations")
    sft: StageSettings = setting(help="the SFT stage (paper: 3 epochs)", factory=StageSettings)
    dpo: StageSettings = setting(help="the DPO stage (paper: 1 epoch, beta 0.9)",
                                 factory=lambda: StageSettings(epochs=1.0, beta=0.9))
    mix: MixSettings = setting(help="general chats mixed into SFT", factory=MixSettings)
    lora: LoraSettings = setting(help="LoRA adapters instead of full fine-tuning", factory=LoraSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_runs(self.runs, "runs")
        if self.dpo.beta is None:
            raise ConfigError("dpo.beta", None, "a number in (0, 1000]")


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
        t: TrainingSettings = to_settings(cfg.get("training"), TrainingSettings, "training")
        mix_path = Path(t.mix.path).expanduser() if t.mix.path is not None else None
        if mix_path is not None and not mix_path.is_file():
            raise ConfigError("training.mix.path", t.mix.path, "an existing JSONL file of {\"messages\": [...]} lines")
        seed = t.seed if t.seed is not None else int(cfg.get("seed", 0))  # the top-level seed: checked by its schema
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(
            db=Path(str(cfg.db)),
            stage=t.stage,  # type: ignore[arg-type]
            base_model=t.base_model,
            model_cache_dir=Path(t.model_cache_dir).expanduser() if t.model_cache_dir else None,
            output_dir=Path(t.output_dir).expanduser(),
            overwrite=t.overwrite,
            runs=parse_runs(t.runs, "training.runs"),
            include_incomplete=t.include_incomplete,
            sft_data=t.sft_data,
            max_steps=t.max_steps,
            max_length=t.max_length,
            trim_history=t.trim_history,
            seed=seed,
            logging_steps=t.logging_steps,
            save_steps=t.save_steps,
            bf16=t.bf16,
            gradient_checkpointing=t.gradient_checkpointing,
            sft=replace(t.sft, per_device_batch_size=t.sft.micro_batch(world), beta=None),
            dpo=replace(t.dpo, per_device_batch_size=t.dpo.micro_batch(world)),
            lora=t.lora,
            mix_path=mix_path,
            mix_ratio=t.mix.ratio,
            world_size=world,
        )

    def validate_batches(self) -> None:
        for name in self.stages:
            getattr(self, name).grad_accum(self.world_size, f"training.{name}")


def auto_micro_batch(per_device_share: int) -> int:
    """Largest micro-batch that divides the per-device share of the effective
    batch and is at most 8 on a GPU, 1 on CPU (compute-bound there anyway;
    long multi-turn sequences stay within memory)."""
    import torch

    cap = 8 if torch.cuda.is_available() else 1
    return max(d for d in range(1, cap + 1) if per_device_share % d == 0)
