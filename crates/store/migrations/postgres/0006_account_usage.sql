-- Gantry schema, version 6 (PostgreSQL): per-account usage counters and quota overrides.
--
-- account_usage counts, per account, the PENDING jobs and the bytes of stored job JSON.
-- A trigger keeps it in the transaction of every insert, status change and delete of a
-- job, whatever code path writes, so the counters are exact; a quota check sums a few
-- rows instead of counting jobs, and the scheduler learns which accounts have pending
-- jobs without scanning them. An account's counters are spread over 16 rows (`shard`,
-- from the job uuid's last hex digit, which is random in a UUIDv7) so concurrent
-- submissions of one account do not all queue on one row lock until commit.
CREATE TABLE account_usage (
    account_uuid TEXT COLLATE "C" NOT NULL,
    shard        SMALLINT         NOT NULL,
    pending_jobs BIGINT           NOT NULL,
    job_bytes    BIGINT           NOT NULL,
    PRIMARY KEY (account_uuid, shard)
);

CREATE FUNCTION gantry_usage_shard(job_uuid TEXT) RETURNS SMALLINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT GREATEST(strpos('0123456789abcdef', lower(right(job_uuid, 1))) - 1, 0)::smallint $$;

-- The scheduler's question each pass: which accounts have pending jobs.
CREATE INDEX account_usage_pending ON account_usage (account_uuid) WHERE pending_jobs > 0;

INSERT INTO account_usage (account_uuid, shard, pending_jobs, job_bytes)
SELECT account_uuid, gantry_usage_shard(uuid), COUNT(*) FILTER (WHERE status = 'PENDING'), SUM(octet_length(spec))
FROM jobs GROUP BY account_uuid, gantry_usage_shard(uuid);

CREATE FUNCTION gantry_jobs_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO account_usage (account_uuid, shard, pending_jobs, job_bytes)
        VALUES (NEW.account_uuid, gantry_usage_shard(NEW.uuid), (NEW.status = 'PENDING')::int, octet_length(NEW.spec))
        ON CONFLICT (account_uuid, shard) DO UPDATE
        SET pending_jobs = account_usage.pending_jobs + EXCLUDED.pending_jobs,
            job_bytes = account_usage.job_bytes + EXCLUDED.job_bytes;
        RETURN NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        IF (OLD.status = 'PENDING') IS DISTINCT FROM (NEW.status = 'PENDING') OR OLD.spec IS DISTINCT FROM NEW.spec THEN
            UPDATE account_usage
            SET pending_jobs = pending_jobs + (NEW.status = 'PENDING')::int - (OLD.status = 'PENDING')::int,
                job_bytes = job_bytes + octet_length(NEW.spec) - octet_length(OLD.spec)
            WHERE account_uuid = NEW.account_uuid AND shard = gantry_usage_shard(NEW.uuid);
        END IF;
        RETURN NULL;
    ELSE
        UPDATE account_usage
        SET pending_jobs = pending_jobs - (OLD.status = 'PENDING')::int, job_bytes = job_bytes - octet_length(OLD.spec)
        WHERE account_uuid = OLD.account_uuid AND shard = gantry_usage_shard(OLD.uuid);
        RETURN NULL;
    END IF;
END;
$$;

CREATE TRIGGER jobs_usage AFTER INSERT OR UPDATE OF status, spec OR DELETE ON jobs
FOR EACH ROW EXECUTE FUNCTION gantry_jobs_usage();

-- Per-consumer overrides of the deployment's limits (NULL: the deployment's value;
-- 0: no limit for this consumer). Operators set them (PATCH /v1/consumer-profiles).
ALTER TABLE consumer_profiles ADD COLUMN max_pending_jobs BIGINT;
ALTER TABLE consumer_profiles ADD COLUMN max_stored_job_bytes BIGINT;
ALTER TABLE consumer_profiles ADD COLUMN rate_limit_rps DOUBLE PRECISION;
