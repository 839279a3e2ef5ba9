//! The durable store: everything the control plane must not forget.
//!
//! One trait per resource, two backends: [`sqlite::SqliteStore`] (the default, a file
//! in the data dir, WAL) and [`postgres::PgStore`] (for deployments that outgrow one
//! machine). Both pass the same conformance suite (`testsuite`, compiled only with the
//! `testsuite` feature, which the tests enable).
//!
//! **Layout: one resource, one trait, one file per backend.** Each resource module
//! ([`accounts`], [`api_keys`], [`jobs`], [`cluster`] (nodes and job runs),
//! [`gpu_models`], [`recipes`], [`billing`], [`events`], [`webhooks`]) holds its records and its trait
//! ([`AccountStore`], [`ApiKeyStore`], ...). Each backend implements that trait
//! directly in its file of the same name (`sqlite/jobs.rs`, `postgres/jobs.rs`), and
//! the conformance suite checks it in its module of the same name
//! (`testsuite/jobs.rs`). Callers hold one handle, `Arc<dyn Store>`: [`Store`] is the
//! sum of the resource traits with a blanket impl, so a backend is a `Store` as soon
//! as it implements them all, and there is no forwarding layer to keep in step.
//! Adding a resource means: its records and trait, one file per backend, one suite
//! module, and one line in [`Store`]'s list of supertraits.
//!
//! **Rows are defined once.** Each table's row struct is declared once (`sql::row`'s
//! `row!`): its fields are its columns, and the column list, the reader (by
//! column name) and the writers of both backends are derived from it.
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
//! **Poisoned locks:** the crate's few mutexes guard plain data that every holder
//! leaves consistent (a pool's idle list, a queue), so a panic while one is held
//! does not make its data wrong: every lock goes through `sync::lock`, which
//! recovers the guard (`PoisonError::into_inner`) instead of spreading the panic.
//!
//! Methods are named resource first, verb second (`job_create`, `job_list`), so all
//! operations on a resource sort together.

pub mod accounts;
pub mod api_keys;
pub mod backup;
pub mod billing;
pub mod cluster;
pub mod database_url;
pub mod deployment;
pub mod events;
pub mod fence;
pub mod gpu_models;
pub mod jobs;
pub mod migrate;
pub mod notify;
pub mod postgres;
pub mod recipes;
mod sql;
pub mod sqlite;
pub mod stats;
mod sync;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod webhooks;

pub use accounts::{AccountRecord, AccountStore};
pub use api_keys::{ApiKeyRecord, ApiKeyStore};
pub use billing::{BillingStore, CreditPurchaseRecord, LedgerPosting, LedgerSide, PLATFORM_ACCOUNT, PurchaseKey};
pub use cluster::{
    ActiveRunCounts, ClusterStore, Heartbeat, JobPlacement, LogTail, NodeLiveness, NodeRecord, RunFilter, RunRecord,
    RunUpdate,
};
pub use deployment::DeploymentStore;
pub use events::{EventHorizon, EventStore};
pub use gpu_models::GpuModelStore;
pub use jobs::{AccountUsage, JobQuota, JobStore, JobTransition, Quota, QuotaExceeded};
pub use notify::{Notice, NotifyStore, Topic};
pub use recipes::{RecipeRecord, RecipeStore, RecipeViewer};
pub use webhooks::{WebhookRecord, WebhookStore};

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
    /// A leader loop's write under a lease that is no longer held (see
    /// [`fence`]); nothing was written.
    #[error("{during}: refused, this instance no longer holds the leader lease")]
    Fenced {
        /// The operation refused.
        during: &'static str,
    },
    /// The database could not be reached when connecting (refused, timed out, name
    /// not resolved): worth retrying, unlike a bad URL or refused credentials.
    #[error("the database cannot be reached")]
    Unreachable {
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A job creation would take its account past a quota; nothing was written.
    #[error("{0}")]
    QuotaExceeded(jobs::QuotaExceeded),
}

/// Convenience alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a list and the total over all pages.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Items matching, over all pages.
    pub total: u64,
}

/// Counters of the write path, to show group commit at work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed (each one fsync on SQLite).
    pub commits: u64,
    /// Write operations those transactions carried.
    pub writes: u64,
    /// How long commits took: on SQLite each group commit, from `BEGIN` to the fsync
    /// of `COMMIT`. PostgreSQL commits inside the server (its WAL writer batches the
    /// flushes), so it leaves this empty: its own statistics (`pg_stat_statements`,
    /// postgres_exporter) measure that side.
    pub commit_times: stats::CommitTimes,
}

/// What every backend tells about itself.
pub trait StoreInfo {
    /// Which backend, for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Write-path counters since start.
    fn write_stats(&self) -> WriteStats;
}

/// Everything the control plane persists: the sum of the resource traits, so callers
/// hold one `Arc<dyn Store>`. `account: Option<AccountId>` parameters scope a read or
/// write to one account (`None` = every account, for operators); a row of another
/// account is reported as absent, never as forbidden.
///
/// Implemented for every type that implements all the resource traits (the blanket
/// impl below); a backend never implements it by hand.
pub trait Store:
    StoreInfo
    + AccountStore
    + ApiKeyStore
    + JobStore
    + ClusterStore
    + GpuModelStore
    + RecipeStore
    + BillingStore
    + DeploymentStore
    + NotifyStore
    + EventStore
    + WebhookStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: StoreInfo
        + AccountStore
        + ApiKeyStore
        + JobStore
        + ClusterStore
        + GpuModelStore
        + RecipeStore
        + BillingStore
        + DeploymentStore
        + NotifyStore
        + EventStore
        + WebhookStore
        + Send
        + Sync
        + 'static
{
}
/// Opens the store a deployment configured: PostgreSQL when `database_url` is given
/// (`postgres://...`), else SQLite at `<data_dir>/gantry.db`. Runs pending migrations.
pub async fn open(data_dir: &std::path::Path, database_url: Option<&str>) -> StoreResult<std::sync::Arc<dyn Store>> {
    match database_url {
        Some(url) => Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?)),
        None => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(&data_dir.join("gantry.db")).await?)),
    }
}
