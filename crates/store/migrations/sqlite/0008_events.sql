-- Gantry schema, version 8 (SQLite): the event log (see src/events.rs).
--
-- AUTOINCREMENT so an id is never reused after retention deletes the newest rows;
-- one writer thread appends, so ids increase in commit order.

CREATE TABLE events (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    event_type    TEXT    NOT NULL,
    account_uuid  TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    data          TEXT    NOT NULL -- JSON: the object as the API shows it, secrets redacted
) STRICT;

-- One account's events in log order (GET /v1/events).
CREATE INDEX events_account_id ON events (account_uuid, id);
-- Retention finds the newest expired event.
CREATE INDEX events_created ON events (created_at_ms);

-- How far retention deleted (one row).
CREATE TABLE event_log_state (
    singleton      INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    pruned_through INTEGER NOT NULL
) STRICT;
INSERT INTO event_log_state (singleton, pruned_through) VALUES (1, 0);
