//! The lifecycle keeper: every activation finds what has overstayed and ends it.
//!
//! - a node silent for `node_lost_after` → LOST, its active runs FAILED ("node lost");
//! - a PENDING job past `timeout_assign_at_ms` → FAILED, saying why nothing fit;
//! - a run ASSIGNED/PREPARING longer than `max_timeout_start_ms` → FAILED (start timeout);
//! - a BATCH run RUNNING longer than `max_timeout_run_ms` → FAILED (run timeout); its
//!   node stops the container because the run is no longer desired.
//!
//! Each failed run goes through `app::runs::settle_job`, which retries or fails the job.
//! What counts as lost or overstayed, and the reasons recorded, are the pure rules of
//! `gantry_lifecycle::{nodes, timeouts}`; this module reads, asks them, and writes.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};

use gantry_lifecycle::{human, nodes, timeouts};
use gantry_store::JobTransition;
use gantry_types::job::JobStatus;

use crate::app::error::AppError;
use crate::app::runs::{fail_run, settle_job};
use crate::state::{AppState, now_ms};

/// Jobs of lost nodes' runs failed at once on PostgreSQL, where each store call in
/// flight holds a pooled connection: enough to share commits, few enough to leave the
/// pool to the syncs.
const WRITES_AT_ONCE_POOLED: usize = 32;

/// The same on SQLite, where a write in flight holds no connection (it waits in the
/// writer's queue and shares its group commit) and reads queue for the reader pool.
/// In `gantry bench node-loss --nodes 10000` (1,000 nodes lost, mostly in two passes),
/// lost jobs were failed at 190–310 per second with 32 at once (five passes; median
/// about 250/s), and at 200–1,310 per second with 256 at once (six passes; median
/// about 370/s).
const WRITES_AT_ONCE_QUEUED: usize = 256;

/// Lost nodes marked per transaction: a rack's worth in one commit, small enough that
/// the write does not hold SQLite's writer (or the event lock) long.
const MARK_CHUNK: usize = 256;

/// Runs activations until aborted.
pub async fn run(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.scheduling.timing.lifecycle_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = activate(&state).await
            && !super::leader::fenced(&state, &e)
        {
            tracing::warn!(error = %crate::app::error::chain(&e), "lifecycle pass failed");
        }
    }
}

/// One activation.
pub async fn activate(state: &AppState) -> Result<(), AppError> {
    let now = now_ms();
    let lost_before = now - state.scheduling.timing.node_lost_after.as_millis() as i64;

    // Lost nodes first: their runs' failures feed the retries below. Right after a
    // restart, silence is the server's fault, not the nodes': wait one period.
    let all_nodes = state.store.node_list_all().await?;
    let mut active = state.store.run_list_active().await?;
    // The run and node gauges come from this read (see `metrics::gauges`).
    crate::metrics::gauges::record_cluster(&state.metrics, &all_nodes, &active);
    let mut lost = std::collections::HashSet::new();
    let leading_since = *state.scheduling.leading_since.lock().expect("leading_since poisoned");
    let grace_over = leading_since.elapsed() >= state.scheduling.timing.node_lost_after;
    let last_heard =
        |n: &gantry_store::NodeRecord| nodes::last_heard(n.last_seen_at_ms, state.signals.last_contact(n.uuid, now));
    // Judged after the reads, so a sync that arrived meanwhile (its heartbeat not yet
    // in the store, so the store's compare-and-set below would not see it) counts.
    // Each silent node's name and silence, for the log and its runs' reason.
    let silent: std::collections::HashMap<gantry_types::NodeId, (String, i64)> = all_nodes
        .iter()
        .filter(|n| nodes::is_lost(n.status, last_heard(n), lost_before, grace_over))
        .map(|n| (n.uuid, (n.name.clone(), now - last_heard(n))))
        .collect();
    // Marked in batches, one transaction per chunk: each mark was a write waiting for
    // its commit, and a thousand nodes lost together (a rack, a partition) took 14 s
    // one by one at 10,000 nodes (`gantry bench node-loss`), the last ones declared
    // long after the loss window; 32 at once still cost a commit (and an event-lock
    // turn on PostgreSQL) per node.
    let ids: Vec<gantry_types::NodeId> = silent.keys().copied().collect();
    let mut marked = Vec::with_capacity(ids.len());
    // A chunk that fails ends the marking, but the nodes already marked still get
    // their runs failed below: the next pass sees them LOST and would not.
    let mut failure = None;
    let marking = std::time::Instant::now();
    for chunk in ids.chunks(MARK_CHUNK) {
        match state.store.node_mark_lost_many(chunk, lost_before, now).await {
            Ok(done) => marked.extend(done.into_iter().map(|node| (node, silent[&node].clone()))),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let marked_ms = marking.elapsed().as_millis() as u64;
    let mut reasons = std::collections::HashMap::new();
    for (node, (name, silence)) in marked {
        tracing::warn!(%node, "node lost: no heartbeat for {}", human(silence));
        state.signals.bump(node);
        state.signals.capacity_changed(node);
        lost.insert(node);
        reasons.insert(node, nodes::lost_run_reason(&name, silence));
    }
    // Their runs fail concurrently too, one job's runs in order: `settle_job` decides
    // from all of a job's runs, and a gang's runs failing side by side would each
    // decide from a read that misses the other's failure.
    let mut by_job: std::collections::HashMap<gantry_types::JobId, Vec<(gantry_store::RunRecord, String)>> =
        std::collections::HashMap::new();
    for run in active.iter().filter(|r| lost.contains(&r.run.node_uuid)) {
        let reason = reasons[&run.run.node_uuid].clone();
        by_job.entry(run.run.job_uuid).or_default().push((run.clone(), reason));
    }
    let (jobs, failing) = (by_job.len(), std::time::Instant::now());
    stream::iter(by_job.into_values())
        .map(|runs| async move {
            for (run, reason) in runs {
                fail_run(state, &run, reason).await?;
            }
            Ok::<_, AppError>(())
        })
        .buffer_unordered(if state.store.backend() == "sqlite" { WRITES_AT_ONCE_QUEUED } else { WRITES_AT_ONCE_POOLED })
        .try_collect::<Vec<()>>()
        .await?;
    if !lost.is_empty() {
        // One line per mass loss with what it cost: how long the marking and the
        // failing of their runs took is what delays the retries' placement.
        tracing::warn!(
            nodes = lost.len(),
            jobs,
            marked_ms,
            failed_ms = failing.elapsed().as_millis() as u64,
            "lost nodes marked and their runs failed"
        );
    }
    if let Some(e) = failure {
        return Err(e.into());
    }

    // Start and run timeouts. The runs of lost nodes have just failed; runs placed
    // since the read above are too new to have timed out, so no second read is needed.
    active.retain(|r| !lost.contains(&r.run.node_uuid));
    for run in &active {
        let snapshot = &run.run.job_snapshot;
        let facts = timeouts::ActiveRun {
            status: run.run.status,
            created_at_ms: run.run.created_at.0,
            started_at_ms: run.run.started_at_ms,
            start_limit_ms: snapshot["max_timeout_start_ms"].as_i64(),
            run_limit_ms: snapshot["max_timeout_run_ms"].as_i64(),
        };
        if let Some(why) = timeouts::run_overstayed(&facts, now) {
            fail_run(state, run, why).await?;
        }
    }

    // Assignment timeouts, among the PENDING jobs old enough to have passed one.
    let old_enough = gantry_types::list::JobFilter {
        statuses: vec![JobStatus::Pending],
        created_at: Some(gantry_types::list::Range {
            min: None,
            max: Some(now - state.scheduling.timing.assign_sweep_min_age.as_millis() as i64),
        }),
        ..Default::default()
    };
    let oldest_first =
        gantry_types::list::Paging { page: 1, limit: crate::background::scheduler::PASS_LIMIT, newest_first: false };
    for job in state.store.job_list(None, &old_enough, oldest_first).await?.items {
        let why = state.scheduling.pending_reasons.read().expect("reasons poisoned").get(&job.uuid).cloned();
        if let Some(reason) =
            timeouts::assignment_expired(job.timeout_assign_at_ms, job.max_timeout_assign_ms, why.as_deref(), now)
        {
            let t = JobTransition {
                from: vec![JobStatus::Pending],
                to: JobStatus::Failed,
                reason: Some(reason),
                now_ms: now,
            };
            state.store.job_transition(None, job.uuid, &t).await?;
        }
    }

    // Jobs whose runs all ended without a report reaching settle (e.g. a crash
    // between the two writes) are settled here too.
    for job in state.store.job_list(None, &cancelling_filter(), gantry_types::list::Paging::default()).await?.items {
        settle_job(state, job.uuid).await?;
    }
    Ok(())
}

fn cancelling_filter() -> gantry_types::list::JobFilter {
    gantry_types::list::JobFilter { statuses: vec![JobStatus::Cancelling], ..Default::default() }
}
