//! `/v1/relays` handlers: what relays (`gantry relay`, key preset `relay`) ask the
//! control plane: the public key relay tokens are verified with
//! (`crates/relay/src/token.rs`), so relays admit nodes without ever holding a secret
//! of the control plane; and which of the runs a relay carries have ended, so it
//! closes their public ports also when the node that would say so is down.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use gantry_types::ErrorBody;
use gantry_types::protocol::{EndedRuns, EndedRunsQuery, MAX_ENDED_RUNS_QUERY, RelayTokenKey};
use serde::de::IgnoredAny;

use crate::app;
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

/// Which of the given runs have ended (needs `relays.read`): ended, being cancelled,
/// or unknown. A relay asks every half second about the runs whose public ports it
/// carries and closes the ports of those (also when the run's node, which would
/// otherwise tell it, is down). A POST because the list may be long; it changes nothing.
#[utoipa::path(post, path = "/v1/relays/ended-runs", tag = "relays", request_body = EndedRunsQuery,
    responses(
        (status = 200, description = "The asked runs that ended", body = EndedRuns),
        (status = 400, description = "A run that is not a uuid, or more than 1,000 runs", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks relays.read", body = ErrorBody),
    ))]
pub(super) async fn ended_runs(
    State(state): State<Arc<AppState>>,
    req: Signed<EndedRunsQuery>,
) -> Result<Json<EndedRuns>, ApiError> {
    req.caller.require("relays", "read")?;
    let runs = req.body.runs;
    if runs.len() > MAX_ENDED_RUNS_QUERY {
        return Err(ApiError::field(
            "runs",
            format!("{} runs; at most {MAX_ENDED_RUNS_QUERY} per request", runs.len()),
        ));
    }
    Ok(Json(EndedRuns { ended: app::runs::ended_among(&state, &runs).await? }))
}
