-- Gantry schema, version 4 (SQLite): job recipes.
--
-- A recipe row holds the columns that visibility checks, filters and ordering need,
-- plus `body`, the rest as JSON (description, payload, input_schema, quickstart_md,
-- thumbnail_url), read back whole. The payload's registry secrets are encrypted with
-- the server key before they get here, as a job's are.
--
-- `account_uuid` is NULL for Gantry's seeded recipes (the platform owns them; only
-- operators change them). `forked_from_recipe_uuid` has no foreign key: deleting a
-- recipe must not delete or block its forks. Jobs name their recipe in
-- jobs.source_recipe_uuid (since version 1), also without a foreign key.
-- `updated_at_ms` doubles as the compare-and-set token of updates.

CREATE TABLE job_recipes (
    uuid                    TEXT    NOT NULL PRIMARY KEY,
    account_uuid            TEXT    REFERENCES accounts (uuid),
    name                    TEXT    NOT NULL,
    visibility              TEXT    NOT NULL CHECK (visibility IN ('PRIVATE', 'PUBLIC', 'ARCHIVED')),
    is_official             INTEGER NOT NULL CHECK (is_official IN (0, 1)), -- SQLite has no BOOLEAN
    forked_from_recipe_uuid TEXT,
    created_at_ms           INTEGER NOT NULL,
    updated_at_ms           INTEGER NOT NULL,
    last_used_at_ms         INTEGER,
    body                    TEXT    NOT NULL -- JSON: description, payload, input_schema, quickstart_md, thumbnail_url
) STRICT;

-- The list, in API order (created_at, uuid); visibility is checked per row.
CREATE INDEX job_recipes_created ON job_recipes (created_at_ms, uuid);
-- An account's own recipes (`filter[is_owner]=true`).
CREATE INDEX job_recipes_account_created ON job_recipes (account_uuid, created_at_ms, uuid);
