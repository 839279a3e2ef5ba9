//! Group commit of job creations on PostgreSQL: the submit path's throughput.
//!
//! Every job creation appends its `job.created` event, and event-writing transactions
//! take one advisory lock and hold it through COMMIT (so event ids become visible in
//! order, see `crate::events`). One transaction per job therefore means one WAL flush
//! after another: about 8k creates/s on a local PostgreSQL 15, 1.0 jobs per commit,
//! whatever the number of clients. So, like the SQLite writer thread, creations are
//! queued and a batch of them commits in **one** transaction:
//!
//! ```text
//! BEGIN
//!   pg_advisory_xact_lock(account)              -- per account with a quota, sorted
//!   SELECT usage of those accounts              -- quotas checked in memory, in order
//!   INSERT INTO jobs ... FROM json_populate_recordset($1) ON CONFLICT (uuid) DO NOTHING
//!   pg_advisory_xact_lock(events); INSERT INTO events ... FROM json_populate_recordset($1)
//! COMMIT                                         -- one WAL flush for the whole batch
//! ```
//!
//! and only then answers each caller, so `Ok` still means durable
//! (`synchronous_commit=on` is pinned per connection). While a batch commits, new
//! requests queue: the busier the store, the larger the next batch.
//!
//! **One round trip** for the common batch (no quota to check, no uuid twice): one
//! call of the function `gantry_create_jobs` (migration 19), which inserts the jobs,
//! takes the event lock and inserts the events; PostgreSQL runs the call as one
//! implicit transaction and commits before answering (`one_trip`). Its arguments are
//! the rows column by column, each column one array in the binary format. The
//! transaction above is four round trips (BEGIN, the insert, the events with their
//! lock, COMMIT), the last one holding the event lock that every event-writing
//! transaction waits for. A batch the database refuses that way (a uuid that exists
//! already, a bad row) is rolled back whole and goes through the transaction above,
//! which answers each request on its own.
//!
//! **Lanes**: one by default ([`DEFAULT_LANES`]: why), two at most
//! (`PgStore::connect_with_lanes`), one batch in flight each. Each job's insert takes its
//! account's usage-counter row of the job's shard (one of 16, the uuid's last hex
//! digit) until COMMIT, and a batch of one account's jobs holds most of the 16: two
//! batches drawn from one queue waited for each other's row locks (measured with 64
//! clients of one account, four batches in flight gave ~10 jobs per commit). So a job
//! goes to the lane of its shard (even shards, odd shards): two lanes' batches never
//! touch the same counter row, and one lane's batch runs its statements while the
//! other's holds the event lock and waits for its WAL flush (the event lock still
//! orders their COMMITs, one flush after another, so each commit carries a whole
//! batch). An account with a quota keeps one check at a time: the check takes that
//! account's advisory lock until COMMIT, so the other lane's batch waits for it and
//! reads the counters the first one committed.
//!
//! **Errors stay per request.** A duplicate uuid is not an error of the batch: the
//! insert skips it (`ON CONFLICT DO NOTHING`) and that request alone gets `Conflict`;
//! a request over its quota is left out of the insert and gets `QuotaExceeded`. Any
//! other failure inside the batch (a job whose account does not exist, a bad value)
//! rolls the batch back and every request of it is retried in a transaction of its
//! own, so a bad request fails alone and its batch-mates commit. A failed COMMIT fails
//! every request that was in it, as a failed COMMIT of one request would.
//!
//! Either way one statement text serves every batch size (prepared once per
//! connection) and the column lists come from the `row!` declarations: the call binds
//! a column array per field (`ToColumns`), the transaction's inserts take one JSON
//! array per table, decoded by `json_populate_recordset` with the table's row type.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use gantry_types::{AccountId, JobId};
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Counters, db, events, insert_static, write_error};
use crate::events::{NewEventRow, PG_EVENTS_LOCK};
use crate::jobs::{AccountUsage, JobQuota, NewJobRow};
use crate::sql::row::{Columns, ToColumns, insert_sql};
use crate::sql::{Placeholders, Subject, Violation};
use crate::{StoreError, StoreResult};

/// Most creations per transaction: bounds the latency a batch adds to its last request.
const MAX_BATCH: usize = 1024;

/// Batching lanes by default, each with one batch in flight (and a pool connection
/// meanwhile); a job's lane is its counter shard modulo the lane count (see the module
/// doc). One: on the 2-core machine where the database, the server and the bench's
/// clients share the cores, two lanes gave smaller commits (17 jobs per commit against
/// 31) for more server CPU per job (118-141 µs against 103-105) and fewer jobs/s
/// (4,866-5,824 against 5,862-6,306, `gantry bench submit --database-url`, A/B
/// alternated, quiet); they had won (×1.27) only with the machine loaded by other work.
pub const DEFAULT_LANES: usize = 1;

/// The most lanes a store may ask for: one per counter-shard parity is what keeps two
/// lanes' batches off each other's counter rows (see the module doc).
const MAX_LANES: usize = 2;

/// The one-job insert of the fallback path.
static INSERT_ONE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| insert_sql::<NewJobRow>(Placeholders::Dollar, ""));

/// `INSERT INTO <table> (<cols>) SELECT <cols> FROM json_populate_recordset(NULL::<table>, $1)<suffix>`.
fn insert_json_sql<R: Columns>(suffix: &str) -> String {
    insert_json_from::<R>("$1", suffix)
}

/// [`insert_json_sql`] from `source`, a parameter or a literal.
fn insert_json_from<R: Columns>(source: &str, suffix: &str) -> String {
    let (table, cols) = (R::TABLE, R::LIST);
    format!(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, {source}::json){suffix}"
    )
}

static INSERT_JOBS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| insert_json_sql::<NewJobRow>(" ON CONFLICT (uuid) DO NOTHING RETURNING uuid"));

/// The insert of many events from one JSON array, taking the event lock itself and
/// answering the newest id (`events::append_json`). The lock is a materialized CTE
/// the rows are joined with, so it is taken before the insert receives its first
/// row, i.e. before any event id is drawn; taking it in a statement of its own held
/// it for one more round trip, which every other event writer waited out.
pub(super) static INSERT_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_events_from("$1"));

/// [`INSERT_EVENTS`] from `source`, a parameter or a literal.
pub(super) fn insert_events_from(source: &str) -> String {
    format!(
        "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({PG_EVENTS_LOCK})), ins AS ({}) \
         SELECT COALESCE(MAX(id), 0)::bigint FROM ins",
        insert_json_from::<NewEventRow>(source, " CROSS JOIN lock RETURNING id")
    )
}

/// A creation to make: the row and event encoded on the caller's task.
pub(super) struct NewJob {
    pub row: NewJobRow,
    pub event: NewEventRow,
    pub quota: JobQuota,
    pub pending: bool,
    pub id: JobId,
    pub account: AccountId,
}

/// A queued creation and where its outcome goes.
struct Create {
    job: NewJob,
    reply: oneshot::Sender<StoreResult<()>>,
}

impl std::ops::Deref for Create {
    type Target = NewJob;

    fn deref(&self) -> &NewJob {
        &self.job
    }
}

/// Handle to the batching task; dropping it lets the task finish what is queued.
pub(super) struct JobCreates {
    lanes: Vec<mpsc::Sender<Create>>,
}

/// What a batch needs besides its requests.
#[derive(Clone)]
pub(super) struct Shared {
    pub pool: PgPool,
    pub counters: Arc<Counters>,
    pub events: Arc<watch::Sender<i64>>,
}

impl Shared {
    /// Notes a commit that wrote `written` changes since `started` and appended events
    /// up to `last_event`: the write counters, the commit clock, the event watch.
    pub(super) fn committed(&self, written: u64, started: Instant, last_event: i64) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.writes.fetch_add(written, Ordering::Relaxed);
        self.counters.durations.record(started.elapsed());
        publish(&self.events, last_event);
    }
}

impl JobCreates {
    /// Starts `lanes` lanes' tasks (on the current runtime; at most [`MAX_LANES`]);
    /// `max_connections` may bound them further, leaving the pool to everything else.
    pub fn spawn(shared: Shared, max_connections: u32, lanes: usize) -> Self {
        // Each lane's batch holds a connection; leave at least half the pool to the rest.
        let lanes = lanes.min(MAX_LANES).min(max_connections as usize / 2).max(1);
        let lanes = (0..lanes)
            .map(|_| {
                let (tx, rx) = mpsc::channel(2 * MAX_BATCH);
                tokio::spawn(dispatch(rx, shared.clone()));
                tx
            })
            .collect();
        Self { lanes }
    }

    /// Queues `create` in its lane; resolves once its batch committed (or it failed
    /// alone).
    pub async fn create(&self, job: NewJob) -> StoreResult<()> {
        let lane = &self.lanes[usize::from(shard(&job.row.uuid)) % self.lanes.len()];
        let (reply, answer) = oneshot::channel();
        lane.send(Create { job, reply }).await.map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }
}

/// One lane: takes a batch whenever the previous one is done; meanwhile requests
/// queue and the next batch grows.
async fn dispatch(mut queue: mpsc::Receiver<Create>, shared: Shared) {
    loop {
        let mut batch = Vec::with_capacity(64);
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // the store is gone and the queue is drained
        }
        // In a task of its own, so a panic fails its batch's requests only (their
        // answers are dropped: `Unavailable`), not the lane.
        let shared = shared.clone();
        let _ = tokio::spawn(async move { run(&shared, batch).await }).await;
    }
}

/// Commits one batch and answers every request of it.
async fn run(shared: &Shared, batch: Vec<Create>) {
    let started = Instant::now();
    match commit(&shared.pool, &batch).await {
        Ok((outcomes, last_event)) => {
            let written = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
            shared.committed(written, started, last_event);
            for (create, outcome) in batch.into_iter().zip(outcomes) {
                let _ = create.reply.send(outcome);
            }
        }
        Err(Failure::Commit(e)) => {
            // Whether it committed is unknown, as for any failed COMMIT; each request
            // of the batch gets the error (requests refused before it keep theirs).
            let e = Arc::new(e);
            for create in batch {
                let err = StoreError::Database { during: "job create (commit)", source: Box::new(Arc::clone(&e)) };
                let _ = create.reply.send(Err(err));
            }
        }
        Err(Failure::Statement(e)) => {
            // One request (or more) broke the batch: isolate it by running each
            // alone; their batch-mates commit.
            tracing::debug!(error = %e, size = batch.len(), "a job-create batch failed; retrying its jobs one by one");
            for create in batch {
                let outcome = create_one(shared, &create).await;
                let _ = create.reply.send(outcome);
            }
        }
    }
}

/// Why a batch did not commit.
enum Failure {
    /// A statement before COMMIT failed: retry the requests one by one.
    Statement(sqlx::Error),
    /// COMMIT itself failed.
    Commit(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Statement(e)
    }
}

/// Runs the batch in one transaction; per request its outcome, and the newest event id.
async fn commit(pool: &PgPool, batch: &[Create]) -> Result<(Vec<StoreResult<()>>, i64), Failure> {
    let mut outcomes: Vec<Option<StoreResult<()>>> = Vec::with_capacity(batch.len());
    let mut seen = HashSet::with_capacity(batch.len());
    for c in batch {
        // Two requests with one uuid in one batch: the later conflicts with the earlier.
        let dup = !seen.insert(c.id);
        outcomes.push(dup.then(|| Err(Subject::job(c.id, c.account).error(Violation::PrimaryKey))));
    }
    if outcomes.iter().all(Option::is_none) && batch.iter().all(|c| !c.quota.is_limited()) {
        let events: Vec<&NewEventRow> = batch.iter().map(|c| &c.event).collect();
        match one_trip(pool, &sorted_rows(batch.iter().map(|c| &c.row)), &events).await {
            Ok(last_event) => return Ok((batch.iter().map(|_| Ok(())).collect(), last_event)),
            // Refused by the database, so rolled back: a uuid that exists already, or
            // a bad row. The path below answers each request on its own.
            Err(sqlx::Error::Database(_)) => {}
            Err(e) => return Err(Failure::Commit(e)),
        }
    }
    let mut tx = pool.begin().await?;
    check_quotas(&mut tx, batch, &mut outcomes).await?;

    let rows = sorted_rows(batch.iter().zip(&outcomes).filter(|(_, o)| o.is_none()).map(|(c, _)| &c.row));
    let mut inserted = HashSet::with_capacity(rows.len());
    if !rows.is_empty() {
        let json = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let returned = sqlx::query(INSERT_JOBS.as_str()).bind(json).fetch_all(&mut *tx).await?;
        for r in returned {
            inserted.insert(r.try_get::<String, _>(0)?);
        }
    }
    let mut events = Vec::with_capacity(inserted.len());
    for (c, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        if outcome.is_some() {
            continue;
        }
        if inserted.contains(&c.row.uuid) {
            events.push(&c.event);
        } else {
            // Skipped by ON CONFLICT: a job with this uuid exists already.
            *outcome = Some(Err(Subject::job(c.id, c.account).error(Violation::PrimaryKey)));
        }
    }
    let last_event = events::append_json(&mut tx, &events).await?;
    tx.commit().await.map_err(Failure::Commit)?;
    Ok((outcomes.into_iter().map(|o| o.unwrap_or(Ok(()))).collect(), last_event))
}

/// The rows to insert in counter order. The insert trigger moves each job's
/// usage-counter row (account, shard): in the order of the rows, and locked until
/// COMMIT. Concurrent batches that took those rows in different orders would deadlock
/// (PostgreSQL breaks it after deadlock_timeout, 1 s), so every batch takes them in
/// one order.
fn sorted_rows<'a>(rows: impl Iterator<Item = &'a NewJobRow>) -> Vec<&'a NewJobRow> {
    let mut rows: Vec<&NewJobRow> = rows.collect();
    rows.sort_unstable_by(|a, b| {
        (a.account_uuid.as_str(), shard(&a.uuid)).cmp(&(b.account_uuid.as_str(), shard(&b.uuid)))
    });
    rows
}

/// The common batch (no quota to check, no uuid twice) in **one round trip**: one
/// call of `gantry_create_jobs` (migration 19), which inserts the jobs (their trigger
/// takes the usage counters), then takes the event lock and inserts the events, and
/// answers the newest event id. A call outside a transaction commits (durably:
/// `synchronous_commit=on`) before it answers, or rolls back whole at the first
/// error.
///
/// Why one trip: the path with a transaction of its own took five round trips then
/// (BEGIN, the insert, the event lock, the events, COMMIT; four since the events'
/// insert takes the lock itself), two of them while holding the event lock that every
/// event-writing transaction (placements, node reports) takes in turn; under `gantry
/// bench schedule` on PostgreSQL the submit's commit was most of submit → assigned
/// (p50 11 ms, p99 36 ms of 17 and 47). Why a function: the same statements sent as
/// one message of two (which takes no parameters, so the rows were dollar-quoted JSON
/// literals) made PostgreSQL lex, parse and plan ~30 KB of SQL per batch and then
/// parse the JSON, a third of its CPU, while every other batch waited. The call is a prepared statement with the
/// columns as array parameters (binary: nothing to escape, nothing to parse), and the
/// function's plans are cached per connection.
async fn one_trip(pool: &PgPool, rows: &[&NewJobRow], events: &[&NewEventRow]) -> Result<i64, sqlx::Error> {
    let call = NewJobRow::bind_pg_columns(rows, sqlx::query(CREATE_JOBS.as_str()));
    NewEventRow::bind_pg_columns(events, call).fetch_one(pool).await?.try_get(0)
}

/// [`one_trip`]'s statement: a parameter per column of each table.
static CREATE_JOBS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let count = <NewJobRow as Columns>::NAMES.len() + <NewEventRow as Columns>::NAMES.len();
    let params: Vec<String> = (1..=count).map(|n| Placeholders::Dollar.nth(n)).collect();
    format!("SELECT gantry_create_jobs({})", params.join(", "))
});

/// A job's usage-counter shard, as the database's `gantry_usage_shard` computes it
/// (migration 0006): the uuid's last hex digit.
fn shard(uuid: &str) -> u8 {
    uuid.bytes().last().map_or(0, |b| (b as char).to_digit(16).map_or(0, |d| d as u8))
}

/// Decides the quota of every request that has one: takes each such account's lock
/// (sorted, so concurrent batches cannot deadlock; before the event lock, as the
/// one-by-one path does), reads the counters once, then checks the requests in queue
/// order, counting the ones accepted before.
async fn check_quotas(
    tx: &mut sqlx::PgConnection,
    batch: &[Create],
    outcomes: &mut [Option<StoreResult<()>>],
) -> Result<(), sqlx::Error> {
    let accounts: BTreeSet<&str> = batch
        .iter()
        .zip(outcomes.iter())
        .filter(|(c, o)| o.is_none() && c.quota.is_limited())
        .map(|(c, _)| c.row.account_uuid.as_str())
        .collect();
    if accounts.is_empty() {
        return Ok(());
    }
    for account in &accounts {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('gantry.account_usage:' || $1, 0))")
            .bind(*account)
            .execute(&mut *tx)
            .await?;
    }
    let list: Vec<&str> = accounts.iter().copied().collect();
    let rows = sqlx::query(
        "SELECT account_uuid, SUM(pending_jobs)::bigint, SUM(job_bytes)::bigint FROM account_usage \
         WHERE account_uuid = ANY($1) GROUP BY account_uuid",
    )
    .bind(&list)
    .fetch_all(&mut *tx)
    .await?;
    let mut usage: HashMap<String, AccountUsage> = HashMap::with_capacity(rows.len());
    for r in rows {
        let (pending, bytes): (i64, i64) = (r.try_get(1)?, r.try_get(2)?);
        let u = AccountUsage {
            pending_jobs: u64::try_from(pending).unwrap_or(0),
            job_bytes: u64::try_from(bytes).unwrap_or(0),
        };
        usage.insert(r.try_get(0)?, u);
    }
    for (c, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        if outcome.is_some() || !c.quota.is_limited() {
            continue;
        }
        let u = usage.entry(c.row.account_uuid.clone()).or_default();
        let bytes = c.row.spec.len() as u64;
        match c.quota.check(*u, bytes, c.pending) {
            Ok(()) => {
                u.pending_jobs += u64::from(c.pending);
                u.job_bytes = u.job_bytes.saturating_add(bytes);
            }
            Err(e) => *outcome = Some(Err(StoreError::QuotaExceeded(e))),
        }
    }
    Ok(())
}

/// One request in a transaction of its own (the fallback when its batch failed).
async fn create_one(shared: &Shared, c: &Create) -> StoreResult<()> {
    let started = Instant::now();
    let conflict = write_error("job create", || Subject::job(c.id, c.account));
    let mut tx = shared.pool.begin().await.map_err(db("job create"))?;
    if c.quota.is_limited() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('gantry.account_usage:' || $1, 0))")
            .bind(&c.row.account_uuid)
            .execute(&mut *tx)
            .await
            .map_err(db("job create (quota lock)"))?;
        let usage = super::jobs::usage(&mut *tx, &c.row.account_uuid).await?;
        c.quota.check(usage, c.row.spec.len() as u64, c.pending).map_err(StoreError::QuotaExceeded)?;
    }
    insert_static(INSERT_ONE.as_str(), c.row.clone()).execute(&mut *tx).await.map_err(conflict)?;
    let id = events::append(&mut tx, std::slice::from_ref(&c.event)).await?;
    tx.commit().await.map_err(db("job create"))?;
    shared.committed(1, started, id);
    Ok(())
}

/// Tells this process's event readers that events up to `id` committed.
pub(super) fn publish(events: &watch::Sender<i64>, id: i64) {
    if id > 0 {
        events.send_if_modified(|v| {
            let moved = id > *v;
            *v = (*v).max(id);
            moved
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_inserts_list_the_declared_columns() {
        assert!(INSERT_JOBS.starts_with("INSERT INTO jobs (uuid, account_uuid, status,"), "{}", *INSERT_JOBS);
        assert!(INSERT_JOBS.contains("json_populate_recordset(NULL::jobs, $1::json)"), "{}", *INSERT_JOBS);
        assert!(INSERT_EVENTS.contains("INSERT INTO events (event_type, account_uuid, created_at_ms, data, job_uuid)"));
        assert!(
            INSERT_EVENTS
                .starts_with(&format!("WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({PG_EVENTS_LOCK}))")),
            "{}",
            *INSERT_EVENTS
        );
        assert!(INSERT_EVENTS.contains("$1::json) CROSS JOIN lock RETURNING id"), "{}", *INSERT_EVENTS);
    }

    #[test]
    fn the_batch_function_takes_the_declared_columns_in_order_then_the_event_lock() {
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let sql = words(include_str!("../../migrations/postgres/0019_job_batch_function.sql"));
        let at = |needle: &str| sql.find(needle).unwrap_or_else(|| panic!("{needle} missing from migration 19"));
        let params = |from: usize, count: usize| {
            (from..from + count).map(|n| Placeholders::Dollar.nth(n)).collect::<Vec<_>>().join(", ")
        };
        let (jobs, events) = (<NewJobRow as Columns>::NAMES.len(), <NewEventRow as Columns>::NAMES.len());
        let insert_jobs = at(&format!(
            "INSERT INTO jobs ({}) SELECT * FROM unnest({});",
            <NewJobRow as Columns>::LIST,
            params(1, jobs)
        ));
        let lock = at(&format!("PERFORM pg_advisory_xact_lock({PG_EVENTS_LOCK});"));
        let insert_events = at(&format!(
            "INSERT INTO events ({}) SELECT * FROM unnest({}) RETURNING id",
            <NewEventRow as Columns>::LIST,
            params(jobs + 1, events)
        ));
        assert!(insert_jobs < lock && lock < insert_events, "{sql}");
        assert_eq!(*CREATE_JOBS, format!("SELECT gantry_create_jobs({})", params(1, jobs + events)));
        assert!(!sql.contains("ON CONFLICT"), "a duplicate must fail the call, not be skipped: {sql}");
    }
}
