-- How many bytes of output a run has ever had appended (its logs keep only the newest
-- bytes). A follower that has shown output up to byte N of that total knows exactly
-- which part of the stored logs it has not shown, whichever instance received it.
ALTER TABLE job_run_logs ADD COLUMN appended_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE job_run_logs SET appended_bytes = octet_length(logs);
