"""``aloe generate`` end to end, as a user runs it (a subprocess of the CLI):

- against the latency server (benchmarks/latency_server.py, a real HTTP
  OpenAI-compatible server with injected latency and deterministic replies):
  SIGKILL the whole process group at random moments several times, then run
  to completion; the database is intact (no duplicates, no orphans, every
  tree complete) and holds exactly the trees of an uninterrupted run;
- against the real embedded llama.cpp model (SmolLM2-135M): complete trees,
  the information-flow contract read back from ``llm_calls.request``, one
  SIGKILL and a resume, and no server process left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from _common import latency_server  # benchmarks/ (pyproject's pytest pythonpath)
from test_generate import add_personas  # sibling test module

from aloesim.agents import strip_stage_directions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALOE = [sys.executable, "-m", "aloesim.orchestration.cli"]
KEY_VAR = "ALOE_TEST_FAKE_KEY"


# -- helpers -----------------------------------------------------------------

def marked(marker: str) -> list[tuple[int, str]]:
    """Processes (pid, command line) started with ALOE_TEST_MARKER=marker in their environment:
    the aloe process and everything it started (llama.cpp servers included)."""
    needle = f"ALOE_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), cmd))
        except OSError:
            continue
    return found


def wait_gone(marker: str, timeout: float = 20) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def env_for(marker: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", KEY_VAR: "not-a-real-key", "ALOE_TEST_MARKER": marker}


def start(args: list[str], marker: str, log: Path) -> subprocess.Popen:
    with log.open("ab") as err:
        return subprocess.Popen([*ALOE, "generate", *args], env=env_for(marker), cwd=ROOT, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=err)


def run_to_end(args: list[str], marker: str, log: Path, timeout: float) -> dict:
    proc = start(args, marker, log)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"aloe generate did not finish in {timeout} s; log: {log.read_text()[-2000:]}") from None
    assert proc.returncode == 0, log.read_text()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def check_integrity(db: Path, *, turns: int | None = None, trees: int | None = None) -> dict[str, int]:
    """What must hold at ANY moment, killed or not; with ``turns``/``trees``: also completeness."""
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    dup = conn.execute("SELECT tree_id, branch, COUNT(*) FROM nodes GROUP BY tree_id, branch HAVING COUNT(*) > 1")
    assert dup.fetchall() == []
    orphans = conn.execute(
        "SELECT n.id FROM nodes n LEFT JOIN nodes p ON p.id = n.parent_id WHERE"
        " (n.branch = '' AND (n.parent_id IS NOT NULL OR n.turn != 1)) OR (n.branch != '' AND (p.id IS NULL"
        " OR p.tree_id != n.tree_id OR p.turn != n.turn - 1 OR n.turn != length(n.branch) + 1"
        " OR p.branch != substr(n.branch, 1, length(n.branch) - 1)))").fetchall()
    assert orphans == []
    # path mode: each node's child continues the reply its node says was continued
    wrong = conn.execute(
        "SELECT n.id FROM nodes n JOIN nodes p ON p.id = n.parent_id WHERE substr(n.branch, -1)"
        " != CASE p.continued WHEN 'preferred' THEN 'p' ELSE 'r' END").fetchall()
    assert wrong == []
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'generate'").fetchone()[0] <= 1  # always resumed
    if turns is not None:
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM trees GROUP BY status").fetchall())
        assert statuses == {"complete": trees}, statuses
        per_tree = conn.execute("SELECT t.id, COUNT(n.id) FROM trees t LEFT JOIN nodes n ON n.tree_id = t.id"
                                " GROUP BY t.id").fetchall()
        assert {c for _, c in per_tree} == {turns}, per_tree
    return {"nodes": conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0],
            "trees_complete": conn.execute("SELECT COUNT(*) FROM trees WHERE status = 'complete'").fetchone()[0]}


def tree_content(db: Path) -> dict[tuple[str, str, str], tuple]:
    """Every node by (profile text, personality text, branch), free of ids."""
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT a.text, b.text, n.branch, n.turn, n.user_message, n.inferred_profile, n.inferred_personalities,"
        " n.preferred, n.rejected, n.continued FROM nodes n JOIN trees t ON t.id = n.tree_id"
        " JOIN personas p ON p.id = t.persona_id JOIN persona_items a ON a.id = p.profile_id"
        " JOIN persona_items b ON b.id = p.personality_id").fetchall()
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def check_information_flow(db: Path) -> dict[str, int]:
    """From the recorded requests: the rejected responder never received persona
    text, the preferred responder never the full persona. What the user said
    (m_j) and the earlier replies are removed from a request first: the user
    may well quote their persona, and that is allowed; the prompts must not."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    personas = {r["id"]: (r["profile"], r["personality"]) for r in conn.execute(
        "SELECT t.id, a.text AS profile, b.text AS personality FROM trees t JOIN personas p ON p.id = t.persona_id"
        " JOIN persona_items a ON a.id = p.profile_id JOIN persona_items b ON b.id = p.personality_id")}
    said: dict[int, list[str]] = defaultdict(list)
    for n in conn.execute("SELECT * FROM nodes"):
        said[n["tree_id"]].extend(x for x in (n["user_message"], n["preferred"], n["rejected"], n["inferred_profile"],
                                              n["inferred_personalities"]) if x)
    # replies of calls whose node a kill never let commit
    for c in conn.execute("SELECT role, tree_id, response FROM llm_calls WHERE response IS NOT NULL"):
        if c["role"] == "user":
            said[c["tree_id"]].append(strip_stage_directions(c["response"]))
        elif c["role"] == "inducer":
            try:
                said[c["tree_id"]].extend(v.strip() for v in json.loads(c["response"]).values() if v)
            except (json.JSONDecodeError, AttributeError):
                pass
        else:
            said[c["tree_id"]].append(c["response"].strip())
    checked = {"preferred": 0, "rejected": 0, "user": 0}
    for call in conn.execute("SELECT role, tree_id, request FROM llm_calls WHERE tree_id IS NOT NULL"):
        profile, personality = personas[call["tree_id"]]
        text = "\n".join(m["content"] for m in json.loads(call["request"])["messages"])
        if call["role"] == "user":
            assert profile in text and personality in text  # who may see it does (so the check can fail)
            checked["user"] += 1
            continue
        if call["role"] not in ("preferred", "rejected"):
            continue
        for piece in sorted(said.get(call["tree_id"], []), key=len, reverse=True):
            text = text.replace(piece, "")
        pieces = [profile, personality] + [s.strip() for s in (profile + "." + personality).split(".")
                                           if len(s.strip()) >= 25]
        leaked = [p for p in pieces if p in text]
        assert not leaked, (call["role"], leaked)
        if call["role"] == "rejected":
            assert "Hint:" not in text and "Personalities:" not in text  # no inferred persona either
        checked[call["role"]] += 1
    return checked


# -- against the latency server ------------------------------------------------

@pytest.fixture(scope="module")
def latency_url() -> Iterator[str]:
    with latency_server(latency=1.0, seed=3) as server:
        yield server.base_url


def latency_args(db: Path, url: str, trees: int, turns: int) -> list[str]:
    return [f"db={db}", f"generation.trees={trees}", f"generation.turns={turns}", "generation.progress=log",
            "backend=openai", f"backend.base_url={url}", f"backend.api_key_env={KEY_VAR}", "backend.dialect=openai",
            "backend.timeout=30", "log.format=json"]


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_trees(tmp_path: Path,
                                                                           latency_url: str) -> None:
    trees, turns = 8, 12  # about 40 s of growing (3 hops of 1 s per turn) after ~6 s of start-up
    killed_db, whole_db = tmp_path / "killed.db", tmp_path / "whole.db"
    for db in (killed_db, whole_db):
        add_personas(db, 10)  # personas ready: no embedding model needed here
    marker = uuid.uuid4().hex
    seed = int(time.time())
    rng = random.Random(seed)
    log = tmp_path / "killed.log"

    # the uninterrupted reference run grows beside the killed ones
    reference = start(latency_args(whole_db, latency_url, trees, turns), marker + "-ref", tmp_path / "whole.log")
    kills, progress = 0, []
    try:
        for _ in range(4):
            proc = start(latency_args(killed_db, latency_url, trees, turns), marker, log)
            try:
                proc.wait(timeout=rng.uniform(4, 14))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, at once
                proc.wait()
                kills += 1
            assert wait_gone(marker) == []
            progress.append(check_integrity(killed_db)["nodes"])  # consistent after every kill
        stats = run_to_end(latency_args(killed_db, latency_url, trees, turns), marker, log, timeout=240)
        out, _ = reference.communicate(timeout=240)
    finally:
        for p in (reference,):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    print(f"\nkill test: seed {seed}, {kills} kills, nodes committed after each: {progress}, "
          f"final invocation: {stats.get('this_invocation', stats)}")
    assert kills >= 3, f"seed {seed}: only {kills} kills landed before completion ({progress})"
    assert progress == sorted(progress), (seed, progress)
    assert reference.returncode == 0
    ref_stats = json.loads(out.decode().strip().splitlines()[-1])
    assert ref_stats["resumed"] is False and ref_stats["nodes"] == trees * turns
    assert stats["resumed"] is True and stats["trees_complete"] == trees and stats["nodes"] == trees * turns
    check_integrity(killed_db, turns=turns, trees=trees)
    check_integrity(whole_db, turns=turns, trees=trees)
    # no lost or duplicated work: exactly the trees of the uninterrupted run
    assert tree_content(killed_db) == tree_content(whole_db), f"seed {seed}"
    # and the exported datasets are the same files
    exports = []
    for db in (killed_db, whole_db):
        out_dir = tmp_path / f"export-{db.stem}"
        subprocess.run([*ALOE, "export", f"db={db}", f"export.dir={out_dir}"], env=env_for(marker), cwd=ROOT,
                       check=True, capture_output=True, timeout=120)
        exports.append({f: (out_dir / f).read_text() for f in ("sft.jsonl", "sft_rejected.jsonl", "dpo.jsonl")})
    assert exports[0] == exports[1]
    assert exports[0]["dpo.jsonl"].count("\n") == trees * turns
    checked = check_information_flow(killed_db)
    assert checked["rejected"] >= trees * turns and checked["preferred"] >= trees * turns
    # aloe runs sees one complete run with its counts
    listed = subprocess.run([*ALOE, "runs", f"db={killed_db}", "format=json"], env=env_for(marker), cwd=ROOT,
                            check=True, capture_output=True, timeout=60)
    (run,) = json.loads(listed.stdout)
    assert run["status"] == "complete" and run["trees"] == {"complete": trees} and run["nodes"] == trees * turns
    assert run["llm_calls"] >= 4 * trees * turns and run["prompt_tokens"] > 0


def test_preference_check_agreement_rate_is_in_the_run_stats(tmp_path: Path, latency_url: str) -> None:
    db = tmp_path / "judge.db"
    add_personas(db, 3)
    args = [*latency_args(db, latency_url, 3, 2), "generation.preference_check=true"]
    stats = run_to_end(args, uuid.uuid4().hex, tmp_path / "judge.log", timeout=240)
    assert stats["trees_complete"] == 3 and stats["nodes"] == 6
    conn = sqlite3.connect(db)
    verdicts = [json.loads(v) for (v,) in conn.execute("SELECT judge FROM nodes")]
    assert len(verdicts) == 6 and all({"agrees", "disagrees", "preferred_first", "preferred_second"} <= set(v)
                                      for v in verdicts)
    assert stats["preference_agreement"] == round(sum(v["agrees"] for v in verdicts) / 6, 4)
    (run_stats,) = conn.execute("SELECT stats FROM runs").fetchone()
    assert json.loads(run_stats)["preference_agreement"] == stats["preference_agreement"]
    judge_calls = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE role = 'preference_judge'").fetchone()[0]
    assert judge_calls == 12  # both orders for every node


def test_a_sweep_gives_one_run_per_combination_and_aloe_runs_shows_their_differences(tmp_path: Path,
                                                                                   latency_url: str) -> None:
    db = tmp_path / "sweep.db"
    add_personas(db, 2)
    args = [a for a in latency_args(db, latency_url, 2, 1) if not a.startswith("generation.turns")]
    proc = subprocess.run([*ALOE, "generate", "-m", *args, "agents.preferred.temperature=0.2,0.8",
                           "generation.turns=1,2"], env=env_for(uuid.uuid4().hex), cwd=ROOT, capture_output=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    listed = subprocess.run([*ALOE, "runs", f"db={db}", "format=json"], env=env_for("x"), cwd=ROOT, check=True,
                            capture_output=True, timeout=60)
    runs = json.loads(listed.stdout)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"complete"}
    combos = {(r["differences"]["agents.preferred.temperature"], r["differences"]["generation.turns"]) for r in runs}
    assert combos == {(0.2, 1), (0.2, 2), (0.8, 1), (0.8, 2)}
    assert all(set(r["differences"]) == {"agents.preferred.temperature", "generation.turns"} for r in runs)
    assert sorted(r["nodes"] for r in runs) == [2, 2, 4, 4]
    assert all(r["llm_calls"] > 0 and r["wall_s"] is not None for r in runs)
    text = subprocess.run([*ALOE, "runs", f"db={db}"], env=env_for("x"), cwd=ROOT, check=True, capture_output=True,
                          timeout=60).stdout.decode()
    assert "agents.preferred.temperature=0.8 generation.turns=2" in text


def test_shards_in_parallel_then_aloe_merge_equal_one_unsharded_run(tmp_path: Path, latency_url: str) -> None:
    """The documented recipe: N processes with generation.shard=I/N, then aloe merge."""
    dbs = [tmp_path / f"shard_{i}.db" for i in range(3)]
    whole, out = tmp_path / "whole.db", tmp_path / "all.db"
    for db in (*dbs, whole):
        add_personas(db, 9)
    marker = uuid.uuid4().hex
    procs = [start([*latency_args(db, latency_url, 1000, 2), f"generation.shard={i}/3"], marker, tmp_path / f"{i}.log")
             for i, db in enumerate(dbs)]
    procs.append(start(latency_args(whole, latency_url, 1000, 2), marker, tmp_path / "whole.log"))
    for p in procs:
        assert p.wait(timeout=240) == 0
    merged = subprocess.run([*ALOE, "merge", f"db={out}", f"inputs=[{','.join(map(str, dbs))}]"], env=env_for("x"),
                            cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert merged.returncode == 0, merged.stderr.decode()
    lines = [json.loads(line) for line in merged.stdout.decode().splitlines()]
    assert [line["input"] for line in lines] == [str(db) for db in dbs]
    assert sum(line["added"]["trees"] for line in lines) == 9
    assert tree_content(out) == tree_content(whole) and len(tree_content(whole)) == 18
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3
    assert conn.execute("SELECT COUNT(*) FROM personas").fetchone()[0] == 9
    # again: nothing added
    again = subprocess.run([*ALOE, "merge", f"db={out}", f"inputs=[{dbs[0]}]"], env=env_for("x"), cwd=ROOT,
                           capture_output=True, timeout=120, check=True)
    assert sum(json.loads(again.stdout)["added"].values()) == 0
    bad = subprocess.run([*ALOE, "merge", f"db={out}", f"inputs=[{dbs[0]},{tmp_path / 'nope.db'}]"],
                         env=env_for("x"), cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert bad.returncode != 0 and bad.stdout == b""
    assert bad.stderr.decode().count("\n") == 1 and "nope.db" in bad.stderr.decode()


# -- against the real embedded model -------------------------------------------

def test_embedded_model_grows_complete_trees_and_survives_a_sigkill(tmp_path: Path) -> None:
    """The real thing: llama.cpp serving SmolLM2-135M, personas paired from the
    shipped seed pools (real MiniLM embeddings), tiny replies."""
    db = tmp_path / "real.db"
    trees, turns = 2, 2
    args = [f"db={db}", f"generation.trees={trees}", f"generation.turns={turns}", "generation.progress=log",
            "agents.user.max_tokens=32", "agents.preferred.max_tokens=32", "agents.rejected.max_tokens=32",
            "agents.inducer.max_tokens=64", "log.format=json"]
    marker = uuid.uuid4().hex
    log = tmp_path / "real.log"
    proc = start(args, marker, log)
    # kill once the server is up and the first calls are under way
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if any("llama_cpp.server" in cmd for _, cmd in marked(marker)) and db.exists():
            conn = sqlite3.connect(db)
            try:
                started = conn.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
            except sqlite3.OperationalError:
                started = 0
            conn.close()
            if started:
                break
        time.sleep(0.5)
    time.sleep(random.uniform(0, 5))
    assert proc.poll() is None, log.read_text()[-3000:]
    servers = [p for p, cmd in marked(marker) if "llama_cpp.server" in cmd]
    assert servers
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wait_gone(marker) == []  # the llama.cpp server died with its parent
    check_integrity(db)

    stats = run_to_end(args, marker, log, timeout=420)
    assert wait_gone(marker) == []
    assert stats["resumed"] is True
    assert (stats["trees_complete"], stats["trees_failed"], stats["nodes"]) == (trees, 0, trees * turns)
    check_integrity(db, turns=turns, trees=trees)
    conn = sqlite3.connect(db)
    for message, preferred, rejected, continued in conn.execute(
            "SELECT user_message, preferred, rejected, continued FROM nodes"):
        assert message.strip() and preferred.strip() and rejected.strip()
        assert "*" not in message or message.count("*") < 2  # stage directions removed
        assert continued in ("preferred", "rejected")
    checked = check_information_flow(db)
    assert checked["user"] >= trees * turns and checked["rejected"] >= trees * turns
    assert checked["preferred"] >= trees * turns
