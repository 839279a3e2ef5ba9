//! The PostgreSQL backend, for deployments that outgrow one machine or want a managed
//! database.
//!
//! Each write is a single statement (its own implicit transaction), so it holds a
//! pool connection for one round trip. Group commit needs no code here: PostgreSQL's
//! WAL writer already flushes the commit records of all transactions that committed
//! meanwhile with one fsync (`commit_delay`/`commit_siblings` tune it), so concurrent
//! writes share fsyncs just as they do through the SQLite writer thread. Durability
//! is pinned per connection (`synchronous_commit=on`) so a server-side default of
//! `off` cannot silently weaken it. [`WriteStats`] therefore counts one commit per
//! write.
//!
//! Queries are runtime-checked (`sqlx::query` with `$N` placeholders), so building
//! needs no database. SQLSTATE 23505 (unique violation) becomes `Conflict`, 23503
//! (foreign key violation) `MissingReference`.

mod billing;
mod cluster;
mod gpu_models;
mod recipes;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

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
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row};

use crate::cluster::{JobPlacement, NodeRecord, RunFilter, RunRecord, RunUpdate};
use crate::sql::{
    self, API_KEY_COLUMNS, ApiKeyRow, JOB_COLUMNS, JobRow, ListQuery, NewJobRow, Placeholders, SqlValue, Subject,
    Violation,
};
use crate::{AccountRecord, ApiKeyRecord, JobTransition, Page, Store, StoreError, StoreResult, WriteStats, migrate};

/// Default pool size: enough for a busy server, far below PostgreSQL's default
/// `max_connections` (100) so several servers can share one database.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    writes: AtomicU64,
}

impl PgStore {
    /// Connects (pool of [`DEFAULT_MAX_CONNECTIONS`]) and applies pending migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with_max_connections(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Like [`Self::connect`] with another pool size (tests running many stores at
    /// once use small pools to stay under the server's connection limit).
    pub async fn connect_with_max_connections(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database { during: "parsing the database URL", source: Box::new(e) })?
            .options([("synchronous_commit", "on")]);
        let pool =
            PgPoolOptions::new().max_connections(max_connections).connect_with(options).await.map_err(db("connect"))?;
        migrate::run_postgres(&pool).await?;
        tracing::info!("connected to PostgreSQL store");
        Ok(Self { pool, writes: AtomicU64::new(0) })
    }

    /// Closes the pool's connections (waiting for them to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    async fn list<T>(
        &self,
        query: ListQuery,
        during: &'static str,
        map: impl Fn(&PgRow) -> StoreResult<T>,
    ) -> StoreResult<Page<T>> {
        // One REPEATABLE READ snapshot for both statements: the total matches the page.
        let mut tx =
            self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db(during))?;
        let count = bind_all(sqlx::query(AssertSqlSafe(query.count.clone())), query.count_params());
        let total: i64 = count.fetch_one(&mut *tx).await.map_err(db(during))?.try_get(0).map_err(db(during))?;
        let select = bind_all(sqlx::query(AssertSqlSafe(query.select.clone())), &query.params);
        let rows = select.fetch_all(&mut *tx).await.map_err(db(during))?;
        tx.commit().await.map_err(db(during))?;
        let items = rows.iter().map(map).collect::<StoreResult<Vec<T>>>()?;
        Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
    }
}

type PgQuery<'a> = sqlx::query::Query<'a, Postgres, PgArguments>;

/// Binds the list builder's parameters ([`crate::sql`] built and audited the text).
fn bind_all<'a>(mut query: PgQuery<'a>, params: &[SqlValue]) -> PgQuery<'a> {
    for p in params {
        query = match p {
            SqlValue::Text(s) => query.bind(s.clone()),
            SqlValue::Int(i) => query.bind(*i),
            SqlValue::Real(f) => query.bind(*f),
            SqlValue::Bool(b) => query.bind(*b),
        };
    }
    query
}

fn db(during: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Database { during, source: Box::new(e) }
}

/// Like [`db`], but constraint violations become `Conflict`/`MissingReference`.
fn write_error(during: &'static str, subject: impl FnOnce() -> Subject) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        let violation = match &e {
            sqlx::Error::Database(d) => match d.code().as_deref() {
                // Constraints are named <table>_pkey by default; any other unique one
                // (api_keys_public_key_key) is a second key.
                Some("23505") if d.constraint().is_some_and(|c| c.ends_with("_pkey")) => Some(Violation::PrimaryKey),
                Some("23505") => Some(Violation::Unique),
                Some("23503") => Some(Violation::ForeignKey),
                _ => None,
            },
            _ => None,
        };
        match violation {
            Some(v) => subject().error(v),
            None => StoreError::Database { during, source: Box::new(e) },
        }
    }
}

fn job_row(row: &PgRow) -> StoreResult<Job> {
    let get = || -> Result<JobRow, sqlx::Error> {
        Ok(JobRow {
            spec: row.try_get(0)?,
            status: row.try_get(1)?,
            status_reason: row.try_get(2)?,
            updated_at_ms: row.try_get(3)?,
            started_at_ms: row.try_get(4)?,
            completed_at_ms: row.try_get(5)?,
            image_size_bytes: row.try_get(6)?,
        })
    };
    get().map_err(db("reading a job row"))?.into_job()
}

fn api_key_row(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    let get = || -> Result<ApiKeyRow, sqlx::Error> {
        Ok(ApiKeyRow {
            uuid: row.try_get(0)?,
            account_uuid: row.try_get(1)?,
            name: row.try_get(2)?,
            public_key: row.try_get(3)?,
            secret_encrypted: row.try_get(4)?,
            permissions: row.try_get(5)?,
            allowed_ips: row.try_get(6)?,
            expires_at_ms: row.try_get(7)?,
            is_revoked: row.try_get(8)?,
            created_at_ms: row.try_get(9)?,
            updated_at_ms: row.try_get(10)?,
            last_used_at_ms: row.try_get(11)?,
            deleted_at_ms: row.try_get(12)?,
        })
    };
    get().map_err(db("reading an API key row"))?.into_record()
}

impl PgStore {
    /// One key by `condition` on `$1` (and `$2`, when the condition uses it).
    async fn api_key_where(
        &self,
        condition: &'static str,
        first: String,
        second: Option<Option<String>>,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {condition}");
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(first);
        if let Some(second) = second {
            query = query.bind(second);
        }
        let row = query.fetch_optional(&self.pool).await.map_err(db("api key read"))?;
        row.as_ref().map(api_key_row).transpose()
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn write_stats(&self) -> WriteStats {
        let writes = self.writes.load(Ordering::Relaxed);
        WriteStats { commits: writes, writes, commit_times: Default::default() }
    }

    async fn account_create(&self, account: &AccountRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO accounts (uuid, name, email, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(account.uuid.to_string())
            .bind(&account.name)
            .bind(&account.email)
            .bind(account.created_at_ms)
            .execute(&self.pool)
            .await
            .map_err(write_error("account create", || Subject::account(account.uuid)))?;
        self.wrote();
        Ok(())
    }

    async fn account_fetch(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {} FROM accounts WHERE uuid = $1", sql::ACCOUNT_COLUMNS);
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("account fetch"))?;
        let Some(row) = row else { return Ok(None) };
        let get = || -> Result<(String, String, Option<String>, i64), sqlx::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?))
        };
        let (uuid, name, email, created) = get().map_err(db("account fetch"))?;
        sql::account_record(&uuid, name, email, created).map(Some)
    }

    async fn api_key_create(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (uuid, account_uuid, name, public_key, secret_encrypted, \
             permissions, allowed_ips, expires_at_ms, is_revoked, created_at_ms, updated_at_ms, \
             last_used_at_ms, deleted_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(key.uuid.to_string())
        .bind(key.account_uuid.to_string())
        .bind(&key.name)
        .bind(&key.public_key)
        .bind(&key.secret_encrypted)
        .bind(sql::json_list(&key.permissions))
        .bind(sql::json_list(&key.allowed_ips))
        .bind(key.expires_at_ms)
        .bind(key.is_revoked)
        .bind(key.created_at_ms)
        .bind(key.updated_at_ms)
        .bind(key.last_used_at_ms)
        .bind(key.deleted_at_ms)
        .execute(&self.pool)
        .await
        .map_err(write_error("api key create", || Subject::api_key(key)))?;
        self.wrote();
        Ok(())
    }

    async fn api_key_fetch_by_public_key(&self, public_key: &str) -> StoreResult<Option<ApiKeyRecord>> {
        self.api_key_where("public_key = $1", public_key.to_owned(), None).await
    }

    async fn api_key_list(
        &self,
        account: Option<AccountId>,
        filter: &ApiKeyFilter,
        paging: Paging,
    ) -> StoreResult<Page<ApiKeyRecord>> {
        let query = sql::api_key_list(Placeholders::Dollar, account, filter, paging);
        self.list(query, "api key list", api_key_row).await
    }

    async fn api_key_revoke(
        &self,
        account: Option<AccountId>,
        id: ApiKeyId,
        now_ms: i64,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        // Only a live key changes, so revoking twice keeps the first revocation time.
        // The follow-up read needs no transaction: a key never becomes un-revoked.
        sqlx::query(
            "UPDATE api_keys SET is_revoked = TRUE, deleted_at_ms = $2, updated_at_ms = $2 \
             WHERE uuid = $1 AND NOT is_revoked AND ($3::text IS NULL OR account_uuid = $3)",
        )
        .bind(&id)
        .bind(now_ms)
        .bind(&scope)
        .execute(&self.pool)
        .await
        .map_err(db("api key revoke"))?;
        self.wrote();
        self.api_key_where("uuid = $1 AND ($2::text IS NULL OR account_uuid = $2)", id, Some(scope)).await
    }

    async fn api_key_touch(&self, uses: &[(ApiKeyId, i64)]) -> StoreResult<()> {
        // Only the latest use per key matters; one statement updates them all.
        let latest = crate::sql::latest_use_per_key(uses);
        if latest.is_empty() {
            return Ok(());
        }
        let (ids, times): (Vec<String>, Vec<i64>) = latest.into_iter().map(|(id, at)| (id.to_string(), at)).unzip();
        sqlx::query(
            "UPDATE api_keys AS k SET last_used_at_ms = u.at \
             FROM UNNEST($1::text[], $2::bigint[]) AS u(uuid, at) \
             WHERE k.uuid = u.uuid AND (k.last_used_at_ms IS NULL OR k.last_used_at_ms < u.at)",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await
        .map_err(db("api key touch"))?;
        self.wrote();
        Ok(())
    }

    async fn job_create(&self, job: &Job) -> StoreResult<()> {
        let row = NewJobRow::new(job)?;
        sqlx::query(
            "INSERT INTO jobs (uuid, account_uuid, status, task, cpu_count, gpu_count, \
             min_ram_gb, min_storage_gb, min_vram_gb, source_recipe_uuid, status_reason, \
             created_at_ms, updated_at_ms, started_at_ms, completed_at_ms, spec) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(row.uuid)
        .bind(row.account_uuid)
        .bind(row.status)
        .bind(row.task)
        .bind(row.cpu_count)
        .bind(row.gpu_count)
        .bind(row.min_ram_gb)
        .bind(row.min_storage_gb)
        .bind(row.min_vram_gb)
        .bind(row.source_recipe_uuid)
        .bind(row.status_reason)
        .bind(row.created_at_ms)
        .bind(row.updated_at_ms)
        .bind(row.started_at_ms)
        .bind(row.completed_at_ms)
        .bind(row.spec)
        .execute(&self.pool)
        .await
        .map_err(write_error("job create", || Subject::job(job.uuid, job.account_uuid)))?;
        self.wrote();
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
        row.as_ref().map(job_row).transpose()
    }

    async fn job_list(&self, account: Option<AccountId>, filter: &JobFilter, paging: Paging) -> StoreResult<Page<Job>> {
        let query = sql::job_list(Placeholders::Dollar, account, filter, paging);
        self.list(query, "job list", job_row).await
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
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(transition.to.as_str())
            .bind(&transition.reason)
            .bind(transition.now_ms)
            .bind(transition.to == JobStatus::Running)
            .bind(transition.to.is_terminal())
            .bind(id.to_string())
            .bind(from)
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("job transition"))?;
        self.wrote();
        row.as_ref().map(job_row).transpose()
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
