//! `/v1/job-runs` handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gantry_store::RunFilter;
use gantry_types::ErrorBody;
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::list::{ListResponse, parse_paging};
use serde::de::IgnoredAny;

use super::{envelope, path_id};
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
    let paging = parse_paging(&req.query)?;
    let mut filter = RunFilter { job_uuids: vec![], statuses: vec![], node_uuids: vec![] };
    for (k, v) in &req.query {
        let items = v.split(',').map(str::trim).filter(|s| !s.is_empty());
        match k.as_str() {
            "filter[job_uuid]" => {
                for s in items {
                    filter.job_uuids.push(path_id(k, s)?);
                }
            }
            "filter[node_uuid]" => {
                for s in items {
                    filter.node_uuids.push(path_id(k, s)?);
                }
            }
            "filter[status]" => {
                for s in items {
                    filter.statuses.push(
                        JobRunStatus::parse(s)
                            .ok_or_else(|| ApiError::field(k, format!("{s:?} is not a run status")))?,
                    );
                }
            }
            k if k.starts_with("filter[") => {
                return Err(ApiError::field(k, "unknown filter; known filters: job_uuid, status, node_uuid"));
            }
            _ => {}
        }
    }
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
