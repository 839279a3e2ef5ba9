//! The PostgreSQL backend, for deployments that outgrow one machine or want a managed
//! database.
//!
//! Most writes are one short transaction each. PostgreSQL's WAL writer flushes the
//! commit records of all transactions that committed meanwhile with one fsync
//! (`commit_delay`/`commit_siblings` tune it), so concurrent writes share fsyncs by
//! themselves, except where a lock orders them: event-writing transactions hold the
//! event log's lock through COMMIT (`crate::events`), so their flushes queue one after
//! another. Job creation, the write clients make at volume, is therefore
//! group-committed by this crate (`job_batch.rs`): concurrent creations share one
//! transaction, like the SQLite writer thread's batches; so are the status writes
//! nodes' reports cause (`status_batch.rs`: run updates, and job transitions that move
//! no usage counter, when not fenced). Durability is pinned per
//! connection (`synchronous_commit=on`) so a server-side default of `off` cannot
//! silently weaken it. [`WriteStats`] counts commits and writes apart (a batch is one
//! commit of many writes).
//!
//! Queries are runtime-checked (`sqlx::query` with `$N` placeholders), so building
//! needs no database. SQLSTATE 23505 (unique violation) becomes `Conflict`, 23503
//! (foreign key violation) `MissingReference`.

mod accounts;
mod api_keys;
mod billing;
mod cluster;
mod deployment;
mod event_tx;
mod events;
mod gpu_models;
mod job_batch;
mod jobs;
mod notify;
mod recipes;
mod status_batch;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::sql::row::{IntoRecord, PgQuery, ToRow};
use crate::sql::{ListQuery, SqlValue, Subject, Violation};
use crate::{Page, StoreError, StoreInfo, StoreResult, WriteStats, migrate};

/// Default pool size: enough for a busy server, far below PostgreSQL's default
/// `max_connections` (100) so several servers can share one database.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    counters: Arc<Counters>,
    /// The newest event id this process committed or found at start.
    events: Arc<tokio::sync::watch::Sender<i64>>,
    /// The group commit of job creations.
    creates: job_batch::JobCreates,
    /// The group commit of unfenced status writes (run reports, job transitions).
    status: status_batch::StatusWrites,
}

/// Counters behind [`WriteStats`].
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    durations: crate::stats::CommitClock,
}

impl PgStore {
    /// Connects (pool of [`DEFAULT_MAX_CONNECTIONS`]) and applies pending migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with_max_connections(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Like [`Self::connect`] with another pool size (tests running many stores at
    /// once use small pools to stay under the server's connection limit).
    pub async fn connect_with_max_connections(url: &str, max_connections: u32) -> StoreResult<Self> {
        Self::connect_with_lanes(url, max_connections, job_batch::DEFAULT_LANES).await
    }

    /// Like [`Self::connect_with_max_connections`] with `lanes` creation lanes (see
    /// `job_batch`: more than the default one only pays where the database has cores
    /// to spare; tests use two to hold the lanes' independence).
    pub async fn connect_with_lanes(url: &str, max_connections: u32, lanes: usize) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database { during: "parsing the database URL", source: Box::new(e) })?
            // Notices (`relation ... already exists, skipping` from the idempotent
            // migration bookkeeping on every start) are not news: only warnings and
            // errors come back from the server.
            .options([("synchronous_commit", "on"), ("client_min_messages", "warning")]);
        // One plain connection first: the pool would retry a refused connection for
        // its whole acquire timeout (30 s) before saying anything.
        match tokio::time::timeout(CONNECT_TIMEOUT, <sqlx::PgConnection as sqlx::Connection>::connect_with(&options))
            .await
        {
            Ok(Ok(probe)) => {
                let _ = sqlx::Connection::close(probe).await;
            }
            Ok(Err(e)) => return Err(connect_error(e)),
            Err(_) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                );
                return Err(StoreError::Unreachable { source: Box::new(e) });
            }
        }
        let pool =
            PgPoolOptions::new().max_connections(max_connections).connect_with(options).await.map_err(connect_error)?;
        migrate::run_postgres(&pool).await?;
        let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
            .fetch_one(&pool)
            .await
            .map_err(db("reading the newest event id"))?;
        tracing::info!("connected to PostgreSQL store");
        let counters = Arc::new(Counters::default());
        let events = Arc::new(tokio::sync::watch::Sender::new(newest));
        let shared =
            job_batch::Shared { pool: pool.clone(), counters: Arc::clone(&counters), events: Arc::clone(&events) };
        let creates = job_batch::JobCreates::spawn(shared.clone(), max_connections, lanes);
        let status = status_batch::StatusWrites::spawn(shared);
        Ok(Self { pool, counters, events, creates, status })
    }

    /// Closes the pool's connections (waiting for them to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Counts a write that committed alone.
    fn wrote(&self) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Begins a write transaction. Inside a leader loop ([`crate::fence::scope`]) it
    /// first checks, in the transaction, that the lease still has the loop's epoch
    /// and has not expired, holding the lease row FOR KEY SHARE until commit: a
    /// takeover (which locks that row FOR UPDATE first) waits for this transaction,
    /// so a fenced write never commits after a newer epoch, while the leader's own
    /// renewals (a plain UPDATE, FOR NO KEY UPDATE) do not wait for its long writes
    /// (with FOR SHARE they did: a 3 s placement batch blocked the renewal past its
    /// timeout and the leader stepped down in a loop). A leader frozen inside the
    /// transaction must not block the takeover for ever: the session is ended after
    /// 3 s idle in it.
    async fn begin_write(&self, during: &'static str) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(db(during))?;
        if !fence_held(&mut tx, during).await? {
            let _ = tx.rollback().await;
            return Err(StoreError::Fenced { during });
        }
        Ok(tx)
    }

    /// [`Self::begin_write`] for a write that ends with its events: the same fence,
    /// on an [`event_tx::EventTx`], whose events' insert and COMMIT are one message.
    async fn begin_write_events(&self, during: &'static str) -> StoreResult<event_tx::EventTx> {
        let mut tx = event_tx::EventTx::begin(&self.pool).await.map_err(db(during))?;
        if !fence_held(tx.conn(), during).await? {
            tx.rollback().await;
            return Err(StoreError::Fenced { during });
        }
        Ok(tx)
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

/// Inside a leader loop (`crate::fence`), whether its lease is still held, checked in
/// the caller's transaction with the lease row share-locked until COMMIT (see
/// [`PgStore::begin_write`]); always true outside one.
async fn fence_held(conn: &mut sqlx::PgConnection, during: &'static str) -> StoreResult<bool> {
    let Some(fence) = crate::fence::current() else {
        return Ok(true);
    };
    let held: Option<String> = sqlx::query_scalar(
        "SELECT set_config('idle_in_transaction_session_timeout', '3s', true) FROM leader_lease \
         WHERE id = 1 AND epoch = $1 AND expires_at > now() FOR KEY SHARE",
    )
    .bind(fence.epoch)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db(during))?;
    Ok(held.is_some())
}

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

/// How long connecting waits for the database to answer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Transport trouble (refused, reset, TLS, no connection in time) is `Unreachable`:
/// the caller may retry. Anything else (a refused password, an unknown database)
/// will not get better by waiting.
fn connect_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
            StoreError::Unreachable { source: Box::new(e) }
        }
        e => StoreError::Database { during: "connect", source: Box::new(e) },
    }
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

/// Decodes a row struct read by column name, then its record.
fn record<T: IntoRecord>(row: &PgRow) -> StoreResult<T::Record> {
    T::from_row(row).map_err(db("reading a row"))?.into_record()
}

/// Binds `row`'s columns, in order, to `sql` (an INSERT of them, audited by
/// [`crate::sql::row::insert_sql`]).
fn insert<T: ToRow>(sql: String, row: T) -> PgQuery<'static> {
    row.bind_pg(sqlx::query(AssertSqlSafe(sql)))
}

/// [`insert`] with a statement built once.
fn insert_static<T: ToRow>(sql: &'static str, row: T) -> PgQuery<'static> {
    row.bind_pg(sqlx::query(sql))
}

impl StoreInfo for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn write_stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            commit_times: self.counters.durations.snapshot(),
        }
    }
}
