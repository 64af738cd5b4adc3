"""``aloe show``: terminal rendering of a hand-built tree, run and evaluation,
Markdown/JSON export, and the command's validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from aloesim.core.errors import ConfigError, StoreError
from aloesim.environment.store import connect
from aloesim.inspection import show
from aloesim.orchestration import compose_config
from aloesim.orchestration.commands import show as show_cmd
from tests.support.sample_db import SAMPLE, write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("show") / "sample.db"
    return path, write_sample(path)


@pytest.fixture()
def conn(sample):
    c = connect(sample[0], readonly=True)
    yield c
    c.close()


def _text(renderable, width: int = 140, styles: bool = False) -> str:
    console = Console(
        record=True, width=width, force_terminal=styles, color_system="standard" if styles else None
    )
    console.print(renderable)
    return console.export_text(styles=styles)


def test_tree_shows_every_turn_message_and_both_replies(conn, sample):
    tree = show.load_tree(conn, sample[1]["tree"])
    out = _text(show.render_tree(tree))
    for k in (1, 2, 3):
        assert f"Turn {k}" in out
        assert f"Preferred reply {k}" in out and f"Rejected reply {k}" in out
    assert "branch pr" in out
    # data is printed literally: no HTML and no rich markup is interpreted
    assert SAMPLE["xss"] in out
    assert "[bold red]not rich markup[/bold red]" in out
    assert "Talkative and warm." in out


def test_continued_marker_is_on_the_reply_that_continued(conn, sample):
    tree = show.load_tree(conn, sample[1]["tree"])
    out = _text(show.render_tree(tree))
    lines = out.splitlines()
    # turn 2 continued its rejected reply; turns 1 and 3 their preferred one
    assert sum("▶ continued" in line for line in lines) == 3
    assert any("rejected  ▶ continued" in line for line in lines)
    assert sum("preferred  ▶ continued" in line for line in lines) == 2
    assert "continued: rejected" in out


def test_replies_side_by_side_when_wide_and_stacked_when_narrow(conn, sample):
    tree = show.load_tree(conn, sample[1]["tree"])
    wide = _text(show.render_tree(tree, side_by_side=True), width=140)
    narrow = _text(show.render_tree(tree, side_by_side=False), width=80)
    assert any("Preferred reply 1" in line and "Rejected reply 1" in line for line in wide.splitlines())
    assert not any("Preferred reply 1" in line and "Rejected reply 1" in line for line in narrow.splitlines())
    assert "Rejected reply 1" in narrow


def test_changed_inferred_persona_is_highlighted(conn, sample):
    tree = show.load_tree(conn, sample[1]["tree"])
    turn1, turn2, turn3 = tree.nodes
    assert not turn1.persona_changed and turn2.persona_changed and turn3.persona_changed
    assert [s.text for s in turn3.profile_diff if s.kind == "added"] == [" living in Lyon"]
    plain = _text(show.render_tree(tree))
    assert plain.count("(changed)") == 2 and plain.count("(unchanged)") == 1
    ansi = _text(show.render_tree(tree), styles=True)
    bold_green = "\x1b[1;32m"
    assert bold_green + " living in Lyon" in ansi  # the new words at turn 3
    assert bold_green + "A retired history teacher." in ansi  # everything is new at turn 2
    assert bold_green + "A retired history teacher living" not in ansi  # the kept words are not


def test_diff_words_marks_added_and_removed():
    segs = show.diff_words("Likes cats and tea.", "Likes dogs and tea, a lot.")
    assert [(s.kind, s.text) for s in segs] == [
        ("same", "Likes "),
        ("removed", "cats"),
        ("added", "dogs"),
        ("same", " and tea"),
        ("added", ", a lot"),
        ("same", "."),
    ]
    assert show.diff_words(None, None) == []
    assert [s.kind for s in show.diff_words(None, "x")] == ["added"]


def test_calls_table_always_prompts_only_with_calls(conn, sample):
    tree = show.load_tree(conn, sample[1]["tree"])
    without = _text(show.render_tree(tree, calls=False))
    with_calls = _text(show.render_tree(tree, calls=True))
    # per-call latency, tokens and retries are always there
    assert "2.50s" in without and "#8" in without
    row8 = next(line for line in without.splitlines() if "#8 " in line)
    assert "rejected" in row8 and " 3 " in row8  # three attempts
    assert "Calls without a committed node" in without and "timeout after 120s" in without
    # the exact prompts only with show.calls
    for needle in (
        "You role-play:",
        "Start turn 2",
        "Reply to fit the inferred persona.",
        '"max_tokens": 256',
    ):
        assert needle not in without
        assert needle in with_calls


def test_full_tree_branches(conn, sample):
    tree = show.load_tree(conn, sample[1]["full_tree"])
    out = _text(show.render_tree(tree), width=120)
    assert "Follow-up after p" in out and "Follow-up after r" in out
    assert "continued: both" in out
    root = tree.roots[0]
    assert len(root.children) == 2


def test_run_summary(conn, sample):
    run = show.load_run(conn, sample[1]["run1"])
    out = _text(show.render_run(run), width=140)
    assert run.trees_by_status == {"complete": 1, "failed": 1}
    assert run.nodes == 4 and run.calls == 15 and run.call_error_count == 2
    for needle in (
        "wall time",
        "93.50 s",
        "generation.mode",
        "path",
        "bad JSON",
        "timeout after 120s",
        "inducer",
        "15",
    ):
        assert needle in out


def test_evaluation_scores_and_transcripts(conn, sample):
    ev = show.load_evaluation(conn, sample[1]["evaluation"])
    assert [(p.k, p.al, p.n) for p in ev.curve] == [(1, 2.5, 2), (2, 3.0, 1), (3, 4.5, 2)]
    ir, r2 = ev.improvement
    assert ir == pytest.approx(1.0) and r2 == pytest.approx(0.9231, abs=1e-3)
    cases = [show.load_case(conn, r.id) for r in show.list_cases(conn, ev.id)]
    out = _text(show.render_evaluation(ev, cases), width=140)
    for needle in (
        "2.50",
        "3.00",
        "4.50",
        "IR 1.000",
        "Case 0 message 1",
        "Case 1 reply 3",
        "judge reply unparseable",
    ):
        assert needle in out


def test_markdown_export_escapes_and_marks(conn, sample):
    md = show.tree_markdown(show.load_tree(conn, sample[1]["tree"]))
    assert "<script>" not in md and "\\<script\\>" in md
    assert md.count("(continued)") == 3
    assert "**Rejected (continued):**" in md
    assert "**\\ living in Lyon**" not in md and "** living in Lyon**" in md
    case_md = show.case_markdown(show.load_case(conn, sample[1]["case"]))
    assert "## Turn 3 (score 4)" in case_md and "<script>" not in case_md


def test_json_export_round_trips(conn, sample):
    data = json.loads(show.to_json(show.load_tree(conn, sample[1]["tree"])))
    assert data["version"] == 1 and data["kind"] == "tree"
    assert [n["branch"] for n in data["nodes"]] == ["", "p", "pr"]
    assert [n["continued"] for n in data["nodes"]] == ["preferred", "rejected", "preferred"]
    assert data["persona"]["profile"] == SAMPLE["profile"]
    assert data["nodes"][1]["calls"][3]["attempts"] == 3
    assert data["nodes"][0]["calls"][0]["request"]["messages"][1]["content"] == "Start turn 1"
    assert len(data["stray_calls"]) == 1


# ------------------------------------------------------------ the command
def _cfg(db: Path, *overrides: str, **plain):
    cfg = compose_config("show", [f"db={db}", *overrides])
    for k, v in plain.items():  # keys set after composing, as a program would
        cfg[k] = v
    return cfg


def test_command_prints_tree(sample, capsys):
    assert (
        show_cmd.run(_cfg(sample[0], f"tree={sample[1]['tree']}", "show.width=150", "show.calls=true")) == 0
    )
    out = capsys.readouterr().out
    assert "Turn 3" in out and "Start turn 3" in out


def test_command_exports_files(sample, tmp_path, capsys):
    md = tmp_path / "case.md"
    assert show_cmd.run(_cfg(sample[0], f"case={sample[1]['case']}", "show.format=md", f"show.out={md}")) == 0
    assert md.read_text().startswith("# Case ")
    js = tmp_path / "ev.json"
    assert (
        show_cmd.run(_cfg(sample[0], f"evaluation={sample[1]['evaluation']}", "show.format=json", f"show.out={js}"))
        == 0
    )
    data = json.loads(js.read_text())
    assert data["kind"] == "evaluation" and len(data["cases"]) == 2
    assert show_cmd.run(_cfg(sample[0], "show.format=json", evaluation=sample[1]["evaluation"])) == 0
    assert json.loads(capsys.readouterr().out)["al"][2]["al"] == 4.5


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ([], "tree|run|evaluation|case"),
        (["tree=1", "run=1"], "tree|run|evaluation|case"),
        (["tree=0"], "tree"),
        (["tree=abc"], "tree"),
        (["tree=9223372036854775808"], "tree"),  # 2^63: past SQLite's integers
        (["tree=-1"], "tree"),
        (["tree=999"], "tree"),
        (["run=1", "show.format=md"], "show.format"),
        (["tree=1", "show.format=html"], "show.format"),
        (["tree=1", "show.width=10"], "show.width"),
        (["tree=1", "show.out=/nonexistent-folder/x.md"], "show.out"),
    ],
)
def test_command_rejects_bad_config(sample, overrides, key):
    with pytest.raises(ConfigError) as err:
        show_cmd.run(_cfg(sample[0], *overrides))
    assert err.value.key == key
    assert "\n" not in str(err.value)


def test_absurd_ids_are_one_line_errors(sample, capsys):
    from aloesim.orchestration import cli

    for ident in ("9" * 5000, str(2**64), "-5", "1e3", "0x10", "\x1b[2J"):
        code = cli.main(["show", f"db={sample[0]}", f"tree={ident}"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("aloe show: config error"), err[:200]


def test_unknown_id_writes_no_file(sample, tmp_path):
    out = tmp_path / "t.md"
    with pytest.raises(ConfigError):
        show_cmd.run(_cfg(sample[0], "tree=999", "show.format=md", f"show.out={out}"))
    assert not out.exists()


def test_missing_database_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        show_cmd.run(_cfg(tmp_path / "none.db", "tree=1"))
    assert not (tmp_path / "none.db").exists()


@pytest.mark.integration
def test_aloe_show_cli_on_a_real_database(sample, tmp_path):
    """The installed ``aloe`` entry point, in a subprocess, on the SQLite file."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    aloe = [sys.executable, "-m", "aloesim.orchestration.cli", "show", f"db={sample[0]}"]
    ok = subprocess.run(
        [*aloe, f"tree={sample[1]['tree']}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Turn 3" in ok.stdout and "▶ continued" in ok.stdout
    bad = subprocess.run(
        [*aloe, "tree=999"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "tree=999" in bad.stderr
    out = tmp_path / "tree.json"
    exp = subprocess.run(
        [*aloe, f"tree={sample[1]['tree']}", "show.format=json", f"show.out={out}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert exp.returncode == 0, exp.stderr
    assert len(json.loads(out.read_text())["nodes"]) == 3
    # the database was opened read-only: nothing changed
    before = sample[0].stat().st_mtime_ns
    subprocess.run([*aloe, f"run={sample[1]['run1']}"], capture_output=True, env=env, timeout=120, check=True)
    assert sample[0].stat().st_mtime_ns == before


def test_validate_checks_config_without_the_database(tmp_path):
    missing = tmp_path / "none.db"
    show_cmd.validate(_cfg(missing, "tree=1"))  # fine: the database is only opened by run()
    with pytest.raises(ConfigError):
        show_cmd.validate(_cfg(missing, "tree=1", "run=2"))
    assert not missing.exists()


def test_public_names():
    from aloesim.inspection import viewer

    assert sorted(viewer.__all__) == [
        "create_app",
        "serve_in_thread",
    ]
    assert {
        "load_tree",
        "load_run",
        "load_evaluation",
        "load_case",
        "render_tree",
        "tree_markdown",
        "to_json",
    } <= set(show.__all__)
    assert all(hasattr(show, name) for name in show.__all__)
    assert show_cmd.HELP


def test_calls_recorded_by_the_gateway_recorder_render(tmp_path):
    """A call written by the gateway's own recorder through the real Store lands
    on its node, with its messages and parameters readable."""
    import anyio

    from aloesim.agents.gateway import CallContext, CallRecord, StoreRecorder
    from aloesim.environment.store import Store

    db = tmp_path / "recorded.db"
    ids = write_sample(db)
    request = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [
            {"role": "system", "content": "Recorded system prompt"},
            {"role": "user", "content": "Hi"},
        ],
        "temperature": 0.0,
        "max_tokens": 16,
    }

    async def record() -> None:
        async with Store.open(db) as store:
            await StoreRecorder(store, run_id=ids["run1"]).record(
                CallRecord(
                    role="inducer",
                    endpoint="http://127.0.0.1:1/v1",
                    model="SmolLM2-135M-Instruct",
                    context=CallContext(run_id=ids["run1"], tree_id=ids["tree"], turn=1, branch=""),
                    request=request,
                    response='{"profile": null}',
                    prompt_tokens=30,
                    completion_tokens=5,
                    latency_s=0.125,
                    attempts=2,
                    cached=False,
                    error=None,
                    cache_key="k",
                ),
                None,
            )

    anyio.run(record)
    conn = connect(db, readonly=True)
    tree = show.load_tree(conn, ids["tree"])
    conn.close()
    call = tree.nodes[0].calls[-1]
    assert call.messages[0] == {"role": "system", "content": "Recorded system prompt"}
    assert call.params == {"model": "SmolLM2-135M-Instruct", "temperature": 0.0, "max_tokens": 16}
    out = _text(show.render_tree(tree, calls=True))
    assert "Recorded system prompt" in out and "0.12s" in out and '"max_tokens": 16' in out


def test_piped_tree_marks_changes_and_a_short_numeric_value(sample, tmp_path, capsys):
    """Issue 18: piped, a replaced inferred persona read as the old text run into
    the new one ("... teacher.47"), as if the previous persona were shown. Without
    colour the changes are marked [-old-]{+new+}."""
    import shutil
    import sqlite3

    from aloesim.orchestration import cli

    path = tmp_path / "t47.db"
    shutil.copy(sample[0], path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE nodes SET inferred_profile = 47 WHERE tree_id = ? AND turn = 3", (sample[1]["tree"],))
    conn.close()
    assert cli.main(["show", f"db={path}", f"tree={sample[1]['tree']}", "show.width=150"]) == 0
    out = capsys.readouterr().out
    assert "profile: [-A retired history teacher.-]{+47+}" in out
    assert "profile: {+A retired history teacher.+}" in out  # turn 2: all new
    assert "personalities: Talkative{+ and warm+}." in out  # turn 3: kept words unmarked
    # on a colour terminal the words are coloured instead of marked
    tree = show.load_tree(connect(path, readonly=True), sample[1]["tree"])
    ansi = _text(show.render_tree(tree), styles=True)
    assert "{+" not in ansi and "[-" not in ansi


def test_evaluation_with_calls_shows_the_judges_prompt_and_reply(sample, tmp_path, capsys):
    """Issue 18: show.calls=true was ignored under evaluation=."""
    import shutil

    from tests.support.sample_db import _call

    path = tmp_path / "judged.db"
    shutil.copy(sample[0], path)
    conn = connect(path)
    with conn:
        _call(conn, 1_700_000_300.0, "judge",
              [{"role": "system", "content": "Score the reply from 1 to 5 for this persona."},
               {"role": "user", "content": "JUDGE-PROMPT-MARKER Case 0 reply 1"}],
              '{"score": 2, "reason": "JUDGE-RAW-REPLY"}', case_id=sample[1]["case"], turn=1)
    conn.close()
    ev = sample[1]["evaluation"]
    assert show_cmd.run(_cfg(path, f"evaluation={ev}", "show.width=160")) == 0
    without = capsys.readouterr().out
    assert show_cmd.run(_cfg(path, f"evaluation={ev}", "show.width=160", "show.calls=true")) == 0
    with_calls = capsys.readouterr().out
    for needle in ("JUDGE-PROMPT-MARKER", "JUDGE-RAW-REPLY", "Score the reply"):
        assert needle in with_calls and needle not in without
    # the AL table's columns all have a header: no empty fourth column
    header = next(line for line in without.splitlines() if "AL(k)" in line and "scored" in line)
    assert "AL on 1 to 5" in header


def test_run_lists_its_tree_ids_and_only_config_that_differs_from_defaults(sample, capsys, monkeypatch):
    """Issue 18: run= listed no tree ids and ~250 lines of config with whole prompts."""
    assert show_cmd.run(_cfg(sample[0], f"run={sample[1]['run1']}", "show.width=150")) == 0
    out = capsys.readouterr().out
    assert "Trees: 2" in out and f"#{sample[1]['tree']} " in out and f"#{sample[1]['failed_tree']} " in out
    assert "2 keys differ from `aloe generate` defaults" in out
    assert "generation.turns" in out and "generation.trees" in out
    assert "prompts." not in out and "Your task" not in out  # defaults are not repeated
    assert len(out.splitlines()) < 80
    monkeypatch.setattr(show_cmd, "TREES_PER_PAGE", 1)
    assert show_cmd.run(_cfg(sample[0], f"run={sample[1]['run1']}", "show.width=150", "show.page=2")) == 0
    out = capsys.readouterr().out
    assert "page 2 of 2" in out and f"#{sample[1]['failed_tree']} " in out
    assert f"│   #{sample[1]['tree']} │ complete" not in out
