"""Control sequences from the database never reach the terminal (issue 12.6).

A real SQLite file is seeded with hostile text (clear screen, OSC 8 links,
OSC 52 clipboard writes, a one-byte C1 CSI, bidi overrides, bell, backspace,
carriage return) in personas, messages, replies, calls, errors and run
config; ``aloe show`` (rich, Markdown, JSON), ``aloe runs`` (plain, JSON),
one-line errors and console logs are captured (and ``aloe show``/``aloe
runs`` run once under a pseudo-terminal, where rich adds its own colours),
and no raw ESC/CSI/OSC/C1/bidi byte from the data may appear."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import time

import pytest
import structlog

from aloesim.core import json_safe, terminal_safe, terminal_safe_data
from aloesim.core._terminal import UNSAFE
from aloesim.orchestration import cli, configure_logging
from tests.support.sample_db import write_sample

HOSTILE = (
    "\x1b[2J\x1b[H"  # clear screen, cursor home
    "\x1b]8;;https://evil.example/\x07click me\x1b]8;;\x07"  # OSC 8 hyperlink
    "\x1b]52;c;ZXZpbA==\x07"  # OSC 52: write the clipboard
    "\x9b31mC1-red"  # one-character CSI (C1)
    "\u202egnp.exe"  # right-to-left override
    "\x1b[31mSGR"  # a colour the data should not set
    "\rOVERWRITE\x08\x07\x00\x7f\u2066end"
)
SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colours rich itself prints on a terminal


def assert_inert(out: str, *, colours: bool = False) -> None:
    """No control character from the data in ``out``; with ``colours``, only
    rich's own SGR colour sequences may carry ESC."""
    text = SGR.sub("", out) if colours else out
    if colours:  # a pseudo-terminal turns \n into \r\n
        text = text.replace("\r\n", "\n")
    bad = sorted({f"U+{ord(ch):04X}" for ch in text if ord(ch) in UNSAFE})
    assert not bad, bad
    assert "\x1b[31mSGR" not in out  # the data's own colour is not among the SGR sequences kept


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    ids = write_sample(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE persona_items SET text = text || ?", (HOSTILE,))
        conn.execute("UPDATE nodes SET user_message = ?, preferred = ?, rejected = ?, inferred_profile = ?",
                     (HOSTILE, HOSTILE, HOSTILE, "profile " + HOSTILE))
        conn.execute("UPDATE llm_calls SET response = ?, error = ?, role = ?, request = ?",
                     (HOSTILE, "boom " + HOSTILE, "user" + HOSTILE,
                      json.dumps({"messages": [{"role": "user" + HOSTILE, "content": HOSTILE}], "x": HOSTILE})))
        conn.execute("UPDATE trees SET error = ? WHERE id = ?", (HOSTILE, ids["failed_tree"]))
        conn.execute("UPDATE runs SET config = ?",
                     (json.dumps({"seed": 0, "generation": {"note": HOSTILE}, HOSTILE: 1}),))
        conn.execute("UPDATE eval_turns SET user_message = ?, reply = ?, judge_error = ?",
                     (HOSTILE, HOSTILE, HOSTILE))
        conn.execute("UPDATE eval_cases SET error = ?", (HOSTILE,))
        conn.execute("UPDATE evaluations SET label = ?", ("label" + HOSTILE,))
    conn.close()
    return path, ids


def test_terminal_safe_shows_every_control_visibly():
    out = terminal_safe(HOSTILE + "\n\tkept")
    assert not {ord(c) for c in out} & UNSAFE
    assert out.startswith("␛[2J␛[H␛]8;;https://evil.example/␇click me")
    assert "\\x9b31m" in out and "\\u202egnp.exe" in out and out.endswith("\n\tkept")
    assert terminal_safe("plain text, ünïcode ✓") == "plain text, ünïcode ✓"


def test_json_safe_keeps_the_same_data():
    value = {"a": HOSTILE, HOSTILE: [HOSTILE, 1]}
    text = json_safe(json.dumps(value, ensure_ascii=False))
    assert not {ord(c) for c in text} & UNSAFE
    assert json.loads(text) == value


def test_terminal_safe_data_walks_views(hostile):
    from aloesim.environment.store import connect
    from aloesim.inspection import show

    conn = connect(hostile[0], readonly=True)
    try:
        tree = show.load_tree(conn, hostile[1]["tree"])
    finally:
        conn.close()
    safe = terminal_safe_data(tree)
    assert HOSTILE in tree.nodes[0].preferred  # the view itself is untouched
    assert safe.nodes[0].preferred == terminal_safe(HOSTILE)
    assert safe.nodes[0].calls[0].messages[0]["content"] == terminal_safe(HOSTILE)


def _aloe(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("target", ["tree", "failed_tree", "run1", "evaluation", "case"])
@pytest.mark.parametrize("fmt", ["rich", "md", "json"])
def test_aloe_show_prints_no_control_sequences(hostile, capsys, target, fmt):
    path, ids = hostile
    kind = {"failed_tree": "tree", "run1": "run"}.get(target, target)
    if fmt == "md" and kind not in ("tree", "case"):
        pytest.skip("Markdown export is for trees and cases")
    code, out, err = _aloe(capsys, "show", f"db={path}", f"{kind}={ids[target]}", f"show.format={fmt}",
                           "show.calls=true", "show.width=200", "log.format=json")
    assert code == 0, err
    assert_inert(out)
    assert_inert(err)
    if fmt == "json":
        assert json.dumps(HOSTILE)[1:-1] in json.dumps(json.loads(out))  # the data itself, exactly
    else:
        assert "␛" in out and "click me" in out  # shown, not obeyed


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_aloe_runs_prints_no_control_sequences(hostile, capsys, fmt):
    code, out, err = _aloe(capsys, "runs", f"db={hostile[0]}", f"format={fmt}", "log.format=json")
    assert code == 0, err
    assert_inert(out)
    if fmt == "json":
        assert len(json.loads(out)) == 2


def test_one_line_errors_quoting_values_are_inert(hostile, capsys, tmp_path):
    code, _out, err = _aloe(capsys, "show", f"db={tmp_path / ('x' + HOSTILE.replace(chr(0), ''))}", "tree=1")
    assert code != 0 and err.count("\n") == 1
    assert_inert(err)
    code, _out, err = _aloe(capsys, "show", f"db={hostile[0]}", f"tree={HOSTILE.replace(chr(0), '')}")
    assert code != 0 and err.count("\n") == 1
    assert_inert(err)


def test_console_logs_are_inert():
    stream = io.StringIO()
    try:
        configure_logging("INFO", "console", stream=stream)
        structlog.get_logger("t").warning("reply " + HOSTILE, reply=HOSTILE, error=ValueError(HOSTILE))
    finally:
        configure_logging("INFO", "json", stream=io.StringIO())
    out = stream.getvalue()
    assert "␛[2J" in out
    assert_inert(out, colours=True)


def _pty_run(args: list[str], timeout: float = 120) -> str:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; what it printed."""
    main, child = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "180", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env)
    os.close(child)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    assert proc.returncode == 0, b"".join(chunks)[-2000:]
    return b"".join(chunks).decode("utf-8")


@pytest.mark.integration
def test_on_a_pseudo_terminal_only_richs_own_colours_carry_esc(hostile):
    path, ids = hostile
    aloe = [sys.executable, "-m", "aloesim.orchestration.cli"]
    out = _pty_run([*aloe, "show", f"db={path}", f"tree={ids['tree']}", "show.calls=true"])
    assert SGR.search(out) and "␛[2J" in out  # rich coloured it, and the data's escapes are visible
    assert_inert(out, colours=True)
    out = _pty_run([*aloe, "runs", f"db={path}"])
    assert_inert(out, colours=True)
