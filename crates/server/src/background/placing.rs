//! The scheduler's placement writes: in chunks, and in flight while the next pass
//! plans.
//!
//! Why in flight: a pass used to plan, write, and only then look at what arrived
//! meanwhile, so a job submitted during a write waited for that write (a group commit,
//! i.e. an fsync, on SQLite) before it was even planned. Now a pass applies its plan
//! to the model at once (the runs take their capacity, the jobs leave the queue) and
//! hands the write here; the next wake-up plans against that model straight away.
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
//! Fencing: the writes run in tasks of their own, inside the lease's fence the
//! scheduler runs under (`gantry_store::fence`), so each is refused once the lease is
//! gone; dropping [`Writes`] (the scheduler stopping) aborts those still in flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use gantry_store::JobPlacement;

use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// Most jobs placed per transaction.
pub const CHUNK: usize = 256;
/// Most chunk writes in flight: a pass that would start more first waits for the
/// oldest (backpressure on the planner when the store is the bottleneck). One: two
/// placement transactions at once deadlocked on PostgreSQL (seen in `gantry bench
/// schedule`: each updates the account's usage row by trigger and then takes the
/// event-log lock, in opposite orders), and SQLite's one writer serializes them anyway.
const MAX_IN_FLIGHT: usize = 1;

/// What one chunk's write came to.
struct Written {
    planned: usize,
    placed: usize,
}

/// The writes in flight, oldest first.
pub struct Writes {
    state: Arc<AppState>,
    in_flight: VecDeque<tokio::task::JoinHandle<Result<Written, AppError>>>,
    /// A write finished with fewer jobs placed than planned, or failed, since the
    /// last [`Writes::settle`].
    spoiled: Option<Result<usize, AppError>>,
}

impl Writes {
    /// No writes yet.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state, in_flight: VecDeque::new(), spoiled: None }
    }

    /// Starts writing `placements`, in chunks of [`CHUNK`] jobs.
    pub async fn start(&mut self, placements: Vec<JobPlacement>) {
        let mut placements = placements.into_iter().peekable();
        while placements.peek().is_some() {
            let chunk: Vec<JobPlacement> = placements.by_ref().take(CHUNK).collect();
            while self.in_flight.len() >= MAX_IN_FLIGHT {
                self.wait_oldest().await;
            }
            let state = Arc::clone(&self.state);
            let write = write(state, chunk);
            let task = match gantry_store::fence::current() {
                Some(fence) => tokio::spawn(gantry_store::fence::scope(fence, write)),
                None => tokio::spawn(write),
            };
            self.in_flight.push_back(task);
        }
    }

    /// Collects the writes that finished, without waiting; true if one of them
    /// placed fewer jobs than planned or failed (then [`Writes::settle`] says which).
    pub async fn reap(&mut self) -> bool {
        while self.in_flight.front().is_some_and(|t| t.is_finished()) {
            self.wait_oldest().await;
        }
        self.spoiled.is_some()
    }

    /// Waits for every write in flight. `Ok(true)`: every planned job was placed;
    /// `Ok(false)`: some were no longer PENDING (the model must be rebuilt); `Err`: a
    /// write failed (likewise).
    pub async fn settle(&mut self) -> Result<bool, AppError> {
        while !self.in_flight.is_empty() {
            self.wait_oldest().await;
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

    async fn wait_oldest(&mut self) {
        let Some(task) = self.in_flight.pop_front() else { return };
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(AppError::internal(format!("placement write task ended: {e}"))),
        };
        match outcome {
            Ok(w) if w.placed == w.planned => {}
            Ok(w) => {
                if !matches!(self.spoiled, Some(Err(_))) {
                    let before = self.spoiled.take().and_then(Result::ok).unwrap_or(0);
                    self.spoiled = Some(Ok(before + w.planned - w.placed));
                }
            }
            Err(e) => self.spoiled = Some(Err(e)),
        }
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        for task in &self.in_flight {
            task.abort();
        }
    }
}

/// One chunk: the compare-and-set write, then the nodes that got runs are told and
/// the placement latency observed (both only for what committed).
async fn write(state: Arc<AppState>, chunk: Vec<JobPlacement>) -> Result<Written, AppError> {
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
    Ok(Written { planned: chunk.len(), placed: placed.len() })
}
