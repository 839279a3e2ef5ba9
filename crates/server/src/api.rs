//! The HTTP surface: routes, the OpenAPI document generated from them, and the few
//! unauthenticated endpoints (`/healthz`, `/version`, `/metrics`, `/v1/openapi.json`).
//!
//! Every route under `/v1` except the OpenAPI document requires a signed request;
//! the document lists exactly those routes, and a test walks it to check that each
//! answers 401 without a signature.

mod api_keys;
mod common_responses;
mod compute;
mod events;
mod gpu_registry;
mod job_runs;
mod jobs;
pub mod lenient;
mod log_follow;
mod nodes;
mod profiles;
mod recipes;
pub mod relays;
mod users;
mod webhooks;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::error::AppError;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gantry API",
        description = "Gantry's control plane. Wire-compatible with the upstream GPU cloud API: \
                       requests are signed with HMAC-SHA256 (headers X-API-Key, X-Time, X-Nonce, \
                       X-Signature; see the README).",
        version = "1.0.0"
    ),
    modifiers(&SignedRequests),
    tags(
        (name = "jobs", description = "Submit, list, inspect and cancel jobs"),
        (name = "api-keys", description = "Create, list and revoke API keys"),
        (name = "job-recipes", description = "Job templates: list, create, fork, and cook into jobs"),
        (name = "gpu-registry", description = "GPU models that jobs' gpu_name and gpu_registry_uuid match against"),
        (name = "users", description = "Who is calling"),
        (name = "job-runs", description = "Executions of jobs on nodes, with logs"),
        (name = "nodes", description = "Machines that run jobs; drain and undrain"),
        (name = "node-protocol", description = "What gantry agent speaks: register, then sync"),
        (name = "billing", description = "Consumer profiles, compute offers, balances, the ledger and credit purchases"),
        (name = "events", description = "What happened, in order: the event stream (SSE or JSON long-poll), resumable by id"),
        (name = "webhooks", description = "Endpoints that receive events as signed POSTs, and their deliveries"),
        (name = "relays", description = "What relays for nodes behind NAT ask the control plane")
    )
)]
struct ApiDoc;

/// Declares the signing headers as the security scheme of every operation.
struct SignedRequests;

impl utoipa::Modify for SignedRequests {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "signed",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "Public key; the request also carries X-Time (epoch ms), X-Nonce (32 hex) and \
                 X-Signature = hex HMAC-SHA256(secret, pk|X-Time|X-Nonce|METHOD|path|sortedQuery|sha256(canonical JSON body))",
            ))),
        );
        openapi.security = Some(vec![SecurityRequirement::new("signed", Vec::<String>::new())]);
    }
}

fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::revoke_api_key))
        .routes(routes!(recipes::list_recipes, recipes::create_recipe))
        .routes(routes!(recipes::get_recipe, recipes::update_recipe, recipes::delete_recipe))
        .routes(routes!(recipes::fork_recipe))
        .routes(routes!(recipes::cook_recipe))
        .routes(routes!(users::me))
        .routes(routes!(gpu_registry::list_gpu_models, gpu_registry::create_gpu_model))
        .routes(routes!(gpu_registry::get_gpu_model))
        .routes(routes!(job_runs::list_job_runs))
        .routes(routes!(job_runs::get_job_run))
        .routes(routes!(job_runs::get_job_run_logs))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(nodes::get_node))
        .routes(routes!(nodes::drain_node))
        .routes(routes!(nodes::undrain_node))
        .routes(routes!(nodes::register_node))
        .routes(routes!(nodes::sync_node))
        .routes(routes!(profiles::list_consumer_profiles))
        .routes(routes!(profiles::update_consumer_profile))
        .routes(routes!(compute::list_offers))
        .routes(routes!(compute::get_balance))
        .routes(routes!(compute::list_ledger_transactions))
        .routes(routes!(compute::create_credit_purchase, compute::list_credit_purchases))
        .routes(routes!(compute::reconcile_credit_purchase))
        .routes(routes!(compute::settle_credit_purchase))
        .routes(routes!(events::list_events))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::list_webhook_deliveries))
        .routes(routes!(relays::relay_token_key))
        .routes(routes!(relays::ended_runs))
}

/// The OpenAPI document of the signed API, as committed in `openapi/api.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().split_for_parts().1;
    common_responses::add(&mut doc);
    doc
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let (api, mut doc) = api_router().split_for_parts();
    common_responses::add(&mut doc);
    let templates = doc.paths.paths.keys().map(String::as_str);
    let fixed =
        ["/v1/openapi.json", "/healthz", "/version", "/metrics"].into_iter().chain(crate::console::ROUTE_TEMPLATES);
    state.metrics.http.know_routes(templates.chain(fixed));
    let doc = Arc::new(doc.to_pretty_json().expect("OpenAPI document serializes"));
    let api: axum::Router = api
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()) }
            }),
        )
        .route("/healthz", get(healthz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        // The web console: static files that call the API above like any client.
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::http::track))
        .with_state(state)
        // After routing, so each request is logged with its route template.
        .layer(crate::request_log::RequestLogLayer::default());
    // Rewrites that must happen before routing (a Router's own layers run after it).
    let lenient = tower::ServiceBuilder::new().map_request(lenient::trim_trailing_slash).service(api);
    axum::Router::new().fallback_service(lenient)
}

/// The release answering, and nothing else: no IO, no state. Also the no-op reference
/// of `gantry bench submit` (`/healthz` pings the database, so it no longer is one).
async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// How long `/healthz` waits for the database before calling the instance unhealthy.
const HEALTH_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn healthz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<serde_json::Value>) {
    // The version lets an operator (or a rolling upgrade's script) see which release
    // answers behind a load balancer; the instance id (fresh per start), role and
    // backend, which of several instances it is and what it stands on. An instance
    // whose database does not answer is 503, so a load balancer sends clients elsewhere.
    let mut body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "instance": state.signals.instance(),
        "role": if state.scheduling.leading.load(std::sync::atomic::Ordering::Relaxed) { "leader" } else { "follower" },
        "backend": state.store.backend(),
    });
    let problem = match tokio::time::timeout(HEALTH_PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => return (StatusCode::OK, Json(body)),
        Ok(Err(e)) => format!("the database fails: {}", crate::chain(&e)),
        Err(_) => format!("the database did not answer within {} s", HEALTH_PING_TIMEOUT.as_secs()),
    };
    body["status"] = "unavailable".into();
    body["reason"] = problem.into();
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// Prometheus text format (see `crate::metrics`): encodes what is in memory, never
/// reads the store, and labels nothing by account.
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.metrics.nonce_entries.set(state.auth.nonces.len() as i64);
    ([(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)], state.metrics.render())
}

async fn not_found() -> ApiError {
    AppError::NotFound { message: "no such endpoint; see /v1/openapi.json".into() }.into()
}

async fn method_not_allowed() -> impl IntoResponse {
    let body = gantry_types::ErrorBody {
        error: gantry_types::ErrorDetail {
            code: "method_not_allowed".into(),
            message: "this endpoint does not support that method; see /v1/openapi.json".into(),
            details: vec![],
        },
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body))
}

/// Parses `page`/`limit`/`sort` and an endpoint's `filter[...]` set, reporting the
/// errors of both in one 400.
fn list_params<F>(
    query: &[(String, String)],
    parse_filter: impl FnOnce(&[(String, String)]) -> Result<F, Vec<gantry_types::FieldError>>,
) -> Result<(gantry_types::list::Paging, F), ApiError> {
    match (gantry_types::list::parse_paging(query), parse_filter(query)) {
        (Ok(p), Ok(f)) => Ok((p, f)),
        (p, f) => Err(AppError::Validation(p.err().into_iter().chain(f.err()).flatten().collect()).into()),
    }
}

/// The upstream list envelope for one page.
fn envelope<T>(
    page: gantry_store::Page<T>,
    paging: gantry_types::list::Paging,
) -> Json<gantry_types::list::ListResponse<T>> {
    Json(gantry_types::list::ListResponse {
        data: page.items,
        page: paging.page,
        limit: paging.limit,
        total: page.total,
    })
}

/// Parses a path UUID, naming the parameter on failure.
fn path_id<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::field(name, format!("not a UUID: {text:?}")))
}
