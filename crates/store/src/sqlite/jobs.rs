//! Jobs on SQLite: creation is the submit path, so its statement text is built once
//! and the row is encoded on the caller's thread, leaving the writer thread only the
//! insert.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use gantry_types::event::EventType;
use gantry_types::job::{Job, JobStatus};
use gantry_types::list::{JobFilter, Paging};
use gantry_types::{AccountId, JobId};
use rusqlite::params;

use super::rows::{self, db, write_error};
use super::{SqliteStore, events};
use crate::events::NewEventRow;
use crate::jobs::{AccountUsage, JobQuota, JobRow, JobStore, JobTransition, NewJobRow};
use crate::sql::row::insert_sql;
use crate::sql::{self, JOB_COLUMNS, Placeholders, Subject};
use crate::{Page, StoreResult};

/// The insert of a new job.
static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql::<NewJobRow>(Placeholders::Question, ""));

fn job_select(condition: &str) -> String {
    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition}")
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn job_create_within(&self, job: &Job, quota: &JobQuota) -> StoreResult<()> {
        // Serialize here, on the caller's thread; the writer thread only inserts.
        let row = NewJobRow::new(job)?;
        let event = NewEventRow::job_created(job);
        let (id, account, quota) = (job.uuid, job.account_uuid, *quota);
        let pending = job.status == JobStatus::Pending;
        self.writer
            .write_counted(move |conn, usage| {
                // One writer, and this op runs in its own savepoint: the quota check
                // reads the counters as of this op (the row plus what this batch's
                // earlier creations added), and the batch adds this job's share only
                // if the insert succeeded, moving the row once per account just before
                // COMMIT (`super::usage`). SQLite has no insert trigger for this reason
                // (status changes, spec changes and deletes are counted by triggers,
                // migration 0006).
                let bytes = row.spec.len() as u64;
                let shares = usage.check(conn, &row.account_uuid, &quota, pending, bytes)?;
                rows::insert(conn, &INSERT, &row).map_err(write_error("job create", || Subject::job(id, account)))?;
                events::append(conn, &event)?;
                usage.add(&row.account_uuid, shares);
                Ok(())
            })
            .await
    }

    async fn job_usage(&self, account: AccountId) -> StoreResult<AccountUsage> {
        let account = account.to_string();
        self.read(move |conn| usage(conn, &account)).await
    }

    async fn job_count_by_status(&self, statuses: &[JobStatus]) -> StoreResult<HashMap<JobStatus, u64>> {
        let statuses = statuses.to_vec();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&sql::job_count_sql(&statuses))
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db("job count by status"))?;
            sql::job_counts(&statuses, rows)
        })
        .await
    }

    async fn job_pending_accounts(&self) -> StoreResult<Vec<(AccountId, u64)>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT account_uuid, pending_jobs FROM account_usage WHERE pending_jobs > 0 ORDER BY account_uuid",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db("job pending accounts"))?;
            rows.into_iter().map(|(a, n)| Ok((sql::parse_account(&a)?, u64::try_from(n).unwrap_or(0)))).collect()
        })
        .await
    }

    async fn job_list_pending_by_account(&self, shares: &[(AccountId, u32)]) -> StoreResult<Vec<Job>> {
        let shares: Vec<(String, u32)> = shares.iter().map(|(a, n)| (a.to_string(), *n)).collect();
        self.read(move |conn| {
            // One index range per account (jobs_account_status_created), in one read
            // transaction so every account is read as of one commit.
            let tx = conn.unchecked_transaction().map_err(db("job list pending by account"))?;
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE account_uuid = ?1 AND status = ?2 \
                 ORDER BY created_at_ms, uuid LIMIT ?3"
            );
            let mut jobs = Vec::new();
            for (account, n) in &shares {
                let params = params![account, JobStatus::Pending.as_str(), n];
                jobs.extend(rows::all::<JobRow>(&tx, &sql, params, "job list pending by account")?);
            }
            tx.finish().map_err(db("job list pending by account"))?;
            Ok(jobs)
        })
        .await
    }

    async fn job_fetch(&self, account: Option<AccountId>, id: JobId) -> StoreResult<Option<Job>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.read(move |conn| {
            let sql = job_select("uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)");
            rows::one::<JobRow>(conn, &sql, params![id, scope], "job fetch")
        })
        .await
    }

    async fn job_list(&self, account: Option<AccountId>, filter: &JobFilter, paging: Paging) -> StoreResult<Page<Job>> {
        let query = sql::job_list(Placeholders::Question, account, filter, paging);
        self.read(move |conn| rows::page::<JobRow>(conn, &query, "job list")).await
    }

    async fn job_transition(
        &self,
        account: Option<AccountId>,
        id: JobId,
        transition: &JobTransition,
    ) -> StoreResult<Option<Job>> {
        let t = transition.clone();
        self.writer.write(move |conn| transition_job(conn, account, id, &t)).await
    }

    async fn job_transition_many(&self, transitions: &[(JobId, JobTransition)]) -> StoreResult<Vec<Option<Job>>> {
        crate::jobs::distinct_jobs(transitions)?;
        if transitions.is_empty() {
            return Ok(Vec::new());
        }
        let transitions = transitions.to_vec();
        // One op of the group commit (one savepoint): all of them or none. SQLite
        // takes no row locks, so the order of the counters' triggers does not matter.
        self.writer
            .write(move |conn| transitions.iter().map(|(id, t)| transition_job(conn, None, *id, t)).collect())
            .await
    }

    async fn job_list_pending(&self, limit: u32) -> StoreResult<Vec<Job>> {
        self.read(move |conn| {
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status = ?1 ORDER BY created_at_ms, uuid LIMIT ?2");
            rows::all::<JobRow>(conn, &sql, params![JobStatus::Pending.as_str(), limit], "job list pending")
        })
        .await
    }
}

/// A job's compare-and-set in one statement (the WHERE is the "compare") and its
/// event, on the writer's connection.
fn transition_job(
    conn: &rusqlite::Connection,
    account: Option<AccountId>,
    id: JobId,
    t: &JobTransition,
) -> StoreResult<Option<Job>> {
    // SQLite cannot bind a list; the allowed statuses travel as one JSON array.
    let from: Vec<String> = t.from.iter().map(|s| s.as_str().to_owned()).collect();
    let from = sql::json_list(&from);
    let params = params![
        t.to.as_str(),
        t.reason,
        t.now_ms,
        t.to == JobStatus::Running,
        t.to.is_terminal(),
        id.to_string(),
        from,
        account.map(|a| a.to_string()),
    ];
    let job = rows::one::<JobRow>(conn, &TRANSITION_JOB, params, "job transition")?;
    if let Some(job) = &job {
        events::append(conn, &NewEventRow::job(EventType::JobStatusChanged, job, t.now_ms)?)?;
    }
    Ok(job)
}

/// The job's compare-and-set (see [`transition_job`]).
static TRANSITION_JOB: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE jobs SET status = ?1, status_reason = ?2, updated_at_ms = ?3, \
         started_at_ms = CASE WHEN ?4 AND started_at_ms IS NULL THEN ?3 ELSE started_at_ms END, \
         completed_at_ms = CASE WHEN ?5 THEN ?3 ELSE completed_at_ms END \
         WHERE uuid = ?6 AND status IN (SELECT value FROM json_each(?7)) \
         AND (?8 IS NULL OR account_uuid = ?8) \
         RETURNING {JOB_COLUMNS}"
    )
});

/// The account's counters (one row on SQLite; none yet is zero).
fn usage(conn: &rusqlite::Connection, account: &str) -> StoreResult<AccountUsage> {
    use rusqlite::OptionalExtension;
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT pending_jobs, job_bytes FROM account_usage WHERE account_uuid = ?1 AND shard = 0")
        .and_then(|mut s| s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db("job usage"))?;
    let (pending, bytes) = row.unwrap_or((0, 0));
    Ok(AccountUsage { pending_jobs: u64::try_from(pending).unwrap_or(0), job_bytes: u64::try_from(bytes).unwrap_or(0) })
}
