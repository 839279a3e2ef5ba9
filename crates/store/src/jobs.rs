//! Jobs: what clients submit. The job itself is stored as JSON (`spec`), with the
//! columns lists filter on and the fields that change (status, times) beside it; the
//! columns win over the JSON when a job is read back.

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
    #[derive(Clone, Debug)]
    pub(crate) struct NewJobRow in "jobs" (write) {
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

/// Jobs in the store.
#[async_trait]
pub trait JobStore {
    /// Creates a job (group-committed); `Conflict` on a duplicate uuid.
    async fn job_create(&self, job: &Job) -> StoreResult<()>;
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

    /// PENDING jobs, oldest first (created_at, uuid), at most `limit`: the
    /// scheduler's input.
    async fn job_list_pending(&self, limit: u32) -> StoreResult<Vec<Job>>;
}
