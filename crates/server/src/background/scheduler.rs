//! The scheduler loop: the leader's in-memory model (`super::model`), caught up
//! with what woke it → the pure planner (`gantry-scheduler`) → the placements applied
//! to the model at once and written in chunks while the next pass plans
//! (`super::placing`).
//!
//! Capacity is derived, never stored (`app::capacity`, shared with offers and node
//! views). [`pass`] is a sequence of named steps (settle the writes if the model must
//! read, refresh the model, retry history, requests, plan, placements, apply, write,
//! explain). Placements are written with a compare-and-set on each job (PENDING →
//! ASSIGNED), so a job is never placed twice; a conflict (a job the model thought
//! pending was not) or any error rebuilds the model from the store.
//!
//! Latency: a job submitted to an idle leader with free capacity wakes the loop
//! (`Signals::job_submitted` hands it over whole, no read), is planned against the
//! model in memory, and its write starts at once, without waiting for the writes of
//! earlier passes to commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_scheduler::{JobRequest, NodeView, plan};
use gantry_store::{JobPlacement, NodeRecord, RunRecord};
use gantry_types::job::{ContainerAccessToken, Job};
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::money::micros_to_usd;
use gantry_types::{AccountId, JobId, JobRunId, NodeId, Timestamp};

use super::model::{History, Model};
use super::placing::Writes;
use crate::app::error::AppError;
use crate::app::jobs::redact;
use crate::state::{AppState, now_ms};

/// Most pending jobs considered per pass by default (`--scheduler-pass-limit`), split
/// among the accounts with pending jobs (see `Model::reread_queue`).
pub const PASS_LIMIT: u32 = 20_000;
/// Most unplaced jobs whose reason is recomputed per pass.
const EXPLAIN_LIMIT: usize = 200;
/// After a pass that placed nothing while jobs wait, the scheduler rests this many
/// times the pass's duration before the next (see [`run`]).
const FUTILE_REST: u32 = 50;
/// Reasons are recomputed at most this often (a pass may run per submitted job).
const EXPLAIN_EVERY: Duration = Duration::from_millis(200);

/// Runs passes until aborted. Each pass starts with a fresh (rebuilt) model the first
/// time, i.e. on taking the leadership.
pub async fn run(state: Arc<AppState>) {
    let mut model = Model::default();
    let mut writes = Writes::new(Arc::clone(&state));
    let mut explained: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let outcome = pass(&state, &mut model, &mut writes, &mut explained).await;
        state.metrics.scheduler_pass.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(placed) if placed > 0 => continue, // more may fit; go again at once
            Ok(_) if model.has_pending() => {
                // A futile pass (jobs wait, none fits) costs time in proportion to the
                // queue. Under a burst of submissions that nothing can place (no
                // nodes, a backlog), one such pass per submit took a core from the
                // submit path itself (`gantry bench submit` halved: 11.4-12.2k vs
                // 16.6-18.9k jobs/s). Resting FUTILE_REST times as long keeps the
                // scheduler to about 2% of a core then; the rest is capped at what the
                // loop always paused after an empty pass before the in-memory model,
                // and it is short when the queue is (a pass over 100 waiting jobs
                // takes well under a millisecond).
                let rest =
                    started.elapsed().saturating_mul(FUTILE_REST).min(state.scheduling.timing.schedule_every / 5);
                tokio::time::sleep(rest).await;
            }
            Ok(_) => {}
            Err(e) => {
                model.invalidate();
                // Nothing may read the store for a rebuild while a write is in flight.
                let _ = writes.settle().await;
                if !super::leader::fenced(&state, &e) {
                    tracing::warn!(error = %crate::app::error::chain(&e), "scheduler pass failed; rebuilding its model");
                }
                // Not a hot loop against a failing store.
                tokio::time::sleep(state.scheduling.timing.schedule_every / 5).await;
            }
        }
        // A pass plans from memory, so one per wake-up is cheap: no pause before
        // waiting (a wake-up that came during the pass is kept by `Notify`).
        let _ = tokio::time::timeout(state.scheduling.timing.schedule_every, state.signals.schedule.notified()).await;
    }
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
        (None, Some(name)) => Some(state.caches.gpus.resolve(name).map(|id| vec![id]).unwrap_or_default()),
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

/// One pass; returns how many jobs it planned (their writes may still be in
/// flight). The steps: settle the writes in flight if the model must read the store,
/// catch the model up with what woke the scheduler, turn its pending jobs into planner
/// requests, plan (pure), apply the plan to the model, start the writes, then (at
/// most every [`EXPLAIN_EVERY`]) record why the oldest unplaced jobs wait.
pub async fn pass(
    state: &AppState,
    model: &mut Model,
    writes: &mut Writes,
    explained: &mut Option<Instant>,
) -> Result<usize, AppError> {
    let started = Instant::now();
    let inbox = state.signals.take_inbox();
    // The model may read the store only with no write in flight (see `placing`).
    if (writes.reap().await || model.must_read(&inbox)) && !writes.settle().await? {
        model.invalidate();
    }
    model.refresh(state, inbox).await?;
    let t_refresh = started.elapsed();
    if !model.has_pending() {
        state.scheduling.pending_reasons.write().expect("reasons poisoned").clear();
        return Ok(0);
    }
    let views = model.views();
    // No node can take anything (none online, or all draining or lost): planning the
    // whole queue would place nothing, and with submissions streaming into such a
    // deployment (a fleet that is down; `gantry bench submit`) one such pass per
    // wake-up was a fifth of the server's instructions per created job. So such a pass
    // does nothing until reasons are due, and then plans only the jobs whose reason is
    // recomputed (to be explained), the same ones a full pass would explain.
    let nothing_fits = !views.iter().any(|v| v.schedulable);
    if nothing_fits && explained.is_some_and(|at| at.elapsed() < EXPLAIN_EVERY) {
        return Ok(0);
    }
    // Retried jobs: (id, when it re-entered PENDING).
    let retried: Vec<(JobId, i64)> =
        model.pending_unordered().filter(|j| j.updated_at != j.created_at).map(|j| (j.uuid, j.updated_at.0)).collect();
    retry_history(state, &mut model.history, &retried).await?;
    // With nothing to place, only the jobs to explain are planned: each account's
    // oldest are the only candidates (see `Model::heads`).
    let mut pending = if nothing_fits { model.heads(EXPLAIN_LIMIT) } else { model.pending() };
    if nothing_fits {
        let ids: Vec<JobId> = pending.iter().map(|j| j.uuid).collect();
        let explain: HashSet<JobId> = heads_first(&pending, &ids).into_iter().take(EXPLAIN_LIMIT).collect();
        pending.retain(|j| explain.contains(&j.uuid));
    }
    let snapshot = Snapshot { nodes: &model.nodes, pending, views };
    let requests = requests(state, &snapshot, &model.history, &model.allowlists, &model.active_per_account);
    let planned = plan(&snapshot.views, &requests);
    let t_plan = started.elapsed();
    let placements = placements(state, &snapshot, &model.history, &planned, now_ms());
    if t_plan > Duration::from_millis(500) {
        tracing::warn!(
            pending = snapshot.pending.len(),
            schedulable = snapshot.views.iter().filter(|v| v.schedulable).count(),
            planned = planned.placements.len(),
            active = model.active_count(),
            refresh_ms = t_refresh.as_millis() as u64,
            plan_ms = (t_plan - t_refresh).as_millis() as u64,
            "slow scheduler pass"
        );
    }
    if explained.is_none_or(|at| at.elapsed() >= EXPLAIN_EVERY) {
        explain_unplaced(state, &snapshot, &requests, &planned.unplaced, &model.allowlists);
        *explained = Some(Instant::now());
    }
    drop(snapshot);
    let count = placements.len();
    model.placed(&placements);
    state.signals.set_saturated(model.saturated(state.scheduling.pass_limit));
    writes.start(placements).await;
    Ok(count)
}

/// What one pass works from: the model's nodes and pending jobs, and the free
/// capacity per node.
struct Snapshot<'a> {
    nodes: &'a HashMap<NodeId, NodeRecord>,
    /// The pending jobs the model holds, oldest first.
    pending: Vec<&'a Job>,
    /// Free capacity per node, from `app::capacity`.
    views: Vec<NodeView>,
}

/// A job back in PENDING after a failed attempt (its updated_at moved) gets its next
/// attempt number and prefers other nodes than the ones it failed on. A job requeued
/// by this instance arrives with its history (`Signals::job_requeued`); for the others
/// it is read once per time the job re-entered PENDING (`history` is the model's
/// cache), the runs of up to [`HISTORY_READ`] such jobs in one query: read job by job,
/// after a mass loss (1,000 nodes of 10,000, `gantry bench node-loss`) a pass's
/// planning, these reads included, took up to 1.25 s (`slow scheduler pass`); at most
/// 0.42 s with one query.
async fn retry_history(state: &AppState, history: &mut History, retried: &[(JobId, i64)]) -> Result<(), AppError> {
    let new: Vec<&(JobId, i64)> = retried.iter().filter(|key| !history.contains_key(key)).collect();
    for keys in new.chunks(HISTORY_READ) {
        let filter = gantry_store::RunFilter { job_uuids: keys.iter().map(|k| k.0).collect(), ..Default::default() };
        let every = gantry_types::list::Paging { page: 1, limit: u32::MAX, newest_first: false };
        let mut runs: HashMap<JobId, Vec<RunRecord>> = HashMap::new();
        for r in state.store.run_list(None, &filter, every).await?.items {
            runs.entry(r.run.job_uuid).or_default().push(r);
        }
        for key in keys {
            let runs = runs.get(&key.0).map(Vec::as_slice).unwrap_or_default();
            history.insert(**key, crate::app::runs::retry_history(runs));
        }
    }
    Ok(())
}

/// Retried jobs whose runs [`retry_history`] reads in one query (one bound
/// parameter each, well under either backend's limit).
const HISTORY_READ: usize = 500;

fn allowlist<'a>(allowlists: &'a HashMap<AccountId, Vec<String>>, account: &AccountId) -> &'a [String] {
    allowlists.get(account).map(Vec::as_slice).unwrap_or(&[])
}

/// The planner's requests, with fair share across passes: an account's usage is its
/// active runs plus what it was given in the last minute.
fn requests(
    state: &AppState,
    snapshot: &Snapshot,
    history: &History,
    allowlists: &HashMap<AccountId, Vec<String>>,
    active: &HashMap<AccountId, u32>,
) -> Vec<JobRequest> {
    let mut running: HashMap<AccountId, u32> = state.scheduling.recent_placements.counts(now_ms());
    for (account, n) in active {
        *running.entry(*account).or_default() += n;
    }
    snapshot
        .pending
        .iter()
        .map(|j| {
            let avoid = history.get(&(j.uuid, j.updated_at.0)).map(|h| h.1.clone()).unwrap_or_default();
            let usage = running.get(&j.account_uuid).copied().unwrap_or(0);
            request(state, j, allowlist(allowlists, &j.account_uuid), avoid, usage)
        })
        .collect()
}

/// The placements to write: per placed job, one ASSIGNED run per gang member with its
/// quoted rate, GPUs and lease epoch.
fn placements(
    state: &AppState,
    snapshot: &Snapshot,
    history: &History,
    planned: &gantry_scheduler::Plan,
    now: i64,
) -> Vec<JobPlacement> {
    let jobs: HashMap<JobId, &Job> = snapshot.pending.iter().map(|j| (j.uuid, *j)).collect();
    let by_id = snapshot.nodes;
    planned
        .placements
        .iter()
        .map(|p| {
            let job = jobs[&p.job];
            let job_snapshot = serde_json::to_value(redact(job.clone())).unwrap_or_default();
            let attempt = history.get(&(job.uuid, job.updated_at.0)).map_or(0, |h| h.0);
            let runs = p
                .nodes
                .iter()
                .enumerate()
                .map(|(rank, a)| RunRecord {
                    run: JobRun {
                        object: "job_run".into(),
                        uuid: JobRunId::new(),
                        job_uuid: job.uuid,
                        job_snapshot: job_snapshot.clone(),
                        node_uuid: a.node,
                        status: JobRunStatus::Assigned,
                        status_reason: None,
                        started_at_ms: None,
                        ended_at_ms: None,
                        duration_ms: None,
                        exit_code: None,
                        node_urls: vec![],
                        container_access_tokens: vec![ContainerAccessToken { token: access_token() }],
                        hourly_rate_usd: Some(micros_to_usd(rate_on(state, job, by_id.get(&a.node), a))),
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
        .collect()
}

/// Why the oldest unplaced jobs wait, for their status_reason.
fn explain_unplaced(
    state: &AppState,
    snapshot: &Snapshot,
    requests: &[JobRequest],
    unplaced: &[JobId],
    allowlists: &HashMap<AccountId, Vec<String>>,
) {
    let names = |id: gantry_types::GpuModelId| state.caches.gpus.name(id).unwrap_or_else(|| id.to_string());
    let mut reasons = HashMap::new();
    // `requests` were built from `pending` in order, so one position finds both.
    let position: HashMap<JobId, usize> = requests.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    for id in heads_first(&snapshot.pending, unplaced).into_iter().take(EXPLAIN_LIMIT) {
        if let Some(&i) = position.get(&id) {
            let mut reason = gantry_scheduler::explain(&snapshot.views, &requests[i], &names);
            let job = snapshot.pending[i];
            if let Some(note) =
                crate::app::profiles::region_note(&job.allowed_region_codes, allowlist(allowlists, &job.account_uuid))
            {
                reason = format!("{reason}; {note}");
            }
            reasons.insert(id, reason);
        }
    }
    *state.scheduling.pending_reasons.write().expect("reasons poisoned") = reasons;
}

/// The unplaced jobs, each account's first before anyone's second (and so on), so
/// the explained ones include every account's head of line however long another
/// account's backlog is.
fn heads_first(pending: &[&Job], unplaced: &[JobId]) -> Vec<JobId> {
    let accounts: HashMap<JobId, AccountId> = pending.iter().map(|j| (j.uuid, j.account_uuid)).collect();
    let mut seen: HashMap<AccountId, usize> = HashMap::new();
    let mut ranked: Vec<(usize, usize, JobId)> = unplaced
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let rank = accounts.get(id).map_or(0, |a| {
                let n = seen.entry(*a).or_default();
                *n += 1;
                *n
            });
            (rank, i, *id)
        })
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, _, id)| id).collect()
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
