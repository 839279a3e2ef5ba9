//! The lifecycle keeper: every period it finds what has overstayed and ends it.
//!
//! - a node silent for `node_lost_after` → LOST (loss detection, a loop of its own
//!   on a light read), its active runs FAILED ("node lost"; by [`super::lost_runs`],
//!   beside the passes, which hand over again any run still active on a LOST node);
//! - a PENDING job past `timeout_assign_at_ms` → FAILED, saying why nothing fit;
//! - a run ASSIGNED/PREPARING longer than `max_timeout_start_ms` → FAILED (start timeout);
//! - a BATCH run RUNNING longer than `max_timeout_run_ms` → FAILED (run timeout); its
//!   node stops the container because the run is no longer desired.
//!
//! Each failed run goes through `app::runs::settle_job` (`fail_runs` for a batch),
//! which retries or fails the job.
//! What counts as lost or overstayed, and the reasons recorded, are the pure rules of
//! `gantry_lifecycle::{nodes, timeouts}`; this module reads, asks them, and writes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use gantry_lifecycle::{human, nodes, timeouts};
use gantry_store::JobTransition;
use gantry_types::NodeId;
use gantry_types::job::JobStatus;
use gantry_types::node::NodeStatus;

use crate::app::error::AppError;
use crate::app::runs::{fail_run, settle_job};
use crate::state::{AppState, now_ms};

/// Lost nodes marked per transaction: a rack's worth in one commit, small enough that
/// the write does not hold SQLite's writer (or the event lock) long.
const MARK_CHUNK: usize = 256;

/// Runs loss detection and the passes until aborted, with the task that ends lost
/// nodes' runs ([`super::lost_runs`]) beside them.
pub async fn run(state: Arc<AppState>) {
    let (ender, _ending) = super::lost_runs::start(state.clone());
    // One task, so both run in the leader's fence scope.
    tokio::join!(
        every_period(&state, "loss detection", 0, || detect(&state, &ender)),
        every_period(&state, "lifecycle pass", PASS_REST, || activate(&state, &ender))
    );
}

/// After a lifecycle pass, the loop rests this many times the pass's duration (at
/// least; the period still applies). The pass reads every node and active run: at
/// 10,000 nodes with 9,000 runs that took 0.15-0.36 s, and up to 1.1 s during a mass
/// loss, so passes every 0.5 s ran nearly back to back, a core's worth of reads on a
/// machine whose CPU the lost runs' own reads and writes were waiting for (`gantry
/// bench node-loss --nodes 10000`). Resting three times as long keeps the pass to a
/// quarter of a core; its timeouts are then judged up to a few seconds late at that
/// scale, and at once in a small deployment, where a pass takes milliseconds. Loss
/// detection does not rest: its read is light.
const PASS_REST: u32 = 3;

/// Runs `pass` every lifecycle period, and after each at least `rest` times its
/// duration, until aborted.
async fn every_period<F: Future<Output = Result<(), AppError>>>(
    state: &AppState,
    what: &str,
    rest: u32,
    pass: impl Fn() -> F,
) {
    let mut tick = tokio::time::interval(state.scheduling.timing.lifecycle_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        if let Err(e) = pass().await
            && !super::leader::fenced(state, &e)
        {
            tracing::warn!(error = %crate::app::error::chain(&e), "{what} failed");
        }
        tokio::time::sleep(started.elapsed().saturating_mul(rest)).await;
    }
}

/// Declares the silent ONLINE nodes LOST and hands their runs to `ender`. Its own
/// loop, on a read of the nodes' liveness only: inside the lifecycle pass, whose reads
/// of every node and active run took up to a second at 10,000 nodes under load (and
/// which waited for a mass loss's runs to end), the nodes crossing the threshold
/// meanwhile were declared lost one to two seconds late (`gantry bench node-loss`).
async fn detect(state: &AppState, ender: &super::lost_runs::Ender) -> Result<(), AppError> {
    // Right after a restart, silence is the server's fault, not the nodes': wait one period.
    let leading_since = *state.scheduling.leading_since.lock().expect("leading_since poisoned");
    if leading_since.elapsed() < state.scheduling.timing.node_lost_after {
        return Ok(());
    }
    let online = state.store.node_list_online().await?;
    let now = now_ms();
    let lost_before = now - state.scheduling.timing.node_lost_after.as_millis() as i64;
    // Judged after the read, so a sync that arrived meanwhile (its heartbeat not yet
    // in the store, so the store's compare-and-set below would not see it) counts.
    // Each silent node's name and silence, for the log and its runs' reason.
    let silent: HashMap<NodeId, (String, i64)> = online
        .into_iter()
        .filter_map(|n| {
            let heard = nodes::last_heard(n.last_seen_at_ms, state.signals.last_contact(n.uuid, now));
            nodes::is_lost(NodeStatus::Online, heard, lost_before, true).then(|| (n.uuid, (n.name, now - heard)))
        })
        .collect();
    if silent.is_empty() {
        return Ok(());
    }
    // Marked in batches, one transaction per chunk: each mark was a write waiting for
    // its commit, and a thousand nodes lost together (a rack, a partition) took 14 s
    // one by one at 10,000 nodes (`gantry bench node-loss`), the last ones declared
    // long after the loss window; 32 at once still cost a commit (and an event-lock
    // turn on PostgreSQL) per node. Each chunk's runs go to the ender as soon as the
    // chunk commits, while the next chunk is marked.
    let ids: Vec<NodeId> = silent.keys().copied().collect();
    let silent_ids = ids.clone();
    let silent = &silent;
    let (marked_tx, mut marked_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<NodeId>>();
    let mark = async move {
        let marking = std::time::Instant::now();
        let mut count = 0;
        let mut failure = None;
        for chunk in ids.chunks(MARK_CHUNK) {
            match state.store.node_mark_lost_many(chunk, lost_before, now).await {
                Ok(done) => {
                    for node in &done {
                        tracing::warn!(%node, "node lost: no heartbeat for {}", human(silent[node].1));
                        state.signals.bump(*node);
                        state.signals.node_lost_here(*node, now);
                    }
                    count += done.len();
                    let _ = marked_tx.send(done);
                }
                // A chunk that fails ends the marking; the runs of the nodes already
                // marked still go to the ender.
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if count > 0 {
            tracing::warn!(nodes = count, marked_ms = marking.elapsed().as_millis() as u64, "nodes declared lost");
        }
        failure
    };
    // The silent nodes' active runs are read beside the marking (a read after it
    // waited for the marking's commits, then for the read itself, queued behind
    // 9,000 nodes' syncs), and only runs placed before the marking are handed over:
    // one placed later is on the node as it registered again, not on the node that
    // was lost. A run placed on a silent node between this read and its marking is
    // handed over by the next pass, which hands over every run still active on a
    // LOST node.
    let hand_over = async {
        let mut runs: HashMap<NodeId, Vec<gantry_store::RunRecord>> = HashMap::new();
        for r in crate::app::nodes::active_runs_on(state, silent_ids).await? {
            if r.run.created_at.0 <= now {
                runs.entry(r.run.node_uuid).or_default().push(r);
            }
        }
        while let Some(done) = marked_rx.recv().await {
            ender.end(done.iter().flat_map(|node| {
                let (name, silence) = &silent[node];
                let reason = nodes::lost_run_reason(name, *silence);
                runs.remove(node).unwrap_or_default().into_iter().map(move |r| (r, reason.clone()))
            }));
        }
        Ok::<_, AppError>(())
    };
    let (failure, handed) = tokio::join!(mark, hand_over);
    match failure {
        Some(e) => Err(e.into()),
        None => handed,
    }
}

/// One pass: hands over the runs still active on LOST nodes (those detection handed
/// over and the ender has not ended yet, or could not), ends the runs and jobs that
/// overstayed, and settles the jobs whose runs all ended unnoticed.
pub async fn activate(state: &AppState, ender: &super::lost_runs::Ender) -> Result<(), AppError> {
    let now = now_ms();
    // Runs before nodes: a run active on a node that is LOST afterwards was on it
    // when it was lost (a node coming back is ONLINE again before it gets new runs).
    // Only the runs due (on a LOST node, or past a limit), brief: of each run's job,
    // only the timeouts checked below come back.
    let active = state.store.run_list_due(now).await?;
    // Only those runs' nodes: none at all in a quiet pass (a read of every node each
    // pass, 10,000 at scale, competed with a mass loss's own writes).
    let node_ids: Vec<NodeId> =
        active.iter().map(|r| r.run.node_uuid).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let nodes = if node_ids.is_empty() { Vec::new() } else { state.store.node_fetch_many(&node_ids).await? };
    let lost: HashMap<NodeId, &gantry_store::NodeRecord> =
        nodes.iter().filter(|n| n.status == NodeStatus::Lost).map(|n| (n.uuid, n)).collect();
    let (doomed, active): (Vec<_>, Vec<_>) = active.into_iter().partition(|r| lost.contains_key(&r.run.node_uuid));
    // Detection hands over a lost node's runs itself as it marks the node; the pass
    // hands them over *again* only once the node has been LOST for a loss threshold
    // (the ender failed, or the leader changed). Sooner, at 10,000 nodes a pass handed
    // a whole mass loss's runs over while the ender was still working through
    // detection's chunks, and the merged backlog, ended in job order, delayed the
    // runs detected first (re-placement p99 1.9-3.1 s after detection against
    // 1.0-1.5 s, `gantry bench node-loss --nodes 10000`).
    let settled_for = state.scheduling.timing.node_lost_after.as_millis() as i64;
    let doomed = doomed.into_iter().filter(|r| now - lost[&r.run.node_uuid].updated_at_ms >= settled_for);
    ender.end(doomed.map(|r| {
        let n = lost[&r.run.node_uuid];
        let heard = nodes::last_heard(n.last_seen_at_ms, state.signals.last_contact(n.uuid, now));
        // The silence it was declared lost after (`updated_at` is when it was marked).
        let reason = nodes::lost_run_reason(&n.name, (n.updated_at_ms - heard).max(0));
        (r, reason)
    }));

    // Start and run timeouts, of the runs not ending with their node; runs placed
    // since the read above are too new to have timed out, so no second read is needed.
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
