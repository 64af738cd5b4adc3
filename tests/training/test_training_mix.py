"""SFT mixing (issue 14.5): ``training.mix.path`` takes any local dataset, a JSONL
of chat messages or a folder saved by ``datasets``' ``save_to_disk`` (CodeActInstruct's
``conversations`` column and ``codeact`` split included); bad files are one line
with file:line (or row); ``training=paper`` expects the data and warns without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from test_training_settings import settings

from aloesim.core.errors import ConfigError, InputError
from aloesim.training import general_rows, mix_rows, read_mix

CHAT = [{"role": "system", "content": "You are a helpful agent."}, {"role": "user", "content": "List files."},
        {"role": "assistant", "content": "<execute>ls</execute>"}, {"role": "user", "content": "a.txt b.txt"},
        {"role": "assistant", "content": "Two files: a.txt and b.txt."}]
ROW = {"prompt": CHAT[:-1], "completion": CHAT[-1:]}


def _jsonl(path: Path, *objs: object) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


def _saved(path: Path, column: str = "conversations", splits: tuple[str, ...] = (), rows: list | None = None) -> Path:
    from datasets import Dataset, DatasetDict

    data = Dataset.from_dict({"id": [f"x{i}" for i in range(len(rows or [CHAT] * 3))],
                              column: rows or [CHAT] * 3})
    (DatasetDict({s: data for s in splits}) if splits else data).save_to_disk(str(path))
    return path


def test_jsonl_of_chat_messages(tmp_path: Path) -> None:
    assert read_mix(_jsonl(tmp_path / "m.jsonl", {"messages": CHAT}, {"messages": CHAT[:3]})) == [
        ROW, {"prompt": CHAT[:2], "completion": CHAT[2:3]}]


def test_saved_dataset_folder_with_codeact_columns(tmp_path: Path) -> None:
    assert read_mix(_saved(tmp_path / "ds")) == [ROW] * 3
    assert read_mix(_saved(tmp_path / "ds2", column="messages")) == [ROW] * 3


def test_saved_dataset_dict_needs_its_split(tmp_path: Path) -> None:
    folder = _saved(tmp_path / "dd", splits=("codeact", "general"))
    assert read_mix(folder, split="codeact") == [ROW] * 3
    with pytest.raises(ConfigError, match="training.mix.split.*codeact | general"):
        read_mix(folder)
    with pytest.raises(ConfigError, match="training.mix.split"):
        read_mix(folder, split="train")
    assert read_mix(_saved(tmp_path / "one", splits=("train",))) == [ROW] * 3  # the only split


@pytest.mark.parametrize(("lines", "where", "reason"), [
    (['{"messages": [}'], ":1:", "not valid JSON"),
    ([{"messages": CHAT}, {"chat": CHAT}], ":2", "expected {\"messages\""),
    ([{"messages": CHAT[:2]}], ":1", "last message must be the assistant's"),
    ([{"messages": [{"role": "tool", "content": "x"}, CHAT[2]]}], ":1", "role system|user|assistant"),
])
def test_bad_jsonl_is_one_line_with_file_and_line(tmp_path: Path, lines: list, where: str, reason: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(InputError) as err:
        read_mix(path)
    text = str(err.value)
    assert f"{path}{where}" in text and reason in text and "\n" not in text


@pytest.mark.parametrize(("rows", "reason"), [
    ([CHAT, CHAT[:2]], "row 1: the last message must be the assistant's"),
    ([CHAT, [CHAT[1], {"role": "tool", "content": "ok"}]], "row 1: each message needs"),
    ([CHAT[-1:]], "row 0: expected at least two messages"),
])
def test_bad_saved_rows_name_the_row(tmp_path: Path, rows: list, reason: str) -> None:
    folder = _saved(tmp_path / "bad", column="messages", rows=rows)
    with pytest.raises(InputError, match=reason):
        read_mix(folder)


def test_folders_that_are_not_datasets(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="save_to_disk"):
        read_mix(tmp_path / "plain")
    with pytest.raises(InputError, match="no 'messages' or 'conversations' column"):
        read_mix(_saved(tmp_path / "text", column="text", rows=["hello", "world"]))
    with pytest.raises(ConfigError, match="training.mix.path"):
        read_mix(tmp_path / "missing")


def test_ratio_null_mixes_every_general_example() -> None:
    own = [{"prompt": [], "completion": [{"role": "assistant", "content": str(i)}]} for i in range(4)]
    general = [ROW] * 7
    assert len(mix_rows(own, general, None, seed=0)) == 11
    assert len(mix_rows(own, general, 0.5, seed=0)) == 6


def test_training_paper_expects_the_mix_and_warns_without_it(tmp_path: Path) -> None:
    s = settings("training=paper")
    assert (s.mix_path, s.mix_ratio, s.mix_split, s.mix_expected, s.max_length) == (None, None, "codeact", True, 8192)
    assert (s.sft.learning_rate, s.sft.epochs, s.sft.effective_batch, s.dpo.beta, s.dpo.epochs) == (
        1e-5, 3, 48, 0.9, 1)
    with capture_logs() as logs:
        assert general_rows(s) == []
    assert [e["log_level"] for e in logs if "mix_missing" in e["event"]] == ["warning"]
    with capture_logs() as logs:  # the default preset expects nothing: no warning
        assert general_rows(settings()) == []
    assert not [e for e in logs if "mix_missing" in e["event"]]
    with capture_logs() as logs:  # DPO alone mixes nothing and warns about nothing
        assert general_rows(settings("training=paper", "training.stage=dpo")) == []
    assert not logs
    folder = _saved(tmp_path / "code-act", splits=("codeact", "general"))
    with capture_logs() as logs:
        assert general_rows(settings("training=paper", f"training.mix.path={folder}")) == [ROW] * 3
    assert not [e for e in logs if "mix_missing" in e["event"]]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_real_sft_step_on_trees_plus_a_saved_dataset(tree_db, tmp_path: Path, tmp_path_factory) -> None:
    """training=paper's mixing on real TRL: the 7 personalised SFT examples of the
    tree fixture plus every row of a saved DatasetDict's codeact split (ratio null)."""
    from aloesim.training import train

    db, _ = tree_db
    folder = _saved(tmp_path / "code-act", splits=("codeact", "general"))
    cache = tmp_path_factory.getbasetemp() / "aloesim-cache" / "models"  # shared with test_training_real
    s = settings(f"db={db}", "training=paper", "training.stage=sft", "training.max_steps=1",
                 "training.max_length=128", "training.sft.effective_batch=2", "training.sft.per_device_batch_size=2",
                 f"training.mix.path={folder}", f"training.output_dir={tmp_path / 'out'}",
                 f"training.model_cache_dir={cache}")
    with capture_logs() as logs:
        result = train(s, {"training": "paper"}, "mix")
    assert not [e for e in logs if "mix_missing" in e["event"]]
    stage = result.stages[0]
    assert stage.data.examples == 7 + 3 and stage.metrics["global_step"] == 1
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["stages"]["sft"]["data"]["examples"] == 10
