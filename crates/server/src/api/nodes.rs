//! `/v1/nodes` handlers: the node object for owners and operators, drain, and the
//! agent protocol (register, sync).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gantry_types::ErrorBody;
use gantry_types::list::{ListResponse, parse_node_filter};
use gantry_types::node::{Node, RegisterNodeRequest};
use gantry_types::protocol::{DesiredState, Registration, SyncRequest};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// List nodes (your own; operators see all).
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[status]" = Option<String>, Query, description = "ONLINE, LOST (comma list)"),
    ),
    responses(
        (status = 200, description = "One page of nodes", body = ListResponse<Node>),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_nodes(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<Node>>, ApiError> {
    let scope = req.caller.require("nodes", "read")?;
    let (paging, filter) = list_params(&req.query, parse_node_filter)?;
    let page = state.store.node_list(scope, &filter.statuses, paging).await?;
    let active = app::nodes::active_runs_on(&state, page.items.iter().map(|n| n.uuid).collect()).await?;
    let items = page.items.into_iter().map(|n| app::nodes::view(n, &active)).collect();
    Ok(envelope(gantry_store::Page { items, total: page.total }, paging))
}

/// Get one node.
#[utoipa::path(get, path = "/v1/nodes/{uuid}", tag = "nodes",
    params(("uuid" = String, Path, description = "Node uuid")),
    responses(
        (status = 200, description = "The node", body = Node),
        (status = 404, description = "No such node in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn get_node(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<Node>, ApiError> {
    let scope = req.caller.require("nodes", "read")?;
    let id = path_id("uuid", &uuid)?;
    let node = state.store.node_fetch(scope, id).await?.ok_or_else(|| ApiError::not_found("node", id))?;
    let active = app::nodes::active_runs_on(&state, vec![id]).await?;
    let owner = node.account_uuid;
    let mut view = app::nodes::view(node, &active);
    // Earnings are the owner's business: an operator looking at someone's node does not see them.
    if owner == req.caller.account() {
        view.earnings = Some(app::ledger::node_earnings(&state, id, owner).await?);
    }
    Ok(Json(view))
}

/// Drain a node: it gets no new runs; running ones finish.
#[utoipa::path(put, path = "/v1/nodes/{uuid}/drain", tag = "nodes",
    params(("uuid" = String, Path, description = "Node uuid")),
    responses(
        (status = 200, description = "The node, draining", body = Node),
        (status = 404, description = "No such node in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn drain_node(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<Node>, ApiError> {
    let scope = req.caller.require("nodes", "update")?;
    Ok(Json(app::nodes::set_draining(&state, scope, path_id("uuid", &uuid)?, true).await?))
}

/// Undrain a node: it may receive runs again.
#[utoipa::path(put, path = "/v1/nodes/{uuid}/undrain", tag = "nodes",
    params(("uuid" = String, Path, description = "Node uuid")),
    responses(
        (status = 200, description = "The node, schedulable", body = Node),
        (status = 404, description = "No such node in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn undrain_node(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<Node>, ApiError> {
    let scope = req.caller.require("nodes", "update")?;
    Ok(Json(app::nodes::set_draining(&state, scope, path_id("uuid", &uuid)?, false).await?))
}

/// Node agents: register this machine (or re-attach to its node after a restart).
#[utoipa::path(post, path = "/v1/nodes/register", tag = "node-protocol", request_body = RegisterNodeRequest,
    responses(
        (status = 200, description = "The node and the lease epoch to sync under", body = Registration),
        (status = 400, description = "Invalid inventory", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks nodes.create (use the node preset)", body = ErrorBody),
    ))]
pub(super) async fn register_node(
    State(state): State<Arc<AppState>>,
    req: Signed<RegisterNodeRequest>,
) -> Result<Json<Registration>, ApiError> {
    req.caller.require("nodes", "create")?;
    Ok(Json(app::nodes::register(&state, req.caller.account(), req.body).await?))
}

/// Node agents: heartbeat, report observed runs, and receive the desired runs
/// (long-polls up to `wait_ms` while `desired_version` is current).
#[utoipa::path(post, path = "/v1/nodes/{uuid}/sync", tag = "node-protocol", request_body = SyncRequest,
    params(("uuid" = String, Path, description = "Node uuid")),
    responses(
        (status = 200, description = "Desired state (fenced when the epoch is stale)", body = DesiredState),
        (status = 404, description = "No such node in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn sync_node(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<SyncRequest>,
) -> Result<Json<DesiredState>, ApiError> {
    let scope = req.caller.require("nodes", "update")?;
    req.caller.require("job_runs", "update")?;
    Ok(Json(app::nodes::sync(&state, scope, path_id("uuid", &uuid)?, req.body).await?))
}
