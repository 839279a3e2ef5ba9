//! The scheduler's placement writes: in chunks, and in flight while the next pass
//! plans.
//!
//! Why in flight: a pass used to plan, write, and only then look at what arrived
//! meanwhile, so a job submitted during a write waited for that write (a group commit,
//! i.e. an fsync, on SQLite) before it was even planned. Now a pass applies its plan
//! to the model at once (the runs take their capacity, the jobs leave the queue) and
//! hands the write here; the next wake-up plans against that model straight away,
//! without waiting for the write of the pass before (see [`Writes::start`]).
//! This is safe because the model only ever *over*-counts usage meanwhile: a planned
//! job that turns out not to be PENDING any more (the compare-and-set skipped it), or
//! a write that failed, leaves capacity the model thinks taken, never the reverse; the
//! scheduler rebuilds its model when [`Writes::settle`] reports either. What must not
//! happen is the model rereading the store while a write is in flight (it would lose
//! runs it planned that the store does not show yet and think their capacity free):
//! every refresh that reads settles the writes first.
//!
//! Why chunks: on PostgreSQL one transaction of a few thousand placements took
//! 0.9–1.7 s, and held the event-log lock (taken at the end of each write, until its
//! COMMIT) long enough that node syncs queued behind it and a node was declared lost.
//! At most [`CHUNK`] jobs go in one `run_place` call (one transaction, one
//! compare-and-set per job, as before), so other writers get a turn between chunks,
//! and each chunk's nodes are told as soon as their own chunk commits.
//!
//! Fencing: the writes run in one task of their own (one write at a time, in the
//! order planned), inside the lease's fence the scheduler runs under
//! (`gantry_store::fence`), so each is refused once the lease is gone; dropping
//! [`Writes`] (the scheduler stopping) aborts the task and what it was writing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use gantry_store::JobPlacement;
use tokio::sync::mpsc;

use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// Most jobs placed per transaction.
pub const CHUNK: usize = 256;
/// Most planned jobs handed to the writer and not yet written: a pass that would hand
/// over more first waits for writes to finish (backpressure on the planner when the
/// store is the bottleneck).
const MAX_QUEUED: usize = 4 * CHUNK;

/// What one chunk's write came to: the jobs it was given, and how many it placed.
type Written = (usize, Result<usize, AppError>);

/// The one task writing placements, in order, and the channels to and from it.
struct Writer {
    queue: mpsc::UnboundedSender<Vec<JobPlacement>>,
    done: mpsc::UnboundedReceiver<Written>,
    task: tokio::task::JoinHandle<()>,
}

/// The writes in flight.
pub struct Writes {
    state: Arc<AppState>,
    writer: Option<Writer>,
    /// Jobs handed to the writer whose outcome has not been collected yet.
    outstanding: usize,
    /// A write finished with fewer jobs placed than planned, or failed, since the
    /// last [`Writes::settle`].
    spoiled: Option<Result<usize, AppError>>,
}

impl Writes {
    /// No writes yet.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state, writer: None, outstanding: 0, spoiled: None }
    }

    /// Hands `placements` to the writer and returns at once, unless more than
    /// [`MAX_QUEUED`] jobs would then wait to be written.
    ///
    /// Why not wait for the write in flight: a pass that did (one write at a time)
    /// kept the next pass from starting, so a job submitted meanwhile was planned only
    /// after that write's COMMIT. On PostgreSQL a placement write is several round
    /// trips plus a WAL flush taken in turn with the submits' and the node reports'
    /// batches (the event lock), a wait of its own (`gantry bench schedule`: p50 of
    /// 20 ms submit → assigned there against 1 ms on SQLite).
    pub async fn start(&mut self, placements: Vec<JobPlacement>) {
        if placements.is_empty() {
            return;
        }
        self.outstanding += placements.len();
        let writer = self.writer.get_or_insert_with(|| spawn_writer(Arc::clone(&self.state)));
        if writer.queue.send(placements).is_err() {
            // The writer ended (it only does when its task panicked): `settle` and
            // `reap` report it as a failed write.
            self.writer_gone();
            return;
        }
        while self.outstanding > MAX_QUEUED {
            self.wait_one().await;
        }
    }

    /// Collects the writes that finished, without waiting; true if one of them
    /// placed fewer jobs than planned or failed (then [`Writes::settle`] says which).
    pub async fn reap(&mut self) -> bool {
        while let Some(outcome) = self.writer.as_mut().and_then(|w| w.done.try_recv().ok()) {
            self.account(outcome);
        }
        if self.writer.as_ref().is_some_and(|w| w.task.is_finished()) && self.outstanding > 0 {
            self.writer_gone();
        }
        self.spoiled.is_some()
    }

    /// Waits for every write handed over. `Ok(true)`: every planned job was placed;
    /// `Ok(false)`: some were no longer PENDING (the model must be rebuilt); `Err`: a
    /// write failed (likewise).
    pub async fn settle(&mut self) -> Result<bool, AppError> {
        while self.outstanding > 0 {
            self.wait_one().await;
        }
        match self.spoiled.take() {
            None => Ok(true),
            Some(Ok(missing)) => {
                tracing::info!(missing, "some planned jobs were no longer pending; rebuilding the scheduler's model");
                Ok(false)
            }
            Some(Err(e)) => Err(e),
        }
    }

    async fn wait_one(&mut self) {
        let outcome = match self.writer.as_mut() {
            Some(w) => w.done.recv().await,
            None => None,
        };
        match outcome {
            Some(outcome) => self.account(outcome),
            None => self.writer_gone(),
        }
    }

    fn account(&mut self, (planned, outcome): Written) {
        self.outstanding = self.outstanding.saturating_sub(planned);
        match outcome {
            Ok(placed) if placed == planned => {}
            Ok(placed) => {
                if !matches!(self.spoiled, Some(Err(_))) {
                    let before = self.spoiled.take().and_then(Result::ok).unwrap_or(0);
                    self.spoiled = Some(Ok(before + planned - placed));
                }
            }
            Err(e) => self.spoiled = Some(Err(e)),
        }
    }

    /// The writer task ended with writes outstanding: they count as failed.
    fn writer_gone(&mut self) {
        if let Some(w) = self.writer.take() {
            w.task.abort();
        }
        self.outstanding = 0;
        self.spoiled = Some(Err(AppError::internal("placement writer ended")));
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        if let Some(w) = &self.writer {
            w.task.abort();
        }
    }
}

/// Starts the writer, inside the caller's fence (task-locals do not follow a spawn).
fn spawn_writer(state: Arc<AppState>) -> Writer {
    let (queue, rx) = mpsc::unbounded_channel();
    let (tx, done) = mpsc::unbounded_channel();
    let work = writer(state, rx, tx);
    let task = match gantry_store::fence::current() {
        Some(fence) => tokio::spawn(gantry_store::fence::scope(fence, work)),
        None => tokio::spawn(work),
    };
    Writer { queue, done, task }
}

/// Writes what the passes hand over, one chunk at a time (two placement transactions
/// at once deadlocked on PostgreSQL: each updates the account's usage rows by trigger
/// and then takes the event-log lock; SQLite's one writer serializes them anyway).
/// Whatever queued while a chunk was written goes in the next, up to [`CHUNK`] jobs:
/// under a steady stream one transaction carries the jobs of several passes.
async fn writer(
    state: Arc<AppState>,
    mut queue: mpsc::UnboundedReceiver<Vec<JobPlacement>>,
    done: mpsc::UnboundedSender<Written>,
) {
    let mut pending: VecDeque<JobPlacement> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match queue.recv().await {
                Some(p) => pending.extend(p),
                None => return,
            }
        }
        while pending.len() < CHUNK {
            match queue.try_recv() {
                Ok(p) => pending.extend(p),
                Err(_) => break,
            }
        }
        let mut chunk: Vec<JobPlacement> = pending.drain(..pending.len().min(CHUNK)).collect();
        stamp(&mut chunk, now_ms());
        let planned = chunk.len();
        let outcome = write(Arc::clone(&state), chunk).await;
        if done.send((planned, outcome)).is_err() {
            return;
        }
    }
}

/// Dates a chunk's placements (the jobs' `updated_at`, the runs' `created_at`) when
/// their write begins, not when they were planned: a placement may wait here behind
/// the write in flight, and a run's `created_at` minus its job's is what `gantry
/// bench schedule` reports as submit → assigned, so the wait must count.
fn stamp(chunk: &mut [JobPlacement], now: i64) {
    for p in chunk {
        p.now_ms = now;
        for r in &mut p.runs {
            r.run.created_at = gantry_types::Timestamp(now);
            r.run.updated_at = gantry_types::Timestamp(now);
        }
    }
}

/// One chunk: the compare-and-set write, then the nodes that got runs are told and
/// the placement latency observed (both only for what committed).
async fn write(state: Arc<AppState>, chunk: Vec<JobPlacement>) -> Result<usize, AppError> {
    let started = Instant::now();
    let placed = match state.store.run_place(&chunk).await {
        Ok(placed) => placed,
        Err(e) => {
            // The model counts these runs; the next pass must hear it and rebuild.
            state.signals.schedule.notify_one();
            return Err(e.into());
        }
    };
    if placed.len() < chunk.len() {
        state.signals.schedule.notify_one();
    }
    let took = started.elapsed();
    if took.as_millis() >= 500 {
        tracing::warn!(
            jobs = chunk.len(),
            placed = placed.len(),
            write_ms = took.as_millis() as u64,
            "slow placement write"
        );
    }
    let committed = now_ms();
    let placed_set: std::collections::HashSet<_> = placed.iter().collect();
    for p in chunk.iter().filter(|p| placed_set.contains(&p.job)) {
        if let Some(run) = p.runs.first() {
            state.scheduling.recent_placements.record(run.run.account_uuid, p.now_ms);
            // From (re-)entering PENDING (the job's updated_at, which the run's snapshot
            // carries) to the placement's commit.
            let since = run.run.job_snapshot["updated_at"]
                .as_str()
                .and_then(gantry_types::Timestamp::parse)
                .map_or(p.now_ms, |t| t.0);
            state.metrics.placement_latency.observe((committed - since).max(0) as f64 / 1000.0);
        }
        for r in &p.runs {
            state.signals.bump(r.run.node_uuid);
        }
    }
    Ok(placed.len())
}
