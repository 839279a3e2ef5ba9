-- Gantry schema, version 8 (SQLite): the event log (see src/events.rs).
--
-- One writer thread appends, so ids (the rowid: the largest plus one) increase in
-- commit order. No AUTOINCREMENT (it costs a write per insert): retention never
-- deletes the newest event, so the largest id never goes back and none is reused.

CREATE TABLE events (
    id            INTEGER NOT NULL PRIMARY KEY,
    event_type    TEXT    NOT NULL,
    account_uuid  TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    data          TEXT    NOT NULL -- JSON: the object as the API shows it, secrets redacted
) STRICT;

-- One account's events in log order (GET /v1/events). Retention finds the newest
-- expired event by a scan (hourly) rather than pay an index on every append.
CREATE INDEX events_account_id ON events (account_uuid, id);

-- How far retention deleted (one row).
CREATE TABLE event_log_state (
    singleton      INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    pruned_through INTEGER NOT NULL
) STRICT;
INSERT INTO event_log_state (singleton, pruned_through) VALUES (1, 0);

-- Webhook endpoints: the signing secret is stored encrypted with the server key.
-- An endpoint receives the events with ids above after_event_id (the newest event
-- when it was created), never older ones.
CREATE TABLE webhooks (
    uuid             TEXT   NOT NULL PRIMARY KEY,
    account_uuid     TEXT   NOT NULL REFERENCES accounts (uuid),
    url              TEXT   NOT NULL,
    events           TEXT   NOT NULL, -- JSON array of event type names; [] = all
    description      TEXT,
    secret_encrypted TEXT   NOT NULL,
    after_event_id   INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL
) STRICT;

CREATE INDEX webhooks_account_created ON webhooks (account_uuid, created_at_ms, uuid);

-- The outbox: one row per (endpoint, event), written by the fan-out step in the same
-- transaction that moves its cursor; the delivery worker updates it per attempt.
CREATE TABLE webhook_deliveries (
    uuid               TEXT   NOT NULL PRIMARY KEY,
    webhook_uuid       TEXT   NOT NULL REFERENCES webhooks (uuid) ON DELETE CASCADE,
    account_uuid       TEXT   NOT NULL,
    event_id           INTEGER NOT NULL,
    event_type         TEXT   NOT NULL,
    status             TEXT   NOT NULL,
    attempts           INTEGER NOT NULL,
    status_code        INTEGER,
    last_error         TEXT,
    next_attempt_at_ms INTEGER,
    delivered_at_ms    INTEGER,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    UNIQUE (webhook_uuid, event_id)
) STRICT;

-- The worker's question: each endpoint's oldest PENDING delivery (per-endpoint order).
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (status, webhook_uuid, event_id);

-- How far the fan-out step has read the event log (one row).
CREATE TABLE webhook_outbox_state (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    cursor    INTEGER  NOT NULL
) STRICT;
INSERT INTO webhook_outbox_state (singleton, cursor) VALUES (1, 0);
