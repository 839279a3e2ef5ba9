//! `/v1/consumer-profiles` handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gantry_types::ErrorBody;
use gantry_types::billing::{ConsumerProfile, UpdateConsumerProfileRequest, parse_consumer_profile_filter};
use gantry_types::list::ListResponse;
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// List consumer profiles (your own, created on first use; operators see all).
#[utoipa::path(get, path = "/v1/consumer-profiles", tag = "billing",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[uuid]" = Option<String>, Query, description = "comma list of profile uuids"),
        ("filter[account_uuid]" = Option<String>, Query, description = "comma list of account uuids"),
        ("filter[is_compute_billing_enabled]" = Option<String>, Query, description = "true or false"),
    ),
    responses(
        (status = 200, description = "One page of profiles", body = ListResponse<ConsumerProfile>),
        (status = 400, description = "Bad paging or filter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_consumer_profiles(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<ConsumerProfile>>, ApiError> {
    let scope = req.caller.require("consumer_profiles", "read")?;
    let (paging, filter) = list_params(&req.query, parse_consumer_profile_filter)?;
    let page = app::profiles::list(&state, scope, req.caller.account(), &filter, paging).await?;
    Ok(envelope(page, paging))
}

/// Update a consumer profile: the owner sets `allowed_region_codes`; operators also
/// `is_active` and `is_compute_billing_enabled`.
#[utoipa::path(patch, path = "/v1/consumer-profiles/{uuid}", tag = "billing", request_body = UpdateConsumerProfileRequest,
    params(("uuid" = String, Path, description = "Profile uuid")),
    responses(
        (status = 200, description = "The profile after the change", body = ConsumerProfile),
        (status = 400, description = "Invalid body; every bad field is named", body = ErrorBody),
        (status = 403, description = "An operator-only field, or the key lacks consumer_profiles.update", body = ErrorBody),
        (status = 404, description = "No such profile in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn update_consumer_profile(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<UpdateConsumerProfileRequest>,
) -> Result<Json<ConsumerProfile>, ApiError> {
    let scope = req.caller.require("consumer_profiles", "update")?;
    let id = path_id("uuid", &uuid)?;
    Ok(Json(app::profiles::update(&state, scope, scope.is_none(), id, req.body).await?))
}
