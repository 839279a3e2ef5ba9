//! `/v1/api-keys` handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gantry_types::api_key::{ApiKey, CreateApiKeyRequest};
use gantry_types::list::{ListResponse, parse_api_key_filter};
use gantry_types::{ApiKeyId, ErrorBody};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::{AppState, now_ms};

/// Create an API key. The response is the only time `secret_key` is shown.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Key created; secret_key shown once", body = ApiKey),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 403, description = "Key lacks api_keys.create, or asks for permissions it does not hold", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn create_api_key(
    State(state): State<Arc<AppState>>,
    req: Signed<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<ApiKey>), ApiError> {
    req.caller.require("api_keys", "create")?;
    let spec = app::api_keys::validate(req.body, now_ms())?;
    let key = app::api_keys::create(&state, &req.caller, spec).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// List API keys (never with secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[is_revoked]" = Option<bool>, Query, description = "true or false"),
        ("filter[created_at]" = Option<String>, Query, description = "range from,to"),
        ("filter[expires_at]" = Option<String>, Query, description = "range from,to"),
        ("filter[account_uuid]" = Option<String>, Query, description = "operators: another account"),
    ),
    responses(
        (status = 200, description = "One page of keys", body = ListResponse<ApiKey>),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_api_keys(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<ApiKey>>, ApiError> {
    let scope = req.caller.require("api_keys", "read")?;
    let (paging, filter) = list_params(&req.query, parse_api_key_filter)?;
    let page = app::api_keys::list(&state, scope, filter, paging).await?;
    Ok(envelope(page, paging))
}

/// Revoke an API key (idempotent). The key stops working at once on this server
/// and within seconds on others sharing the database.
#[utoipa::path(delete, path = "/v1/api-keys/{uuid}", tag = "api-keys",
    params(("uuid" = String, Path, description = "API key uuid (not the public key)")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKey),
        (status = 404, description = "No such key in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn revoke_api_key(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ApiKey>, ApiError> {
    let scope = req.caller.require("api_keys", "delete")?;
    let id: ApiKeyId = path_id("uuid", &uuid)?;
    Ok(Json(app::api_keys::revoke(&state, scope, id).await?))
}
