"""The benchmark runner with scripted models: what each model sees, what is
stored, judge failures, case failures, resume, concurrency, and the report."""

from __future__ import annotations

import json
import re
from importlib import resources

import anyio
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from aloesim.agents import AlignmentJudge, UserSimulator
from aloesim.agents.gateway import Sampling
from aloesim.agents.testing import ScriptedModel, ScriptedRequest
from aloesim.environment.store import Store
from aloesim.evaluation import (
    EVALUATED_ROLE,
    BenchmarkSpec,
    Case,
    build_report,
    load_evaluation,
    run_benchmark,
    write_report,
)
from tests.support.store import fetchall, fetchone, fetchval

pytestmark = pytest.mark.anyio

PROMPTS = OmegaConf.create(resources.files("aloesim.conf").joinpath("prompts", "paper.yaml").read_text())

CASES = [
    Case(0, "Marta is a 41-year-old beekeeper from Porto who restores vintage bicycles.", "Dry humour, terse, impatient."),
    Case(1, "Kofi is a 23-year-old nursing student who plays the kora.", "Warm, chatty, loves tangents."),
    Case(2, "Ilse is a retired ferry captain who keeps a rooftop tomato garden.", "Blunt, curious, precise."),
]


def user_script(req: ScriptedRequest) -> str:
    turn = sum(1 for m in req.messages if m["role"] == "assistant") + 1
    return f"user message {turn}"


def model_script(req: ScriptedRequest) -> str:
    return f"reply to: {req.messages[-1]['content']}"


def judge_by_turn(req: ScriptedRequest) -> dict:
    m = re.search(r"user message (\d+)", req.messages[0]["content"])
    return {"score": min(5, int(m.group(1)) + 1)}


def roles(user_model, judge_model):
    return (UserSimulator(user_model, PROMPTS.user, Sampling(temperature=0.8, max_tokens=32)),
            AlignmentJudge(judge_model, PROMPTS.judge, Sampling(temperature=0.0, max_tokens=16)))


def spec(**kw) -> BenchmarkSpec:
    base = {"label": "scripted", "turns": 3, "concurrency": 8, "seed": 1, "sampling": Sampling(max_tokens=32),
            "model": {"kind": "scripted", "name": "m"}, "user_model": {"name": "u"}, "judge_model": {"name": "j"}}
    return BenchmarkSpec(**{**base, **kw})


async def test_run_stores_every_turn_and_model_sees_no_persona(tmp_path) -> None:
    um, mm, jm = ScriptedModel(user_script), ScriptedModel(model_script), ScriptedModel(judge_by_turn)
    user, judge = roles(um, jm)
    async with Store.open(tmp_path / "e.db") as store:
        out = await run_benchmark(store, CASES, user=user, judge=judge, model=mm, spec=spec())
        rows = await fetchall(
            store, "SELECT c.case_index, t.turn, t.user_message, t.reply, t.score, t.judge_error FROM eval_turns t"
            " JOIN eval_cases c ON c.id = t.case_id ORDER BY c.case_index, t.turn")
        ev = await fetchone(store, "SELECT status, label, turns FROM evaluations WHERE id = ?", (out.evaluation_id,))
        run = await fetchone(store, "SELECT kind, status FROM runs WHERE id = ?", (out.run_id,))
    assert (out.complete, out.failed, out.turns_run, out.judge_failures, out.resumed) == (3, 0, 9, 0, False)
    assert tuple(ev) == ("complete", "scripted", 3) and tuple(run) == ("evaluate", "complete")
    assert [(r[0], r[1], r[4]) for r in rows] == [(c, t, t + 1) for c in range(3) for t in (1, 2, 3)]
    assert rows[1][2] == "user message 2" and rows[1][3] == "reply to: user message 2"
    assert all(r[5] is None for r in rows)

    # the evaluated model sees only the conversation: no persona text, no system prompt
    assert len(mm.requests) == 9 and all(r.role == EVALUATED_ROLE for r in mm.requests)
    for req in mm.requests:
        blob = json.dumps(req.messages)
        for case in CASES:
            assert case.profile not in blob and case.personality not in blob
            assert "Marta" not in blob and "beekeeper" not in blob and "terse" not in blob
        assert [m["role"] for m in req.messages] == ["user", "assistant"] * (len(req.messages) // 2) + ["user"]
    turn3 = [r for r in mm.requests if len(r.messages) == 5]
    assert len(turn3) == 3 and turn3[0].messages[1]["content"] == "reply to: user message 1"
    # the user and the judge do see the full persona
    assert any(CASES[0].profile in r.messages[0]["content"] for r in um.requests)
    assert all(any(c.personality in r.messages[0]["content"] for c in CASES) for r in jm.requests)
    assert all(r.context.case_id is not None and r.context.turn in (1, 2, 3) for r in mm.requests)


async def test_judge_junk_is_recorded_and_reported_never_coerced(tmp_path) -> None:
    def judge(req: ScriptedRequest):
        if "Kofi" in req.messages[0]["content"] and "user message 2" in req.messages[0]["content"]:
            return "The reply is great, I'd say four out of five!"   # not the JSON the schema asks for
        return {"score": 4}

    um, mm, jm = ScriptedModel(user_script), ScriptedModel(model_script), ScriptedModel(judge)
    user, judge_role = roles(um, jm)
    async with Store.open(tmp_path / "e.db") as store:
        out = await run_benchmark(store, CASES, user=user, judge=judge_role, model=mm, spec=spec())
        rows = await fetchall(
            store, "SELECT c.case_index, t.turn, t.score, t.judge_error FROM eval_turns t JOIN eval_cases c ON c.id = t.case_id"
            " WHERE t.score IS NULL")
        data = await load_evaluation(store, out.evaluation_id)
    assert out.judge_failures == 1 and out.complete == 3          # the conversation went on
    assert len(rows) == 1 and (rows[0][0], rows[0][1], rows[0][2]) == (1, 2, None)
    assert "schema" in rows[0][3] and "judge" in rows[0][3]
    report = build_report([data], n_boot=200)
    e = report["evaluations"][0]
    assert e["failures"]["judge"] == 1 and e["failures"]["judge_detail"][0]["turn"] == 2
    assert [t["n"] for t in e["al"]] == [3, 2, 3]                 # AL(2) over the 2 scored cases
    assert [t["judge_failures"] for t in e["al"]] == [0, 1, 0]
    assert e["al"][1]["al"] == 4.0


async def test_model_failure_fails_the_case_and_rerun_resumes_it(tmp_path) -> None:
    def flaky(req: ScriptedRequest):
        if req.context.turn == 2 and "user message 2" in req.messages[-1]["content"] and len(flaky.calls) == 0:
            flaky.calls.append(req)
            return RuntimeError("HTTP 500 from the server")
        return model_script(req)
    flaky.calls = []

    um, mm, jm = ScriptedModel(user_script), ScriptedModel(flaky), ScriptedModel(judge_by_turn)
    user, judge = roles(um, jm)
    db = tmp_path / "e.db"
    async with Store.open(db) as store:
        first = await run_benchmark(store, CASES, user=user, judge=judge, model=mm, spec=spec(concurrency=1))
        failed = await fetchall(store, "SELECT case_index, status, error FROM eval_cases WHERE status = 'failed'")
        kept = await fetchall(store, "SELECT id, case_id, turn FROM eval_turns ORDER BY id")
    assert (first.complete, first.failed) == (2, 1)
    assert len(failed) == 1 and failed[0][0] == 0 and "turn 2" in failed[0][2] and "HTTP 500" in failed[0][2]
    assert len(kept) == 7

    # a second run of the same benchmark continues the failed case from its last stored turn
    um2, mm2, jm2 = ScriptedModel(user_script), ScriptedModel(model_script), ScriptedModel(judge_by_turn)
    user2, judge2 = roles(um2, jm2)
    async with Store.open(db) as store:
        second = await run_benchmark(store, CASES, user=user2, judge=judge2, model=mm2, spec=spec(concurrency=1))
        rows = await fetchall(store, "SELECT id, case_id, turn FROM eval_turns ORDER BY case_id, turn")
        n_evals = await fetchval(store, "SELECT COUNT(*) FROM evaluations")
    assert second.resumed and second.evaluation_id == first.evaluation_id and n_evals == 1
    assert (second.complete, second.failed, second.turns_run) == (3, 0, 2)
    assert len(mm2.requests) == 2 and len(mm2.requests[0].messages) == 3   # turn 2 continues turn 1's conversation
    assert mm2.requests[0].messages[1]["content"] == "reply to: user message 1"
    assert {tuple(r) for r in kept} <= {tuple(r) for r in rows} and len(rows) == 9

    # a different benchmark (other turns) is a new evaluation
    async with Store.open(db) as store:
        third = await run_benchmark(store, CASES[:1], user=user2, judge=judge2, model=mm2, spec=spec(turns=2))
    assert not third.resumed and third.evaluation_id != first.evaluation_id


async def test_cases_run_concurrently_within_the_bound(tmp_path) -> None:
    cases = [Case(i, f"profile {i}", f"personality {i}") for i in range(10)]
    um = ScriptedModel(user_script, delay=0.02)
    mm = ScriptedModel(model_script, delay=0.05)
    jm = ScriptedModel(lambda r: {"score": 3}, delay=0.02)
    user, judge = roles(um, jm)
    async with Store.open(tmp_path / "e.db") as store:
        with anyio.fail_after(10):
            out = await run_benchmark(store, cases, user=user, judge=judge, model=mm, spec=spec(turns=2, concurrency=4))
    assert out.complete == 10
    assert mm.peak_in_flight == 4 and um.peak_in_flight <= 4


async def test_bad_spec_is_a_config_error(tmp_path) -> None:
    from aloesim.core.errors import ConfigError

    um, mm, jm = ScriptedModel(user_script), ScriptedModel(model_script), ScriptedModel(judge_by_turn)
    user, judge = roles(um, jm)
    async with Store.open(tmp_path / "e.db") as store:
        with pytest.raises(ConfigError, match="benchmark.turns"):
            await run_benchmark(store, CASES, user=user, judge=judge, model=mm, spec=spec(turns=0))
        with pytest.raises(ConfigError, match="evaluation.concurrency"):
            await run_benchmark(store, CASES, user=user, judge=judge, model=mm, spec=spec(concurrency=-1))
        assert await fetchval(store, "SELECT COUNT(*) FROM evaluations") == 0


async def test_report_files(tmp_path) -> None:
    def judge(req: ScriptedRequest):
        turn = int(re.search(r"user message (\d+)", req.messages[0]["content"]).group(1))
        return {"score": 2 + turn if "Kofi" not in req.messages[0]["content"] else 3}

    um, mm, jm = ScriptedModel(user_script), ScriptedModel(model_script), ScriptedModel(judge)
    user, judge_role = roles(um, jm)
    async with Store.open(tmp_path / "e.db") as store:
        a = await run_benchmark(store, CASES, user=user, judge=judge_role, model=mm, spec=spec(label="Base"))
        b = await run_benchmark(store, CASES, user=user, judge=judge_role, model=mm, spec=spec(label="DPO"))
        data = [await load_evaluation(store, a.evaluation_id), await load_evaluation(store, b.evaluation_id)]
    report = build_report(data, n_boot=300, seed=3)
    paths = write_report(report, tmp_path / "out")
    saved = json.loads(paths["json"].read_text())
    e = saved["evaluations"][0]
    assert [t["al"] for t in e["al"]] == pytest.approx([(3 + 3 + 3) / 3, (4 + 3 + 4) / 3, (5 + 3 + 5) / 3], abs=1e-4)
    assert e["summary"]["ir"] == pytest.approx(2 / 3, abs=1e-4)
    assert all(t["ci"][0] <= t["al"] <= t["ci"][1] for t in e["al"])
    assert e["model"]["name"] == "m" and e["judge_model"]["name"] == "j" and e["user_model"]["name"] == "u"
    md = paths["md"].read_text()
    assert "| Models | Type | k=1 | k=2 | k=3 | Average | IR | N-IR | R2 | N-R2 |" in md
    assert "| m | Base | 3.00 | 3.67 | 4.33 | 3.67 | 0.667 | 0.500 | 1.000 | 1.000 |" in md
    assert "| m | DPO |" in md
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    img = Image.open(paths["png"]).convert("RGB")
    assert img.size[0] >= 600 and img.size[1] >= 400
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 10
    # both evaluations' line colours (matplotlib C0 blue, C1 orange) are drawn
    arr = np.asarray(img).reshape(-1, 3).astype(int)
    assert np.any(np.all(np.abs(arr - [31, 119, 180]) < 8, axis=1))
    assert np.any(np.all(np.abs(arr - [255, 127, 14]) < 8, axis=1))


async def test_second_judge_rescores_the_same_replies_for_kappa(tmp_path) -> None:
    from aloesim.evaluation import rejudge
    from aloesim.evaluation.metrics import read_labels

    um, mm, jm = ScriptedModel(user_script), ScriptedModel(model_script), ScriptedModel(judge_by_turn)
    user, judge = roles(um, jm)

    def second(req: ScriptedRequest):
        content = req.messages[0]["content"]
        if "Ilse" in content and "user message 3" in content:
            return "no idea"                                   # a failure of the second judge
        return judge_by_turn(req) if "Kofi" not in content else {"score": 1}

    j2 = ScriptedModel(second, name="second")
    _, judge2 = roles(um, j2)
    async with Store.open(tmp_path / "e.db") as store:
        out = await run_benchmark(store, CASES, user=user, judge=judge, model=mm, spec=spec())
        labels = await rejudge(store, out.evaluation_id, judge2, concurrency=2)
        data = await load_evaluation(store, out.evaluation_id)
    assert len(j2.requests) == 9 and j2.peak_in_flight <= 2
    # the second judge saw exactly the stored replies
    assert {r.messages[0]["content"].split("model's response: ")[1].split("\n")[0] for r in j2.requests} == {
        f"reply to: user message {t}" for t in (1, 2, 3)}
    assert labels[(2, 3)] is None and labels[(1, 1)] == 1 and labels[(0, 2)] == 3
    report = build_report([data], n_boot=100, labels=labels, labels_source="second judge")
    k = report["evaluations"][0]["kappa"]
    assert k["pairs"] == 8 and k["against"] == "second judge"
    # hand check: 5 agreeing pairs (cases 0 and 2, minus the failure) and 3 disagreeing (case 1)
    from aloesim.evaluation.metrics import cohen_kappa
    assert k["kappa"] == pytest.approx(cohen_kappa([2, 3, 4, 2, 3, 2, 3, 4], [2, 3, 4, 2, 3, 1, 1, 1]), abs=1e-4)
    paths = write_report(report, tmp_path / "out")
    assert "second judge" in paths["md"].read_text()
    # scores.csv holds every first-judge score in the labels format
    assert read_labels(paths["csv"]) == {(c, t): t + 1 for c in range(3) for t in (1, 2, 3)}


async def test_interrupted_run_is_marked_and_continues_where_it_stopped(tmp_path) -> None:
    um, mm, jm = ScriptedModel(user_script), ScriptedModel(model_script), ScriptedModel(judge_by_turn)
    user, judge = roles(um, jm)
    db = tmp_path / "e.db"
    async with Store.open(db) as store:
        with anyio.CancelScope() as scope:
            seen = []

            def stop_after_four(case: int, turn: int, score: int | None) -> None:
                seen.append((case, turn))
                if len(seen) == 4:
                    scope.cancel()        # like Ctrl-C in the middle of the run

            await run_benchmark(store, CASES, user=user, judge=judge, model=mm, spec=spec(concurrency=2),
                                on_turn=stop_after_four)
        assert scope.cancelled_caught
        status = await fetchval(store, "SELECT status FROM runs")
        stored = await fetchval(store, "SELECT COUNT(*) FROM eval_turns")
    assert status == "interrupted" and 4 <= stored < 9

    mm2 = ScriptedModel(model_script)
    async with Store.open(db) as store:
        out = await run_benchmark(store, CASES, user=user, judge=judge, model=mm2, spec=spec(concurrency=2))
        rows = await fetchall(store, "SELECT case_id, turn FROM eval_turns ORDER BY case_id, turn")
        status = await fetchval(store, "SELECT status FROM runs")
    assert out.resumed and out.complete == 3 and status == "complete"
    assert len(mm2.requests) == 9 - stored and len(rows) == 9


def _data(scores, stored=None, **kw):
    turns = len(scores[0])
    base = {"id": 1, "run_id": None, "label": "edge", "status": "failed", "model": {"kind": "x", "name": "m"},
            "user_model": {}, "judge_model": {}, "turns": turns, "created_at": 0.0,
            "case_indices": list(range(len(scores))), "scores": scores,
            "stored": stored or [[s is not None for s in row] for row in scores],
            "judge_failures": [], "case_failures": [], "unfinished": [], "tokens": {}}
    return {**base, **kw}


def test_report_of_degenerate_evaluations_is_still_written(tmp_path) -> None:
    nothing = _data([[None], [None]], stored=[[True], [True]],
                    judge_failures=[{"case": 0, "turn": 1, "error": "x"}, {"case": 1, "turn": 1, "error": "y"}])
    flat = _data([[3, 3, 3], [3, 3, 3]], id=2, label="flat")
    gap = _data([[4, None, 2], [2, None, None]], id=3, label="gap",
                case_failures=[{"case": 1, "error": "turn 2: HTTP 500", "turns_done": 1}])
    report = build_report([nothing, flat, gap], n_boot=100)
    e0, e1, e2 = report["evaluations"]
    assert e0["al"][0]["al"] is None and e0["al"][0]["ci"] == [None, None] and e0["failures"]["judge"] == 2
    assert e0["summary"] == {"average": None, "ir": None, "r2": None, "n_ir": None, "n_r2": None}
    assert e1["summary"]["ir"] == 0.0 and e1["summary"]["n_ir"] is None and "flat" in e1["undefined"]["n_ir"]
    assert [t["n"] for t in e2["al"]] == [2, 0, 1] and [t["missing"] for t in e2["al"]] == [0, 2, 1]
    assert e2["summary"]["ir"] == pytest.approx(-0.5) and "2" in e2["undefined"]["turns"]
    paths = write_report(report, tmp_path / "out")
    md = paths["md"].read_text()
    assert "| m | edge | n/a |  |  | n/a | n/a | n/a | n/a | n/a |" in md   # padded to the longest K
    assert "flat: n_ir: flat curve" in md and "case 1 after 1 turn(s): turn 2: HTTP 500" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.loads(paths["json"].read_text())
