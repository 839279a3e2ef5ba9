//! `/v1/jobs` handlers: extract, authorize, call `app::jobs`, convert.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gantry_types::job::{CancelJobRequest, CreateJobRequest, Job};
use gantry_types::list::{ListResponse, parse_job_filter};
use gantry_types::{ErrorBody, JobId};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// Create a job.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJobRequest,
    responses(
        (status = 201, description = "Job created, PENDING", body = Job),
        (status = 400, description = "Invalid body; every bad field is named", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks jobs.create, or the account is at its stored-job-bytes quota (job_storage_quota_exceeded)", body = ErrorBody),
        (status = 429, description = "The account is at its pending-jobs quota (pending_jobs_quota_exceeded) or over its request rate (rate_limited); see Retry-After", body = ErrorBody),
    ))]
pub(super) async fn create_job(
    State(state): State<Arc<AppState>>,
    req: Signed<CreateJobRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let account = req.caller.require("jobs", "create")?.unwrap_or(req.caller.account());
    let admission = app::quotas::Admission::for_permissions(&req.caller.key.record.permissions);
    let job = app::jobs::submit(&state, account, req.body, None, admission).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// List jobs, newest first by default.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(
        ("page" = Option<u64>, Query, description = "1-based page, default 1"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[uuid]" = Option<String>, Query, description = "comma list of job uuids"),
        ("filter[status]" = Option<String>, Query, description = "comma list, e.g. PENDING,RUNNING"),
        ("filter[task]" = Option<String>, Query, description = "BATCH or PERSISTENT"),
        ("filter[cpu_count]" = Option<String>, Query, description = "value or range min,max"),
        ("filter[gpu_count]" = Option<String>, Query, description = "value or range min,max"),
        ("filter[created_at]" = Option<String>, Query, description = "range of RFC 3339 dates from,to"),
        ("filter[min_ram_gb]" = Option<String>, Query, description = "N: at least N (the job asks for N or more); or a range min,max"),
        ("filter[min_storage_gb]" = Option<String>, Query, description = "N: at least N (the job asks for N or more); or a range min,max"),
        ("filter[min_vram_gb]" = Option<String>, Query, description = "N: at least N (the job asks for N or more); or a range min,max"),
        ("filter[source_recipe_uuid]" = Option<String>, Query, description = "comma list (alias filter[recipe_uuid])"),
    ),
    responses(
        (status = 200, description = "One page of jobs", body = ListResponse<Job>),
        (status = 400, description = "Bad paging or filter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_jobs(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<Job>>, ApiError> {
    let scope = req.caller.require("jobs", "read")?;
    let (paging, filter) = list_params(&req.query, parse_job_filter)?;
    let page = app::jobs::list(&state, scope, &filter, paging).await?;
    Ok(envelope(page, paging))
}

/// Get one job.
#[utoipa::path(get, path = "/v1/jobs/{uuid}", tag = "jobs",
    params(("uuid" = String, Path, description = "Job uuid")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<Job>, ApiError> {
    let scope = req.caller.require("jobs", "read")?;
    let id: JobId = path_id("uuid", &uuid)?;
    Ok(Json(app::jobs::fetch(&state, scope, id).await?))
}

/// Cancel a job. Idempotent: a PENDING job ends CANCELLED at once, a running one
/// goes CANCELLING until its containers stop, a finished one is returned unchanged.
#[utoipa::path(put, path = "/v1/jobs/{uuid}/cancel", tag = "jobs", request_body = CancelJobRequest,
    params(("uuid" = String, Path, description = "Job uuid")),
    responses(
        (status = 200, description = "The job after the cancel request", body = Job),
        (status = 404, description = "No such job in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn cancel_job(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<Option<CancelJobRequest>>,
) -> Result<Json<Job>, ApiError> {
    let scope = req.caller.require("jobs", "update")?;
    let id: JobId = path_id("uuid", &uuid)?;
    let reason = req.body.and_then(|b| b.reason);
    Ok(Json(app::jobs::cancel(&state, scope, id, reason).await?))
}
