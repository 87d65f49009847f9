//! The store's schema, as a list of migrations applied in order; `PRAGMA user_version` records
//! how many have run. Append new migrations; never edit one that has shipped.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: examples, curation results, reviews, checkpoints, snapshots, runs, models.
    r#"
CREATE TABLE examples (
    id           TEXT PRIMARY KEY,        -- sha256 hex of the normalized content
    source       TEXT NOT NULL,           -- the [[source]] name
    plugin       TEXT NOT NULL,           -- the plugin it came from
    provenance   TEXT NOT NULL,           -- repo@commit, path#heading, session/uuid, ...
    kind         TEXT NOT NULL,
    task         TEXT NOT NULL,
    messages     TEXT NOT NULL,           -- JSON [{role, content}]
    rejected     TEXT,                    -- the rejected answer of a preference pair
    metadata     TEXT NOT NULL DEFAULT '{}',
    scrub_counts TEXT NOT NULL DEFAULT '{}', -- rule id -> secrets redacted
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX examples_source ON examples(source);
CREATE INDEX examples_kind ON examples(kind);
CREATE INDEX examples_created ON examples(created_at);

-- Scores as the filters gave them; decisions live in reviews, so thresholds can be re-cut.
CREATE TABLE verdicts (
    example_id    TEXT NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
    filter        TEXT NOT NULL,
    score         REAL NOT NULL,
    flags         TEXT NOT NULL DEFAULT '[]',
    complexity    INTEGER NOT NULL,
    reject_reason TEXT,
    rule          TEXT NOT NULL,
    fired         TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (example_id, filter)
) STRICT, WITHOUT ROWID;

-- Every decision ever made; the latest per example is its status (no row = pending).
CREATE TABLE reviews (
    id          INTEGER PRIMARY KEY,
    example_id  TEXT NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    reason      TEXT,
    note        TEXT,
    decided_by  TEXT NOT NULL CHECK (decided_by IN ('auto', 'human')),
    decided_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX reviews_example ON reviews(example_id, id);

CREATE VIEW example_status AS
SELECT e.id AS example_id,
       coalesce((SELECT r.status FROM reviews r WHERE r.example_id = e.id ORDER BY r.id DESC LIMIT 1), 'pending') AS status
FROM examples e;

CREATE TABLE checkpoints (
    source     TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

-- MinHash signatures and their LSH band hashes, for near-duplicate queries across the store.
CREATE TABLE minhash (
    example_id TEXT PRIMARY KEY REFERENCES examples(id) ON DELETE CASCADE,
    signature  BLOB NOT NULL
) STRICT;
CREATE TABLE minhash_bands (
    band       INTEGER NOT NULL,
    hash       INTEGER NOT NULL,
    example_id TEXT NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
    PRIMARY KEY (band, hash, example_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE duplicates (
    example_id   TEXT PRIMARY KEY REFERENCES examples(id) ON DELETE CASCADE,
    duplicate_of TEXT NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
    similarity   REAL NOT NULL
) STRICT;

-- Dataset exports: a deterministic snapshot with a manifest.
CREATE TABLE snapshots (
    id            TEXT PRIMARY KEY,
    path          TEXT NOT NULL,
    manifest      TEXT NOT NULL DEFAULT '{}',
    example_count INTEGER NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

-- Training / DPO / eval runs and their metrics.
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,            -- sft, dpo, eval, pipeline
    snapshot_id TEXT REFERENCES snapshots(id),
    config      TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'stopped')),
    dir         TEXT,
    error       TEXT,
    started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at TEXT
) STRICT;
CREATE TABLE run_metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (run_id, step, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE models (
    version     TEXT PRIMARY KEY,
    run_id      TEXT REFERENCES runs(id),
    status      TEXT NOT NULL CHECK (status IN ('candidate', 'active', 'retired')),
    adapter     TEXT,
    eval        TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    promoted_at TEXT
) STRICT;
CREATE UNIQUE INDEX models_one_active ON models(status) WHERE status = 'active';
"#,
    // 2 (run registry, model versions): runs get their statuses (running / done / failed /
    // interrupted), base model + fingerprint, adapter, final metrics, duration, host, pid and
    // device; models get the version they replaced (for rollback) and the reason of the last
    // decision; every status change is kept in model_events. SQLite cannot change a CHECK, so
    // runs is rebuilt, and with it the two tables that reference it (their rows are copied; the
    // new tables first reference `runs_v2`, which the rename turns into `runs`).
    r#"
CREATE TABLE runs_v2 (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,            -- sft, dpo, eval, pipeline
    snapshot_id   TEXT REFERENCES snapshots(id),
    parent_id     TEXT REFERENCES runs_v2(id), -- the run this one builds on (DPO on SFT, eval of a run)
    config        TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    dir           TEXT,                     -- run directory (checkpoints, metrics.jsonl)
    adapter       TEXT,                     -- the adapter directory it wrote
    base_model    TEXT,                     -- model directory trained on
    base_hash     TEXT,                     -- fingerprint of the base (config, index, headers, samples)
    final_metrics TEXT NOT NULL DEFAULT '{}',
    error         TEXT,
    host          TEXT,
    pid           INTEGER,
    pid_start     TEXT,                     -- the process's start time where the OS tells (pid reuse)
    device        TEXT,                     -- MLX device: cpu, gpu
    started_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resumed_at    TEXT,                     -- start of the current segment of a resumed run
    heartbeat_at  TEXT,                     -- last metric written
    finished_at   TEXT,
    duration_s    REAL                      -- seconds of work (resumed segments added up)
) STRICT;
INSERT INTO runs_v2 (id, kind, snapshot_id, config, status, dir, error, started_at, finished_at)
SELECT id, kind, snapshot_id, config,
       CASE status WHEN 'completed' THEN 'done' WHEN 'stopped' THEN 'interrupted' ELSE status END,
       dir, error, started_at, finished_at
FROM runs;
CREATE INDEX runs_started ON runs_v2(started_at);
CREATE INDEX runs_status ON runs_v2(status);

CREATE TABLE run_metrics_v2 (
    run_id TEXT NOT NULL REFERENCES runs_v2(id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (run_id, name, step)
) STRICT, WITHOUT ROWID;
INSERT INTO run_metrics_v2 (run_id, step, name, value) SELECT run_id, step, name, value FROM run_metrics;

CREATE TABLE models_v2 (
    version     TEXT PRIMARY KEY,           -- v1, v2, ...
    run_id      TEXT REFERENCES runs_v2(id),
    status      TEXT NOT NULL CHECK (status IN ('candidate', 'active', 'retired')),
    adapter     TEXT,
    base_model  TEXT,
    eval        TEXT NOT NULL DEFAULT '{}',
    reason      TEXT,                       -- why the last decision (promoted, kept, rolled back)
    previous    TEXT REFERENCES models_v2(version), -- the active version this one replaced
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    promoted_at TEXT,
    retired_at  TEXT
) STRICT;
INSERT INTO models_v2 (version, run_id, status, adapter, eval, created_at, promoted_at)
SELECT version, run_id, status, adapter, eval, created_at, promoted_at FROM models;

DROP TABLE models;
DROP TABLE run_metrics;
DROP TABLE runs;
ALTER TABLE runs_v2 RENAME TO runs;
ALTER TABLE run_metrics_v2 RENAME TO run_metrics;
ALTER TABLE models_v2 RENAME TO models;
CREATE UNIQUE INDEX models_one_active ON models(status) WHERE status = 'active';

-- Every model status change: registered, promoted, kept, rolled back, retired.
CREATE TABLE model_events (
    id      INTEGER PRIMARY KEY,
    version TEXT NOT NULL REFERENCES models(version) ON DELETE CASCADE,
    event   TEXT NOT NULL,
    status  TEXT NOT NULL,                  -- the status after the event
    reason  TEXT,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX model_events_version ON model_events(version, id);
"#,
    // 3: the tables review and export created on first use until now (`CREATE TABLE IF NOT
    // EXISTS` there), so a store has its whole schema from the start. `IF NOT EXISTS`: a v2
    // store that was reviewed or exported already has them.
    r#"
-- The interactive review session's resume point.
CREATE TABLE IF NOT EXISTS review_cursor (
    name       TEXT PRIMARY KEY,
    example_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
-- Edits of an example's response, with the previous text (for undo).
CREATE TABLE IF NOT EXISTS example_edits (
    id                 INTEGER PRIMARY KEY,
    example_id         TEXT NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
    old_messages       TEXT NOT NULL,
    new_messages       TEXT NOT NULL,
    old_scrub_counts   TEXT NOT NULL,
    review_id          INTEGER,
    edited_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX IF NOT EXISTS example_edits_review ON example_edits(review_id);
-- The split each example got the first time it was exported (kept for good).
CREATE TABLE IF NOT EXISTS example_splits (
    example_id  TEXT PRIMARY KEY REFERENCES examples(id) ON DELETE CASCADE,
    split       TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test')),
    assigned_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT, WITHOUT ROWID;
"#,
    // 4: what `brain serve` answered, escalated or not (routing data and evaluation), kept for
    // `[serve] keep_interactions_days`.
    r#"
CREATE TABLE interactions (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    model_version TEXT,                    -- the registered version that answered, if any
    messages      TEXT NOT NULL,           -- JSON [{role, content}] as asked, scrubbed
    answer        TEXT NOT NULL,           -- the local model's answer, scrubbed
    finish        TEXT NOT NULL,           -- stop / length
    escalated     INTEGER NOT NULL CHECK (escalated IN (0, 1)),
    route         TEXT,                    -- why it was escalated (always, empty, repetitive, ...)
    teacher       TEXT,                    -- the teacher model that answered instead
    example_id    TEXT                     -- the preference example an escalation stored
) STRICT;
CREATE INDEX interactions_at ON interactions(at);
"#,
];
