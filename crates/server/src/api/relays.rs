//! `/v1/relays` handlers: what relays (`gantry relay`, key preset `relay`) ask the
//! control plane. Today one thing: the public key relay tokens are verified with
//! (`crates/relay/src/token.rs`), so relays admit nodes without ever holding a secret
//! of the control plane.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use gantry_types::ErrorBody;
use gantry_types::protocol::RelayTokenKey;
use serde::de::IgnoredAny;

use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// The public key relays verify nodes' relay tokens with (needs `relays.read`, which
/// the `relay` key preset holds).
#[utoipa::path(get, path = "/v1/relays/token-key", tag = "relays",
    responses(
        (status = 200, description = "The relay-token verification key", body = RelayTokenKey),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks relays.read", body = ErrorBody),
    ))]
pub(super) async fn relay_token_key(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<RelayTokenKey>, ApiError> {
    req.caller.require("relays", "read")?;
    Ok(Json(RelayTokenKey { public_key: state.relays.issuer.public_key_hex(), format: "v1".into() }))
}
