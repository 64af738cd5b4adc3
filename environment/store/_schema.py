"""The database schema, in one place, with its migrations.

``PRAGMA user_version`` holds the schema version. ``MIGRATIONS[i]`` takes a
database from version i to i+1; a new database runs them all. A database
whose version is newer than ``SCHEMA_VERSION`` is refused, never touched.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,              -- generate | personas | evaluate | train | merge
        config      TEXT NOT NULL,              -- resolved config as JSON, secrets never included
        config_hash TEXT NOT NULL,              -- identity of the run for resume
        status      TEXT NOT NULL DEFAULT 'running',   -- running | complete | failed | interrupted
        started_at  REAL NOT NULL,
        finished_at REAL,
        stats       TEXT                        -- JSON summary written at the end
    );
    CREATE INDEX runs_hash ON runs(kind, config_hash);

    CREATE TABLE persona_items (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('profile', 'personality')),
        split      TEXT NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'eval')),
        text       TEXT NOT NULL,
        source     TEXT NOT NULL,               -- seed | generated | imported
        run_id     INTEGER REFERENCES runs(id),
        iteration  INTEGER,
        embedder   TEXT,
        embedding  BLOB,                        -- float32, L2-normalised
        created_at REAL NOT NULL,
        UNIQUE (kind, split, text)
    );

    CREATE TABLE personas (
        id             INTEGER PRIMARY KEY,
        profile_id     INTEGER NOT NULL REFERENCES persona_items(id),
        personality_id INTEGER NOT NULL REFERENCES persona_items(id),
        split          TEXT NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'eval')),
        created_at     REAL NOT NULL,
        UNIQUE (profile_id, personality_id)
    );

    CREATE TABLE trees (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER NOT NULL REFERENCES runs(id),
        persona_id  INTEGER NOT NULL REFERENCES personas(id),
        mode        TEXT NOT NULL,              -- path | full
        turns       INTEGER NOT NULL,
        seed        INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'complete', 'failed')),
        error       TEXT,
        created_at  REAL NOT NULL,
        finished_at REAL,
        UNIQUE (run_id, persona_id)
    );
    CREATE INDEX trees_status ON trees(run_id, status);

    CREATE TABLE nodes (
        id                     INTEGER PRIMARY KEY,
        tree_id                INTEGER NOT NULL REFERENCES trees(id),
        parent_id              INTEGER REFERENCES nodes(id),
        turn                   INTEGER NOT NULL,
        branch                 TEXT NOT NULL,   -- choice letters from the root, '' for turn 1
        user_message           TEXT NOT NULL,
        inferred_profile       TEXT,
        inferred_personalities TEXT,
        preferred              TEXT NOT NULL,
        rejected               TEXT NOT NULL,
        continued              TEXT NOT NULL CHECK (continued IN ('preferred', 'rejected', 'both')),
        judge                  TEXT,            -- JSON verdict of the optional preference check
        created_at             REAL NOT NULL,
        UNIQUE (tree_id, branch)
    );
    CREATE INDEX nodes_parent ON nodes(parent_id);

    CREATE TABLE events (
        id         INTEGER PRIMARY KEY,
        run_id     INTEGER,
        tree_id    INTEGER,
        kind       TEXT NOT NULL,
        payload    TEXT NOT NULL,               -- JSON of the bus message
        created_at REAL NOT NULL
    );
    CREATE INDEX events_tree ON events(tree_id, id);

    CREATE TABLE llm_calls (
        id                INTEGER PRIMARY KEY,
        run_id            INTEGER,
        role              TEXT NOT NULL,
        endpoint          TEXT NOT NULL,        -- base URL, never a key
        model             TEXT NOT NULL,
        tree_id           INTEGER,
        turn              INTEGER,
        branch            TEXT,
        case_id           INTEGER,
        request           TEXT NOT NULL,        -- JSON: messages and sampling params
        response          TEXT,                 -- the reply text (or JSON for structured output)
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        latency_s         REAL,
        attempts          INTEGER NOT NULL DEFAULT 1,
        cached            INTEGER NOT NULL DEFAULT 0,
        error             TEXT,
        cache_key         TEXT,
        created_at        REAL NOT NULL
    );
    CREATE INDEX llm_calls_tree ON llm_calls(tree_id, turn, branch);
    CREATE INDEX llm_calls_case ON llm_calls(case_id);
    CREATE INDEX llm_calls_run ON llm_calls(run_id);

    CREATE TABLE llm_cache (
        key        TEXT PRIMARY KEY,
        response   TEXT NOT NULL,               -- JSON: text, usage
        created_at REAL NOT NULL
    );

    CREATE TABLE evaluations (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER REFERENCES runs(id),
        label       TEXT NOT NULL,              -- name of the evaluated model in reports
        model       TEXT NOT NULL,              -- JSON identity of the evaluated model
        user_model  TEXT NOT NULL,
        judge_model TEXT NOT NULL,
        turns       INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'running',
        report      TEXT,                       -- JSON report once complete
        created_at  REAL NOT NULL
    );

    CREATE TABLE eval_cases (
        id            INTEGER PRIMARY KEY,
        evaluation_id INTEGER NOT NULL REFERENCES evaluations(id),
        case_index    INTEGER NOT NULL,
        profile       TEXT NOT NULL,
        personality   TEXT NOT NULL,
        status        TEXT NOT NULL DEFAULT 'pending',  -- pending | complete | failed
        error         TEXT,
        UNIQUE (evaluation_id, case_index)
    );

    CREATE TABLE eval_turns (
        id           INTEGER PRIMARY KEY,
        case_id      INTEGER NOT NULL REFERENCES eval_cases(id),
        turn         INTEGER NOT NULL,
        user_message TEXT NOT NULL,
        reply        TEXT NOT NULL,
        score        INTEGER,                   -- 1..5, NULL when the judge failed
        judge_error  TEXT,
        created_at   REAL NOT NULL,
        UNIQUE (case_id, turn)
    );

    CREATE TABLE checkpoints (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER REFERENCES runs(id),
        path        TEXT NOT NULL,
        stage       TEXT NOT NULL,
        base_model  TEXT NOT NULL,
        source_runs TEXT NOT NULL,              -- JSON list of generate run ids
        metrics     TEXT,                       -- JSON
        created_at  REAL NOT NULL
    );
    """,
    # 1 -> 2: a covering index for per-run call summaries (viewer, aloe runs).
    """
    CREATE INDEX llm_calls_run_role ON llm_calls(run_id, role, attempts, prompt_tokens, completion_tokens, latency_s, error);
    """,
    # 2 -> 3: a run's wall time is the sum of its invocations' (kept live by the lease's
    # heartbeat), and the lease that lets one process at a time grow a run.
    """
    ALTER TABLE runs ADD COLUMN wall_s REAL NOT NULL DEFAULT 0;        -- seconds, summed over invocations
    ALTER TABLE runs ADD COLUMN invocations INTEGER NOT NULL DEFAULT 0;  -- how many times the run was started
    UPDATE runs SET invocations = 1, wall_s = COALESCE(
        CASE WHEN json_valid(stats) THEN CAST(json_extract(stats, '$.wall_s') AS REAL) END,
        finished_at - started_at, 0);
    CREATE TABLE run_leases (
        run_id       INTEGER PRIMARY KEY REFERENCES runs(id),
        holder       TEXT NOT NULL,              -- random token of the holding invocation
        pid          INTEGER NOT NULL,
        host         TEXT NOT NULL,
        acquired_at  REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        stale_after  REAL NOT NULL               -- seconds without a heartbeat after which it may be taken over
    );
    """,
    # 3 -> 4: why each reply ended ('stop', 'length' = cut at max_tokens or max_reply_chars, ...; NULL = unknown).
    """
    ALTER TABLE llm_calls ADD COLUMN finish_reason TEXT;
    """,
    # 4 -> 5: the judge's score distribution per turn (when the endpoint returns logprobs), and the
    # judge validity probes of each evaluation (issue 13.1, 13.2).
    """
    ALTER TABLE eval_turns ADD COLUMN score_dist TEXT;      -- JSON [P(1)..P(5)] of the judge, renormalised over 1-5
    ALTER TABLE eval_turns ADD COLUMN score_expected REAL;  -- sum of k * P(k)
    ALTER TABLE eval_turns ADD COLUMN score_mass REAL;      -- probability the judge put on 1-5 before renormalising

    CREATE TABLE judge_probes (
        id            INTEGER PRIMARY KEY,
        evaluation_id INTEGER NOT NULL REFERENCES evaluations(id),
        kind          TEXT NOT NULL,            -- persona_swap | reply_swap | order_swap
        probe         INTEGER NOT NULL,         -- index; the probe is defined by (cases, seed, kind, index)
        case_a        INTEGER,                  -- case index of the persona the right side belongs to (NULL: built-in)
        case_b        INTEGER,                  -- case index of the other persona (NULL: built-in)
        detail        TEXT NOT NULL,            -- JSON: the personas, message and replies judged
        first         REAL,                     -- score (or vote) of the side that should win
        second        REAL,                     -- score (or vote) of the other side
        outcome       REAL,                     -- 1 right, 0.5 tie, 0 wrong; NULL when a call failed
        error         TEXT,
        created_at    REAL NOT NULL,
        UNIQUE (evaluation_id, kind, probe)
    );
    """,
    # 5 -> 6: what each call cost in US dollars (issue 16.2): NULL = unknown (a model without a price,
    # a failed call on a paid API), 0 = free (cached replies, embedded and vLLM servers by default).
    """
    ALTER TABLE llm_calls ADD COLUMN cost_usd REAL;
    """,
    # 6 -> 7: batch mode (issue 17): the provider batch a call was answered in, and every submitted
    # batch with its requests (by cache key), recorded before the process waits on it (resume).
    """
    ALTER TABLE llm_calls ADD COLUMN batch_id TEXT;   -- NULL = an online (or cached) call
    CREATE TABLE llm_batches (
        id          TEXT PRIMARY KEY,           -- the provider's batch id
        provider    TEXT NOT NULL,
        model       TEXT NOT NULL,
        role        TEXT NOT NULL,
        requests    INTEGER NOT NULL,
        state       TEXT NOT NULL,              -- the last state seen: validating ... completed | failed | expired
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE llm_batch_requests (
        cache_key   TEXT NOT NULL,
        batch_id    TEXT NOT NULL REFERENCES llm_batches(id),
        PRIMARY KEY (cache_key, batch_id)
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
