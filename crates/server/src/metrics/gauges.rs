//! The stored-state gauges (`gantry_jobs`, `gantry_job_runs`, `gantry_nodes`,
//! `gantry_node_gpus`, `gantry_pending_jobs_oldest_age_seconds`), recomputed by one
//! background task every [`Metrics::refresh_every`](super::Metrics) (1 s by
//! default), never by a scrape: `/metrics` only encodes these in-memory values.
//!
//! A refresh reads the oldest pending job and the jobs counted per status, in one
//! grouped count on `jobs (status, created_at)` (`job_count_by_status`; a page per
//! status was eight statements, about 20 ms of PostgreSQL's time a second at 10,000
//! active jobs). Counts of the terminal statuses grow without bound
//! and change meaning slowly, so they are recounted only every
//! [`TERMINAL_EVERY`]-th refresh. The run and node gauges (`gantry_job_runs`,
//! `gantry_nodes`, `gantry_node_gpus`) read every node and the active runs' counts
//! (`run_count_active`: counted by the database, a row per status, and per node and
//! GPU list held), only every [`CLUSTER_EVERY`]-th refresh. They used to read every
//! active run: once a second, with the job snapshots, about a tenth of the server's
//! CPU under `gantry bench schedule`; every 5 s and brief, still 30-80 ms of
//! PostgreSQL's time at 10,000 runs, a stall the placements of that moment waited out.
//! [`refresh`] (tests, `RunningServer::refresh_metrics`) reads them every time. Deriving the gauges from the store, rather than
//! from increments scattered over every transition, keeps them right across
//! restarts and with several servers sharing a database.

use std::sync::Arc;

use gantry_store::{ActiveRunCounts, NodeRecord};
use gantry_types::job::JobStatus;
use gantry_types::job_run::JobRunStatus;
use gantry_types::node::NodeStatus;

use super::{StateLabel, StatusLabel};
use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// Terminal job statuses are recounted every this many refreshes.
pub const TERMINAL_EVERY: u64 = 15;

/// The run and node gauges are recomputed every this many refreshes.
pub const CLUSTER_EVERY: u64 = 5;

/// Refreshes until aborted.
pub async fn run(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.metrics.refresh_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        tick.tick().await;
        if let Err(e) = refresh_jobs(&state, round % TERMINAL_EVERY == 0).await {
            tracing::warn!(error = ?e, "refreshing the metrics gauges failed");
        }
        if round % CLUSTER_EVERY == 0
            && let Err(e) = refresh_cluster(&state).await
        {
            tracing::warn!(error = ?e, "refreshing the run and node gauges failed");
        }
    }
}

/// Recomputes every gauge from the store (`terminal`: the terminal job statuses too).
pub async fn refresh(state: &AppState, terminal: bool) -> Result<(), AppError> {
    refresh_cluster(state).await?;
    refresh_jobs(state, terminal).await
}

/// Recomputes the run and node gauges from the store.
async fn refresh_cluster(state: &AppState) -> Result<(), AppError> {
    let active = state.store.run_count_active().await?;
    let nodes = state.store.node_list_all().await?;
    record_cluster(&state.metrics, &nodes, &active);
    Ok(())
}

/// Recomputes the job gauges from the store.
async fn refresh_jobs(state: &AppState, terminal: bool) -> Result<(), AppError> {
    let m = &state.metrics;
    let store = state.store.as_ref();
    let statuses: Vec<JobStatus> = JobStatus::ALL.into_iter().filter(|s| terminal || !s.is_terminal()).collect();
    for (status, count) in store.job_count_by_status(&statuses).await? {
        m.jobs.get_or_create(&StatusLabel { status: status.as_str() }).set(count as i64);
    }
    let now = now_ms();
    let oldest = store.job_list_pending(1).await?.first().map_or(0, |j| now - j.created_at.0);
    m.pending_oldest_age.set(oldest.max(0) as f64 / 1000.0);
    m.gauges_refreshed_at.set(now as f64 / 1000.0);
    Ok(())
}

/// Sets the run and node gauges from `nodes` (all of them) and `active` (the active
/// runs' counts).
fn record_cluster(m: &super::Metrics, nodes: &[NodeRecord], active: &ActiveRunCounts) {
    for status in JobRunStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
        let count = active.by_status.get(&status).copied().unwrap_or(0);
        m.job_runs.get_or_create(&StatusLabel { status: status.as_str() }).set(count as i64);
    }
    let (mut free, mut used) = (0i64, 0i64);
    for status in [NodeStatus::Online, NodeStatus::Lost] {
        let count = nodes.iter().filter(|n| n.status == status).count();
        m.nodes.get_or_create(&StatusLabel { status: status.as_str() }).set(count as i64);
    }
    for node in nodes.iter().filter(|n| n.status == NodeStatus::Online) {
        for gpu in &node.inventory.gpus {
            if active.gpus_held.contains(&(node.uuid, gpu.index)) { used += 1 } else { free += 1 }
        }
    }
    m.node_gpus.get_or_create(&StateLabel { state: "free" }).set(free);
    m.node_gpus.get_or_create(&StateLabel { state: "used" }).set(used);
}
