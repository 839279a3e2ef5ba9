//! The SQLite backend: one file in the data dir, the default deployment.
//!
//! Design, for durability first and throughput second:
//!
//! * `journal_mode=WAL` so readers and the writer do not block each other, and
//!   `synchronous=FULL` so a write acknowledged to a client has been fsynced and
//!   survives kill -9 and power loss. Never lower it: throughput comes from
//!   [group commit](writer), which shares one fsync among all writes queued meanwhile.
//! * Every write goes through one writer thread ([`writer`]); reads go through a small
//!   pool of read-only connections ([`readers`]) on the blocking pool.
//! * Other processes (the admin CLI) may open the same file while the server runs:
//!   writes start with `BEGIN IMMEDIATE` and every connection has a `busy_timeout`,
//!   so they queue for the lock instead of failing.
//! * Constraint violations are told apart by SQLite's extended result codes
//!   ([`rows`]) and become `Conflict` / `MissingReference`.

mod billing;
mod cluster;
mod gpu_models;
mod readers;
mod recipes;
mod rows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
use rusqlite::{Connection, OptionalExtension, params};

use self::readers::Readers;
use self::rows::{db, write_error};
use self::writer::Writer;
use crate::cluster::{JobPlacement, NodeRecord, RunFilter, RunRecord, RunUpdate};
use crate::sql::{self, JOB_COLUMNS, JobRow, NewJobRow, Placeholders, Subject};
use crate::{AccountRecord, ApiKeyRecord, JobTransition, Page, Store, StoreError, StoreResult, WriteStats, migrate};

/// How long a connection waits for a lock another connection or process holds.
const BUSY_TIMEOUT_MS: u64 = 5000;

/// The SQLite store. Dropping it finishes the queued writes and closes the file.
pub struct SqliteStore {
    // Field order matters for drop: the writer (which joins its thread) goes first.
    writer: Writer,
    readers: Arc<Readers>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed, parent directory included) the database at `path`
    /// and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let path = path.to_path_buf();
        let writer_path = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_writer(&writer_path))
            .await
            .map_err(|e| StoreError::Database { during: "open", source: Box::new(e) })??;
        let writer = Writer::spawn(conn)?;
        tracing::info!(path = %path.display(), "opened SQLite store");
        Ok(Self { writer, readers: Arc::new(Readers::new(path.clone())), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<R, F>(&self, read: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.readers.read(read).await
    }
}

/// Creates the database file with mode 0600 (or narrows an existing one to it): it
/// holds every account's jobs and the encrypted secrets. SQLite gives its `-wal` and
/// `-shm` files the database file's mode.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Err(e) => return Err(e),
        }
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            if std::path::Path::new(&side).exists() {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The write connection: file, pragmas, migrations.
fn open_writer(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Database { during: "creating the data directory", source: Box::new(e) })?;
    }
    owner_only(path)
        .map_err(|e| StoreError::Database { during: "making the database file owner-only", source: Box::new(e) })?;
    let open = db("open");
    let mut conn = Connection::open(path).map_err(&open)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(&open)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(&open)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database {
            during: "open (enabling WAL)",
            source: format!("journal_mode is {mode:?}, not wal").into(),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(&open)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(&open)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate::run_sqlite(&mut conn)?;
    Ok(conn)
}

fn job_select(condition: &str) -> String {
    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition}")
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    async fn account_create(&self, account: &AccountRecord) -> StoreResult<()> {
        let a = account.clone();
        self.writer
            .write(move |conn| {
                let id = a.uuid;
                conn.prepare_cached("INSERT INTO accounts (uuid, name, email, created_at_ms) VALUES (?1, ?2, ?3, ?4)")
                    .and_then(|mut s| s.execute(params![a.uuid.to_string(), a.name, a.email, a.created_at_ms]))
                    .map(drop)
                    .map_err(write_error("account create", || Subject::account(id)))
            })
            .await
    }

    async fn account_fetch(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        self.read(move |conn| {
            let sql = format!("SELECT {} FROM accounts WHERE uuid = ?1", sql::ACCOUNT_COLUMNS);
            let row = conn
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_row([id.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()
                })
                .map_err(db("account fetch"))?;
            row.map(|(uuid, name, email, created)| sql::account_record(&uuid, name, email, created)).transpose()
        })
        .await
    }

    async fn api_key_create(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let k = key.clone();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO api_keys (uuid, account_uuid, name, public_key, secret_encrypted, \
                     permissions, allowed_ips, expires_at_ms, is_revoked, created_at_ms, updated_at_ms, \
                     last_used_at_ms, deleted_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        k.uuid.to_string(),
                        k.account_uuid.to_string(),
                        k.name,
                        k.public_key,
                        k.secret_encrypted,
                        sql::json_list(&k.permissions),
                        sql::json_list(&k.allowed_ips),
                        k.expires_at_ms,
                        k.is_revoked,
                        k.created_at_ms,
                        k.updated_at_ms,
                        k.last_used_at_ms,
                        k.deleted_at_ms,
                    ])
                })
                .map(drop)
                .map_err(write_error("api key create", || Subject::api_key(&k)))
            })
            .await
    }

    async fn api_key_fetch_by_public_key(&self, public_key: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let public_key = public_key.to_owned();
        self.read(move |conn| rows::api_key_where(conn, "public_key = ?1", [public_key])).await
    }

    async fn api_key_list(
        &self,
        account: Option<AccountId>,
        filter: &ApiKeyFilter,
        paging: Paging,
    ) -> StoreResult<Page<ApiKeyRecord>> {
        let query = sql::api_key_list(Placeholders::Question, account, filter, paging);
        self.read(move |conn| {
            let found = rows::list(conn, &query, "api key list", rows::api_key_row)?;
            rows::page(found, sql::ApiKeyRow::into_record)
        })
        .await
    }

    async fn api_key_revoke(
        &self,
        account: Option<AccountId>,
        id: ApiKeyId,
        now_ms: i64,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.writer
            .write(move |conn| {
                // Only a live key changes, so revoking twice keeps the first revocation time.
                conn.prepare_cached(
                    "UPDATE api_keys SET is_revoked = 1, deleted_at_ms = ?2, updated_at_ms = ?2 \
                     WHERE uuid = ?1 AND is_revoked = 0 AND (?3 IS NULL OR account_uuid = ?3)",
                )
                .and_then(|mut s| s.execute(params![id, now_ms, scope]))
                .map_err(db("api key revoke"))?;
                rows::api_key_where(conn, "uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)", params![id, scope])
            })
            .await
    }

    async fn api_key_touch(&self, uses: &[(ApiKeyId, i64)]) -> StoreResult<()> {
        // Only the latest use per key matters.
        let latest = crate::sql::latest_use_per_key(uses);
        if latest.is_empty() {
            return Ok(());
        }
        self.writer
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at_ms = ?2 \
                         WHERE uuid = ?1 AND (last_used_at_ms IS NULL OR last_used_at_ms < ?2)",
                    )
                    .map_err(db("api key touch"))?;
                for (id, at) in latest {
                    stmt.execute(params![id.to_string(), at]).map_err(db("api key touch"))?;
                }
                Ok(())
            })
            .await
    }

    async fn job_create(&self, job: &Job) -> StoreResult<()> {
        // Serialize here, on the caller's thread; the writer thread only inserts.
        let row = NewJobRow::new(job)?;
        let (id, account) = (job.uuid, job.account_uuid);
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO jobs (uuid, account_uuid, status, task, cpu_count, gpu_count, \
                     min_ram_gb, min_storage_gb, min_vram_gb, source_recipe_uuid, status_reason, \
                     created_at_ms, updated_at_ms, started_at_ms, completed_at_ms, spec) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        row.uuid,
                        row.account_uuid,
                        row.status,
                        row.task,
                        row.cpu_count,
                        row.gpu_count,
                        row.min_ram_gb,
                        row.min_storage_gb,
                        row.min_vram_gb,
                        row.source_recipe_uuid,
                        row.status_reason,
                        row.created_at_ms,
                        row.updated_at_ms,
                        row.started_at_ms,
                        row.completed_at_ms,
                        row.spec,
                    ])
                })
                .map(drop)
                .map_err(write_error("job create", || Subject::job(id, account)))
            })
            .await
    }

    async fn job_fetch(&self, account: Option<AccountId>, id: JobId) -> StoreResult<Option<Job>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.read(move |conn| {
            let row = conn
                .prepare_cached(&job_select("uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)"))
                .and_then(|mut s| s.query_row(params![id, scope], rows::job_row).optional())
                .map_err(db("job fetch"))?;
            row.map(JobRow::into_job).transpose()
        })
        .await
    }

    async fn job_list(&self, account: Option<AccountId>, filter: &JobFilter, paging: Paging) -> StoreResult<Page<Job>> {
        let query = sql::job_list(Placeholders::Question, account, filter, paging);
        self.read(move |conn| {
            let found = rows::list(conn, &query, "job list", rows::job_row)?;
            rows::page(found, JobRow::into_job)
        })
        .await
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
                let row = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_row(
                            params![
                                t.to.as_str(),
                                t.reason,
                                t.now_ms,
                                t.to == JobStatus::Running,
                                t.to.is_terminal(),
                                id,
                                from,
                                scope,
                            ],
                            rows::job_row,
                        )
                        .optional()
                    })
                    .map_err(db("job transition"))?;
                row.map(JobRow::into_job).transpose()
            })
            .await
    }

    // --- Nodes and job runs ---
    async fn node_upsert(&self, node: &NodeRecord) -> StoreResult<()> {
        cluster::node_upsert(self, node).await
    }

    async fn node_fetch(&self, account: Option<AccountId>, id: NodeId) -> StoreResult<Option<NodeRecord>> {
        cluster::node_fetch(self, account, id).await
    }

    async fn node_list(
        &self,
        account: Option<AccountId>,
        statuses: &[NodeStatus],
        paging: Paging,
    ) -> StoreResult<Page<NodeRecord>> {
        cluster::node_list(self, account, statuses, paging).await
    }

    async fn node_list_all(&self) -> StoreResult<Vec<NodeRecord>> {
        cluster::node_list_all(self).await
    }

    async fn node_heartbeat(
        &self,
        id: NodeId,
        lease_epoch: i64,
        now_ms: i64,
        sample: Option<&HardwareSample>,
    ) -> StoreResult<bool> {
        cluster::node_heartbeat(self, id, lease_epoch, now_ms, sample).await
    }

    async fn node_set_draining(
        &self,
        account: Option<AccountId>,
        id: NodeId,
        draining: bool,
        now_ms: i64,
    ) -> StoreResult<Option<NodeRecord>> {
        cluster::node_set_draining(self, account, id, draining, now_ms).await
    }

    async fn node_mark_lost(&self, id: NodeId, seen_before_ms: i64, now_ms: i64) -> StoreResult<bool> {
        cluster::node_mark_lost(self, id, seen_before_ms, now_ms).await
    }

    async fn run_place(&self, placements: &[JobPlacement]) -> StoreResult<Vec<JobId>> {
        cluster::run_place(self, placements).await
    }

    async fn run_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<RunRecord>> {
        cluster::run_fetch(self, account, id).await
    }

    async fn run_list(
        &self,
        account: Option<AccountId>,
        filter: &RunFilter,
        paging: Paging,
    ) -> StoreResult<Page<RunRecord>> {
        cluster::run_list(self, account, filter, paging).await
    }

    async fn run_list_active(&self) -> StoreResult<Vec<RunRecord>> {
        cluster::run_list_active(self).await
    }

    async fn run_list_for_job(&self, job: JobId) -> StoreResult<Vec<RunRecord>> {
        cluster::run_list_for_job(self, job).await
    }

    async fn run_update(&self, id: JobRunId, update: &RunUpdate) -> StoreResult<Option<RunRecord>> {
        cluster::run_update(self, id, update).await
    }

    async fn run_logs_append(&self, id: JobRunId, chunk: &str, max_bytes: usize) -> StoreResult<()> {
        cluster::run_logs_append(self, id, chunk, max_bytes).await
    }

    async fn run_logs_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<String>> {
        cluster::run_logs_fetch(self, account, id).await
    }

    async fn job_list_pending(&self, limit: u32) -> StoreResult<Vec<Job>> {
        cluster::job_list_pending(self, limit).await
    }

    // --- GPU registry ---
    async fn gpu_model_upsert_seed(&self, models: &[gantry_types::gpu::GpuModel]) -> StoreResult<u64> {
        gpu_models::upsert_seed(self, models).await
    }

    async fn gpu_model_create(&self, model: &gantry_types::gpu::GpuModel) -> StoreResult<()> {
        gpu_models::create(self, model).await
    }

    async fn gpu_model_list(&self) -> StoreResult<Vec<gantry_types::gpu::GpuModel>> {
        gpu_models::list(self).await
    }

    async fn gpu_model_fetch(&self, id: gantry_types::GpuModelId) -> StoreResult<Option<gantry_types::gpu::GpuModel>> {
        gpu_models::fetch(self, id).await
    }

    // --- Job recipes ---
    async fn recipe_upsert_seed(&self, recipes: &[crate::RecipeRecord]) -> StoreResult<u64> {
        recipes::upsert_seed(self, recipes).await
    }

    async fn recipe_create(&self, recipe: &crate::RecipeRecord) -> StoreResult<()> {
        recipes::create(self, recipe).await
    }

    async fn recipe_fetch(
        &self,
        viewer: crate::RecipeViewer,
        id: gantry_types::RecipeId,
    ) -> StoreResult<Option<crate::RecipeRecord>> {
        recipes::fetch(self, viewer, id).await
    }

    async fn recipe_list(
        &self,
        viewer: crate::RecipeViewer,
        filter: &gantry_types::recipe::RecipeFilter,
        paging: Paging,
    ) -> StoreResult<Page<crate::RecipeRecord>> {
        recipes::list(self, viewer, filter, paging).await
    }

    async fn recipe_update(
        &self,
        owner: Option<AccountId>,
        recipe: &crate::RecipeRecord,
        expected_updated_at_ms: i64,
    ) -> StoreResult<bool> {
        recipes::update(self, owner, recipe, expected_updated_at_ms).await
    }

    async fn recipe_delete(&self, owner: Option<AccountId>, id: gantry_types::RecipeId) -> StoreResult<bool> {
        recipes::delete(self, owner, id).await
    }

    async fn recipe_touch(&self, id: gantry_types::RecipeId, now_ms: i64) -> StoreResult<()> {
        recipes::touch(self, id, now_ms).await
    }

    // --- Billing ---
    async fn consumer_profile_ensure(
        &self,
        profile: &gantry_types::billing::ConsumerProfile,
    ) -> StoreResult<gantry_types::billing::ConsumerProfile> {
        billing::profile_ensure(self, profile).await
    }

    async fn consumer_profile_list(
        &self,
        account: Option<AccountId>,
        filter: &gantry_types::billing::ConsumerProfileFilter,
        paging: Paging,
    ) -> StoreResult<Page<gantry_types::billing::ConsumerProfile>> {
        billing::profile_list(self, account, filter, paging).await
    }

    async fn consumer_profile_list_all(&self) -> StoreResult<Vec<gantry_types::billing::ConsumerProfile>> {
        billing::profile_list_all(self).await
    }

    async fn consumer_profile_update(
        &self,
        account: Option<AccountId>,
        id: uuid::Uuid,
        patch: &gantry_types::billing::UpdateConsumerProfileRequest,
        now_ms: i64,
    ) -> StoreResult<Option<gantry_types::billing::ConsumerProfile>> {
        billing::profile_update(self, account, id, patch, now_ms).await
    }

    async fn ledger_post(&self, posting: &crate::LedgerPosting) -> StoreResult<bool> {
        billing::ledger_post(self, posting).await
    }

    async fn ledger_balance(&self, account: AccountId) -> StoreResult<i64> {
        billing::ledger_balance(self, account).await
    }

    async fn ledger_balances(&self) -> StoreResult<Vec<(AccountId, i64)>> {
        billing::ledger_balances(self).await
    }

    async fn ledger_list(
        &self,
        account: Option<AccountId>,
        paging: Paging,
    ) -> StoreResult<Page<gantry_types::billing::LedgerTransaction>> {
        billing::ledger_list(self, account, paging).await
    }

    async fn ledger_node_earnings(&self, node: NodeId, owner: AccountId) -> StoreResult<(i64, u64)> {
        billing::ledger_node_earnings(self, node, owner).await
    }

    async fn run_list_unbilled(&self, ended_since_ms: i64, limit: u32) -> StoreResult<Vec<RunRecord>> {
        billing::run_list_unbilled(self, ended_since_ms, limit).await
    }

    async fn credit_purchase_create(&self, purchase: &crate::CreditPurchaseRecord) -> StoreResult<()> {
        billing::purchase_create(self, purchase).await
    }

    async fn credit_purchase_list(
        &self,
        account: Option<AccountId>,
        statuses: &[gantry_types::billing::CreditPurchaseStatus],
        paging: Paging,
    ) -> StoreResult<Page<crate::CreditPurchaseRecord>> {
        billing::purchase_list(self, account, statuses, paging).await
    }

    async fn credit_purchase_fetch(
        &self,
        account: Option<AccountId>,
        key: &crate::PurchaseKey,
    ) -> StoreResult<Option<crate::CreditPurchaseRecord>> {
        billing::purchase_fetch(self, account, key).await
    }

    async fn credit_purchase_set_provider_state(
        &self,
        id: uuid::Uuid,
        provider_state: &str,
        now_ms: i64,
    ) -> StoreResult<Option<crate::CreditPurchaseRecord>> {
        billing::purchase_set_provider_state(self, id, provider_state, now_ms).await
    }

    async fn credit_purchase_settle(
        &self,
        id: uuid::Uuid,
        to: gantry_types::billing::CreditPurchaseStatus,
        now_ms: i64,
        credit: Option<&crate::LedgerPosting>,
    ) -> StoreResult<Option<crate::CreditPurchaseRecord>> {
        billing::purchase_settle(self, id, to, now_ms, credit).await
    }
}
