//! The account usage counters of job creations, moved once per account per group
//! commit instead of once per job.
//!
//! Every job insert adds to its account's `account_usage` row (pending jobs, stored
//! bytes) and is checked against the account's quotas. Updating the row in each
//! creation's savepoint cost the submit path a statement and a page copy into the
//! savepoint journal per job. Instead, the writer thread keeps a [`UsageBatch`] per
//! transaction: a creation reads the row once (when the batch has no up-to-date copy),
//! checks its quotas against that value plus what the batch's earlier creations
//! added, and on success adds its own share to the batch. Before COMMIT,
//! [`UsageBatch::flush`] applies each account's sum in one UPDATE, in the same
//! transaction: the counters committed are exactly those of the jobs committed.
//!
//! Why it stays exact:
//! * One writer thread runs the ops of a batch in order, so "row + batch sum" is the
//!   account's usage as of this op, as the per-job UPDATE saw it.
//! * Any other op (a status change, a delete, a spec change: counted by triggers on the
//!   row itself) or a failed creation (rolled back to its savepoint, which may undo the
//!   row's first insert) makes the copy stale: the batch counts ops, and a copy read
//!   before the last op ran is read again. Sums are only added by creations that
//!   succeeded, and triggers change the row, not the sum, so they add up either way.
//! * The row is inserted (at zero) by the first creation that finds none, before its
//!   job, so a trigger of a later op in the same batch always finds the row to move.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use crate::jobs::{AccountUsage, JobQuota};
use crate::{StoreError, StoreResult};

/// One account's row as last read in this batch, and what the batch's creations add.
struct Account {
    /// `account_usage` as read (triggers may have moved it since: see `read_at`).
    row: (i64, i64),
    /// The op count when `row` was read (or last known unchanged).
    read_at: u64,
    /// Pending jobs and bytes added by this batch's successful creations.
    added: (i64, i64),
}

/// The writer thread's per-transaction state for the usage counters.
#[derive(Default)]
pub(super) struct UsageBatch {
    /// Ops run so far in this transaction (the writer counts every op).
    ops: u64,
    accounts: HashMap<String, Account>,
}

impl UsageBatch {
    /// Called by the writer after every op, whatever it was and however it ended.
    pub fn op_done(&mut self) {
        self.ops += 1;
    }

    /// Checks a creation of `pending` (0 or 1) jobs and `bytes` stored bytes for
    /// `account` against `quota`, reading the row when the batch's copy may be stale.
    /// Returns the shares to pass to [`Self::add`] once the creation succeeded.
    pub fn check(
        &mut self,
        conn: &Connection,
        account: &str,
        quota: &JobQuota,
        pending: bool,
        bytes: u64,
    ) -> StoreResult<(i64, i64)> {
        let fresh = self.accounts.get(account).is_some_and(|a| a.read_at == self.ops);
        if !fresh {
            let row = read_or_insert(conn, account)?;
            let entry = self.accounts.entry(account.to_owned()).or_insert(Account { row, read_at: 0, added: (0, 0) });
            entry.row = row;
            entry.read_at = self.ops;
        }
        let a = &self.accounts[account];
        let usage = AccountUsage {
            pending_jobs: u64::try_from(a.row.0.saturating_add(a.added.0)).unwrap_or(0),
            job_bytes: u64::try_from(a.row.1.saturating_add(a.added.1)).unwrap_or(0),
        };
        quota.check(usage, bytes, pending).map_err(StoreError::QuotaExceeded)?;
        Ok((i64::from(pending), i64::try_from(bytes).unwrap_or(i64::MAX)))
    }

    /// Adds a successful creation's shares (from [`Self::check`]). Its own statements
    /// (the row's insert, if any, the job, its event) left the copy current: it stays
    /// fresh through the writer's `op_done` for this op.
    pub fn add(&mut self, account: &str, shares: (i64, i64)) {
        if let Some(a) = self.accounts.get_mut(account) {
            a.added = (a.added.0 + shares.0, a.added.1 + shares.1);
            a.read_at = self.ops + 1;
        }
    }

    /// Applies each account's sum, one UPDATE per account, before COMMIT. Empties the
    /// batch for the next transaction.
    pub fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.ops = 0;
        for (account, a) in self.accounts.drain() {
            if a.added == (0, 0) {
                continue;
            }
            let moved = conn
                .prepare_cached(
                    "UPDATE account_usage SET pending_jobs = pending_jobs + ?2, job_bytes = job_bytes + ?3 \
                     WHERE account_uuid = ?1 AND shard = 0",
                )?
                .execute(rusqlite::params![account, a.added.0, a.added.1])?;
            // Not reached: the row was inserted before the first job counted here, and
            // nothing deletes counter rows. Failing the batch beats committing wrong counts.
            if moved != 1 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
        }
        Ok(())
    }

    /// Forgets everything (the transaction did not commit).
    pub fn clear(&mut self) {
        self.ops = 0;
        self.accounts.clear();
    }
}

/// The account's row, inserted at zero if it has none yet.
fn read_or_insert(conn: &Connection, account: &str) -> StoreResult<(i64, i64)> {
    let db = super::rows::db("job create (usage)");
    let row = conn
        .prepare_cached("SELECT pending_jobs, job_bytes FROM account_usage WHERE account_uuid = ?1 AND shard = 0")
        .and_then(|mut s| s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(&db)?;
    if let Some(row) = row {
        return Ok(row);
    }
    conn.prepare_cached(
        "INSERT INTO account_usage (account_uuid, shard, pending_jobs, job_bytes) VALUES (?1, 0, 0, 0)",
    )
    .and_then(|mut s| s.execute([account]))
    .map_err(&db)?;
    Ok((0, 0))
}
