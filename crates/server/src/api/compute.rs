//! `/v1/compute/...` and `/v1/accounts/{uuid}/balance` handlers: offers, the
//! ledger, balances and credit purchases.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gantry_types::billing::{
    Balance, ComputeOffer, CreateCreditPurchaseRequest, CreditPurchase, CreditPurchaseCreated, CreditPurchaseStatus,
    LedgerTransaction, SettleCreditPurchaseRequest, parse_offer_filter,
};
use gantry_types::list::{ListResponse, parse_paging};
use gantry_types::{AccountId, ErrorBody, FieldError};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::app::error::AppError;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// Refuses every `filter[...]` (for lists that have none).
fn no_filters(pairs: &[(String, String)]) -> Result<(), Vec<FieldError>> {
    let bad: Vec<FieldError> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with("filter["))
        .map(|(k, _)| FieldError::new(k.clone(), "unknown filter; this list has none"))
        .collect();
    if bad.is_empty() { Ok(()) } else { Err(bad) }
}

/// List compute offers: live, schedulable capacity grouped by hardware and region,
/// priced from the operator's price table, cheapest first.
#[utoipa::path(get, path = "/v1/compute/offers", tag = "billing",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("filter[cpu_count]" = Option<u32>, Query, description = "at least this many free cores"),
        ("filter[gpu_count]" = Option<u32>, Query, description = "at least this many free GPUs"),
        ("filter[gpu_name]" = Option<String>, Query, description = "GPU model name or alias"),
        ("filter[gpu_registry_uuid]" = Option<String>, Query, description = "GPU model uuid"),
        ("filter[min_vram_gb]" = Option<f64>, Query, description = "free VRAM per GPU, GB"),
        ("filter[min_ram_gb]" = Option<f64>, Query, description = "free RAM, GB"),
        ("filter[min_storage_gb]" = Option<f64>, Query, description = "free storage, GB"),
        ("filter[allowed_region_codes]" = Option<String>, Query, description = "comma list; intersected with your consumer profile's allowlist"),
    ),
    responses(
        (status = 200, description = "One page of offers", body = ListResponse<ComputeOffer>),
        (status = 400, description = "Bad paging or filter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_offers(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<ComputeOffer>>, ApiError> {
    req.caller.require("compute", "read")?;
    let (paging, filter) = list_params(&req.query, parse_offer_filter)?;
    let profile = app::profiles::ensure(&state, req.caller.account()).await?;
    let offers = app::offers::list(&state, &filter, &profile.allowed_region_codes).await?;
    let total = offers.len() as u64;
    let items = offers
        .into_iter()
        .skip(usize::try_from(paging.offset()).unwrap_or(usize::MAX))
        .take(paging.limit as usize)
        .collect();
    Ok(envelope(gantry_store::Page { items, total }, paging))
}

/// An account's balance (your own; operators any).
#[utoipa::path(get, path = "/v1/accounts/{uuid}/balance", tag = "billing",
    params(("uuid" = String, Path, description = "Account uuid (= the user uuid of /v1/users/me)")),
    responses(
        (status = 200, description = "The balance", body = Balance),
        (status = 404, description = "No such account, or not yours", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn get_balance(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<Balance>, ApiError> {
    let scope = req.caller.require("accounts", "read")?;
    let id: AccountId = path_id("uuid", &uuid)?;
    if scope.is_some_and(|own| own != id) || state.store.account_fetch(id).await?.is_none() {
        return Err(ApiError::not_found("account", id));
    }
    Ok(Json(app::ledger::balance(&state, id).await?))
}

/// List ledger transactions (your account's side of each), newest first.
#[utoipa::path(get, path = "/v1/compute/ledger/transactions", tag = "billing",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
    ),
    responses(
        (status = 200, description = "One page of ledger lines", body = ListResponse<LedgerTransaction>),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_ledger_transactions(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<LedgerTransaction>>, ApiError> {
    let scope = req.caller.require("compute", "read")?;
    let (paging, ()) = list_params(&req.query, no_filters)?;
    Ok(envelope(app::ledger::list(&state, scope, paging).await?, paging))
}

/// Start a credit purchase (USD). With the manual provider an operator settles it.
#[utoipa::path(post, path = "/v1/compute/ledger/credit-purchases", tag = "billing", request_body = CreateCreditPurchaseRequest,
    responses(
        (status = 201, description = "The purchase, PENDING, and its checkout session", body = CreditPurchaseCreated),
        (status = 400, description = "Invalid body; every bad field is named", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn create_credit_purchase(
    State(state): State<Arc<AppState>>,
    req: Signed<CreateCreditPurchaseRequest>,
) -> Result<(StatusCode, Json<CreditPurchaseCreated>), ApiError> {
    req.caller.require("compute", "create")?;
    let created = app::payments::create(&state, req.caller.account(), req.body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List credit purchases, newest first.
#[utoipa::path(get, path = "/v1/compute/ledger/credit-purchases", tag = "billing",
    params(
        ("page" = Option<u64>, Query, description = "1-based page"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[status]" = Option<String>, Query, description = "comma list: PENDING, COMPLETED, EXPIRED"),
    ),
    responses(
        (status = 200, description = "One page of purchases", body = ListResponse<CreditPurchase>),
        (status = 400, description = "Bad paging or filter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn list_credit_purchases(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<CreditPurchase>>, ApiError> {
    let scope = req.caller.require("compute", "read")?;
    let paging = parse_paging(&req.query)?;
    let mut statuses = Vec::new();
    for (k, v) in &req.query {
        match k.as_str() {
            "filter[status]" => {
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    statuses.push(CreditPurchaseStatus::parse(s).ok_or_else(|| {
                        ApiError::field(k.clone(), format!("{s:?} is not PENDING, COMPLETED or EXPIRED"))
                    })?);
                }
            }
            k if k.starts_with("filter[") => return Err(ApiError::field(k, "unknown filter; known filters: status")),
            _ => {}
        }
    }
    Ok(envelope(app::payments::list(&state, scope, &statuses, paging).await?, paging))
}

/// Reconcile one purchase by its checkout session: its current state, settled with
/// the payment provider if it was PENDING.
#[utoipa::path(get, path = "/v1/compute/ledger/credit-purchases/reconcile", tag = "billing",
    params(("checkout_session_id" = String, Query, description = "The purchase's checkout session id (required)")),
    responses(
        (status = 200, description = "The purchase", body = CreditPurchase),
        (status = 400, description = "checkout_session_id missing", body = ErrorBody),
        (status = 404, description = "No such purchase in your account", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn reconcile_credit_purchase(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<CreditPurchase>, ApiError> {
    let scope = req.caller.require("compute", "read")?;
    let session = req
        .query
        .iter()
        .find(|(k, _)| k == "checkout_session_id")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::field("checkout_session_id", "is required"))?;
    Ok(Json(app::payments::reconcile(&state, scope, &session).await?))
}

/// Operators (manual provider): settle a purchase by hand, `paid` (credits the
/// account once) or `expired`.
#[utoipa::path(put, path = "/v1/compute/ledger/credit-purchases/{uuid}/settle", tag = "billing",
    request_body = SettleCreditPurchaseRequest,
    params(("uuid" = String, Path, description = "Purchase uuid")),
    responses(
        (status = 200, description = "The purchase after settling", body = CreditPurchase),
        (status = 400, description = "Bad outcome", body = ErrorBody),
        (status = 403, description = "Operators only (compute.create.all)", body = ErrorBody),
        (status = 404, description = "No such purchase", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
    ))]
pub(super) async fn settle_credit_purchase(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<SettleCreditPurchaseRequest>,
) -> Result<Json<CreditPurchase>, ApiError> {
    if req.caller.require("compute", "create")?.is_some() {
        return Err(AppError::Forbidden {
            code: "missing_permission",
            message: "settling a purchase by hand needs compute.create.all (operators)".into(),
        }
        .into());
    }
    let id = path_id("uuid", &uuid)?;
    Ok(Json(app::payments::settle_manually(&state, id, req.body.outcome.as_deref()).await?))
}
