//! `/v1/webhooks` handlers (see `app::webhooks` and docs/webhooks.md).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gantry_types::list::ListResponse;
use gantry_types::webhook::{CreateWebhookRequest, Webhook, WebhookDelivery};
use gantry_types::{ErrorBody, FieldError, WebhookId};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// Lists take paging only.
fn no_filters(query: &[(String, String)]) -> Result<(), Vec<FieldError>> {
    let unknown: Vec<FieldError> = query
        .iter()
        .filter(|(k, _)| k.starts_with("filter["))
        .map(|(k, _)| FieldError::new(k.clone(), "this list has no filters"))
        .collect();
    if unknown.is_empty() { Ok(()) } else { Err(unknown) }
}

/// Create a webhook endpoint. The response is the only time its signing `secret`
/// is shown. Destinations on loopback, private or link-local addresses are refused
/// unless the server allows them.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Endpoint created; secret shown once", body = Webhook),
        (status = 400, description = "Bad url (or a refused destination), events or description", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn create_webhook(
    State(state): State<Arc<AppState>>,
    req: Signed<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    let webhook = app::webhooks::create(&state, &req.caller, req.body).await?;
    Ok((StatusCode::CREATED, Json(webhook)))
}

/// List webhook endpoints (never with secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
    ),
    responses(
        (status = 200, description = "One page of endpoints", body = ListResponse<Webhook>),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<Webhook>>, ApiError> {
    let (paging, ()) = list_params(&req.query, no_filters)?;
    let page = app::webhooks::list(&state, app::webhooks::scope(&req.caller), paging).await?;
    Ok(envelope(page, paging))
}

/// Get one webhook endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{uuid}", tag = "webhooks",
    params(("uuid" = String, Path, description = "Webhook uuid")),
    responses(
        (status = 200, description = "The endpoint", body = Webhook),
        (status = 400, description = "Bad uuid", body = ErrorBody),
        (status = 404, description = "No such endpoint in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn get_webhook(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<Webhook>, ApiError> {
    let id: WebhookId = path_id("uuid", &uuid)?;
    Ok(Json(app::webhooks::fetch(&state, app::webhooks::scope(&req.caller), id).await?))
}

/// Delete a webhook endpoint; its pending deliveries are dropped.
#[utoipa::path(delete, path = "/v1/webhooks/{uuid}", tag = "webhooks",
    params(("uuid" = String, Path, description = "Webhook uuid")),
    responses(
        (status = 200, description = "The deleted endpoint", body = Webhook),
        (status = 400, description = "Bad uuid", body = ErrorBody),
        (status = 404, description = "No such endpoint in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<Webhook>, ApiError> {
    let id: WebhookId = path_id("uuid", &uuid)?;
    Ok(Json(app::webhooks::delete(&state, app::webhooks::scope(&req.caller), id).await?))
}

/// An endpoint's deliveries, newest event first: status, attempts, the last
/// attempt's status code and error, and when the next attempt is due.
#[utoipa::path(get, path = "/v1/webhooks/{uuid}/deliveries", tag = "webhooks",
    params(
        ("uuid" = String, Path, description = "Webhook uuid"),
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default): event order"),
    ),
    responses(
        (status = 200, description = "One page of deliveries", body = ListResponse<WebhookDelivery>),
        (status = 400, description = "Bad uuid or paging", body = ErrorBody),
        (status = 404, description = "No such endpoint in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_webhook_deliveries(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<WebhookDelivery>>, ApiError> {
    let id: WebhookId = path_id("uuid", &uuid)?;
    let (paging, ()) = list_params(&req.query, no_filters)?;
    let page = app::webhooks::deliveries(&state, app::webhooks::scope(&req.caller), id, paging).await?;
    Ok(envelope(page, paging))
}
