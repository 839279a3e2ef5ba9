//! `/v1/job-runs` handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gantry_types::ErrorBody;
use gantry_types::job_run::JobRun;
use gantry_types::list::{ListResponse, parse_job_run_filter};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// List job runs (without logs), newest first.
#[utoipa::path(get, path = "/v1/job-runs", tag = "job-runs",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[job_uuid]" = Option<String>, Query, description = "comma list of job uuids"),
        ("filter[status]" = Option<String>, Query, description = "comma list, e.g. RUNNING"),
        ("filter[node_uuid]" = Option<String>, Query, description = "comma list of node uuids"),
    ),
    responses(
        (status = 200, description = "One page of runs", body = ListResponse<JobRun>),
        (status = 400, description = "Bad paging or filter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_job_runs(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<JobRun>>, ApiError> {
    let scope = req.caller.require("job_runs", "read")?;
    let (paging, filter) = list_params(&req.query, parse_job_run_filter)?;
    let page = app::runs::list(&state, scope, &filter, paging).await?;
    Ok(envelope(page, paging))
}

/// Get one job run, with its logs.
#[utoipa::path(get, path = "/v1/job-runs/{uuid}", tag = "job-runs",
    params(("uuid" = String, Path, description = "Job run uuid")),
    responses(
        (status = 200, description = "The run, with logs", body = JobRun),
        (status = 404, description = "No such run in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn get_job_run(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<JobRun>, ApiError> {
    let scope = req.caller.require("job_runs", "read")?;
    Ok(Json(app::runs::fetch(&state, scope, path_id("uuid", &uuid)?).await?))
}

/// A run's output as plain text; with `follow=true` the response stays open and
/// carries new output as the node delivers it, ending when the run ends.
///
/// Following works on any instance of the control plane, whichever instance the node
/// delivers its output to (see `log_follow`).
#[utoipa::path(get, path = "/v1/job-runs/{uuid}/logs", tag = "job-runs",
    params(
        ("uuid" = String, Path, description = "Job run uuid"),
        ("follow" = Option<bool>, Query, description = "Keep streaming new output until the run ends"),
    ),
    responses(
        (status = 200, description = "The output so far (then, when following, as it comes)", body = String, content_type = "text/plain"),
        (status = 400, description = "Bad follow value", body = ErrorBody),
        (status = 404, description = "No such run in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn get_job_run_logs(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<axum::response::Response, ApiError> {
    let scope = req.caller.require("job_runs", "read")?;
    let id: gantry_types::JobRunId = path_id("uuid", &uuid)?;
    let mut follow = false;
    for (k, v) in &req.query {
        match (k.as_str(), v.as_str()) {
            ("follow", "true" | "1") => follow = true,
            ("follow", "false" | "0") => follow = false,
            ("follow", other) => {
                return Err(ApiError::field("follow", format!("must be true or false, got {other:?}")));
            }
            _ => {}
        }
    }
    let body = if follow {
        // Subscribe before reading what is stored, so nothing delivered in between is missed.
        let news = state.signals.follow_logs(id);
        let tail = app::runs::log_tail(&state, scope, id).await?;
        axum::body::Body::from_stream(super::log_follow::stream(state.clone(), id, tail, news))
    } else {
        axum::body::Body::from(app::runs::fetch(&state, scope, id).await?.logs.unwrap_or_default())
    };
    Ok(axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(axum::http::header::CACHE_CONTROL, "no-cache")
        .header("X-Content-Type-Options", "nosniff")
        .body(body)
        .expect("static headers are valid"))
}
