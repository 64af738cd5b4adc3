"""Real TRL steps on the bundled SmolLM2-135M: GGUF conversion, SFT then DPO, LoRA.

Follows TRL's own smoke-test practice: a few steps, then assert the loss was
logged and the parameters changed."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from test_training_settings import compose_train

from aloesim.training import TrainSettings, bundled_gguf, resolve_base_model, train, verify_export

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # minutes on 2 busy CPU cores


def model_cache(tmp_path_factory) -> Path:
    """One conversion cache for the whole test session (the GGUF converts once)."""
    return tmp_path_factory.getbasetemp() / "aloesim-cache" / "models"  # = $ALOESIM_CACHE/models of test_cmd_train


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return resolve_base_model(None, model_cache(tmp_path_factory))


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def changed(a: dict, b: dict) -> tuple[list[str], list[str]]:
    import torch

    layer = [k for k in a if ".layers." in k]
    return [k for k in layer if not torch.equal(a[k], b[k])], layer


def test_gguf_converts_once_to_a_loadable_checkpoint(base_dir, tmp_path_factory, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {p.name for p in base_dir.iterdir()}
    assert bundled_gguf().stem in base_dir.name
    import aloesim.training._base_model as bm

    monkeypatch.setattr(bm, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert resolve_base_model(str(bundled_gguf()), model_cache(tmp_path_factory)) == base_dir
    assert resolve_base_model(str(base_dir)) == base_dir  # an HF directory is used as is
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])  # the dequantized weights are the real model


def test_sft_then_dpo_changes_parameters_and_records(tree_db, base_dir, tmp_path, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    db, ids = tree_db
    out = tmp_path / "ckpt"
    cfg = compose_train(f"db={db}", "training=tiny", "training.max_steps=2", "training.max_length=128",
                        f"training.output_dir={out}", f"training.model_cache_dir={model_cache(tmp_path_factory)}")
    result = train(TrainSettings.from_config(cfg), {"training": "tiny"}, "hash")

    # the loss was logged, finite, at every step of both stages
    metrics = json.loads((out / "metrics.json").read_text())
    for stage in ("sft", "dpo"):
        losses = [row["loss"] for row in metrics["stages"][stage]["log_history"] if "loss" in row]
        assert len(losses) == 2 and all(math.isfinite(x) for x in losses), (stage, losses)
        assert metrics["stages"][stage]["metrics"]["global_step"] == 2
        assert metrics["stages"][stage]["data"]["examples"] == 7
    assert "rewards/margins" in metrics["stages"]["dpo"]["log_history"][0]

    # SFT moved the base weights, DPO moved the SFT weights
    base, sft, final = weights(base_dir), weights(out / "sft"), weights(out / "final")
    diff, layer = changed(base, sft)
    assert len(diff) == len(layer) > 0, f"unchanged after SFT: {sorted(set(layer) - set(diff))[:5]}"
    diff, layer = changed(sft, final)
    assert len(diff) == len(layer), f"unchanged after DPO: {sorted(set(layer) - set(diff))[:5]}"

    # DIR/final loads as a plain transformers checkpoint, tokenizer and chat template included
    model = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    tok = AutoTokenizer.from_pretrained(str(out / "final"))
    assert tok.chat_template and model.config.model_type == "llama"
    assert not list(out.glob(".*partial*"))
    verify_export(out / "data")

    # the database links the checkpoints to the generate runs they came from
    conn = sqlite3.connect(db)
    run = conn.execute("SELECT kind, status, config_hash, stats FROM runs WHERE id = ?", (result.run_id,)).fetchone()
    assert run[:3] == ("train", "complete", "hash")
    assert json.loads(run[3])["source_runs"] == [ids["run1"], ids["run2"]]
    rows = conn.execute("SELECT stage, path, source_runs, metrics FROM checkpoints WHERE run_id = ? ORDER BY id",
                        (result.run_id,)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("sft", str(out.resolve() / "sft")), ("dpo", str(out.resolve() / "final"))]
    assert all(json.loads(r[2]) == [ids["run1"], ids["run2"]] for r in rows)
    assert json.loads(rows[1][3])["global_step"] == 2
    conn.close()


def test_lora_sft_saves_a_merged_model(tree_db, base_dir, tmp_path, tmp_path_factory):
    db, _ = tree_db
    out = tmp_path / "lora"
    cfg = compose_train(f"db={db}", "training=tiny", "training.stage=sft", "training.max_steps=1",
                        "training.max_length=96", "training.lora.enabled=true", "training.sft.learning_rate=1e-3",
                        f"training.output_dir={out}", f"training.model_cache_dir={model_cache(tmp_path_factory)}")
    train(TrainSettings.from_config(cfg), {}, "h")
    names = {p.name for p in (out / "final").iterdir()}
    assert "model.safetensors" in names and "adapter_config.json" not in names
    base, final = weights(base_dir), weights(out / "final")
    assert set(final) == set(base)  # merged: the plain model's tensors, no lora_A/lora_B
    diff, layer = changed(base, final)
    # LoRA on all linear layers moves every projection weight (norms stay frozen)
    proj = [k for k in layer if k.endswith("proj.weight")]
    assert set(proj) <= set(diff) and proj
