//! Ending the runs of lost nodes, beside the lifecycle passes that declare them lost.
//!
//! A mass loss (a rack, a partition: a thousand nodes of 10,000 in `gantry bench
//! node-loss`) leaves a thousand runs to fail, charge and settle. Done inside the
//! pass that declared the loss, it kept the next pass from starting, so nodes that
//! crossed the loss threshold meanwhile were declared lost one to two seconds late.
//! So the pass hands the runs to this task and goes on; the task ends them in
//! batches (`app::runs::fail_runs`: a handful of store calls per batch, each job's
//! runs in the same batch, since its settlement decides from all of them).
//!
//! Handing over is a hint, as everywhere in the reconcilers: every pass hands over
//! *all* the active runs it read on LOST nodes, so runs this task did not end (an
//! error, a leader change, a crash) are handed over again by the next pass. A run
//! handed over twice is ended once (the update is a compare-and-set on the run being
//! active). The task runs in the lifecycle loop's fence scope and stops with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use gantry_store::RunRecord;
use gantry_types::{JobId, JobRunId};
use tokio::sync::mpsc;

use crate::app::error::AppError;
use crate::app::runs::fail_runs;
use crate::state::AppState;

/// Runs of lost nodes ended per batch: a rack's worth in a few commits, small enough
/// that no one write holds SQLite's writer (or the event lock) long.
const FAIL_BATCH: usize = 256;

/// Batches in flight at once: while one commits, the next reads and decides.
const BATCHES_AT_ONCE: usize = 2;

/// A run to end and why.
type Doomed = (RunRecord, String);

/// Where a lifecycle pass hands over the runs of lost nodes.
pub struct Ender {
    queue: mpsc::UnboundedSender<Vec<Doomed>>,
}

impl Ender {
    /// Hands over runs to end (none: nothing is sent).
    pub fn end(&self, runs: impl IntoIterator<Item = Doomed>) {
        let runs: Vec<Doomed> = runs.into_iter().collect();
        if !runs.is_empty() {
            // The task stops only with the loop that owns this sender.
            let _ = self.queue.send(runs);
        }
    }
}

/// Aborts the task when the lifecycle loop that started it stops.
pub struct Ending(tokio::task::JoinHandle<()>);

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the task, in the caller's fence scope (the leader's), so its writes are
/// fenced like the pass's own.
pub fn start(state: Arc<AppState>) -> (Ender, Ending) {
    let (queue, handed) = mpsc::unbounded_channel();
    let work = run(state, handed);
    let handle = match gantry_store::fence::current() {
        Some(fence) => tokio::spawn(gantry_store::fence::scope(fence, work)),
        None => tokio::spawn(work),
    };
    (Ender { queue }, Ending(handle))
}

/// How long a run this task ended is remembered, so the passes that read it active
/// before it ended (while this task was busy) do not make it end it again: far longer
/// than a pass's reads take.
const REMEMBER_ENDED: Duration = Duration::from_secs(30);

async fn run(state: Arc<AppState>, mut handed: mpsc::UnboundedReceiver<Vec<Doomed>>) {
    let mut batch = Vec::new();
    let mut ended: HashMap<JobRunId, Instant> = HashMap::new();
    loop {
        if handed.recv_many(&mut batch, usize::MAX).await == 0 {
            return;
        }
        ended.retain(|_, at| at.elapsed() < REMEMBER_ENDED);
        // One entry per run, whatever number of passes handed it over meanwhile.
        let runs: HashMap<JobRunId, Doomed> = batch
            .drain(..)
            .flatten()
            .filter(|d| !ended.contains_key(&d.0.run.uuid))
            .map(|d| (d.0.run.uuid, d))
            .collect();
        if runs.is_empty() {
            continue;
        }
        let (count, started) = (runs.len(), Instant::now());
        let ids: Vec<JobRunId> = runs.keys().copied().collect();
        match end(&state, runs.into_values().collect()).await {
            Ok(jobs) => {
                ended.extend(ids.into_iter().map(|id| (id, Instant::now())));
                tracing::warn!(
                    runs = count,
                    jobs,
                    ms = started.elapsed().as_millis() as u64,
                    "runs of lost nodes failed"
                );
            }
            // The next pass hands them over again.
            Err(e) if super::leader::fenced(&state, &e) => {}
            Err(e) => tracing::warn!(error = %crate::app::error::chain(&e), "failing the runs of lost nodes failed"),
        }
    }
}

/// Ends `runs` in batches of whole jobs; how many jobs they were.
async fn end(state: &AppState, runs: Vec<Doomed>) -> Result<usize, AppError> {
    let mut by_job: BTreeMap<JobId, Vec<Doomed>> = BTreeMap::new();
    for doomed in runs {
        by_job.entry(doomed.0.run.job_uuid).or_default().push(doomed);
    }
    let jobs = by_job.len();
    let mut batches: Vec<Vec<Doomed>> = vec![];
    for runs in by_job.into_values() {
        match batches.last_mut() {
            Some(batch) if batch.len() + runs.len() <= FAIL_BATCH => batch.extend(runs),
            _ => batches.push(runs),
        }
    }
    stream::iter(batches)
        .map(|batch| async move { fail_runs(state, &batch).await })
        .buffer_unordered(BATCHES_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(jobs)
}
