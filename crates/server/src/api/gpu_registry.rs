//! `/v1/gpu-registry` handlers: the GPU models jobs match against.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gantry_types::gpu::{CreateGpuModelRequest, GpuModel, parse_gpu_model_filter, validate_create_gpu_model};
use gantry_types::list::ListResponse;
use gantry_types::permissions::{Scope, scope_for};
use gantry_types::{ErrorBody, GpuModelId};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::app::error::AppError;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// List GPU models, newest first by default. Served from the server's in-memory
/// registry (another server's addition appears within 30 s).
#[utoipa::path(get, path = "/v1/gpu-registry", tag = "gpu-registry",
    params(
        ("page" = Option<u64>, Query, description = "1-based page, default 1"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[min_vram_gb]" = Option<String>, Query, description = "at least this many GB; or a range min,max"),
        ("filter[only_available]" = Option<bool>, Query, description = "true: only models on at least one online node"),
        ("filter[name]" = Option<String>, Query, description = "comma list; each matches a model's name or any alias, case-insensitively"),
        ("filter[vendor]" = Option<String>, Query, description = "comma list, case-insensitive"),
        ("filter[is_official]" = Option<bool>, Query, description = "true: Gantry's seeded catalogue; false: operators' additions"),
        ("filter[uuid]" = Option<String>, Query, description = "comma list of model uuids"),
    ),
    responses(
        (status = 200, description = "One page of GPU models", body = ListResponse<GpuModel>),
        (status = 400, description = "Bad paging or filter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks gpu_registry.read", body = ErrorBody),
    ))]
pub(super) async fn list_gpu_models(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<GpuModel>>, ApiError> {
    req.caller.require("gpu_registry", "read")?;
    let (paging, filter) = list_params(&req.query, parse_gpu_model_filter)?;
    let page = app::gpu_registry::list(&state, &filter, paging).await?;
    Ok(envelope(page, paging))
}

/// Get one GPU model.
#[utoipa::path(get, path = "/v1/gpu-registry/{uuid}", tag = "gpu-registry",
    params(("uuid" = String, Path, description = "GPU model uuid (what gpu_registry_uuid names)")),
    responses(
        (status = 200, description = "The model", body = GpuModel),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks gpu_registry.read", body = ErrorBody),
    ))]
pub(super) async fn get_gpu_model(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<GpuModel>, ApiError> {
    req.caller.require("gpu_registry", "read")?;
    let id: GpuModelId = path_id("uuid", &uuid)?;
    Ok(Json(app::gpu_registry::fetch(&state, id).await?))
}

/// Add a GPU model (operators only: `gpu_registry.create.all`). Its name and aliases
/// must not name any model already registered.
#[utoipa::path(post, path = "/v1/gpu-registry", tag = "gpu-registry", request_body = CreateGpuModelRequest,
    responses(
        (status = 201, description = "Model added", body = GpuModel),
        (status = 400, description = "Invalid body, or an alias already names a model; every bad field is named", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Not an operator key (needs gpu_registry.create.all)", body = ErrorBody),
        (status = 409, description = "The name already names a model", body = ErrorBody),
    ))]
pub(super) async fn create_gpu_model(
    State(state): State<Arc<AppState>>,
    req: Signed<CreateGpuModelRequest>,
) -> Result<(StatusCode, Json<GpuModel>), ApiError> {
    // The registry is shared by every account: only operators (`.all`) change it, and
    // a key holding just `.own` is told so rather than pointed at the consumer preset.
    if scope_for(&req.caller.key.record.permissions, "gpu_registry", "create") != Some(Scope::All) {
        return Err(AppError::Forbidden {
            code: "missing_permission",
            message: "only admins add GPU models: this needs gpu_registry.create.all (the admin preset); \
                      gpu_registry.create.own is not enough"
                .into(),
        }
        .into());
    }
    let spec = validate_create_gpu_model(req.body)?;
    let model = app::gpu_registry::create(&state, spec).await?;
    Ok((StatusCode::CREATED, Json(model)))
}
