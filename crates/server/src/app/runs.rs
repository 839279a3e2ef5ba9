//! Job runs and the lifecycle rules that follow from them.
//!
//! A job's status follows its runs: PENDING → ASSIGNED → RUNNING → COMPLETED /
//! FAILED / CANCELLED, with CANCELLING while containers stop. Every rule is applied
//! by [`settle_job`], which reads the job and its runs, lets the pure
//! `gantry_lifecycle::settle` decide the one transition they call for, and writes it;
//! it is idempotent, so any event (a report, a timeout, a lost node) may call it, and
//! calling it twice changes nothing.

use gantry_lifecycle::settle::{JobFacts, RunFacts, settle};
use gantry_store::{JobTransition, LogTail, Page, RunFilter, RunRecord, RunUpdate};
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::list::Paging;
use gantry_types::protocol::ObservedRun;
use gantry_types::{AccountId, JobId, JobRunId, NodeId};

use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// Statuses of a run that still holds node capacity.
pub const ACTIVE: [JobRunStatus; 3] = [JobRunStatus::Assigned, JobRunStatus::Preparing, JobRunStatus::Running];

/// Most log bytes kept per run (newest kept).
pub const MAX_LOG_BYTES: usize = 1024 * 1024;

/// Lists runs in scope (without logs).
pub async fn list(
    state: &AppState,
    scope: Option<AccountId>,
    filter: &RunFilter,
    paging: Paging,
) -> Result<Page<JobRun>, AppError> {
    let page = state.store.run_list(scope, filter, paging).await?;
    let now = now_ms();
    Ok(Page { items: page.items.into_iter().map(|r| metered(r.run, now)).collect(), total: page.total })
}

/// A RUNNING run's `duration_ms` is its billable time so far (the store holds the
/// final value only once it ends), so clients totalling cost see it grow.
pub fn metered(mut run: JobRun, now: i64) -> JobRun {
    if run.status == JobRunStatus::Running
        && let Some(started) = run.started_at_ms
    {
        run.duration_ms = Some((now - started).max(0));
    }
    run
}

/// One run in scope, with its logs.
pub async fn fetch(state: &AppState, scope: Option<AccountId>, id: JobRunId) -> Result<JobRun, AppError> {
    let run = state.store.run_fetch(scope, id).await?.ok_or_else(|| AppError::not_found("job run", id))?.run;
    let mut run = metered(run, now_ms());
    run.logs = Some(state.store.run_logs_fetch(scope, id).await?.unwrap_or_default());
    Ok(run)
}

/// One run's stored output and the bytes it ever output, for a follower.
pub async fn log_tail(state: &AppState, scope: Option<AccountId>, id: JobRunId) -> Result<LogTail, AppError> {
    state.store.run_fetch(scope, id).await?.ok_or_else(|| AppError::not_found("job run", id))?;
    Ok(state.store.run_logs_tail(id).await?.unwrap_or_default())
}

/// Of `runs`, those no node should carry any more: ended, being cancelled, or
/// unknown (a relay closes their public ports). In the order asked, each once.
pub async fn ended_among(state: &AppState, runs: &[JobRunId]) -> Result<Vec<JobRunId>, AppError> {
    let wanted: std::collections::HashSet<JobRunId> = state.store.run_still_wanted(runs).await?.into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    Ok(runs.iter().copied().filter(|r| !wanted.contains(r) && seen.insert(*r)).collect())
}

/// Applies what a node reported about one of its runs. Reports are idempotent: a
/// repeated or stale one (the run already moved on) changes nothing.
pub async fn observe(state: &AppState, node: NodeId, report: &ObservedRun) -> Result<(), AppError> {
    let Some(current) = state.store.run_fetch(None, report.run_uuid).await? else { return Ok(()) };
    if current.run.node_uuid != node {
        return Ok(()); // not this node's run: ignore rather than trust it
    }
    if let Some(logs) = report.logs.as_deref().filter(|l| !l.is_empty()) {
        let end = state.store.run_logs_append(report.run_uuid, logs, MAX_LOG_BYTES).await?;
        state.signals.publish_logs(report.run_uuid, logs, end);
    }
    if current.run.status.is_terminal() {
        // The run's end and its job's settlement are two writes: a sync cut between
        // them (as for RUNNING below) left the job RUNNING with every run ended, and
        // only CANCELLING jobs are swept. The agent resends the report it got no answer
        // to; settling again finishes the job (`settle_job` decides from the runs and
        // leaves a settled job alone). Only the resent end itself, so a stale report
        // after the node moved on costs nothing.
        if report.status == current.run.status {
            settle_job(state, current.run.job_uuid).await?;
        }
        return Ok(());
    }
    if current.run.status == report.status {
        if report.status == JobRunStatus::Running {
            // The run's update and its job's ASSIGNED -> RUNNING are two writes: a sync
            // cut between them (the agent gave up on a slow answer, dropping the
            // request) left the job ASSIGNED for ever, since the agent's resent report
            // found the run RUNNING already (seen in `gantry bench schedule` on a loaded
            // PostgreSQL: runs RUNNING, their jobs ASSIGNED). The transition is a
            // compare-and-set, so repeating it finishes what the cut sync began. Read
            // first: a RUNNING report also repeats to carry output, and a write per
            // such report would load SQLite's one writer for nothing.
            let job = state.store.job_fetch(None, current.run.job_uuid).await?;
            if job.is_some_and(|j| j.status == JobStatus::Assigned) {
                let t = JobTransition {
                    from: vec![JobStatus::Assigned],
                    to: JobStatus::Running,
                    reason: None,
                    now_ms: now_ms(),
                };
                state.store.job_transition(None, current.run.job_uuid, &t).await?;
            }
        }
        return observe_details(state, &current, report).await;
    }
    let now = now_ms();
    let from = match report.status {
        JobRunStatus::Assigned => return Ok(()),
        JobRunStatus::Preparing => vec![JobRunStatus::Assigned],
        JobRunStatus::Running => vec![JobRunStatus::Assigned, JobRunStatus::Preparing],
        _ => ACTIVE.to_vec(),
    };
    let update = RunUpdate {
        from,
        to: report.status,
        reason: report.reason.clone(),
        now_ms: now,
        exit_code: report.exit_code,
        node_urls: report.node_urls.clone(),
        image_size_bytes: report.image_size_bytes,
    };
    let Some(after) = state.store.run_update(report.run_uuid, &update).await? else {
        return Ok(());
    };
    state.metrics.run_finished(&after);
    crate::app::ledger::charge_ended(state, &after).await;
    state.signals.bump(node);
    if report.status == JobRunStatus::Running {
        let t = JobTransition { from: vec![JobStatus::Assigned], to: JobStatus::Running, reason: None, now_ms: now };
        state.store.job_transition(None, current.run.job_uuid, &t).await?;
    }
    if report.status.is_terminal() {
        state.signals.capacity_changed(current.run.node_uuid);
        settle_job(state, current.run.job_uuid).await?;
    }
    Ok(())
}

/// Same status, new details: pull progress while PREPARING (in `status_reason`), or
/// ports published again on other external ports after an agent restart.
async fn observe_details(state: &AppState, current: &RunRecord, report: &ObservedRun) -> Result<(), AppError> {
    let reason_moved = report.status == JobRunStatus::Preparing && report.reason != current.run.status_reason;
    let urls_moved = report.node_urls.as_ref().is_some_and(|u| *u != current.run.node_urls);
    if !reason_moved && !urls_moved {
        return Ok(());
    }
    let update = RunUpdate {
        from: vec![report.status],
        to: report.status,
        reason: if reason_moved { report.reason.clone() } else { current.run.status_reason.clone() },
        now_ms: now_ms(),
        exit_code: None,
        node_urls: report.node_urls.clone(),
        image_size_bytes: report.image_size_bytes,
    };
    state.store.run_update(report.run_uuid, &update).await?;
    Ok(())
}

/// Ends an active run from the control plane's side (timeout, lost node) and settles
/// its job. A run that already ended is left alone.
pub async fn fail_run(state: &AppState, run: &RunRecord, reason: String) -> Result<(), AppError> {
    if let Some(after) = state.store.run_update(run.run.uuid, &ended_here(reason, now_ms())).await? {
        state.metrics.run_finished(&after);
        crate::app::ledger::charge_ended(state, &after).await;
        state.signals.bump(run.run.node_uuid);
        state.signals.run_ended_here(run.run.node_uuid, run.run.uuid);
        settle_job(state, run.run.job_uuid).await?;
    }
    Ok(())
}

/// The update that fails an active run from the control plane's side.
fn ended_here(reason: String, now_ms: i64) -> RunUpdate {
    RunUpdate {
        from: ACTIVE.to_vec(),
        to: JobRunStatus::Failed,
        reason: Some(reason),
        now_ms,
        exit_code: None,
        node_urls: None,
        image_size_bytes: None,
    }
}

/// Makes the job's status agree with its runs: reads the job and its runs, asks
/// `gantry_lifecycle::settle` for the transition, writes it (a compare-and-set on the
/// status it was decided from). The rules themselves live in that crate.
pub async fn settle_job(state: &AppState, job_id: JobId) -> Result<(), AppError> {
    let Some(job) = state.store.job_fetch(None, job_id).await? else { return Ok(()) };
    if job.status.is_terminal() || job.status == JobStatus::Pending {
        return Ok(());
    }
    let runs = state.store.run_list_for_job(job_id).await?;
    if let Some(t) = settlement(&job, &runs)
        && let Some(after) = state.store.job_transition(None, job_id, &t).await?
    {
        requeued(state, &after, &runs);
    }
    // A run of this job ended: the desired state of every node holding one of its runs
    // may have changed (a gang sibling must stop; a settled job's runs are no longer
    // wanted). Bumped after the writes, so no node caches the state from before them.
    for node in runs.iter().map(|r| r.run.node_uuid).collect::<std::collections::HashSet<_>>() {
        state.signals.bump(node);
    }
    Ok(())
}

/// Ends many active runs from the control plane's side at once (the runs of nodes
/// lost together) and settles their jobs, in a fixed number of store calls however
/// many there are: the runs ended in one write, their jobs and runs read in two
/// reads *beside* that write, their jobs settled in one write, and the runs charged
/// in one read and one write beside the settlement. [`fail_run`] one run at a time
/// cost three commits and three reads per run, and a thousand nodes lost at once
/// waited seconds for their retries (`gantry bench node-loss --nodes 10000`); one
/// step after the other, a batch of 256 still took 0.15-0.7 s there, each read and
/// commit queued behind 9,000 nodes' syncs, where the retries wait only for the
/// runs' write, the reads beside it, and the jobs' write.
/// Every run of a job should be in the same call: the settlement decides from all
/// of a job's runs, as read beside this call's write with the runs it ended as they
/// ended (as exact as reading after it: another writer may change a sibling run
/// either way, and then settles the job itself, each settlement a compare-and-set
/// on the job's status).
pub async fn fail_runs(state: &AppState, runs: &[(RunRecord, String)]) -> Result<(), AppError> {
    let now = now_ms();
    let updates: Vec<(JobRunId, RunUpdate)> =
        runs.iter().map(|(run, reason)| (run.run.uuid, ended_here(reason.clone(), now))).collect();
    let mut ids: Vec<JobId> = runs.iter().map(|(r, _)| r.run.job_uuid).collect();
    ids.sort_unstable();
    ids.dedup();
    let (ended, read) = tokio::join!(state.store.run_update_many(&updates), read_for_settling(state, ids));
    let ended: Vec<RunRecord> = ended?.into_iter().flatten().collect();
    for run in &ended {
        state.metrics.run_finished(run);
        state.signals.bump(run.run.node_uuid);
        state.signals.run_ended_here(run.run.node_uuid, run.run.uuid);
    }
    let (mut jobs, mut runs_of) = read?;
    // Only the jobs whose runs this call ended: one whose run ended otherwise
    // meanwhile is settled by whoever ended it.
    let ended_jobs: std::collections::HashSet<JobId> = ended.iter().map(|r| r.run.job_uuid).collect();
    jobs.retain(|j| ended_jobs.contains(&j.uuid));
    for run in &ended {
        let list = runs_of.entry(run.run.job_uuid).or_default();
        match list.iter_mut().find(|r| r.run.uuid == run.run.uuid) {
            Some(read) => *read = run.clone(),
            None => list.push(run.clone()),
        }
    }
    // In `run_list_for_job`'s order, so a gang's settlement names the same failed run.
    for runs in runs_of.values_mut() {
        runs.sort_by_key(|r| (r.run.created_at.0, r.run.attempt, r.run.rank, r.run.uuid));
    }
    let (_, settled) =
        tokio::join!(crate::app::ledger::charge_ended_many(state, &ended), settle_jobs(state, &jobs, &runs_of));
    settled
}

/// The jobs `ids` and all their runs, by job.
async fn read_for_settling(
    state: &AppState,
    ids: Vec<JobId>,
) -> Result<(Vec<Job>, std::collections::HashMap<JobId, Vec<RunRecord>>), AppError> {
    let all = Paging { page: 1, limit: u32::MAX, newest_first: false };
    let filter = gantry_types::list::JobFilter { uuids: ids.clone(), ..Default::default() };
    let run_filter = RunFilter { job_uuids: ids, ..Default::default() };
    let (jobs, runs) =
        tokio::try_join!(state.store.job_list(None, &filter, all), state.store.run_list(None, &run_filter, all))?;
    let mut runs_of: std::collections::HashMap<JobId, Vec<RunRecord>> = std::collections::HashMap::new();
    for run in runs.items {
        runs_of.entry(run.run.job_uuid).or_default().push(run);
    }
    Ok((jobs.items, runs_of))
}

/// [`settle_job`] for many jobs, from their runs as read (`runs_of`, each job's in
/// the store's order): one write, whatever their number.
async fn settle_jobs(
    state: &AppState,
    jobs: &[Job],
    runs_of: &std::collections::HashMap<JobId, Vec<RunRecord>>,
) -> Result<(), AppError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let transitions: Vec<(JobId, JobTransition)> = jobs
        .iter()
        .filter(|job| !job.status.is_terminal() && job.status != JobStatus::Pending)
        .filter_map(|job| settlement(job, runs_of.get(&job.uuid).map_or(&[], Vec::as_slice)).map(|t| (job.uuid, t)))
        .collect();
    for after in state.store.job_transition_many(&transitions).await?.into_iter().flatten() {
        requeued(state, &after, runs_of.get(&after.uuid).map_or(&[], Vec::as_slice));
    }
    // As in `settle_job`: after the writes, every node holding one of their runs.
    let runs = jobs.iter().filter_map(|j| runs_of.get(&j.uuid)).flatten();
    for node in runs.map(|r| r.run.node_uuid).collect::<std::collections::HashSet<_>>() {
        state.signals.bump(node);
    }
    Ok(())
}

/// Tells the scheduler about a job a settlement moved (`after`, with all its `runs`,
/// read before the move): one back in PENDING is handed over with its retry history.
/// A job leaving its runs' statuses otherwise (FAILED, COMPLETED, CANCELLED) does not
/// change the queue; its runs' ends already told the scheduler about their nodes.
fn requeued(state: &AppState, after: &Job, runs: &[RunRecord]) {
    if after.status == JobStatus::Pending {
        state.signals.job_requeued(after, retry_history(runs));
    }
}

/// The retry history of a job whose runs (all of them) are `runs`: its next attempt
/// number, and the nodes its failed runs were on.
pub fn retry_history(runs: &[RunRecord]) -> crate::signals::RetryHistory {
    let next = runs.iter().map(|r| r.run.attempt + 1).max().unwrap_or(0);
    let avoid = runs.iter().filter(|r| r.run.status == JobRunStatus::Failed).map(|r| r.run.node_uuid).collect();
    (next, avoid)
}

/// The transition `job`'s runs call for, if any (`runs`: all of its runs, in the
/// store's order for a job: created_at, attempt, rank).
fn settlement(job: &Job, runs: &[RunRecord]) -> Option<JobTransition> {
    let facts: Vec<RunFacts> = runs.iter().map(run_facts).collect();
    settle(&job_facts(job), &facts).map(|d| JobTransition {
        from: vec![d.from],
        to: d.to,
        reason: d.reason,
        now_ms: now_ms(),
    })
}

fn job_facts(job: &Job) -> JobFacts {
    JobFacts {
        status: job.status,
        task: job.task,
        max_retry_count: job.max_retry_count,
        status_reason: job.status_reason.clone(),
    }
}

fn run_facts(run: &RunRecord) -> RunFacts {
    RunFacts { attempt: run.run.attempt, status: run.run.status, status_reason: run.run.status_reason.clone() }
}
