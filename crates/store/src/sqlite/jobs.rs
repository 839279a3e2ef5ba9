//! Jobs on SQLite: creation is the submit path, so its statement text is built once
//! and the row is encoded on the caller's thread, leaving the writer thread only the
//! insert.

use std::sync::LazyLock;

use async_trait::async_trait;
use gantry_types::event::EventType;
use gantry_types::job::{Job, JobStatus};
use gantry_types::list::{JobFilter, Paging};
use gantry_types::{AccountId, JobId};
use rusqlite::params;

use super::rows::{self, write_error};
use super::{SqliteStore, events};
use crate::events::NewEventRow;
use crate::jobs::{JobRow, JobStore, JobTransition, NewJobRow};
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
    async fn job_create(&self, job: &Job) -> StoreResult<()> {
        // Serialize here, on the caller's thread; the writer thread only inserts.
        let row = NewJobRow::new(job)?;
        let event = NewEventRow::job(EventType::JobCreated, job, job.created_at.0)?;
        let (id, account) = (job.uuid, job.account_uuid);
        self.writer
            .write(move |conn| {
                rows::insert(conn, &INSERT, &row).map_err(write_error("job create", || Subject::job(id, account)))?;
                events::append(conn, &event)
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
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        let t = transition.clone();
        // SQLite cannot bind a list; the allowed statuses travel as one JSON array.
        let from: Vec<String> = t.from.iter().map(|s| s.as_str().to_owned()).collect();
        let from = sql::json_list(&from);
        self.writer
            .write(move |conn| {
                // Compare-and-set in one statement: the WHERE is the "compare".
                let sql = format!(
                    "UPDATE jobs SET status = ?1, status_reason = ?2, updated_at_ms = ?3, \
                     started_at_ms = CASE WHEN ?4 AND started_at_ms IS NULL THEN ?3 ELSE started_at_ms END, \
                     completed_at_ms = CASE WHEN ?5 THEN ?3 ELSE completed_at_ms END \
                     WHERE uuid = ?6 AND status IN (SELECT value FROM json_each(?7)) \
                     AND (?8 IS NULL OR account_uuid = ?8) \
                     RETURNING {JOB_COLUMNS}"
                );
                let params = params![
                    t.to.as_str(),
                    t.reason,
                    t.now_ms,
                    t.to == JobStatus::Running,
                    t.to.is_terminal(),
                    id,
                    from,
                    scope,
                ];
                let job = rows::one::<JobRow>(conn, &sql, params, "job transition")?;
                if let Some(job) = &job {
                    events::append(conn, &NewEventRow::job(EventType::JobStatusChanged, job, t.now_ms)?)?;
                }
                Ok(job)
            })
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
