-- Gantry schema, version 1 (SQLite).
--
-- Migrations are append-only: never edit a released file, add 0002_*.sql instead
-- (and its PostgreSQL twin). UUIDs are hyphenated TEXT and times are epoch
-- milliseconds, the same in both backends, so the Rust mapping code is shared.
-- STRICT tables make SQLite enforce the column types the way PostgreSQL does, so a
-- mapping bug fails loudly here instead of storing a string in an integer column.

CREATE TABLE accounts (
    uuid          TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    email         TEXT,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    uuid             TEXT    NOT NULL PRIMARY KEY,
    account_uuid     TEXT    NOT NULL REFERENCES accounts (uuid),
    name             TEXT    NOT NULL,
    public_key       TEXT    NOT NULL UNIQUE,
    secret_encrypted TEXT    NOT NULL,
    permissions      TEXT    NOT NULL, -- JSON array of strings
    allowed_ips      TEXT    NOT NULL, -- JSON array of strings
    expires_at_ms    INTEGER,
    is_revoked       INTEGER NOT NULL CHECK (is_revoked IN (0, 1)), -- SQLite has no BOOLEAN
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    last_used_at_ms  INTEGER,
    deleted_at_ms    INTEGER
) STRICT;

-- Listing an account's keys in creation order.
CREATE INDEX api_keys_account_created ON api_keys (account_uuid, created_at_ms);

-- A job row is the whole job as JSON (`spec`, written once) plus the columns that
-- filters, ordering and the scheduler need. The mutable fields (status,
-- status_reason, the times) live only in columns and override the JSON on read, so a
-- status change is a small in-place UPDATE that never rewrites the document.
CREATE TABLE jobs (
    uuid               TEXT    NOT NULL PRIMARY KEY,
    -- A foreign key costs one lookup in the small, always-cached accounts index per
    -- insert: cheap enough to have the database guarantee every job has an owner.
    account_uuid       TEXT    NOT NULL REFERENCES accounts (uuid),
    status             TEXT    NOT NULL,
    task               TEXT    NOT NULL,
    cpu_count          INTEGER NOT NULL,
    gpu_count          INTEGER NOT NULL,
    min_ram_gb         REAL    NOT NULL,
    min_storage_gb     REAL    NOT NULL,
    min_vram_gb        REAL    NOT NULL,
    source_recipe_uuid TEXT,
    status_reason      TEXT,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    started_at_ms      INTEGER,
    completed_at_ms    INTEGER,
    spec               TEXT    NOT NULL -- serde_json of gantry_types::job::Job
) STRICT;

-- An account's job list, in API order (created_at, uuid).
CREATE INDEX jobs_account_created ON jobs (account_uuid, created_at_ms, uuid);
-- An account's jobs in some status (`filter[status]`).
CREATE INDEX jobs_account_status_created ON jobs (account_uuid, status, created_at_ms);
-- The scheduler's scan: every PENDING job, oldest first.
CREATE INDEX jobs_status_created ON jobs (status, created_at_ms);
