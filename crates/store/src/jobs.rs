//! Jobs: what clients submit. The job itself is stored as JSON (`spec`), with the
//! columns lists filter on and the fields that change (status, times) beside it; the
//! columns win over the JSON when a job is read back.
//!
//! **Usage counters.** Per account, how many jobs are PENDING and how many bytes of
//! job JSON are stored (`account_usage`, migration 0006). Database triggers keep them
//! in the transaction of every job insert, status change and delete, whatever code
//! path writes, so they are exact and a quota check reads one or a few rows instead of
//! counting jobs. The scheduler reads the same counters to learn which accounts have
//! pending jobs. On PostgreSQL an account's counters are spread over
//! [`USAGE_SHARDS`] rows (chosen by the job's uuid), so concurrent submissions of one
//! account do not all queue on one row lock; SQLite has one writer and uses one row.

use std::collections::HashMap;

use async_trait::async_trait;
use gantry_types::job::{Job, JobStatus};
use gantry_types::list::{JobFilter, Paging};
use gantry_types::{AccountId, JobId, Timestamp};

use crate::sql::row::IntoRecord;
use crate::sql::row::row;
use crate::{Page, StoreError, StoreResult};

/// A conditional status change: applied only while the job's status is one of
/// `from` (compare-and-set), so concurrent actors cannot overwrite each other.
#[derive(Clone, Debug, PartialEq)]
pub struct JobTransition {
    /// Statuses the job must be in.
    pub from: Vec<JobStatus>,
    /// New status.
    pub to: JobStatus,
    /// New `status_reason`.
    pub reason: Option<String>,
    /// Time of the change, epoch ms (`updated_at`; also `completed_at` when `to` is terminal).
    pub now_ms: i64,
}

row! {
    /// The columns of a new job row, computed before the write so that serialization
    /// happens on the caller's thread, not on the (single) SQLite writer thread.
    /// (A batch of them travels to PostgreSQL as one array per column, or, in the
    /// batch's fallback transaction, as one JSON array: Serialize.)
    #[derive(Clone, Debug, serde::Serialize)]
    pub(crate) struct NewJobRow in "jobs" (write, batch) {
        uuid: String,
        account_uuid: String,
        status: &'static str,
        task: &'static str,
        cpu_count: i64,
        gpu_count: i64,
        min_ram_gb: f64,
        min_storage_gb: f64,
        min_vram_gb: f64,
        source_recipe_uuid: Option<String>,
        status_reason: Option<String>,
        created_at_ms: i64,
        updated_at_ms: i64,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
        spec: String,
    }
}

impl NewJobRow {
    /// Splits `job` into columns plus its JSON.
    pub(crate) fn new(job: &Job) -> StoreResult<Self> {
        let spec = serde_json::to_string(job)
            .map_err(|e| StoreError::Database { during: "job encoding", source: Box::new(e) })?;
        Ok(Self {
            uuid: job.uuid.to_string(),
            account_uuid: job.account_uuid.to_string(),
            status: job.status.as_str(),
            task: job.task.as_str(),
            cpu_count: job.cpu_count,
            gpu_count: job.gpu_count,
            min_ram_gb: job.min_ram_gb,
            min_storage_gb: job.min_storage_gb,
            min_vram_gb: job.min_vram_gb,
            source_recipe_uuid: job.source_recipe_uuid.clone(),
            status_reason: job.status_reason.clone(),
            created_at_ms: job.created_at.0,
            updated_at_ms: job.updated_at.0,
            started_at_ms: job.started_at.map(|t| t.0),
            completed_at_ms: job.completed_at.map(|t| t.0),
            spec,
        })
    }
}

row! {
    /// A job as read: the JSON and the columns that change after creation.
    #[derive(Debug)]
    pub(crate) struct JobRow in "jobs" (read) {
        spec: String,
        status: String,
        status_reason: Option<String>,
        updated_at_ms: i64,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
        /// NULL until a node reports it (then it overrides the JSON's value).
        image_size_bytes: Option<i64>,
    }
}

impl IntoRecord for JobRow {
    type Record = Job;

    /// The stored JSON with the mutable fields taken from their columns.
    fn into_record(self) -> StoreResult<Job> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "jobs", detail };
        let mut job: Job = serde_json::from_str(&self.spec).map_err(|e| corrupt(format!("spec is not a job: {e}")))?;
        job.status = JobStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown status {:?} for job {}", self.status, job.uuid)))?;
        job.status_reason = self.status_reason;
        job.updated_at = Timestamp(self.updated_at_ms);
        job.started_at = self.started_at_ms.map(Timestamp);
        job.completed_at = self.completed_at_ms.map(Timestamp);
        if self.image_size_bytes.is_some() {
            job.image_size_bytes = self.image_size_bytes;
        }
        Ok(job)
    }
}

/// Rows an account's usage counters are spread over on PostgreSQL.
pub const USAGE_SHARDS: u32 = 16;

/// Limits a job creation must stay within; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobQuota {
    /// Most PENDING jobs the account may have, the new one included.
    pub max_pending_jobs: Option<u64>,
    /// Most bytes of stored job JSON the account may have, the new job's included.
    pub max_job_bytes: Option<u64>,
}

impl JobQuota {
    /// No limit.
    pub const UNLIMITED: JobQuota = JobQuota { max_pending_jobs: None, max_job_bytes: None };

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_pending_jobs.is_some() || self.max_job_bytes.is_some()
    }

    /// The first limit that `usage` plus a new job of `job_bytes` bytes (PENDING when
    /// `pending`) would pass.
    pub fn check(&self, usage: AccountUsage, job_bytes: u64, pending: bool) -> Result<(), QuotaExceeded> {
        if let Some(limit) = self.max_pending_jobs
            && pending
            && usage.pending_jobs.saturating_add(1) > limit
        {
            return Err(QuotaExceeded { quota: Quota::PendingJobs, limit, usage: usage.pending_jobs, adding: 1 });
        }
        if let Some(limit) = self.max_job_bytes
            && usage.job_bytes.saturating_add(job_bytes) > limit
        {
            return Err(QuotaExceeded { quota: Quota::JobBytes, limit, usage: usage.job_bytes, adding: job_bytes });
        }
        Ok(())
    }
}

/// An account's usage counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountUsage {
    /// Jobs in PENDING.
    pub pending_jobs: u64,
    /// Bytes of stored job JSON (all the account's jobs, whatever their status).
    pub job_bytes: u64,
}

/// Which quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// [`JobQuota::max_pending_jobs`].
    PendingJobs,
    /// [`JobQuota::max_job_bytes`].
    JobBytes,
}

/// A job creation refused by a quota: which, its limit, the usage before, and what the
/// job would have added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{quota:?} quota exceeded: {usage} used + {adding} > {limit}")]
pub struct QuotaExceeded {
    /// The quota.
    pub quota: Quota,
    /// Its limit.
    pub limit: u64,
    /// The account's usage before this job.
    pub usage: u64,
    /// What the job would have added (1 job, or its bytes).
    pub adding: u64,
}

/// Jobs in the store.
#[async_trait]
pub trait JobStore {
    /// Creates a job (group-committed); `Conflict` on a duplicate uuid.
    async fn job_create(&self, job: &Job) -> StoreResult<()> {
        self.job_create_within(job, &JobQuota::UNLIMITED).await
    }
    /// Creates a job unless that would take its account past `quota`
    /// (`QuotaExceeded`, nothing written). Exact under concurrency: the check and the
    /// insert are one serialized step per account.
    async fn job_create_within(&self, job: &Job, quota: &JobQuota) -> StoreResult<()>;
    /// The account's usage counters (zero for an account with no jobs).
    async fn job_usage(&self, account: AccountId) -> StoreResult<AccountUsage>;
    /// Accounts with PENDING jobs and how many each has, by account uuid.
    async fn job_pending_accounts(&self) -> StoreResult<Vec<(AccountId, u64)>>;
    /// How many jobs are in each of `statuses` (every one present, 0 without jobs),
    /// across accounts: the job gauges, every second. One grouped count on the
    /// `(status, created_at)` index, where a page per status (`job_list`: a count and
    /// a row each) cost eight statements and about 20 ms of PostgreSQL's time a
    /// second at 10,000 active jobs.
    async fn job_count_by_status(&self, statuses: &[JobStatus]) -> StoreResult<HashMap<JobStatus, u64>>;
    /// Per `(account, n)`: the account's `n` oldest PENDING jobs (created_at, uuid).
    /// The scheduler's fair read: every account's head of line, whatever the others hold.
    async fn job_list_pending_by_account(&self, shares: &[(AccountId, u32)]) -> StoreResult<Vec<Job>>;
    /// Fetches a job in scope.
    async fn job_fetch(&self, account: Option<AccountId>, id: JobId) -> StoreResult<Option<Job>>;
    /// Lists jobs matching `filter`, ordered by (created_at, uuid).
    async fn job_list(&self, account: Option<AccountId>, filter: &JobFilter, paging: Paging) -> StoreResult<Page<Job>>;
    /// Applies `transition` if the job (in scope) is in one of `transition.from`.
    /// Returns `Ok(Some(job_after))` when applied, `Ok(None)` when the job is absent
    /// or in another status (re-fetch to tell which).
    async fn job_transition(
        &self,
        account: Option<AccountId>,
        id: JobId,
        transition: &JobTransition,
    ) -> StoreResult<Option<Job>>;
    /// [`JobStore::job_transition`] (no scope) for many jobs, each at most once, in ONE
    /// transaction (fenced like it, with one event per job changed) and one statement,
    /// so the usage counters it moves are locked in key order as a placement's are.
    /// The jobs after, in the order given (`None` where the compare-and-set did not
    /// apply, or the job is absent). An error writes nothing; a job named twice is
    /// `Conflict` (checked before anything is written).
    async fn job_transition_many(&self, transitions: &[(JobId, JobTransition)]) -> StoreResult<Vec<Option<Job>>>;

    /// PENDING jobs, oldest first (created_at, uuid), at most `limit`: the
    /// scheduler's input.
    async fn job_list_pending(&self, limit: u32) -> StoreResult<Vec<Job>>;
}

/// `Conflict` when a batch of transitions names a job twice: its answers, and on
/// PostgreSQL which of the two applies, would be ambiguous.
pub(crate) fn distinct_jobs(transitions: &[(JobId, JobTransition)]) -> StoreResult<()> {
    let mut seen = std::collections::HashSet::with_capacity(transitions.len());
    match transitions.iter().find(|(id, _)| !seen.insert(*id)) {
        Some((id, _)) => {
            Err(crate::StoreError::Conflict { what: format!("a second transition of job {id} in one batch") })
        }
        None => Ok(()),
    }
}
