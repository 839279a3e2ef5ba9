//! The lifecycle keeper: every activation finds what has overstayed and ends it.
//!
//! - a node silent for `node_lost_after` → LOST, its active runs FAILED ("node lost");
//! - a PENDING job past `timeout_assign_at_ms` → FAILED, saying why nothing fit;
//! - a run ASSIGNED/PREPARING longer than `max_timeout_start_ms` → FAILED (start timeout);
//! - a BATCH run RUNNING longer than `max_timeout_run_ms` → FAILED (run timeout); its
//!   node stops the container because the run is no longer desired.
//!
//! Each failed run goes through `app::runs::settle_job`, which retries or fails the job.

use std::sync::Arc;

use gantry_store::JobTransition;
use gantry_types::job::JobStatus;
use gantry_types::job_run::JobRunStatus;
use gantry_types::node::NodeStatus;

use crate::app::runs::{fail_run, settle_job};
use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// Runs activations until aborted.
pub async fn run(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.timing.lifecycle_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = activate(&state).await {
            tracing::warn!(error = ?e, "lifecycle pass failed");
        }
    }
}

fn human(ms: i64) -> String {
    if ms % 60_000 == 0 { format!("{}m", ms / 60_000) } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

/// One activation.
pub async fn activate(state: &AppState) -> Result<(), AppError> {
    let now = now_ms();
    let lost_before = now - state.timing.node_lost_after.as_millis() as i64;

    // Lost nodes first: their runs' failures feed the retries below. Right after a
    // restart, silence is the server's fault, not the nodes': wait one period.
    let nodes = state.store.node_list_all().await?;
    let mut active = state.store.run_list_active().await?;
    let mut lost = std::collections::HashSet::new();
    let grace_over = state.started.elapsed() >= state.timing.node_lost_after;
    let last_heard =
        |n: &gantry_store::NodeRecord| n.last_seen_at_ms.max(state.signals.last_contact(n.uuid).unwrap_or(0));
    let silent = nodes.iter().filter(|n| grace_over && n.status == NodeStatus::Online && last_heard(n) < lost_before);
    for node in silent {
        if state.store.node_mark_lost(node.uuid, lost_before, now).await? {
            tracing::warn!(node = %node.uuid, "node lost: no heartbeat for {}", human(now - last_heard(node)));
            state.signals.bump(node.uuid);
            lost.insert(node.uuid);
            for run in active.iter().filter(|r| r.run.node_uuid == node.uuid) {
                let why = format!("node lost: {} sent no heartbeat for {}", node.name, human(now - last_heard(node)));
                fail_run(state, run, why).await?;
            }
        }
    }

    // Start and run timeouts. The runs of lost nodes have just failed; runs placed
    // since the read above are too new to have timed out, so no second read is needed.
    active.retain(|r| !lost.contains(&r.run.node_uuid));
    for run in &active {
        let snapshot = &run.run.job_snapshot;
        let start_limit = snapshot["max_timeout_start_ms"].as_i64().unwrap_or(i64::MAX);
        let run_limit = snapshot["max_timeout_run_ms"].as_i64();
        match run.run.status {
            JobRunStatus::Assigned | JobRunStatus::Preparing if now - run.run.created_at.0 > start_limit => {
                let why = format!("start timeout: the container was not running within {}", human(start_limit));
                fail_run(state, run, why).await?;
            }
            JobRunStatus::Running => {
                if let (Some(limit), Some(started)) = (run_limit, run.run.started_at_ms)
                    && now - started > limit
                {
                    let why = format!("run timeout: still running after {} (max_timeout_run_ms)", human(limit));
                    fail_run(state, run, why).await?;
                }
            }
            _ => {}
        }
    }

    // Assignment timeouts, among the PENDING jobs old enough to have passed one.
    let old_enough = gantry_types::list::JobFilter {
        statuses: vec![JobStatus::Pending],
        created_at: Some(gantry_types::list::Range {
            min: None,
            max: Some(now - state.timing.assign_sweep_min_age.as_millis() as i64),
        }),
        ..Default::default()
    };
    let oldest_first =
        gantry_types::list::Paging { page: 1, limit: crate::background::scheduler::PASS_LIMIT, newest_first: false };
    for job in state.store.job_list(None, &old_enough, oldest_first).await?.items {
        if job.timeout_assign_at_ms < now {
            let why = state.pending_reasons.read().expect("reasons poisoned").get(&job.uuid).cloned();
            let reason = format!(
                "no node satisfied the job within {}{}",
                human(job.max_timeout_assign_ms),
                why.map(|w| format!(": {w}")).unwrap_or_default()
            );
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
