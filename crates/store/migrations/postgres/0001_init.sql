-- Gantry schema, version 1 (PostgreSQL).
--
-- Migrations are append-only: never edit a released file, add 0002_*.sql instead
-- (and its SQLite twin). UUIDs are hyphenated TEXT and times are epoch milliseconds
-- (BIGINT), the same as in SQLite, so the Rust mapping code is shared between the
-- backends; native UUID/TIMESTAMPTZ would buy little for the extra conversions.
-- Key columns use COLLATE "C" (byte order, like SQLite's BINARY): lists ordered by
-- uuid then page the same in both backends whatever the database locale, and
-- comparisons skip locale rules.

CREATE TABLE accounts (
    uuid          TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL,
    email         TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE api_keys (
    uuid             TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    account_uuid     TEXT    COLLATE "C" NOT NULL REFERENCES accounts (uuid),
    name             TEXT    NOT NULL,
    public_key       TEXT    COLLATE "C" NOT NULL UNIQUE,
    secret_encrypted TEXT    NOT NULL,
    permissions      TEXT    NOT NULL, -- JSON array of strings
    allowed_ips      TEXT    NOT NULL, -- JSON array of strings
    expires_at_ms    BIGINT,
    is_revoked       BOOLEAN NOT NULL,
    created_at_ms    BIGINT  NOT NULL,
    updated_at_ms    BIGINT  NOT NULL,
    last_used_at_ms  BIGINT,
    deleted_at_ms    BIGINT
);

-- Listing an account's keys in creation order.
CREATE INDEX api_keys_account_created ON api_keys (account_uuid, created_at_ms);

-- A job row is the whole job as JSON (`spec`, written once) plus the columns that
-- filters, ordering and the scheduler need. The mutable fields (status,
-- status_reason, the times) live only in columns and override the JSON on read, so a
-- status change is a small UPDATE that never rewrites the document.
CREATE TABLE jobs (
    uuid               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    -- A foreign key costs one lookup in the small, always-cached accounts index per
    -- insert: cheap enough to have the database guarantee every job has an owner.
    account_uuid       TEXT COLLATE "C" NOT NULL REFERENCES accounts (uuid),
    status             TEXT             NOT NULL,
    task               TEXT             NOT NULL,
    cpu_count          BIGINT           NOT NULL,
    gpu_count          BIGINT           NOT NULL,
    min_ram_gb         DOUBLE PRECISION NOT NULL,
    min_storage_gb     DOUBLE PRECISION NOT NULL,
    min_vram_gb        DOUBLE PRECISION NOT NULL,
    source_recipe_uuid TEXT,
    status_reason      TEXT,
    created_at_ms      BIGINT           NOT NULL,
    updated_at_ms      BIGINT           NOT NULL,
    started_at_ms      BIGINT,
    completed_at_ms    BIGINT,
    spec               TEXT             NOT NULL -- serde_json of gantry_types::job::Job
);

-- An account's job list, in API order (created_at, uuid).
CREATE INDEX jobs_account_created ON jobs (account_uuid, created_at_ms, uuid);
-- An account's jobs in some status (`filter[status]`).
CREATE INDEX jobs_account_status_created ON jobs (account_uuid, status, created_at_ms);
-- The scheduler's scan: every PENDING job, oldest first.
CREATE INDEX jobs_status_created ON jobs (status, created_at_ms);
