-- A run's job timeouts as columns of its own, beside the job snapshot they come from.
--
-- Why: the lifecycle pass checks every active run's start and run timeouts about once
-- a second, and they were read from `job_snapshot`, a copy of the whole job (about a
-- kilobyte), sent and decoded whole for two numbers; parsing it in SQL instead cost
-- more (70-300 ms per pass with 5,000-10,000 runs under `gantry bench schedule`), a
-- burst of CPU that the submits and placements of the moment waited out.
-- The pass now asks the database for the runs past these limits (`run_list_due`),
-- and `run_list_active_brief` reads them instead of the snapshot.
--
-- Written with every run placed from now on (`RunRow`), and filled here for the runs
-- still active, the only ones those reads return; older ended runs keep NULL. A run
-- without them (placed by an older binary during a rolling upgrade) is read whole.
ALTER TABLE job_runs ADD COLUMN start_limit_ms BIGINT, ADD COLUMN run_limit_ms BIGINT;
UPDATE job_runs
SET start_limit_ms = (job_snapshot::json ->> 'max_timeout_start_ms')::bigint,
    run_limit_ms = (job_snapshot::json ->> 'max_timeout_run_ms')::bigint
WHERE status IN ('ASSIGNED', 'PREPARING', 'RUNNING');
