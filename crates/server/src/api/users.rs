//! `/v1/users/me`: any valid key may ask who it is, whatever its permissions.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use gantry_types::account::User;
use gantry_types::{ErrorBody, Timestamp};
use serde::de::IgnoredAny;

use crate::app::error::AppError;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// The calling key's user and account.
#[utoipa::path(get, path = "/v1/users/me", tag = "users",
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn me(State(state): State<Arc<AppState>>, req: Signed<IgnoredAny>) -> Result<Json<User>, ApiError> {
    let id = req.caller.account();
    let account = state.store.account_fetch(id).await?.ok_or_else(|| {
        AppError::internal(format!("key {} belongs to missing account {id}", req.caller.key.record.uuid))
    })?;
    Ok(Json(User {
        object: "user".into(),
        uuid: account.uuid,
        account_uuid: account.uuid,
        email: account.email,
        name: account.name,
        permissions: req.caller.key.record.permissions.clone(),
        created_at: Timestamp(account.created_at_ms),
    }))
}
