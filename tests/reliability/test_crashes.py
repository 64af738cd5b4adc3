"""Crashes (issue 7): SIGKILL a command's whole process group at random
moments, at least five times, then run it to completion. After every kill
the database is intact; at the end it holds exactly what an uninterrupted
run with the same seed holds (the latency server answers deterministically
per request and the response cache replays what a killed run already got).

``tests/orchestration/test_generate_integration.py`` has an earlier version
of the generate case (3+ kills, tree contents compared); this is the issue-7
one: at least 5 kills, every exported file compared byte for byte, and the
same for ``aloe evaluate`` and for persona-pool growth (``aloe personas``).
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _common import ServerProcess, latency_server

from tests.support.reliability import (
    ALOE,
    ROOT,
    add_personas,
    aloe,
    backend_args,
    check_trees,
    env,
    kill_group,
    model_args,
    start,
    write_benchmark,
)

pytestmark = pytest.mark.integration

KILLS = 5


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """Answers after 0.25 s, so a run lasts long enough to be killed in the middle."""
    with latency_server(latency=0.25, seed=11) as s:
        yield s


def kill_repeatedly(args: list[str], log: Path, rng: random.Random, window: tuple[float, float],
                    check: Callable[[], int], advanced: Callable[[int], bool] | None = None) -> list[int]:
    """Start ``aloe ARGS`` and SIGKILL it after a random delay, until KILLS kills
    landed (a run that finishes first does not count); ``check()`` after each
    returns the progress. With ``advanced(last_progress)``: the random delay
    starts once it is true (progress since the last kill, or the new process
    holding the run), for commands whose start-up is long and variable."""
    kills, seen = 0, [0]
    for _ in range(KILLS * 3):
        proc = start(args, log)
        if advanced is not None:
            deadline = time.monotonic() + 120
            while proc.poll() is None and not advanced(seen[-1]) and time.monotonic() < deadline:
                time.sleep(0.1)
        try:
            proc.wait(timeout=rng.uniform(*window))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            kills += 1
            seen.append(check())
            if kills == KILLS:
                return seen[1:]
            continue
        raise AssertionError(f"the run finished after {kills} kills (exit {proc.returncode}); "
                             f"make it longer: {log.read_text()[-2000:]}")
    raise AssertionError("unreachable")


def finish(args: list[str], log: Path, timeout: float = 240) -> dict:
    with log.open("ab") as err:
        proc = subprocess.run([*ALOE, *args], env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                              timeout=timeout, check=False)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_generate_killed_five_times_exports_the_same_bytes(tmp_path: Path, slow_server: ServerProcess) -> None:
    trees, turns = 6, 16
    seed = int(time.time())
    rng = random.Random(seed)
    killed, whole = tmp_path / "killed.db", tmp_path / "whole.db"
    for db in (killed, whole):
        add_personas(db, 8)

    def args(db: Path) -> list[str]:
        return ["generate", f"db={db}", f"generation.trees={trees}", f"generation.turns={turns}",
                "generation.progress=off", "log.format=json", "seed=5", *backend_args(slow_server.base_url, 10)]

    reference = start(args(whole), tmp_path / "whole.log")
    try:
        progress = kill_repeatedly(args(killed), tmp_path / "killed.log", rng, (0.5, 2.5),
                                   lambda: (check_trees(killed), _count(killed, "nodes"))[1], holds_the_run(killed))
        stats = finish(args(killed), tmp_path / "killed.log")
        assert reference.wait(timeout=240) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    finally:
        kill_group(reference)
    assert progress == sorted(progress), (seed, progress)  # nothing committed is ever lost
    assert any(0 < n < trees * turns for n in progress), (seed, progress)  # kills landed mid-growth
    assert stats["resumed"] is True and stats["trees_complete"] == trees
    check_trees(killed, trees=trees, turns=turns)
    check_trees(whole, trees=trees, turns=turns)
    exported = []
    for db in (killed, whole):
        out = tmp_path / f"export-{db.stem}"
        done = aloe("export", f"db={db}", f"export.dir={out}")
        assert done.code == 0, done.err
        exported.append({p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()})
    assert set(exported[0]) >= {"sft.jsonl", "sft_rejected.jsonl", "dpo.jsonl"}
    assert exported[0] == exported[1], f"seed {seed}: exports differ after {KILLS} kills ({progress})"
    assert exported[0]["dpo.jsonl"].count(b"\n") == trees * turns


def holds_the_run(db: Path) -> Callable[[int], bool]:
    """An ``advanced`` for ``kill_repeatedly``: true once the process just
    started holds the run (its invocation is counted), so the random delay
    runs while it grows, whatever its start-up took on a loaded machine."""
    seen = [0]

    def claimed(_: int) -> bool:
        n = _invocations(db)
        if n > seen[0]:
            seen[0] = n
            return True
        return False

    return claimed


def _invocations(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COALESCE(MAX(invocations), 0) FROM runs").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created (or not migrated) yet
        return 0


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # fixed table names only
    except sqlite3.OperationalError as exc:  # killed before the schema was created
        if "no such table" not in str(exc):
            raise
        return 0
    finally:
        conn.close()


def check_evaluation(db: Path, *, cases: int | None = None, turns: int | None = None) -> int:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT case_id, turn FROM eval_turns GROUP BY case_id, turn"
                            " HAVING COUNT(*) > 1").fetchall() == []
        assert conn.execute("SELECT evaluation_id, case_index FROM eval_cases GROUP BY 1, 2"
                            " HAVING COUNT(*) > 1").fetchall() == []
        # turns of a case are 1..n without holes
        holes = conn.execute("SELECT case_id FROM eval_turns GROUP BY case_id"
                             " HAVING MIN(turn) != 1 OR MAX(turn) != COUNT(*)").fetchall()
        assert holes == []
        assert conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] <= 1  # always resumed
        if cases is not None:
            assert conn.execute("SELECT status, COUNT(*) FROM eval_cases GROUP BY 1").fetchall() == [("complete", cases)]
            per_case = conn.execute("SELECT COUNT(*) FROM eval_turns GROUP BY case_id").fetchall()
            assert per_case == [(turns,)] * cases
        return conn.execute("SELECT COUNT(*) FROM eval_turns").fetchone()[0]
    except sqlite3.OperationalError as exc:  # killed before the schema was created
        if "no such table" not in str(exc):
            raise
        return 0
    finally:
        conn.close()


def transcript(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT c.case_index, c.profile, c.personality, t.turn, t.user_message, t.reply, t.score"
                        " FROM eval_turns t JOIN eval_cases c ON c.id = t.case_id ORDER BY 1, 4").fetchall()
    conn.close()
    return rows


def test_evaluate_killed_five_times_gives_the_uninterrupted_transcripts(tmp_path: Path,
                                                                       slow_server: ServerProcess) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    bench = write_benchmark(tmp_path, 3, 2)  # 6 cases: long enough for five kills after replays
    url = slow_server.base_url

    def args(name: str) -> list[str]:
        return ["evaluate", f"db={tmp_path / name}.db", *bench, "benchmark.turns=24", "log.format=json",
                f"evaluation.out_dir={tmp_path / name}", "evaluation.bootstrap=100", *backend_args(url, 10),
                *model_args(url, 10)]

    reference = start(args("whole"), tmp_path / "whole.log")
    killed = tmp_path / "killed.db"
    try:
        progress = kill_repeatedly(args("killed"), tmp_path / "killed.log", rng, (0.5, 2.5),
                                   lambda: check_evaluation(killed), holds_the_run(killed))
        summary = finish(args("killed"), tmp_path / "killed.log")
        assert reference.wait(timeout=240) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    finally:
        kill_group(reference)
    assert progress == sorted(progress), (seed, progress)
    assert any(0 < n < 40 for n in progress), (seed, progress)  # kills landed mid-evaluation
    assert summary["status"] == "complete" and summary["resumed"] is True
    check_evaluation(killed, cases=6, turns=24)
    check_evaluation(tmp_path / "whole.db", cases=6, turns=24)
    assert transcript(killed) == transcript(tmp_path / "whole.db"), f"seed {seed}"
    assert (tmp_path / "killed" / "scores.csv").read_bytes() == (tmp_path / "whole" / "scores.csv").read_bytes()


def pool(db: Path) -> tuple[set, set]:
    conn = sqlite3.connect(db)
    items = set(conn.execute("SELECT kind, split, text, source, iteration FROM persona_items"))
    pairs = set(conn.execute(
        "SELECT p.split, a.text, b.text FROM personas p JOIN persona_items a ON a.id = p.profile_id"
        " JOIN persona_items b ON b.id = p.personality_id"))
    conn.close()
    return items, pairs


def iterations(db: Path) -> int:
    """Persona-growth iterations recorded so far (0 before the schema exists)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM events WHERE kind LIKE 'personas.%.iteration'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def check_pool(db: Path) -> int:
    """Consistent at any moment: no duplicate items or pairs, every generated
    item belongs to exactly one recorded iteration, iterations recorded once."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT kind, split, text FROM persona_items GROUP BY 1, 2, 3"
                            " HAVING COUNT(*) > 1").fetchall() == []
        assert conn.execute("SELECT profile_id, personality_id FROM personas GROUP BY 1, 2"
                            " HAVING COUNT(*) > 1").fetchall() == []
        events: dict[tuple[str, int], int] = {}
        for kind, data in conn.execute("SELECT kind, payload FROM events WHERE kind LIKE 'personas.%.iteration'"):
            d = json.loads(data)
            key = (kind.split(".")[1], d["iteration"])
            assert key not in events, key  # an iteration is recorded once
            events[key] = d["added"]
        added: dict[tuple[str, int], int] = {}
        for kind, iteration in conn.execute("SELECT kind, iteration FROM persona_items WHERE source = 'generated'"):
            added[(kind, iteration)] = added.get((kind, iteration), 0) + 1
        assert {k: v for k, v in events.items() if v} == added  # items and their iteration record committed together
        for kind in {k for k, _ in events}:  # iterations are 0..n-1 without holes
            numbers = sorted(i for k, i in events if k == kind)
            assert numbers == list(range(len(numbers))), (kind, numbers)
        return conn.execute("SELECT COUNT(*) FROM events WHERE kind LIKE 'personas.%.iteration'").fetchone()[0]
    except sqlite3.OperationalError as exc:  # killed before the schema was created
        if "no such table" not in str(exc):
            raise
        return 0
    finally:
        conn.close()


def test_persona_growth_killed_five_times_gives_the_uninterrupted_pool(tmp_path: Path,
                                                                       slow_server: ServerProcess) -> None:
    seed = int(time.time())
    rng = random.Random(seed)

    def args(db: Path) -> list[str]:
        return ["personas", f"db={db}", "personas.target_profiles=45", "personas.target_personalities=28",
                "personas.pairs=40", "personas.eval_pairs=2", "log.format=json", "seed=3",
                *backend_args(slow_server.base_url, 10)]

    killed, whole = tmp_path / "killed.db", tmp_path / "whole.db"
    # growth ends at its bottleneck after ~30 iterations: slow each one down so that
    # five kills (each after fresh progress) always land before the end
    slow_server.configure(latency=0.6)
    reference = start(args(whole), tmp_path / "whole.log")
    try:
        progress = kill_repeatedly(args(killed), tmp_path / "killed.log", rng, (0.0, 1.5),
                                   lambda: check_pool(killed), lambda last: iterations(killed) > last)
        finish(args(killed), tmp_path / "killed.log")
        assert reference.wait(timeout=300) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    finally:
        kill_group(reference)
        slow_server.configure(latency=0.25)
    assert progress == sorted(progress) and progress[0] > 0, (seed, progress)  # kills landed mid-growth
    check_pool(killed)
    check_pool(whole)
    items, pairs = pool(killed)
    assert sum(1 for i in items if i[3] == "generated") > 0 and len(pairs) == 42
    assert (items, pairs) == pool(whole), f"seed {seed}"
