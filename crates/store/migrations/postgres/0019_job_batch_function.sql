-- Gantry schema, version 19 (PostgreSQL): the submit path's common batch as one
-- function call (src/postgres/job_batch.rs, `one_trip`).
--
-- Why: the batch of job creations used to travel as one message of two statements
-- with the rows as dollar-quoted JSON literals (a message of several statements
-- takes no parameters). Per batch, PostgreSQL lexed, parsed and planned ~30 KB of
-- SQL, then parsed the JSON and unescaped every job's spec in it: a third of its CPU
-- under `gantry bench submit`, in the one transaction that every batch waits for.
-- This function is called by a prepared statement, takes each column as an array
-- parameter (binary: nothing to escape or parse), caches its statements' plans per
-- connection, and is still one round trip, committed (implicitly) before the answer.
--
-- The order is the message's: the jobs' insert (its statement trigger takes the
-- usage counters, before the event lock as everywhere), then the event lock, then
-- the events' insert. It answers the newest event id. A duplicate uuid or a bad row
-- fails the call, which rolls it back whole, as it did the message.
--
-- The parameters are the columns of `NewJobRow` (src/jobs.rs), then those of
-- `NewEventRow` (src/events.rs), in the order of their declarations, which is the
-- order the caller binds them in; the lock key is `PG_EVENTS_LOCK` (a test compares
-- all three). A migration that changes the written columns of either table replaces
-- this function.
CREATE FUNCTION gantry_create_jobs(
    text[], text[], text[], text[], bigint[], bigint[], double precision[], double precision[],
    double precision[], text[], text[], bigint[], bigint[], bigint[], bigint[], text[],
    text[], text[], bigint[], text[], text[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    INSERT INTO jobs (uuid, account_uuid, status, task, cpu_count, gpu_count, min_ram_gb, min_storage_gb, min_vram_gb, source_recipe_uuid, status_reason, created_at_ms, updated_at_ms, started_at_ms, completed_at_ms, spec)
    SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16);
    PERFORM pg_advisory_xact_lock(111559182283891);
    WITH ins AS (
        INSERT INTO events (event_type, account_uuid, created_at_ms, data, job_uuid)
        SELECT * FROM unnest($17, $18, $19, $20, $21)
        RETURNING id
    )
    SELECT COALESCE(MAX(id), 0) INTO newest FROM ins;
    RETURN newest;
END;
$$;
