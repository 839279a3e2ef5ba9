//! Request metrics: `gantry_http_requests_total{route,method,status}` and
//! `gantry_http_request_duration_seconds{route,method}`, recorded by one middleware
//! around every route.
//!
//! `route` is the route template axum matched (`/v1/jobs/{uuid}`, from
//! [`MatchedPath`]), never the raw path, so an id in a URL cannot create a series;
//! requests that match no route are labelled `unmatched`. Templates are interned
//! once (from the OpenAPI document's paths) so that labelling a request clones an
//! `Arc` instead of allocating a string.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// The `route` of requests no route matched (404s of unknown paths).
pub const UNMATCHED: &str = "unmatched";

/// `{route,method,status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template or `unmatched`.
    pub route: Arc<str>,
    /// HTTP method (`other` for unusual ones).
    pub method: &'static str,
    /// Response status code.
    pub status: u16,
}

/// `{route,method}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template or `unmatched`.
    pub route: Arc<str>,
    /// HTTP method.
    pub method: &'static str,
}

type DurationFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The request families and the interned route templates.
pub struct HttpMetrics {
    /// `gantry_http_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `gantry_http_request_duration_seconds`.
    pub duration: DurationFamily,
    routes: OnceLock<HashMap<Box<str>, Arc<str>>>,
    unmatched: Arc<str>,
}

fn request_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

impl HttpMetrics {
    /// Creates and registers the two families.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            routes: OnceLock::new(),
            unmatched: Arc::from(UNMATCHED),
        };
        registry.register("gantry_http_requests", "HTTP requests answered, by route template", m.requests.clone());
        registry.register(
            "gantry_http_request_duration_seconds",
            "Time to answer HTTP requests (until the response head), by route template",
            m.duration.clone(),
        );
        m
    }

    /// Interns the route templates the router serves (first call wins).
    pub fn know_routes<'a>(&self, templates: impl IntoIterator<Item = &'a str>) {
        let _ = self.routes.set(templates.into_iter().map(|t| (Box::from(t), Arc::from(t))).collect());
    }

    fn route(&self, matched: Option<&MatchedPath>) -> Arc<str> {
        let Some(path) = matched.map(MatchedPath::as_str) else { return self.unmatched.clone() };
        match self.routes.get().and_then(|r| r.get(path)) {
            Some(interned) => interned.clone(),
            None => Arc::from(path), // a route missing from the document: still a template
        }
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware: times the request and counts its response.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let http = &state.metrics.http;
    let route = http.route(req.extensions().get::<MatchedPath>());
    let method = method_label(req.method());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    http.duration.get_or_create(&RouteLabels { route: route.clone(), method }).observe(started.elapsed().as_secs_f64());
    http.requests.get_or_create(&RequestLabels { route, method, status }).inc();
    response
}
