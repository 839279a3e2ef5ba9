-- Status changes move the usage counters once per statement, in key order.
--
-- Why: the row trigger of migration 6 updated one counter row per changed job, in
-- whatever order the UPDATE visited the jobs. A placement write (many jobs PENDING ->
-- ASSIGNED in one statement) thus locked an account's counter rows (16 shards) in
-- arbitrary order, while a group-committed batch of creations locks them in key order
-- (migration 14): the two deadlocked, PostgreSQL broke the cycle after
-- deadlock_timeout (1 s), and the stall starved node syncs (seen in `gantry bench
-- failover`). Now every multi-row UPDATE takes its counter rows in (account, shard)
-- order, as inserts do, so no two such statements can wait on each other in a cycle;
-- and a placement batch costs one counter statement instead of one per job.
--
-- Transition tables cannot be used with a column list (`UPDATE OF status, spec`), so
-- the trigger fires on every UPDATE of jobs and keeps only the rows whose pending-ness
-- or spec changed: an update that changes neither touches (and locks) no counter row.
CREATE FUNCTION gantry_jobs_usage_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_usage (account_uuid, shard, pending_jobs, job_bytes)
    SELECT n.account_uuid, gantry_usage_shard(n.uuid),
           SUM((n.status = 'PENDING')::int - (o.status = 'PENDING')::int),
           SUM(octet_length(n.spec) - octet_length(o.spec))
    FROM new_jobs n JOIN old_jobs o ON o.uuid = n.uuid
    WHERE (o.status = 'PENDING') IS DISTINCT FROM (n.status = 'PENDING') OR o.spec IS DISTINCT FROM n.spec
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_uuid, shard) DO UPDATE
    SET pending_jobs = account_usage.pending_jobs + EXCLUDED.pending_jobs,
        job_bytes = account_usage.job_bytes + EXCLUDED.job_bytes;
    RETURN NULL;
END;
$$;

DROP TRIGGER jobs_usage ON jobs;
CREATE TRIGGER jobs_usage_updated AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION gantry_jobs_usage_updated();
-- Deletes (which the API never makes) keep the row trigger.
CREATE TRIGGER jobs_usage_deleted AFTER DELETE ON jobs
FOR EACH ROW EXECUTE FUNCTION gantry_jobs_usage();
