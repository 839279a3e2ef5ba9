//! Jobs: create, read, list, cancel.
//!
//! Registry secrets are encrypted before the job reaches the store and redacted in
//! every response: a stored job holds ciphertext, a returned job holds
//! [`REDACTED`] where a secret is set (so clients can tell that one is).
//!
//! `env` values are encrypted at rest the same way (they carry cloud credentials in
//! practice) and shown in clear only to the job's owner (a caller reading with the
//! `.own` scope of the job's account); operators and run snapshots see [`REDACTED`].

use gantry_store::{JobTransition, Page, RunFilter};
use gantry_types::job::{CreateJobRequest, Job, JobSpec, JobStatus};
use gantry_types::job_run::JobRunStatus;
use gantry_types::list::{JobFilter, Paging};
use gantry_types::validate::validate_create_job;
use gantry_types::{AccountId, JobId, RecipeId};

use crate::app::error::AppError;
use crate::app::quotas::Admission;
use crate::state::{AppState, now_ms};

/// What a secret reads as in responses.
pub use gantry_types::job::REDACTED;

/// Reason recorded when a cancel request gives none.
pub const DEFAULT_CANCEL_REASON: &str = "Cancelled by user";

/// `POST /v1/jobs` and cooking a recipe: checks a create-job body (every bad field,
/// the GPU registry's verdict included, in one 400) and creates the job. The one
/// path by which a job body becomes a job, so a cooked job is held to exactly the
/// rules of a submitted one.
pub async fn submit(
    state: &AppState,
    account: AccountId,
    req: CreateJobRequest,
    source_recipe: Option<RecipeId>,
    admission: Admission,
) -> Result<Job, AppError> {
    let spec = check(state, req).await?;
    create(state, account, spec, source_recipe, admission).await
}

/// Checks a create-job body as `POST /v1/jobs` does; recipes' payloads are checked
/// with it too.
pub async fn check(state: &AppState, req: CreateJobRequest) -> Result<JobSpec, AppError> {
    let gpu = (req.gpu_name.clone(), req.gpu_registry_uuid.clone());
    let ports =
        req.parameters.as_ref().and_then(|p| p.parameters.as_ref()).and_then(|d| d.ports.as_ref()).map_or(0, Vec::len);
    let too_many_ports = (ports > state.auth.max_ports_per_job).then(|| {
        gantry_types::FieldError::new(
            "parameters.parameters.ports",
            format!("at most {} ports per job (this server's limit), got {ports}", state.auth.max_ports_per_job),
        )
    });
    match validate_create_job(req) {
        Ok(spec) if too_many_ports.is_none() => Ok(spec),
        Ok(_) => Err(AppError::Validation(too_many_ports.into_iter().collect())),
        Err(mut errors) => {
            errors.extend(too_many_ports);
            let gpu_errors =
                crate::app::gpu_registry::job_gpu_errors(state, gpu.0.as_deref(), gpu.1.as_deref()).await?;
            errors.extend(gpu_errors);
            Err(errors.into())
        }
    }
}

/// Creates a PENDING job for `account` from a checked spec; returns it as the
/// client sees it.
pub async fn create(
    state: &AppState,
    account: AccountId,
    spec: JobSpec,
    source_recipe: Option<RecipeId>,
    admission: Admission,
) -> Result<Job, AppError> {
    // An unknown GPU is a 400 now, not a job PENDING forever (the registry is in memory).
    crate::app::gpu_registry::check_job(state, &spec).await?;
    // An inactive consumer, or one who cannot pay an hour (billing enforced), stops here.
    let profile = crate::app::ledger::admit(state, account, &spec).await?;
    // The store checks the quotas in the insert's own serialized step (exact, and a
    // refusal writes nothing); see `app::quotas`.
    let quota = crate::app::quotas::job_quota(state.auth.quotas, &profile, admission);
    let mut job = spec.into_job(JobId::new(), account, now_ms());
    job.source_recipe_uuid = source_recipe.map(|r| r.to_string());
    // The owner's answer shows `env` in clear: keep it rather than decrypt it again.
    let plain_env = job.parameters.parameters.env.clone();
    job.parameters.parameters.map_secrets(|s| Ok::<_, AppError>(state.secrets.encrypt(s)))?;
    job.parameters.parameters.map_env(|v| Ok::<_, AppError>(state.secrets.encrypt(v)))?;
    state.store.job_create_within(&job, &quota).await?;
    state.signals.job_submitted(&job);
    let _ = job.parameters.parameters.map_secrets(|_| Ok::<_, ()>(REDACTED.to_string()));
    job.parameters.parameters.env = plain_env;
    Ok(with_reason(state, job))
}

/// Fetches a job in scope; another account's job is "not found".
pub async fn fetch(state: &AppState, scope: Option<AccountId>, id: JobId) -> Result<Job, AppError> {
    let job = state.store.job_fetch(scope, id).await?.ok_or_else(|| AppError::not_found("job", id))?;
    let mut jobs = [with_reason(state, view(state, job, scope))];
    mirror_access_tokens(state, &mut jobs).await?;
    let [job] = jobs;
    Ok(job)
}

/// Lists jobs in scope.
pub async fn list(
    state: &AppState,
    scope: Option<AccountId>,
    filter: &JobFilter,
    paging: Paging,
) -> Result<Page<Job>, AppError> {
    let mut page = state.store.job_list(scope, filter, paging).await?;
    page.items = page.items.into_iter().map(|j| with_reason(state, view(state, j, scope))).collect();
    mirror_access_tokens(state, &mut page.items).await?;
    Ok(page)
}

/// Upstream's job object carries `container_access_tokens` next to the run's (API.md
/// §6.6); clients that read the job rather than its runs expect the current run's
/// token there. The job mirrors the tokens of its live runs (ASSIGNED, PREPARING,
/// RUNNING: one per gang member, by rank), so it is `[]` while PENDING and once the
/// job has ended, as before. Derived at read time (one query per page), never stored.
async fn mirror_access_tokens(state: &AppState, jobs: &mut [Job]) -> Result<(), AppError> {
    let live = |j: &Job| matches!(j.status, JobStatus::Assigned | JobStatus::Running | JobStatus::Cancelling);
    let job_uuids: Vec<JobId> = jobs.iter().filter(|j| live(j)).map(|j| j.uuid).collect();
    if job_uuids.is_empty() {
        return Ok(());
    }
    let filter = RunFilter {
        job_uuids,
        statuses: vec![JobRunStatus::Assigned, JobRunStatus::Preparing, JobRunStatus::Running],
        node_uuids: vec![],
    };
    // Live runs are at most a gang per job: a page of 50 jobs fits well within this.
    let paging = Paging { page: 1, limit: 10_000, newest_first: false };
    let mut runs = state.store.run_list(None, &filter, paging).await?.items;
    runs.sort_by_key(|r| (r.run.attempt, r.run.rank));
    for job in jobs.iter_mut().filter(|j| live(j)) {
        job.container_access_tokens = runs
            .iter()
            .filter(|r| r.run.job_uuid == job.uuid)
            .flat_map(|r| r.run.container_access_tokens.iter().cloned())
            .collect();
    }
    Ok(())
}

/// Cancels a job. Idempotent: PENDING ends CANCELLED at once; ASSIGNED/RUNNING
/// become CANCELLING until the node confirms its containers stopped; a job already
/// cancelling or terminal is returned unchanged.
pub async fn cancel(
    state: &AppState,
    scope: Option<AccountId>,
    id: JobId,
    reason: Option<String>,
) -> Result<Job, AppError> {
    let reason = reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| DEFAULT_CANCEL_REASON.into());
    // Compare-and-set loop: the job may change status between the read and the
    // write (e.g. get assigned); retry with what it became.
    loop {
        let job = state.store.job_fetch(scope, id).await?.ok_or_else(|| AppError::not_found("job", id))?;
        let to = match job.status {
            JobStatus::Pending => JobStatus::Cancelled,
            JobStatus::Assigned | JobStatus::Running => JobStatus::Cancelling,
            _ => return Ok(view(state, job, scope)),
        };
        let transition = JobTransition { from: vec![job.status], to, reason: Some(reason.clone()), now_ms: now_ms() };
        if let Some(after) = state.store.job_transition(scope, id, &transition).await? {
            if to == JobStatus::Cancelling {
                // Tell the nodes holding its runs to stop them.
                for run in state.store.run_list_for_job(id).await? {
                    state.signals.bump(run.run.node_uuid);
                }
            }
            let mut jobs = [view(state, after, scope)];
            mirror_access_tokens(state, &mut jobs).await?;
            let [job] = jobs;
            return Ok(job);
        }
    }
}

/// A PENDING job without a stored reason shows why the scheduler could not place it
/// at its last pass (derived, so it is never stale for long and never written).
fn with_reason(state: &AppState, mut job: Job) -> Job {
    if job.status == JobStatus::Pending && job.status_reason.is_none() {
        job.status_reason = state.scheduling.pending_reasons.read().expect("reasons poisoned").get(&job.uuid).cloned();
    }
    job
}

/// The job as anyone but its owner may see it (and as run snapshots keep it): secrets
/// and `env` values replaced by [`REDACTED`].
pub fn redact(job: Job) -> Job {
    job.redacted()
}

/// The job as `viewer` sees it: the owner reading with `.own` scope (`Some(account)`)
/// gets `env` in clear, everyone else [`redact`]'s view; secrets are redacted for all.
pub fn view(state: &AppState, mut job: Job, viewer: Option<AccountId>) -> Job {
    if viewer != Some(job.account_uuid) {
        return redact(job);
    }
    let _ = job.parameters.parameters.map_secrets(|_| Ok::<_, ()>(REDACTED.to_string()));
    let _ = job.parameters.parameters.map_env(|v| Ok::<_, ()>(open_env(state, v)));
    job
}

/// An `env` value in clear. Jobs stored before env encryption hold plain values, which
/// do not decrypt and are returned as they are.
pub fn open_env(state: &AppState, value: &str) -> String {
    state.secrets.decrypt(value).unwrap_or_else(|_| value.to_owned())
}
