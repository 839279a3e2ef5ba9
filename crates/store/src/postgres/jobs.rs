//! Jobs on PostgreSQL: creation is the submit path, so its statement text is built
//! once.

use std::sync::LazyLock;

use async_trait::async_trait;
use gantry_types::event::EventType;
use gantry_types::job::{Job, JobStatus};
use gantry_types::list::{JobFilter, Paging};
use gantry_types::{AccountId, JobId};
use sqlx::AssertSqlSafe;

use super::{PgStore, db, events, insert_static, record, write_error};
use crate::events::NewEventRow;
use crate::jobs::{JobRow, JobStore, JobTransition, NewJobRow};
use crate::sql::row::insert_sql;
use crate::sql::{self, JOB_COLUMNS, Placeholders, Subject};
use crate::{Page, StoreResult};

/// The insert of a new job.
static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql::<NewJobRow>(Placeholders::Dollar, ""));

#[async_trait]
impl JobStore for PgStore {
    async fn job_create(&self, job: &Job) -> StoreResult<()> {
        let row = NewJobRow::new(job)?;
        let event = NewEventRow::job(EventType::JobCreated, job, job.created_at.0)?;
        let mut tx = self.pool.begin().await.map_err(db("job create"))?;
        insert_static(INSERT.as_str(), row)
            .execute(&mut *tx)
            .await
            .map_err(write_error("job create", || Subject::job(job.uuid, job.account_uuid)))?;
        let id = events::append(&mut tx, &[event]).await?;
        tx.commit().await.map_err(db("job create"))?;
        self.wrote();
        self.published(id);
        Ok(())
    }

    async fn job_fetch(&self, account: Option<AccountId>, id: JobId) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2)");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("job fetch"))?;
        row.as_ref().map(record::<JobRow>).transpose()
    }

    async fn job_list(&self, account: Option<AccountId>, filter: &JobFilter, paging: Paging) -> StoreResult<Page<Job>> {
        let query = sql::job_list(Placeholders::Dollar, account, filter, paging);
        self.list(query, "job list", record::<JobRow>).await
    }

    async fn job_transition(
        &self,
        account: Option<AccountId>,
        id: JobId,
        transition: &JobTransition,
    ) -> StoreResult<Option<Job>> {
        let from: Vec<String> = transition.from.iter().map(|s| s.as_str().to_owned()).collect();
        // Compare-and-set in one statement: the WHERE is the "compare"; the row lock
        // UPDATE takes makes a concurrent transition re-check it after we commit.
        let sql = format!(
            "UPDATE jobs SET status = $1, status_reason = $2, updated_at_ms = $3, \
             started_at_ms = CASE WHEN $4 AND started_at_ms IS NULL THEN $3 ELSE started_at_ms END, \
             completed_at_ms = CASE WHEN $5 THEN $3 ELSE completed_at_ms END \
             WHERE uuid = $6 AND status = ANY($7) AND ($8::text IS NULL OR account_uuid = $8) \
             RETURNING {JOB_COLUMNS}"
        );
        let mut tx = self.pool.begin().await.map_err(db("job transition"))?;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(transition.to.as_str())
            .bind(&transition.reason)
            .bind(transition.now_ms)
            .bind(transition.to == JobStatus::Running)
            .bind(transition.to.is_terminal())
            .bind(id.to_string())
            .bind(from)
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("job transition"))?;
        let job = row.as_ref().map(record::<JobRow>).transpose()?;
        let mut id = 0;
        if let Some(job) = &job {
            let event = NewEventRow::job(EventType::JobStatusChanged, job, transition.now_ms)?;
            id = events::append(&mut tx, &[event]).await?;
        }
        tx.commit().await.map_err(db("job transition"))?;
        self.wrote();
        self.published(id);
        Ok(job)
    }

    async fn job_list_pending(&self, limit: u32) -> StoreResult<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status = $1 ORDER BY created_at_ms, uuid LIMIT $2");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(JobStatus::Pending.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("job list pending"))?;
        rows.iter().map(record::<JobRow>).collect()
    }
}
