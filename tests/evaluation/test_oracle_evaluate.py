"""`aloe evaluate` and `aloe report` end to end against the oracle world
(tests/support/oracle_world.py: a loopback server whose roles follow known
rules), so every number has a known right value: the judge check is reliable
on the coverage judge and flagged on the constant one, an adapting model's
AL(k) rises as the world says, a static one's is flat, and the expected
scores are the world's known distribution."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from aloesim.core.errors import ConfigError
from aloesim.orchestration import compose_config
from aloesim.orchestration.commands import evaluate, report
from tests.support.oracle_world import ADAPTING, STATIC, OracleWorld, write_benchmark

TURNS = 5


def args(url: str, tmp_path: Path, model: str, *more: str) -> list[str]:
    p, q = write_benchmark(tmp_path)
    return ["evaluate", f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}", f"benchmark.personalities={q}",
            "benchmark.cases=6", f"benchmark.turns={TURNS}", "backend=openai", f"backend.base_url={url}",
            "backend.api_key_env=null", "backend.model=oracle", "model=openai", f"model.base_url={url}",
            "model.api_key_env=null", f"model.name={model}", f"evaluation.label={model}",
            f"evaluation.out_dir={tmp_path / model}", *more]


def run(capsys, argv: list[str]) -> tuple[int, dict, str]:
    """``aloe COMMAND ARGS`` in this process (without the CLI's logging set-up,
    which would bind structlog to this test's captured stdout)."""
    command, overrides = argv[0], argv[1:]
    code = {"evaluate": evaluate, "report": report}[command].run(compose_config(command, overrides))
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def test_adapting_rises_static_is_flat_and_the_judge_passes(tmp_path, capsys) -> None:
    world = OracleWorld(logprob_peak=0.7)
    with world as url:
        code, a, err = run(capsys, args(url, tmp_path, ADAPTING, "evaluation.judge_logprobs=true"))
        assert code == 0 and "warning" not in err
        judge_calls = world.count("judge")
        code, s, _ = run(capsys, args(url, tmp_path, STATIC, "evaluation.judge_logprobs=true"))
        assert code == 0
        # the second evaluation's probes are the same requests: answered from the response cache
        assert world.count("judge") == judge_calls + 6 * TURNS and s["judge_check"]["pairs"] == 32
        code, again, _ = run(capsys, args(url, tmp_path, ADAPTING, "evaluation.judge_logprobs=true"))
        assert again["resumed"] and world.count("judge") == judge_calls + 6 * TURNS   # a re-run asks nothing
    # 6 facts per persona, one revealed per turn: the coverage judge gives 1 + ceil(4k/6)
    assert a["al"] == [2.0, 3.0, 3.0, 4.0, 5.0] and a["summary"]["ir"] == pytest.approx(0.7)
    assert s["al"] == [1.0] * TURNS and s["summary"]["ir"] == 0.0
    for summary in (a, s):
        assert summary["judge_reliable"] is True
        assert summary["judge_check"]["pairs"] == 32 and summary["judge_check"]["accuracy"] == 1.0
        assert summary["unscored"] == 0
    assert a["expected"]["al"] == pytest.approx([world.expected_score(k) for k in (2, 3, 3, 4, 5)])
    report = json.loads((tmp_path / ADAPTING / "report.json").read_text())
    assert report["judge_check"]["reliable"] is True and report["evaluations"][0]["by_scoring"]["expected"]
    md = (tmp_path / ADAPTING / "report.md").read_text()
    assert "**reliable**" in md and "⚠" not in md and "(expected score)" in md
    conn = sqlite3.connect(tmp_path / "e.db")
    roles = dict(conn.execute("SELECT role, COUNT(*) FROM llm_calls GROUP BY role").fetchall())
    assert roles["judge_check"] == 2 * 32 * 2 and roles["judge"] == 2 * 6 * TURNS
    cached = conn.execute("SELECT SUM(cached) FROM llm_calls WHERE role = 'judge_check'").fetchone()[0]
    assert cached == 32 * 2
    assert conn.execute("SELECT COUNT(*) FROM eval_turns WHERE score_expected IS NULL").fetchone()[0] == 0


def test_a_constant_judge_is_flagged_everywhere(tmp_path, capsys) -> None:
    with OracleWorld(judge="constant", constant_score=4) as url:
        code, s, err = run(capsys, args(url, tmp_path, ADAPTING))
    assert code == 0 and s["judge_reliable"] is False and s["judge_check"]["accuracy"] == 0.5
    assert s["al"] == [4.0] * TURNS
    assert len(err.strip().splitlines()) == 1 and "failed its check" in err and "accuracy 0.50 on 32 probes" in err
    md = (tmp_path / ADAPTING / "report.md").read_text()
    table = next(line for line in md.splitlines() if line.startswith(f"| {ADAPTING} | {ADAPTING} |"))
    assert table.count("4.00 ⚠") == TURNS + 1 and "**UNRELIABLE**" in md and "> **Warning:**" in md
    assert md.index("## Judge check") < md.index("| Models |")            # the verdict comes first
    # `aloe report` over the stored evaluation carries the verdict and the marks
    code, r, err = run(capsys, ["report", f"db={tmp_path / 'e.db'}", f"evaluation.out_dir={tmp_path / 'cmp'}"])
    assert code == 0 and r["judge_reliable"] is False and r["evaluations"][0]["judge_reliable"] is False
    assert "failed its check" in err and "4.00 ⚠" in (tmp_path / "cmp" / "report.md").read_text()


def test_expected_scoring_and_a_disabled_check(tmp_path, capsys) -> None:
    world = OracleWorld(logprob_peak=0.6)
    with world as url:
        code, s, err = run(capsys, args(url, tmp_path, ADAPTING, "evaluation.judge_logprobs=true",
                                        "evaluation.judge_scoring=expected", "evaluation.judge_check.enabled=false"))
    assert code == 0 and s["scoring"] == "expected"
    assert s["al"] == pytest.approx([world.expected_score(k) for k in (2, 3, 3, 4, 5)])
    assert s["judge_reliable"] is None and "not checked" not in err and "disabled" in err
    report = json.loads((tmp_path / ADAPTING / "report.json").read_text())
    assert report["evaluations"][0]["by_scoring"]["sample"]["al"] == [2.0, 3.0, 3.0, 4.0, 5.0]
    assert "(sampled score)" in (tmp_path / ADAPTING / "report.md").read_text()


@pytest.mark.parametrize(("override", "key"), [
    ("evaluation.judge_scoring=median", "evaluation.judge_scoring"),
    ("evaluation.judge_logprobs=maybe", "evaluation.judge_logprobs"),
    ("evaluation.judge_check.pairs=1", "evaluation.judge_check.pairs"),
    ("evaluation.judge_check.threshold=0.4", "evaluation.judge_check.threshold"),
    ("evaluation.judge_check.enabled=sometimes", "evaluation.judge_check.enabled"),
])
def test_bad_judge_settings_are_one_line_and_write_nothing(tmp_path, override, key) -> None:
    p, q = write_benchmark(tmp_path)
    with pytest.raises(ConfigError) as err:   # at composition (a wrong type) or when the command checks its plan
        evaluate.run(compose_config("evaluate", [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}",
                                                 f"benchmark.personalities={q}",
                                                 f"evaluation.out_dir={tmp_path / 'out'}", override]))
    assert err.value.key == key and "\n" not in str(err.value)
    assert not (tmp_path / "e.db").exists() and not (tmp_path / "out").exists()


def test_expected_scoring_needs_logprobs(tmp_path) -> None:
    p, q = write_benchmark(tmp_path)
    cfg = compose_config("evaluate", [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}",
                                      f"benchmark.personalities={q}", f"evaluation.out_dir={tmp_path / 'out'}",
                                      "evaluation.judge_scoring=expected", "evaluation.judge_logprobs=false"])
    with pytest.raises(ConfigError, match="need the logprobs"):
        evaluate.run(cfg)


@pytest.mark.parametrize(("mode", "accuracy"), [("coverage", 1.0), ("position", 0.5)])
def test_the_pairwise_preference_judge_check(tmp_path, capsys, mode, accuracy) -> None:
    with OracleWorld(judge=mode) as url:
        code, _, _ = run(capsys, args(url, tmp_path, ADAPTING, "benchmark.turns=1",
                                      "evaluation.judge_check.preference=true", "evaluation.judge_check.pairs=12"))
    assert code == 0
    pref = json.loads((tmp_path / ADAPTING / "report.json").read_text())["judge_check"]["preference"]
    assert pref["pairs"] == 12 and pref["accuracy"] == accuracy and pref["reliable"] is (accuracy == 1.0)
    assert "pairwise preference judge" in (tmp_path / ADAPTING / "report.md").read_text()
