-- Gantry schema, version 6 (SQLite): per-account usage counters and quota overrides.
--
-- account_usage counts, per account, the PENDING jobs and the bytes of stored job JSON,
-- in the transaction of every insert (the store's insert), status change, spec change
-- and delete (triggers, whatever code path writes) of a job, so the counters are
-- exact; a quota check reads one row instead of counting jobs, and the scheduler learns which accounts have pending
-- jobs without scanning them. `shard` exists for PostgreSQL, which spreads an
-- account's counters over several rows; SQLite has one writer and uses shard 0.
CREATE TABLE account_usage (
    account_uuid TEXT    NOT NULL,
    shard        INTEGER NOT NULL,
    pending_jobs INTEGER NOT NULL,
    job_bytes    INTEGER NOT NULL,
    PRIMARY KEY (account_uuid, shard)
) STRICT, WITHOUT ROWID;

-- No index on pending_jobs: the scheduler's question each pass (which accounts have
-- pending jobs) scans one row per account, and an index would be maintained on every
-- job insert (measured: 2 us of the submit path's ~60).

INSERT INTO account_usage (account_uuid, shard, pending_jobs, job_bytes)
SELECT account_uuid, 0, SUM(status = 'PENDING'), SUM(octet_length(spec)) FROM jobs GROUP BY account_uuid;

-- Inserts are counted by the store's job insert itself (`SqliteStore::job_create_within`,
-- in the insert's savepoint, with the quota check as the counter UPDATE's condition):
-- a trigger cost the submit path ~4 us of ~60. Every job insert goes through it.

CREATE TRIGGER jobs_usage_status AFTER UPDATE OF status ON jobs
WHEN (old.status = 'PENDING') <> (new.status = 'PENDING')
BEGIN
    UPDATE account_usage SET pending_jobs = pending_jobs + (CASE WHEN new.status = 'PENDING' THEN 1 ELSE -1 END)
    WHERE account_uuid = new.account_uuid AND shard = 0;
END;

CREATE TRIGGER jobs_usage_spec AFTER UPDATE OF spec ON jobs
BEGIN
    UPDATE account_usage SET job_bytes = job_bytes + octet_length(new.spec) - octet_length(old.spec)
    WHERE account_uuid = new.account_uuid AND shard = 0;
END;

CREATE TRIGGER jobs_usage_delete AFTER DELETE ON jobs
BEGIN
    UPDATE account_usage
    SET pending_jobs = pending_jobs - (old.status = 'PENDING'), job_bytes = job_bytes - octet_length(old.spec)
    WHERE account_uuid = old.account_uuid AND shard = 0;
END;

-- Per-consumer overrides of the deployment's limits (NULL: the deployment's value;
-- 0: no limit for this consumer). Operators set them (PATCH /v1/consumer-profiles).
ALTER TABLE consumer_profiles ADD COLUMN max_pending_jobs INTEGER;
ALTER TABLE consumer_profiles ADD COLUMN max_stored_job_bytes INTEGER;
ALTER TABLE consumer_profiles ADD COLUMN rate_limit_rps REAL;
