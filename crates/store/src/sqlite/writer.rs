//! The SQLite write path: one writer thread, group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every COMMIT is an
//! fsync (milliseconds on real disks). Committing each request separately would cap
//! the store at a few hundred writes per second however many cores there are. So
//! every write is a closure sent to one dedicated OS thread that owns the write
//! connection. The thread blocks for the first queued closure, takes everything else
//! already queued (up to [`MAX_BATCH`]), and runs the lot in **one** transaction:
//!
//! ```text
//! BEGIN IMMEDIATE
//!   SAVEPOINT w; op 1; RELEASE w            -- ok
//!   SAVEPOINT w; op 2; ROLLBACK TO w; ...   -- failed: undone alone, gets its error
//!   ...
//! COMMIT                                    -- one fsync for the whole batch
//! ```
//!
//! and only then replies to each caller (a tokio oneshot), so `Ok` still means
//! "durable". While one batch's fsync runs, the next batch queues up: the busier the
//! store, the more writes share each fsync. If COMMIT fails, every op of the batch
//! gets the error. A plain OS thread (not `spawn_blocking`) because it lives as long
//! as the store and must never wait behind the runtime's blocking pool.
//!
//! Job creations also add to their account's usage counters through the batch's
//! [`UsageBatch`], which moves each account's row once, just before COMMIT (see
//! [`super::usage`]).
//!
//! After each commit the thread reads the newest event id (the primary key's maximum,
//! one index probe) and publishes it on the event watch when it moved, so readers of
//! the event log wake once per commit that appended events, not per write.
//!
//! Shutdown: dropping the [`Writer`] closes the channel; the thread finishes what is
//! queued, closes the connection and exits, and the drop joins it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::usage::UsageBatch;
use crate::{StoreError, StoreResult, WriteStats};

/// Most operations per transaction: bounds the latency one batch adds to its last op.
const MAX_BATCH: usize = 2048;

/// Queue capacity: callers beyond it wait (asynchronously) for room, which is the
/// store's backpressure.
const QUEUE: usize = 2 * MAX_BATCH;

/// A failure of the batch's own statements (BEGIN, COMMIT, savepoints), shared by
/// every op of the batch: `rusqlite::Error` is not `Clone`, an `Arc` of it is an error.
#[derive(Clone)]
struct BatchError {
    during: &'static str,
    error: Arc<rusqlite::Error>,
}

impl BatchError {
    fn to_store_error(&self) -> StoreError {
        StoreError::Database { during: self.during, source: Box::new(Arc::clone(&self.error)) }
    }
}

/// A queued write, type-erased so one channel carries every result type.
trait PendingWrite: Send {
    /// Runs the operation (inside its savepoint); `true` if it succeeded.
    fn run(&mut self, conn: &Connection, usage: &mut UsageBatch) -> bool;
    /// Replies to the caller once the transaction ended (`Err`: it did not commit).
    fn finish(self: Box<Self>, batch: Result<(), &BatchError>);
}

/// The one implementation of [`PendingWrite`]: a closure and where its result goes.
struct Op<F, R> {
    work: Option<F>,
    outcome: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<F, R> PendingWrite for Op<F, R>
where
    F: FnOnce(&Connection, &mut UsageBatch) -> StoreResult<R> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection, usage: &mut UsageBatch) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A bug in one op must not kill the thread every write depends on.
        let outcome = catch_unwind(AssertUnwindSafe(|| work(conn, usage))).unwrap_or_else(|_| {
            tracing::error!("a SQLite write operation panicked; it was rolled back");
            Err(StoreError::Unavailable)
        });
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, batch: Result<(), &BatchError>) {
        let outcome = match (self.outcome, batch) {
            // The op's own failure is the most precise answer, commit or not.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e.to_store_error()),
            (None, Ok(())) => Err(StoreError::Unavailable), // not reached: every op runs
        };
        // The caller may have stopped waiting (request cancelled); the write stands
        // anyway, as with any database.
        let _ = self.reply.send(outcome);
    }
}

/// Counters behind [`WriteStats`].
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    durations: crate::stats::CommitClock,
}

/// Handle to the writer thread.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn PendingWrite>>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the thread; it owns `conn` from now on.
    pub fn spawn(conn: Connection, events: watch::Sender<i64>) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("gantry-sqlite-writer".into())
            .spawn(move || run(conn, rx, &thread_counters, &events))
            .map_err(|e| StoreError::Database { during: "starting the writer thread", source: Box::new(e) })?;
        Ok(Self { queue: Some(tx), thread: Some(thread), counters })
    }

    /// Runs `work` in the next group commit; resolves once that commit is durable.
    pub async fn write<R, F>(&self, work: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.write_counted(move |conn, _| work(conn)).await
    }

    /// [`Self::write`] for a job creation: `work` also gets the batch's usage
    /// counters, to check quotas against and add to.
    pub async fn write_counted<R, F>(&self, work: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection, &mut UsageBatch) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Box<dyn PendingWrite> = Box::new(Op { work: Some(work), outcome: None, reply });
        let queue = self.queue.as_ref().ok_or(StoreError::Unavailable)?;
        queue.send(op).await.map_err(|_| StoreError::Unavailable)?;
        // A dropped reply means the thread died (it never drops a queued op otherwise).
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    /// The counters so far.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            commit_times: self.counters.durations.snapshot(),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain what is queued and exit; joining
        // means that when the store is gone, its writes are committed and the file
        // is closed (a reopen right after sees everything).
        drop(self.queue.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }
}

/// The thread's loop: one batch per iteration until the channel is closed and empty.
fn run(
    conn: Connection,
    mut queue: mpsc::Receiver<Box<dyn PendingWrite>>,
    counters: &Counters,
    events: &watch::Sender<i64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut usage = UsageBatch::default();
    // Blocks for the first op, then takes whatever else is already queued.
    while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        commit_batch(&conn, &mut batch, &mut usage, counters, events);
    }
    tracing::debug!("SQLite writer stopped");
}

/// Statements controlling the batch; cached, so each costs no parsing.
fn exec(conn: &Connection, sql: &'static str) -> Result<(), BatchError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]).map(drop))
        .map_err(|e| BatchError { during: sql_name(sql), error: Arc::new(e) })
}

fn sql_name(sql: &'static str) -> &'static str {
    match sql {
        "BEGIN IMMEDIATE" => "begin (group commit)",
        "COMMIT" => "commit (group commit)",
        "UPDATE account_usage" => "usage counters (group commit)",
        _ => "savepoint (group commit)",
    }
}

/// Runs and commits one batch, counts it, then replies to every op.
fn commit_batch(
    conn: &Connection,
    batch: &mut Vec<Box<dyn PendingWrite>>,
    usage: &mut UsageBatch,
    counters: &Counters,
    events: &watch::Sender<i64>,
) {
    let started = std::time::Instant::now();
    let outcome = run_in_transaction(conn, batch, usage);
    if outcome.is_err() {
        usage.clear();
    }
    match &outcome {
        // Counted before replying, so a caller that saw its write acknowledged also
        // sees it in the stats.
        Ok(writes) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.writes.fetch_add(*writes, Ordering::Relaxed);
            counters.durations.record(started.elapsed());
            publish_events(conn, events);
        }
        // Whatever failed, leave the connection clean for the next batch.
        Err(_) if !conn.is_autocommit() => {
            let _ = conn.execute_batch("ROLLBACK");
        }
        Err(_) => {}
    }
    for op in batch.drain(..) {
        op.finish(outcome.as_ref().map(drop));
    }
}

/// Publishes the newest committed event id when it moved (waking event readers).
pub(super) fn publish_events(conn: &Connection, events: &watch::Sender<i64>) {
    let newest: rusqlite::Result<i64> =
        conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events").and_then(|mut s| s.query_row([], |r| r.get(0)));
    match newest {
        Ok(id) => {
            events.send_if_modified(|v| {
                let moved = id > *v;
                *v = (*v).max(id);
                moved
            });
        }
        Err(e) => tracing::warn!(error = %e, "could not read the newest event id"),
    }
}

fn run_in_transaction(
    conn: &Connection,
    batch: &mut [Box<dyn PendingWrite>],
    usage: &mut UsageBatch,
) -> Result<u64, BatchError> {
    // IMMEDIATE: take the write lock up front. Another process (the admin CLI) may
    // hold it; busy_timeout waits for it here rather than failing mid-batch.
    exec(conn, "BEGIN IMMEDIATE")?;
    let mut ok = 0;
    for op in batch.iter_mut() {
        exec(conn, "SAVEPOINT w")?;
        let succeeded = op.run(conn, usage);
        usage.op_done();
        if succeeded {
            ok += 1;
        } else {
            if conn.is_autocommit() {
                // Some errors (disk full, I/O) make SQLite roll back the whole
                // transaction: the earlier ops are lost too, so the batch fails.
                return Err(BatchError {
                    during: "write (transaction rolled back by SQLite)",
                    error: Arc::new(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                        Some("an operation's error rolled back the batch".into()),
                    )),
                });
            }
            exec(conn, "ROLLBACK TO w")?;
        }
        exec(conn, "RELEASE w")?;
    }
    // The creations' counters, in the transaction of their jobs.
    usage.flush(conn).map_err(|e| BatchError { during: sql_name("UPDATE account_usage"), error: Arc::new(e) })?;
    exec(conn, "COMMIT")?;
    Ok(ok)
}
