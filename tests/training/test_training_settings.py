"""Training config: paper defaults, presets, and validation before anything is written."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

import aloesim.orchestration._config  # noqa: F401  (registers the config schemas in Hydra's ConfigStore)
from aloesim.core.errors import ConfigError, InputError, StoreError
from aloesim.environment.store import connect
from aloesim.training import TrainSettings, check, mix_rows, read_general_messages, train
from tests.support.training_trees import add_node, add_persona, add_run, add_tree


def compose_train(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_module("aloesim.conf", version_base=None):
        cfg = compose("train", overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


def settings(*overrides: str) -> TrainSettings:
    return TrainSettings.from_config(compose_train(*overrides))


def test_paper_defaults_are_explicit():
    s = settings()
    assert s.stage == "sft+dpo" and s.stages == ["sft", "dpo"]
    assert (s.sft.learning_rate, s.sft.lr_scheduler_type, s.sft.epochs, s.sft.effective_batch) == (1e-5, "linear", 3, 48)
    assert (s.dpo.learning_rate, s.dpo.lr_scheduler_type, s.dpo.epochs, s.dpo.effective_batch) == (1e-5, "linear", 1, 48)
    assert s.dpo.beta == 0.9
    assert s.sft.grad_accum(1, "x") * s.sft.per_device_batch_size == 48
    assert s.dpo.grad_accum(1, "x") * s.dpo.per_device_batch_size == 48
    # explicit micro-batches: accumulation makes up the rest, across devices too
    s = settings("training.sft.per_device_batch_size=8")
    assert s.sft.grad_accum(1, "x") == 6 and s.sft.grad_accum(2, "x") == 3
    assert s.lora.enabled is False and s.max_steps is None and s.base_model is None


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_cpu_preset(preset):
    s = settings(f"training={preset}")
    assert s.max_steps == 3 and s.max_length == 256
    assert s.sft.per_device_batch_size == 2 and s.sft.grad_accum(1, "x") == 1
    assert s.dpo.beta == 0.9 and s.sft.learning_rate == 1e-5  # the rest stays the paper's


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("training.stage=ppo", "training.stage"),
        ("training.max_steps=-5", "training.max_steps"),
        ("training.max_steps=0", "training.max_steps"),
        ("training.sft_data=chosen", "training.sft_data"),
        ("training.dpo.beta=0", "training.dpo.beta"),
        ("training.sft.learning_rate=-1", "training.sft.learning_rate"),
        ("training.sft.lr_scheduler_type=zigzag", "training.sft.lr_scheduler_type"),
        ("training.max_length=4", "training.max_length"),
        ("training.mix.path=/nonexistent.jsonl", "training.mix.ratio"),
        ("training.runs=abc", "training.runs"),
    ],
)
def test_bad_values_raise_config_error(override, key):
    with pytest.raises(ConfigError) as err:
        settings(override)
    assert err.value.key == key
    assert "\n" not in str(err.value)


def test_auto_micro_batch_divides_the_effective_batch():
    from aloesim.training._settings import auto_micro_batch

    assert 48 % auto_micro_batch(48) == 0 and 1 <= auto_micro_batch(48) <= 8
    assert auto_micro_batch(7) in (1, 7)


def test_batch_must_divide():
    s = settings("training.sft.effective_batch=10", "training.sft.per_device_batch_size=4")
    with pytest.raises(ConfigError, match="training.sft.effective_batch"):
        s.validate_batches()


def _state(db: Path) -> tuple:
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "checkpoints"))
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (["training.base_model=/no/such/model"], ConfigError, "training.base_model"),
        (["training.stage=sft", "training.mix.path={mix}", "training.mix.ratio=1"], InputError, "last message"),
        (["training.runs=99"], ConfigError, "training.runs"),
        (["training.sft.effective_batch=3", "training.sft.per_device_batch_size=2"], ConfigError, "effective_batch"),
    ],
)
def test_train_rejects_before_writing(tree_db, tmp_path, overrides, error, match):
    db, _ = tree_db
    mix = tmp_path / "mix.jsonl"
    mix.write_text(json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}) + "\n")
    out = tmp_path / "out"
    ov = [o.format(mix=mix) for o in overrides]
    before = _state(db)
    with pytest.raises(error, match=match):
        # training=tiny: should validation ever let one through, it stays a short run
        s = settings(f"db={db}", "training=tiny", "training.max_steps=1", f"training.output_dir={out}", *ov)
        train(s, {}, "h")
    assert _state(db) == before
    assert not out.exists()


def test_empty_dataset_rejected_before_writing(tmp_path):
    db = tmp_path / "e.db"
    conn = connect(db, create=True)
    t = add_tree(conn, add_run(conn), add_persona(conn, 1), status="running")
    add_node(conn, t, "", "preferred", parent=None)
    conn.close()
    before = _state(db)
    with pytest.raises(InputError, match="no complete trees"):
        train(settings(f"db={db}", f"training.output_dir={tmp_path / 'out'}"), {}, "h")
    assert _state(db) == before and not (tmp_path / "out").exists()


def test_missing_db(tmp_path):
    with pytest.raises(StoreError, match="no such database"):
        check(settings(f"db={tmp_path / 'none.db'}", f"training.output_dir={tmp_path / 'out'}"))
    assert not (tmp_path / "none.db").exists()


def test_existing_final_needs_overwrite(tree_db, tmp_path):
    db, _ = tree_db
    (tmp_path / "out" / "final").mkdir(parents=True)
    with pytest.raises(ConfigError, match="overwrite"):
        check(settings(f"db={db}", f"training.output_dir={tmp_path / 'out'}"))
    check(settings(f"db={db}", f"training.output_dir={tmp_path / 'out'}", "training.overwrite=true"))


def test_general_messages_and_mixing(tmp_path):
    path = tmp_path / "general.jsonl"
    convs = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
                           {"role": "assistant", "content": f"a{i}"}]} for i in range(10)]
    path.write_text("\n".join(json.dumps(c) for c in convs) + "\n\n")
    general = read_general_messages(path)
    assert general[3] == {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q3"}],
                          "completion": [{"role": "assistant", "content": "a3"}]}
    own = [{"prompt": [{"role": "user", "content": f"m{i}"}], "completion": [{"role": "assistant", "content": "p"}]}
           for i in range(4)]
    mixed = mix_rows(own, general, 0.5, seed=1)
    assert len(mixed) == 6 and all(r in mixed for r in own)
    assert mixed == mix_rows(own, general, 0.5, seed=1)  # seeded
    assert len(mix_rows(own, general, 10.0, seed=1)) == 14  # capped at what the file has
    path.write_text('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}\n')
    with pytest.raises(InputError, match=r"general.jsonl:1: each message"):
        read_general_messages(path)
    path.write_text("{oops\n")
    with pytest.raises(InputError, match=r":1:2: not valid JSON"):
        read_general_messages(path)
