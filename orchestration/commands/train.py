"""``aloe train``: fine-tune a model on the trees of a database (paper section 2.2).

    aloe train db=aloe.db                                      # SFT then DPO, paper settings, bundled SmolLM2
    aloe train db=aloe.db training=tiny training.output_dir=ckpt   # a few CPU steps per stage
    aloe train db=aloe.db training.stage=sft training.base_model=/models/Llama-3-8B-Instruct
    aloe train db=aloe.db training.max_steps=50 training.lora.enabled=true

Exports the trees to ``DIR/data``, runs TRL's SFTTrainer then DPOTrainer
(reference = the SFT model) and leaves the last stage's model in
``DIR/final`` (``transformers.AutoModelForCausalLM.from_pretrained``-ready,
tokenizer included), the trainer metrics in ``DIR/metrics.json``, a
``runs`` row (kind 'train') and one ``checkpoints`` row per saved model.
Multi-GPU: ``accelerate launch --config_file CONFIG -m aloesim.orchestration.cli train ...``
(see docs/training.md).
"""

from __future__ import annotations

from omegaconf import DictConfig

from ...core import terminate_as_interrupt
from ...training import TrainSettings, train
from .._runs import identity, lease_settings, plain_config

HELP = "fine-tune a model on the trees of db: TRL SFT then DPO (training.stage=sft|dpo|sft+dpo)"


def run(cfg: DictConfig) -> int:
    """Validate ``cfg.training``, train, and print where the final model is."""
    settings = TrainSettings.from_config(cfg)
    lease = lease_settings(cfg)
    config = plain_config(cfg)
    with terminate_as_interrupt():  # SIGTERM stops like Ctrl-C: the run is marked interrupted (exit 143)
        result = train(settings, config, identity(config), lease=lease)
    for stage in result.stages:
        loss = stage.metrics.get("train_loss")
        print(f"{stage.stage}: {stage.data.examples} examples, {stage.metrics.get('global_step')} steps, "
              f"train_loss={loss:.4f} -> {stage.path}" if loss is not None else f"{stage.stage} -> {stage.path}")
    print(f"final model: {result.final} (run {result.run_id})")
    return 0
