//! The scheduler loop: snapshot (nodes, active runs, pending jobs) → the pure
//! planner (`gantry-scheduler`) → one batched write of the placements.
//!
//! Capacity is derived, never stored: a node's free cores, RAM, disk and GPUs are its
//! inventory minus what its active runs reserve. Because placements are written with
//! a compare-and-set on each job (PENDING → ASSIGNED) in one transaction, a job is
//! never placed twice, even by two servers sharing a database; a node could in that
//! case be over-committed for one pass, which is why one scheduler per deployment is
//! the supported setup (documented).

use std::collections::HashMap;
use std::sync::Arc;

use gantry_scheduler::{GpuView, JobRequest, NodeView, plan};
use gantry_store::{JobPlacement, NodeRecord, RunRecord};
use gantry_types::job::{ContainerAccessToken, Job};
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::money::micros_to_usd;
use gantry_types::node::NodeStatus;
use gantry_types::{JobId, JobRunId, NodeId, Timestamp};

use crate::app::jobs::redact;
use crate::error::ApiError;
use crate::state::{AppState, now_ms};

/// Most pending jobs considered per pass (oldest first).
pub const PASS_LIMIT: u32 = 20_000;
/// Most unplaced jobs whose reason is recomputed per pass.
const EXPLAIN_LIMIT: usize = 200;

/// Runs passes until aborted.
pub async fn run(state: Arc<AppState>) {
    loop {
        let started = std::time::Instant::now();
        let outcome = pass(&state).await;
        state.metrics.scheduler_pass.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(placed) if placed > 0 => continue, // more may fit; go again at once
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "scheduler pass failed"),
        }
        // A pass that placed nothing is not repeated for every job that arrives: under a
        // burst of submissions that would re-read the whole queue per request.
        tokio::time::sleep(state.timing.schedule_every / 5).await;
        let _ = tokio::time::timeout(state.timing.schedule_every, state.signals.schedule.notified()).await;
    }
}

/// Node capacity as the planner sees it.
pub fn node_views(nodes: &[NodeRecord], active: &[RunRecord]) -> Vec<NodeView> {
    let mut by_node: HashMap<NodeId, Vec<&RunRecord>> = HashMap::new();
    for r in active {
        by_node.entry(r.run.node_uuid).or_default().push(r);
    }
    nodes
        .iter()
        .map(|n| {
            let runs = by_node.get(&n.uuid).map(Vec::as_slice).unwrap_or(&[]);
            let used_cpu: u32 = runs.iter().map(|r| r.cpu).sum();
            NodeView {
                id: n.uuid,
                schedulable: n.status == NodeStatus::Online && !n.is_draining,
                region: n.region_code.clone(),
                free_cpu: n.inventory.cores().saturating_sub(used_cpu),
                free_ram_gb: n.inventory.ram_gb - runs.iter().map(|r| r.ram_gb).sum::<f64>(),
                free_storage_gb: n.inventory.storage_gb - runs.iter().map(|r| r.storage_gb).sum::<f64>(),
                gpus: n
                    .inventory
                    .gpus
                    .iter()
                    .enumerate()
                    .map(|(i, g)| GpuView {
                        index: g.index,
                        model: n.gpu_models.get(i).copied().flatten(),
                        vram_gb: g.vram_gb,
                        free: !runs.iter().any(|r| r.run.gpu_indices.contains(&g.index)),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// What the planner needs of a job. `profile_regions` is its consumer's allowlist:
/// the job may run only in the intersection with its own `allowed_region_codes`.
pub fn request(
    state: &AppState,
    job: &Job,
    profile_regions: &[String],
    avoid_nodes: Vec<NodeId>,
    account_usage: u32,
) -> JobRequest {
    let gpu_models = match (&job.gpu_registry_uuid, &job.gpu_name) {
        (Some(uuid), _) => Some(uuid.parse().map(|id| vec![id]).unwrap_or_default()),
        (None, Some(name)) => Some(state.gpus.resolve(name).map(|id| vec![id]).unwrap_or_default()),
        (None, None) => None,
    };
    JobRequest {
        id: job.uuid,
        account: job.account_uuid,
        created_at_ms: job.created_at.0,
        cpu: u32::try_from(job.cpu_count).unwrap_or(u32::MAX),
        ram_gb: job.min_ram_gb,
        storage_gb: job.min_storage_gb,
        gpu_count: u32::try_from(job.gpu_count).unwrap_or(u32::MAX),
        gpu_models,
        min_vram_gb: job.min_vram_gb,
        regions: crate::app::profiles::effective_regions(&job.allowed_region_codes, profile_regions),
        node_count: u32::try_from(job.max_node_count).unwrap_or(u32::MAX),
        avoid_nodes,
        account_usage,
    }
}

/// One pass; returns how many jobs it placed.
pub async fn pass(state: &AppState) -> Result<usize, ApiError> {
    let started = std::time::Instant::now();
    let nodes = state.store.node_list_all().await?;
    // With no node to place on, only the reasons of the oldest jobs need refreshing;
    // reading the whole queue would be wasted work.
    let schedulable = nodes.iter().any(|n| n.status == NodeStatus::Online && !n.is_draining);
    let limit = if schedulable { PASS_LIMIT } else { EXPLAIN_LIMIT as u32 };
    let pending = state.store.job_list_pending(limit).await?;
    if pending.is_empty() {
        state.pending_reasons.write().expect("reasons poisoned").clear();
        return Ok(0);
    }
    let t_pending = started.elapsed();
    let active = if schedulable { state.store.run_list_active().await? } else { Vec::new() };
    let t_snapshot = started.elapsed();
    let views = node_views(&nodes, &active);
    // A job back in PENDING after a failed attempt (its updated_at moved) gets its
    // next attempt number and prefers other nodes than the ones it failed on.
    let mut history: HashMap<JobId, (u32, Vec<NodeId>)> = HashMap::new();
    for job in pending.iter().filter(|j| j.updated_at != j.created_at) {
        let runs = state.store.run_list_for_job(job.uuid).await?;
        let next = runs.iter().map(|r| r.run.attempt + 1).max().unwrap_or(0);
        let avoid = runs.iter().filter(|r| r.run.status == JobRunStatus::Failed).map(|r| r.run.node_uuid).collect();
        history.insert(job.uuid, (next, avoid));
    }
    // Fair share across passes: an account's usage is its active runs plus what it
    // was given in the last minute.
    let mut running: HashMap<gantry_types::AccountId, u32> = state.recent_placements.counts(now_ms());
    for r in &active {
        *running.entry(r.run.account_uuid).or_default() += 1;
    }
    // Consumer profiles' region allowlists (only restricted ones matter).
    let allowlists: HashMap<gantry_types::AccountId, Vec<String>> = state
        .store
        .consumer_profile_list_all()
        .await?
        .into_iter()
        .filter(|p| !p.allowed_region_codes.is_empty())
        .map(|p| (p.account_uuid, p.allowed_region_codes))
        .collect();
    let allowlist = |a: &gantry_types::AccountId| allowlists.get(a).map(Vec::as_slice).unwrap_or(&[]);
    let requests: Vec<JobRequest> = pending
        .iter()
        .map(|j| {
            let avoid = history.get(&j.uuid).map(|h| h.1.clone()).unwrap_or_default();
            let usage = running.get(&j.account_uuid).copied().unwrap_or(0);
            request(state, j, allowlist(&j.account_uuid), avoid, usage)
        })
        .collect();
    let planned = plan(&views, &requests);
    let t_plan = started.elapsed();

    let now = now_ms();
    let jobs: HashMap<JobId, &Job> = pending.iter().map(|j| (j.uuid, j)).collect();
    let by_id: HashMap<NodeId, &NodeRecord> = nodes.iter().map(|n| (n.uuid, n)).collect();
    let placements: Vec<JobPlacement> = planned
        .placements
        .iter()
        .map(|p| {
            let job = jobs[&p.job];
            let snapshot = serde_json::to_value(redact(job.clone())).unwrap_or_default();
            let attempt = history.get(&p.job).map_or(0, |h| h.0);
            let runs = p
                .nodes
                .iter()
                .enumerate()
                .map(|(rank, a)| RunRecord {
                    run: JobRun {
                        object: "job_run".into(),
                        uuid: JobRunId::new(),
                        job_uuid: job.uuid,
                        job_snapshot: snapshot.clone(),
                        node_uuid: a.node,
                        status: JobRunStatus::Assigned,
                        status_reason: None,
                        started_at_ms: None,
                        ended_at_ms: None,
                        duration_ms: None,
                        exit_code: None,
                        node_urls: vec![],
                        container_access_tokens: vec![ContainerAccessToken { token: access_token() }],
                        hourly_rate_usd: Some(micros_to_usd(rate_on(state, job, by_id.get(&a.node).copied(), a))),
                        attempt,
                        rank: rank as u32,
                        gang_size: p.nodes.len() as u32,
                        gpu_indices: a.gpu_indices.clone(),
                        lease_epoch: by_id.get(&a.node).map_or(0, |n| n.lease_epoch),
                        account_uuid: job.account_uuid,
                        logs: None,
                        created_at: Timestamp(now),
                        updated_at: Timestamp(now),
                    },
                    cpu: u32::try_from(job.cpu_count).unwrap_or(u32::MAX),
                    ram_gb: job.min_ram_gb,
                    storage_gb: job.min_storage_gb,
                })
                .collect();
            JobPlacement { job: job.uuid, runs, now_ms: now }
        })
        .collect();
    let placed = if placements.is_empty() { vec![] } else { state.store.run_place(&placements).await? };
    let t_write = started.elapsed();
    if t_write > std::time::Duration::from_millis(1000) {
        tracing::warn!(
            pending = pending.len(),
            placed = placed.len(),
            schedulable = views.iter().filter(|v| v.schedulable).count(),
            free_cpu = views.iter().filter(|v| v.schedulable).map(|v| v.free_cpu).sum::<u32>(),
            planned = planned.placements.len(),
            active = active.len(),
            read_pending_ms = t_pending.as_millis() as u64,
            read_cluster_ms = (t_snapshot - t_pending).as_millis() as u64,
            plan_ms = (t_plan - t_snapshot).as_millis() as u64,
            write_ms = (t_write - t_plan).as_millis() as u64,
            "slow scheduler pass"
        );
    }
    for p in placements.iter().filter(|p| placed.contains(&p.job)) {
        state.recent_placements.record(jobs[&p.job].account_uuid, now);
        // Since the job (re-)entered PENDING: its submission, or its last retry.
        state.metrics.placement_latency.observe((now - jobs[&p.job].updated_at.0).max(0) as f64 / 1000.0);
        for r in &p.runs {
            state.signals.bump(r.run.node_uuid);
        }
    }

    // Why the oldest unplaced jobs wait, for their status_reason.
    let names = |id: gantry_types::GpuModelId| state.gpus.name(id).unwrap_or_else(|| id.to_string());
    let mut reasons = HashMap::new();
    for id in planned.unplaced.iter().take(EXPLAIN_LIMIT) {
        if let Some(req) = requests.iter().find(|r| r.id == *id) {
            let mut reason = gantry_scheduler::explain(&views, req, &names);
            if let Some(job) = jobs.get(id)
                && let Some(note) =
                    crate::app::profiles::region_note(&job.allowed_region_codes, allowlist(&job.account_uuid))
            {
                reason = format!("{reason}; {note}");
            }
            reasons.insert(*id, reason);
        }
    }
    *state.pending_reasons.write().expect("reasons poisoned") = reasons;
    Ok(placed.len())
}

/// Placements per account over the last minute (the scheduler's memory for fairness
/// across passes; derived, so a restart simply starts it afresh).
#[derive(Default)]
pub struct RecentPlacements {
    window: std::sync::Mutex<std::collections::VecDeque<(i64, gantry_types::AccountId)>>,
}

impl RecentPlacements {
    /// How long a placement counts.
    pub const WINDOW_MS: i64 = 60_000;

    /// Notes a placement.
    pub fn record(&self, account: gantry_types::AccountId, now_ms: i64) {
        self.window.lock().expect("recent placements poisoned").push_back((now_ms, account));
    }

    /// Placements per account inside the window (older ones are dropped).
    pub fn counts(&self, now_ms: i64) -> HashMap<gantry_types::AccountId, u32> {
        let mut window = self.window.lock().expect("recent placements poisoned");
        while window.front().is_some_and(|(at, _)| *at < now_ms - Self::WINDOW_MS) {
            window.pop_front();
        }
        let mut counts = HashMap::new();
        for (_, account) in window.iter() {
            *counts.entry(*account).or_default() += 1;
        }
        counts
    }
}

/// The hourly rate quoted for a run placed on `node` with `assignment`'s GPUs:
/// the job's reservation at the price of the assigned GPUs' model.
fn rate_on(
    state: &AppState,
    job: &Job,
    node: Option<&NodeRecord>,
    assignment: &gantry_scheduler::NodeAssignment,
) -> i64 {
    let model = node.and_then(|n| {
        let first = assignment.gpu_indices.first()?;
        let position = n.inventory.gpus.iter().position(|g| g.index == *first)?;
        n.gpu_models.get(position).copied().flatten()
    });
    crate::app::pricing::hourly(state, crate::app::pricing::reservation(job), model)
}

/// A fresh per-run token for `CONTAINER_ACCESS_TOKEN` (32 random bytes, hex).
fn access_token() -> String {
    gantry_auth::new_nonce() + &gantry_auth::new_nonce()
}
