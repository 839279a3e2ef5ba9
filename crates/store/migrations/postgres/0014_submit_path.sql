-- A `job.created` event refers to its job instead of carrying a second copy of it
-- (see src/events.rs, "job.created"): its `data` is '' and `job_uuid` names the job,
-- whose creation snapshot `jobs.spec` is (never updated, jobs are never deleted).
-- Every other event keeps its own `data` and a NULL `job_uuid`. A nullable column
-- without a default rewrites nothing; events written before read as before.
-- COLLATE "C" as `jobs.uuid`, so the lookup by it uses the jobs primary key.
ALTER TABLE events ADD COLUMN job_uuid TEXT COLLATE "C";

-- The usage counters of inserted jobs move once per statement, not once per row: a
-- group-committed batch of creations (src/postgres/job_batch.rs) inserts its jobs in
-- one statement, and a row trigger ran one upsert of a counter row per job (most of
-- the database's work per created job). The statement trigger sums the statement's
-- new rows per (account, shard), in key order (as the batch sorts its rows: two
-- transactions take their counter rows in one order and cannot deadlock). Transition
-- tables allow one event per trigger, so updates and deletes keep the row trigger.
CREATE FUNCTION gantry_jobs_usage_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_usage (account_uuid, shard, pending_jobs, job_bytes)
    SELECT account_uuid, gantry_usage_shard(uuid), COUNT(*) FILTER (WHERE status = 'PENDING'), SUM(octet_length(spec))
    FROM inserted GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_uuid, shard) DO UPDATE
    SET pending_jobs = account_usage.pending_jobs + EXCLUDED.pending_jobs,
        job_bytes = account_usage.job_bytes + EXCLUDED.job_bytes;
    RETURN NULL;
END;
$$;

DROP TRIGGER jobs_usage ON jobs;
CREATE TRIGGER jobs_usage AFTER UPDATE OF status, spec OR DELETE ON jobs
FOR EACH ROW EXECUTE FUNCTION gantry_jobs_usage();
CREATE TRIGGER jobs_usage_inserted AFTER INSERT ON jobs
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION gantry_jobs_usage_inserted();
