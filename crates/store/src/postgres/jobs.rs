//! Jobs on PostgreSQL: creation is the submit path, group-committed (`job_batch.rs`).

use std::collections::HashMap;

use async_trait::async_trait;
use gantry_types::event::EventType;
use gantry_types::job::{Job, JobStatus};
use gantry_types::list::{JobFilter, Paging};
use gantry_types::{AccountId, JobId};
use sqlx::{AssertSqlSafe, Row};

use super::{PgStore, db, job_batch, record, status_batch};
use crate::events::NewEventRow;
use crate::jobs::{AccountUsage, JobQuota, JobRow, JobStore, JobTransition, NewJobRow};
use crate::sql::{self, JOB_COLUMNS, Placeholders};
use crate::{Page, StoreResult};

#[async_trait]
impl JobStore for PgStore {
    async fn job_create_within(&self, job: &Job, quota: &JobQuota) -> StoreResult<()> {
        // Encoded here, on the caller's task; the job, its counters (moved by the
        // trigger) and its `job.created` event commit together in a batch of
        // concurrent creations (see `job_batch.rs`), the quota checked inside it.
        let create = job_batch::NewJob {
            row: NewJobRow::new(job)?,
            event: NewEventRow::job_created(job),
            quota: *quota,
            pending: job.status == JobStatus::Pending,
            id: job.uuid,
            account: job.account_uuid,
        };
        self.creates.create(create).await
    }

    async fn job_usage(&self, account: AccountId) -> StoreResult<AccountUsage> {
        usage(&self.pool, &account.to_string()).await
    }

    async fn job_count_by_status(&self, statuses: &[JobStatus]) -> StoreResult<HashMap<JobStatus, u64>> {
        let rows = sqlx::query_as(AssertSqlSafe(sql::job_count_sql(statuses)))
            .fetch_all(&self.pool)
            .await
            .map_err(db("job count by status"))?;
        sql::job_counts(statuses, rows)
    }

    async fn job_pending_accounts(&self) -> StoreResult<Vec<(AccountId, u64)>> {
        let rows = sqlx::query(
            // A shard's count never goes below 0 (a job's changes all land on its shard),
            // so the partial index's rows hold every pending job.
            "SELECT account_uuid, SUM(pending_jobs)::bigint FROM account_usage WHERE pending_jobs > 0 \
             GROUP BY account_uuid ORDER BY account_uuid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("job pending accounts"))?;
        rows.iter()
            .map(|r| {
                let (account, n): (String, i64) = (r.get(0), r.get(1));
                Ok((sql::parse_account(&account)?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn job_list_pending_by_account(&self, shares: &[(AccountId, u32)]) -> StoreResult<Vec<Job>> {
        // One statement: per account, an index range scan of its oldest PENDING jobs
        // (jobs_account_status_created), LIMIT n each.
        let accounts: Vec<String> = shares.iter().map(|(a, _)| a.to_string()).collect();
        let limits: Vec<i64> = shares.iter().map(|(_, n)| i64::from(*n)).collect();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM unnest($1::text[], $2::bigint[]) AS s(account, n) \
             CROSS JOIN LATERAL (SELECT * FROM jobs WHERE jobs.account_uuid = s.account AND jobs.status = $3 \
             ORDER BY jobs.created_at_ms, jobs.uuid LIMIT s.n) AS jobs"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(accounts)
            .bind(limits)
            .bind(JobStatus::Pending.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db("job list pending by account"))?;
        rows.iter().map(record::<JobRow>).collect()
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
        // The RUNNING that follows a node's report, and settlements, are group-committed
        // with other status writes; those that move a usage counter go alone.
        match self.status_write(status_batch::Change::Job(account, id, transition.clone())).await? {
            status_batch::Changed::Job(job) => Ok(job.map(|j| *j)),
            status_batch::Changed::Run(_) => unreachable!("a job change answers a job"),
        }
    }

    async fn job_transition_many(&self, transitions: &[(JobId, JobTransition)]) -> StoreResult<Vec<Option<Job>>> {
        crate::jobs::distinct_jobs(transitions)?;
        if transitions.is_empty() {
            return Ok(Vec::new());
        }
        let during = "job transition many";
        // One statement, so the usage counters its jobs move are locked in key order
        // by the statement trigger (migration 16), as a placement's are: one statement
        // per job would lock them in the batch's order and could deadlock with one.
        let scoped: Vec<(Option<AccountId>, JobId, &JobTransition)> =
            transitions.iter().map(|(id, t)| (None, *id, t)).collect();
        let mut tx = self.begin_write(during).await?;
        let mut changed = status_batch::job_transition_set(&mut tx, &scoped, during).await?;
        let mut new_events = Vec::with_capacity(changed.len());
        let after: Vec<Option<Job>> = transitions
            .iter()
            .map(|(id, t)| {
                let job = changed.remove(id);
                if let Some(j) = &job {
                    new_events.push(NewEventRow::job(EventType::JobStatusChanged, j, t.now_ms)?);
                }
                Ok(job)
            })
            .collect::<StoreResult<_>>()?;
        let last = super::events::append(&mut tx, &new_events).await?;
        tx.commit().await.map_err(db(during))?;
        self.wrote();
        self.published(last);
        Ok(after)
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

/// The account's counters, summed over its shards (none yet is zero).
pub(super) async fn usage<'e, E: sqlx::PgExecutor<'e>>(executor: E, account: &str) -> StoreResult<AccountUsage> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(pending_jobs), 0)::bigint, COALESCE(SUM(job_bytes), 0)::bigint \
         FROM account_usage WHERE account_uuid = $1",
    )
    .bind(account)
    .fetch_one(executor)
    .await
    .map_err(db("job usage"))?;
    let (pending, bytes): (i64, i64) = (row.get(0), row.get(1));
    Ok(AccountUsage { pending_jobs: u64::try_from(pending).unwrap_or(0), job_bytes: u64::try_from(bytes).unwrap_or(0) })
}
