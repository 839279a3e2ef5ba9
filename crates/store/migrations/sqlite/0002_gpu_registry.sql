-- Gantry schema, version 2 (SQLite): the GPU registry.
--
-- One row per GPU model that jobs' gpu_name / gpu_registry_uuid match against.
-- Seeded rows (is_official = 1) are inserted at server start when missing and never
-- overwritten; operators add rows through POST /v1/gpu-registry. The server keeps
-- the whole table in memory (it is small) and matches names there, so the table
-- needs no index beyond its keys. `name` is unique as written; uniqueness of names
-- and aliases up to case and whitespace is checked by the server before inserting.

CREATE TABLE gpu_models (
    uuid          TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    vendor        TEXT    NOT NULL,
    vram_gb       REAL    NOT NULL,
    aliases       TEXT    NOT NULL, -- JSON array of strings
    is_official   INTEGER NOT NULL CHECK (is_official IN (0, 1)), -- SQLite has no BOOLEAN
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
