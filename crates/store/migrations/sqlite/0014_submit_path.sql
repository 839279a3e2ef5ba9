-- A `job.created` event refers to its job instead of carrying a second copy of it
-- (see src/events.rs, "job.created"): its `data` is '' and `job_uuid` names the job,
-- whose creation snapshot `jobs.spec` is (never updated, jobs are never deleted).
-- Every other event keeps its own `data` and a NULL `job_uuid`. Adding a nullable
-- column rewrites nothing; events written before keep their copies and read as before.
ALTER TABLE events ADD COLUMN job_uuid TEXT;
