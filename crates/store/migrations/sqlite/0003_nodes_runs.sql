-- Gantry schema, version 3 (SQLite): nodes and job runs.
--
-- A node row is one machine running `gantry agent`: the columns the scheduler,
-- heartbeats and lists filter or update, plus JSON TEXT for what is only read back
-- whole (labels, inventory, each inventory GPU's registry model, the latest sample).
-- Heartbeats update last_seen_at_ms and latest_sample in place, compare-and-set on
-- (status, lease_epoch), so a node declared lost cannot be revived by a stale agent.

CREATE TABLE nodes (
    uuid            TEXT    NOT NULL PRIMARY KEY,
    account_uuid    TEXT    NOT NULL REFERENCES accounts (uuid),
    name            TEXT    NOT NULL,
    region_code     TEXT,
    labels          TEXT    NOT NULL, -- JSON object of strings
    hostname        TEXT,
    inventory       TEXT    NOT NULL, -- JSON gantry_types::node::NodeInventory
    gpu_models      TEXT    NOT NULL, -- JSON array: registry uuid or null per inventory GPU
    status          TEXT    NOT NULL,
    is_draining     INTEGER NOT NULL CHECK (is_draining IN (0, 1)), -- SQLite has no BOOLEAN
    lease_epoch     INTEGER NOT NULL,
    last_seen_at_ms INTEGER NOT NULL,
    latest_sample   TEXT,             -- JSON gantry_types::node::HardwareSample
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;

-- An account's node list, in API order (created_at, uuid).
CREATE INDEX nodes_account_created ON nodes (account_uuid, created_at_ms, uuid);

-- A job run: one execution of a job on one node (one per attempt and gang member).
-- The run's job is copied at placement (`job_snapshot`), so the run shows what was
-- run even if the job changes; cpu/ram_gb/storage_gb are what it reserves on its
-- node, summed by the scheduler over the active runs. account_uuid is the job's
-- owner, copied so that scoped reads need no join.
CREATE TABLE job_runs (
    uuid                    TEXT    NOT NULL PRIMARY KEY,
    job_uuid                TEXT    NOT NULL REFERENCES jobs (uuid),
    account_uuid            TEXT    NOT NULL,
    node_uuid               TEXT    NOT NULL REFERENCES nodes (uuid),
    status                  TEXT    NOT NULL,
    status_reason           TEXT,
    attempt                 INTEGER NOT NULL,
    rank                    INTEGER NOT NULL,
    gang_size               INTEGER NOT NULL,
    lease_epoch             INTEGER NOT NULL,
    cpu                     INTEGER NOT NULL,
    ram_gb                  REAL    NOT NULL,
    storage_gb              REAL    NOT NULL,
    gpu_indices             TEXT    NOT NULL, -- JSON array of device indices
    node_urls               TEXT    NOT NULL, -- JSON array of gantry_types::job_run::NodeUrl
    container_access_tokens TEXT    NOT NULL, -- JSON array of ContainerAccessToken
    exit_code               INTEGER,
    started_at_ms           INTEGER,
    ended_at_ms             INTEGER,
    duration_ms             INTEGER,
    hourly_rate_usd         REAL,
    created_at_ms           INTEGER NOT NULL,
    updated_at_ms           INTEGER NOT NULL,
    job_snapshot            TEXT    NOT NULL  -- JSON of the job at placement (secrets redacted)
) STRICT;

-- A job's runs in order (retries, gang decisions, `filter[job_uuid]`).
CREATE INDEX job_runs_job_created ON job_runs (job_uuid, created_at_ms);
-- An account's run list, in API order.
CREATE INDEX job_runs_account_created ON job_runs (account_uuid, created_at_ms, uuid);
-- The active runs (capacity accounting, timeouts): a partial index stays as small as
-- the set of runs in flight however long the history grows. Queries must repeat the
-- literal condition for SQLite to use it.
CREATE INDEX job_runs_active ON job_runs (created_at_ms, uuid)
    WHERE status IN ('ASSIGNED', 'PREPARING', 'RUNNING');
-- A node's runs by status (what a node must run, what a lost node was running).
CREATE INDEX job_runs_node_status ON job_runs (node_uuid, status);

-- Container output, apart from the run row so that run reads and updates stay small.
-- Only the newest bytes are kept (the store trims on append).
CREATE TABLE job_run_logs (
    run_uuid TEXT NOT NULL PRIMARY KEY REFERENCES job_runs (uuid),
    logs     TEXT NOT NULL
) STRICT;

-- The size of a job's image, reported by the node that pulled it. A column (NULL until
-- reported) overriding the job JSON on read, like the other mutable job fields.
ALTER TABLE jobs ADD COLUMN image_size_bytes INTEGER;
