//! The durable store: everything the control plane must not forget.
//!
//! One [`Store`] trait, two backends: [`sqlite::SqliteStore`] (the default, a file in
//! the data dir, WAL) and [`postgres::PgStore`] (for deployments that outgrow one
//! machine). Both pass the same conformance suite ([`testsuite`]).
//!
//! **Architecture invariant:** only this crate knows SQL. Callers speak in wire types
//! from `gantry-types` and the records below; they never see a connection.
//!
//! **Durability:** a write returns `Ok` only once it is committed and fsynced
//! (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`). Throughput comes
//! from group commit, never from weakening that: SQLite funnels every write through
//! one writer thread that commits whatever queued up while the previous fsync ran
//! (many requests per fsync); PostgreSQL batches concurrent commits' WAL flushes itself.
//!
//! Methods are named resource first, verb second (`job_create`, `job_list`), so all
//! operations on a resource sort together.

use async_trait::async_trait;
use gantry_types::{
    AccountId, ApiKeyId, JobId,
    job::{Job, JobStatus},
    list::{ApiKeyFilter, JobFilter, Paging},
};

pub mod migrate;
pub mod postgres;
mod sql;
pub mod sqlite;
pub mod testsuite;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key already exists (e.g. a duplicate public key or job uuid).
    #[error("{what} already exists")]
    Conflict {
        /// What clashed.
        what: String,
    },
    /// A referenced row does not exist (e.g. an API key for an unknown account).
    #[error("{what} does not exist")]
    MissingReference {
        /// What is missing.
        what: String,
    },
    /// The database failed or could not be reached.
    #[error("database error during {during}")]
    Database {
        /// The operation that failed.
        during: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored row could not be decoded (corruption or a bug).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The store is shutting down or its writer died.
    #[error("store is unavailable")]
    Unavailable,
}

/// Convenience alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// An account.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountRecord {
    /// ID.
    pub uuid: AccountId,
    /// Display name.
    pub name: String,
    /// Contact email.
    pub email: Option<String>,
    /// Creation time, epoch ms.
    pub created_at_ms: i64,
}

/// An API key as stored: the secret only in encrypted form.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRecord {
    /// ID.
    pub uuid: ApiKeyId,
    /// Owner.
    pub account_uuid: AccountId,
    /// Name.
    pub name: String,
    /// `pk_...` (unique).
    pub public_key: String,
    /// The secret, encrypted with the server key (`gantry_auth::SecretBox`).
    pub secret_encrypted: String,
    /// Permission strings.
    pub permissions: Vec<String>,
    /// IPs/CIDRs.
    pub allowed_ips: Vec<String>,
    /// Expiry, epoch ms.
    pub expires_at_ms: Option<i64>,
    /// Revoked?
    pub is_revoked: bool,
    /// Created, epoch ms.
    pub created_at_ms: i64,
    /// Last change, epoch ms.
    pub updated_at_ms: i64,
    /// Last signed request, epoch ms.
    pub last_used_at_ms: Option<i64>,
    /// Revocation time, epoch ms.
    pub deleted_at_ms: Option<i64>,
}

/// One page of a list and the total over all pages.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Items matching, over all pages.
    pub total: u64,
}

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

/// Counters of the write path, to show group commit at work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed (each one fsync on SQLite).
    pub commits: u64,
    /// Write operations those transactions carried.
    pub writes: u64,
}

/// Everything the control plane persists. `account: Option<AccountId>` parameters
/// scope a read or write to one account (`None` = every account, for operators); a
/// row of another account is reported as absent, never as forbidden.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend, for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Write-path counters since start.
    fn write_stats(&self) -> WriteStats;

    /// Creates an account.
    async fn account_create(&self, account: &AccountRecord) -> StoreResult<()>;
    /// Fetches an account.
    async fn account_fetch(&self, id: AccountId) -> StoreResult<Option<AccountRecord>>;

    /// Creates an API key; `Conflict` on a duplicate public key, `MissingReference`
    /// when the account does not exist.
    async fn api_key_create(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// Fetches a key by its public key (revoked and expired ones included).
    async fn api_key_fetch_by_public_key(&self, public_key: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Lists keys, newest first unless `paging` says otherwise.
    async fn api_key_list(
        &self,
        account: Option<AccountId>,
        filter: &ApiKeyFilter,
        paging: Paging,
    ) -> StoreResult<Page<ApiKeyRecord>>;
    /// Revokes a key (idempotent: an already revoked key is returned unchanged).
    /// `None` when it does not exist in scope.
    async fn api_key_revoke(
        &self,
        account: Option<AccountId>,
        id: ApiKeyId,
        now_ms: i64,
    ) -> StoreResult<Option<ApiKeyRecord>>;
    /// Records when keys were last used: (key, epoch ms) pairs, applied only when
    /// newer than what is stored. Batched by the caller; best effort for the API.
    async fn api_key_touch(&self, uses: &[(ApiKeyId, i64)]) -> StoreResult<()>;

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
}

/// Opens the store a deployment configured: PostgreSQL when `database_url` is given
/// (`postgres://...`), else SQLite at `<data_dir>/gantry.db`. Runs pending migrations.
pub async fn open(data_dir: &std::path::Path, database_url: Option<&str>) -> StoreResult<std::sync::Arc<dyn Store>> {
    match database_url {
        Some(url) => Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?)),
        None => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(&data_dir.join("gantry.db")).await?)),
    }
}
