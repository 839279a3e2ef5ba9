-- Gantry schema, version 5 (SQLite): the marketplace's billing.
--
-- Version 4 belongs to job recipes, developed alongside; the migrator applies every
-- known version that is missing, in order, so the gap is harmless.
--
-- Money is INTEGER micro-USD everywhere. The ledger is double-entry: a transaction
-- is a set of entries (one account's side each) that sums to zero, written in one
-- database transaction; the platform account below is the counterparty of credits
-- and takes the platform's share of run charges, so the sum over every entry is
-- always zero. ledger_transactions.idempotency_key (e.g. `run:<uuid>`) is unique, so
-- a run is charged exactly once however many actors try at once.

-- The platform's own account (nil uuid: never produced by AccountId::new, v7).
INSERT INTO accounts (uuid, name, email, created_at_ms)
VALUES ('00000000-0000-0000-0000-000000000000', 'gantry platform', NULL, 0);

CREATE TABLE consumer_profiles (
    uuid                       TEXT    NOT NULL PRIMARY KEY,
    account_uuid               TEXT    NOT NULL UNIQUE REFERENCES accounts (uuid),
    is_active                  INTEGER NOT NULL CHECK (is_active IN (0, 1)),
    is_compute_billing_enabled INTEGER NOT NULL CHECK (is_compute_billing_enabled IN (0, 1)),
    allowed_region_codes       TEXT    NOT NULL, -- JSON array of region codes
    created_at_ms              INTEGER NOT NULL,
    updated_at_ms              INTEGER NOT NULL
) STRICT;

CREATE TABLE ledger_transactions (
    uuid            TEXT    NOT NULL PRIMARY KEY,
    idempotency_key TEXT    UNIQUE,
    created_at_ms   INTEGER NOT NULL
) STRICT;

-- One account's side of a transaction; kind/run/node/memo are copied from the
-- transaction so an account's ledger reads without a join.
CREATE TABLE ledger_entries (
    uuid             TEXT    NOT NULL PRIMARY KEY,
    transaction_uuid TEXT    NOT NULL REFERENCES ledger_transactions (uuid),
    account_uuid     TEXT    NOT NULL REFERENCES accounts (uuid),
    amount_micros    INTEGER NOT NULL,
    kind             TEXT    NOT NULL,
    run_uuid         TEXT,
    node_uuid        TEXT,
    memo             TEXT,
    created_at_ms    INTEGER NOT NULL
) STRICT;

CREATE INDEX ledger_entries_account_created ON ledger_entries (account_uuid, created_at_ms, uuid);
CREATE INDEX ledger_entries_node ON ledger_entries (node_uuid, account_uuid);

CREATE TABLE credit_purchases (
    uuid                  TEXT    NOT NULL PRIMARY KEY,
    account_uuid          TEXT    NOT NULL REFERENCES accounts (uuid),
    profile_uuid          TEXT    NOT NULL,
    amount_micros         INTEGER NOT NULL,
    status                TEXT    NOT NULL,
    provider              TEXT    NOT NULL,
    checkout_session_id   TEXT    NOT NULL UNIQUE,
    provider_state        TEXT    NOT NULL, -- the provider's own word (manual: open/paid/expired)
    redirect_url          TEXT,
    cancel_url            TEXT,
    memo                  TEXT,
    completed_at_ms       INTEGER,
    created_at_ms         INTEGER NOT NULL,
    updated_at_ms         INTEGER NOT NULL
) STRICT;

CREATE INDEX credit_purchases_account_created ON credit_purchases (account_uuid, created_at_ms, uuid);

-- Runs ended since a moment, for the billing reconciler's sweep of unbilled runs.
CREATE INDEX job_runs_ended ON job_runs (ended_at_ms);
