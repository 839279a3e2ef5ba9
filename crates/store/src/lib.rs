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
use gantry_types::{
    JobRunId, NodeId,
    node::{HardwareSample, NodeStatus},
};

pub mod billing;
pub mod cluster;
mod gpu_models;
pub mod migrate;
pub mod postgres;
mod recipes;
mod sql;
pub mod sqlite;
pub mod stats;
pub mod testsuite;

pub use billing::{CreditPurchaseRecord, LedgerPosting, LedgerSide, PLATFORM_ACCOUNT, PurchaseKey};
pub use cluster::{JobPlacement, NodeRecord, RunFilter, RunRecord, RunUpdate};
pub use recipes::{RecipeRecord, RecipeViewer};

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
    /// How long commits took: on SQLite each group commit, from `BEGIN` to the fsync
    /// of `COMMIT`. PostgreSQL commits inside the server (its WAL writer batches the
    /// flushes), so it leaves this empty: its own statistics (`pg_stat_statements`,
    /// postgres_exporter) measure that side.
    pub commit_times: stats::CommitTimes,
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

    // --- Nodes and job runs ---
    /// Inserts a node or, for an existing uuid of the same account, replaces its
    /// registration fields (name, region, labels, hostname, inventory, gpu_models,
    /// status, lease_epoch, last_seen, updated_at; latest_sample only when `Some`),
    /// keeping created_at and is_draining. `MissingReference` if the account does not
    /// exist; `Conflict` if the uuid belongs to another account (nothing changes).
    async fn node_upsert(&self, node: &NodeRecord) -> StoreResult<()>;
    /// Fetches a node in scope.
    async fn node_fetch(&self, account: Option<AccountId>, id: NodeId) -> StoreResult<Option<NodeRecord>>;
    /// Lists nodes in scope by (created_at, uuid), newest first unless `paging` says
    /// otherwise; `statuses` narrows (empty = all).
    async fn node_list(
        &self,
        account: Option<AccountId>,
        statuses: &[NodeStatus],
        paging: Paging,
    ) -> StoreResult<Page<NodeRecord>>;
    /// Every node, unpaged, oldest first (the scheduler's snapshot).
    async fn node_list_all(&self) -> StoreResult<Vec<NodeRecord>>;
    /// A heartbeat: moves last_seen_at_ms forward to `now_ms` (and replaces
    /// latest_sample when `Some`) only if the node is ONLINE with `lease_epoch`;
    /// returns whether it applied. Does not move updated_at. Group-committed on SQLite.
    async fn node_heartbeat(
        &self,
        id: NodeId,
        lease_epoch: i64,
        now_ms: i64,
        sample: Option<&HardwareSample>,
    ) -> StoreResult<bool>;
    /// Sets is_draining (updated_at moves only when it changes); the node after, or
    /// `None` when it does not exist in scope.
    async fn node_set_draining(
        &self,
        account: Option<AccountId>,
        id: NodeId,
        draining: bool,
        now_ms: i64,
    ) -> StoreResult<Option<NodeRecord>>;
    /// Marks an ONLINE node LOST if its last_seen_at_ms < `seen_before_ms`
    /// (compare-and-set, so a heartbeat racing in wins); returns whether it did.
    async fn node_mark_lost(&self, id: NodeId, seen_before_ms: i64, now_ms: i64) -> StoreResult<bool>;

    /// Places jobs, in ONE transaction per call (group-committed on SQLite): for each
    /// placement whose job is still PENDING, sets the job ASSIGNED (status_reason
    /// cleared, updated_at = `now_ms`) and inserts its runs; any other job is skipped
    /// and gets no runs (so is a repeated job: the first placement wins). Returns the
    /// jobs placed, in the order given. An error (a run on an unknown node:
    /// `MissingReference`; a duplicate run uuid: `Conflict`) places nothing.
    async fn run_place(&self, placements: &[JobPlacement]) -> StoreResult<Vec<JobId>>;
    /// Fetches a run in scope (without logs).
    async fn run_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<RunRecord>>;
    /// Lists runs in scope matching `filter`, by (created_at, uuid), newest first
    /// unless `paging` says otherwise.
    async fn run_list(
        &self,
        account: Option<AccountId>,
        filter: &RunFilter,
        paging: Paging,
    ) -> StoreResult<Page<RunRecord>>;
    /// Every non-terminal run (ASSIGNED, PREPARING, RUNNING), unpaged, oldest first.
    async fn run_list_active(&self) -> StoreResult<Vec<RunRecord>>;
    /// Every run of one job, oldest first: (created_at, attempt, rank, uuid).
    async fn run_list_for_job(&self, job: JobId) -> StoreResult<Vec<RunRecord>>;
    /// Applies `update` if the run is in one of `update.from` (compare-and-set): sets
    /// started_at on the first move to RUNNING, ended_at and duration (ended -
    /// started, when it started) when `to` is terminal, exit_code and node_urls when
    /// `Some`, and the job's image_size_bytes when `Some`. The run after, or `None`
    /// when it is absent or in another status.
    async fn run_update(&self, id: JobRunId, update: &RunUpdate) -> StoreResult<Option<RunRecord>>;
    /// Appends container output, keeping only the newest `max_bytes` bytes (cut at a
    /// UTF-8 boundary). `MissingReference` for an unknown run.
    async fn run_logs_append(&self, id: JobRunId, chunk: &str, max_bytes: usize) -> StoreResult<()>;
    /// A run's logs (`Some("")` before any output), `None` when the run does not
    /// exist in scope.
    async fn run_logs_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<String>>;
    /// PENDING jobs, oldest first (created_at, uuid), at most `limit`: the
    /// scheduler's input.
    async fn job_list_pending(&self, limit: u32) -> StoreResult<Vec<Job>>;

    // --- GPU registry ---
    /// Inserts the models of the seeded catalogue that are missing. A row with the
    /// same uuid or name is left as it is, so an operator's addition or change is
    /// never overwritten; servers seeding at once are safe. Returns the rows inserted.
    async fn gpu_model_upsert_seed(&self, models: &[gantry_types::gpu::GpuModel]) -> StoreResult<u64>;
    /// Creates a model; `Conflict` on a duplicate uuid or name.
    async fn gpu_model_create(&self, model: &gantry_types::gpu::GpuModel) -> StoreResult<()>;
    /// Every model, ordered by (created_at, uuid). The registry is small: callers
    /// keep it in memory and filter there.
    async fn gpu_model_list(&self) -> StoreResult<Vec<gantry_types::gpu::GpuModel>>;
    /// One model.
    async fn gpu_model_fetch(&self, id: gantry_types::GpuModelId) -> StoreResult<Option<gantry_types::gpu::GpuModel>>;

    // --- Job recipes (migration 0004, `recipes.rs`) ---
    // Reads take a `RecipeViewer` instead of an account scope: besides their own,
    // accounts see others' PUBLIC and official recipes unless ARCHIVED; a recipe the
    // viewer may not see is reported as absent. Writes take the usual owner scope
    // (`None` = an operator), and a seeded recipe (no owner) is an operator's only.
    /// Inserts the seeded recipes whose uuid is missing; an existing row (an
    /// operator's edit of a seed) is never overwritten, and servers seeding at once
    /// are safe. Returns the rows inserted.
    async fn recipe_upsert_seed(&self, recipes: &[RecipeRecord]) -> StoreResult<u64>;
    /// Creates a recipe; `Conflict` on a duplicate uuid, `MissingReference` when its
    /// owner account does not exist.
    async fn recipe_create(&self, recipe: &RecipeRecord) -> StoreResult<()>;
    /// One recipe, if `viewer` may see it.
    async fn recipe_fetch(&self, viewer: RecipeViewer, id: gantry_types::RecipeId)
    -> StoreResult<Option<RecipeRecord>>;
    /// The recipes `viewer` may see matching `filter`, by (created_at, uuid), newest
    /// first unless `paging` says otherwise.
    async fn recipe_list(
        &self,
        viewer: RecipeViewer,
        filter: &gantry_types::recipe::RecipeFilter,
        paging: Paging,
    ) -> StoreResult<Page<RecipeRecord>>;
    /// Replaces name, visibility, is_official, updated_at and the body (description,
    /// payload, input_schema, quickstart_md, thumbnail_url) with `recipe`'s, if the row
    /// (in owner scope) still has `expected_updated_at_ms` (compare-and-set: a
    /// concurrent update makes this return `false`; re-read and retry). Never changes
    /// uuid, owner, fork source, created_at or last_used_at.
    async fn recipe_update(
        &self,
        owner: Option<AccountId>,
        recipe: &RecipeRecord,
        expected_updated_at_ms: i64,
    ) -> StoreResult<bool>;
    /// Deletes a recipe in owner scope; whether it existed there. Its forks and the
    /// jobs cooked from it stay.
    async fn recipe_delete(&self, owner: Option<AccountId>, id: gantry_types::RecipeId) -> StoreResult<bool>;
    /// Moves last_used_at forward to `now_ms` (never back; updated_at does not move).
    async fn recipe_touch(&self, id: gantry_types::RecipeId, now_ms: i64) -> StoreResult<()>;

    // --- Billing (migration 0005): consumer profiles, the ledger, credit purchases ---
    //
    // Money is integer micro-USD. Ledger postings are balanced by construction (see
    // `billing::LedgerPosting`), so the sum over all entries is always zero.

    /// Inserts `profile` unless its account already has one; returns the account's
    /// profile either way (concurrent callers all get the same one).
    /// `MissingReference` if the account does not exist.
    async fn consumer_profile_ensure(
        &self,
        profile: &gantry_types::billing::ConsumerProfile,
    ) -> StoreResult<gantry_types::billing::ConsumerProfile>;
    /// Lists profiles in scope matching `filter`, by (created_at, uuid).
    async fn consumer_profile_list(
        &self,
        account: Option<AccountId>,
        filter: &gantry_types::billing::ConsumerProfileFilter,
        paging: Paging,
    ) -> StoreResult<Page<gantry_types::billing::ConsumerProfile>>;
    /// Every profile, unpaged (the scheduler's region allowlists).
    async fn consumer_profile_list_all(&self) -> StoreResult<Vec<gantry_types::billing::ConsumerProfile>>;
    /// Applies the fields present in `patch`; the profile after, or `None` when it does
    /// not exist in scope.
    async fn consumer_profile_update(
        &self,
        account: Option<AccountId>,
        id: uuid::Uuid,
        patch: &gantry_types::billing::UpdateConsumerProfileRequest,
        now_ms: i64,
    ) -> StoreResult<Option<gantry_types::billing::ConsumerProfile>>;
    /// Posts a transaction and all its entries atomically. `Ok(false)` when its
    /// idempotency key was already posted (nothing changes: the charge happened once).
    /// `MissingReference` when an entry names an unknown account (nothing is posted).
    async fn ledger_post(&self, posting: &LedgerPosting) -> StoreResult<bool>;
    /// The sum of an account's entries, micro-USD (0 for an account without any).
    async fn ledger_balance(&self, account: AccountId) -> StoreResult<i64>;
    /// Every account's balance that has entries (the platform's included).
    async fn ledger_balances(&self) -> StoreResult<Vec<(AccountId, i64)>>;
    /// Entries in scope, by (created_at, uuid), newest first unless `paging` says otherwise.
    async fn ledger_list(
        &self,
        account: Option<AccountId>,
        paging: Paging,
    ) -> StoreResult<Page<gantry_types::billing::LedgerTransaction>>;
    /// What `owner` earned from run charges on `node`: (micro-USD, entries).
    async fn ledger_node_earnings(&self, node: NodeId, owner: AccountId) -> StoreResult<(i64, u64)>;
    /// Runs that ran (started_at set) at a quoted rate (hourly_rate_usd set; runs from
    /// before billing have none), ended at or after `ended_since_ms`, and have no charge
    /// posted yet, oldest end first, at most `limit`.
    async fn run_list_unbilled(&self, ended_since_ms: i64, limit: u32) -> StoreResult<Vec<RunRecord>>;
    /// Creates a purchase; `Conflict` on a duplicate uuid or checkout session id.
    async fn credit_purchase_create(&self, purchase: &CreditPurchaseRecord) -> StoreResult<()>;
    /// Purchases in scope (statuses empty = all), by (created_at, uuid).
    async fn credit_purchase_list(
        &self,
        account: Option<AccountId>,
        statuses: &[gantry_types::billing::CreditPurchaseStatus],
        paging: Paging,
    ) -> StoreResult<Page<CreditPurchaseRecord>>;
    /// One purchase in scope.
    async fn credit_purchase_fetch(
        &self,
        account: Option<AccountId>,
        key: &PurchaseKey,
    ) -> StoreResult<Option<CreditPurchaseRecord>>;
    /// Records the provider's state word (manual provider: what an operator decided).
    async fn credit_purchase_set_provider_state(
        &self,
        id: uuid::Uuid,
        provider_state: &str,
        now_ms: i64,
    ) -> StoreResult<Option<CreditPurchaseRecord>>;
    /// Moves a PENDING purchase to `to` (compare-and-set) and, in the same
    /// transaction, posts `credit` when given. `None` when it is not PENDING (someone
    /// settled it first: nothing is posted) or does not exist.
    async fn credit_purchase_settle(
        &self,
        id: uuid::Uuid,
        to: gantry_types::billing::CreditPurchaseStatus,
        now_ms: i64,
        credit: Option<&LedgerPosting>,
    ) -> StoreResult<Option<CreditPurchaseRecord>>;
}

/// Opens the store a deployment configured: PostgreSQL when `database_url` is given
/// (`postgres://...`), else SQLite at `<data_dir>/gantry.db`. Runs pending migrations.
pub async fn open(data_dir: &std::path::Path, database_url: Option<&str>) -> StoreResult<std::sync::Arc<dyn Store>> {
    match database_url {
        Some(url) => Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?)),
        None => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(&data_dir.join("gantry.db")).await?)),
    }
}
