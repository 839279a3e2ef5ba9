//! One log line per request, at its end, for people and log shippers; and the
//! request id that ties a client's report to that line.
//!
//! [`RequestLogLayer`] is a tower layer put around the router (`Router::layer`, so
//! it runs after routing and sees the route template): it takes the request id from
//! an incoming `X-Request-Id` (when it is a sane token) or makes one, hands it to the
//! handlers as a [`RequestId`] extension, returns it as `X-Request-Id`, and when the
//! response is ready logs at target `gantry::request`: method, route template
//! (`/v1/jobs/{uuid}`, never the concrete path, so ids and query strings with
//! personal data stay out), status, duration and request id. Headers and bodies are
//! never logged, so keys, signatures and secrets cannot leak through it.
//!
//! Observers ([`RequestLogLayer::observe`]) get the same facts for each request;
//! that is the hook for per-route metrics.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Request, Response};
use futures_util::future::BoxFuture;

/// The header carrying the request id, in and out.
pub const HEADER: &str = "x-request-id";

/// The id of the request being served (a request extension).
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

/// What an observer learns about each finished request.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The route template that matched, or `unmatched`.
    pub route: String,
    /// The response status.
    pub status: u16,
    /// Time from the request's arrival to the response's head.
    pub duration: Duration,
    /// The request id.
    pub request_id: Arc<str>,
}

type Observer = Arc<dyn Fn(&RequestInfo) + Send + Sync>;

/// The layer; see the module documentation.
#[derive(Clone, Default)]
pub struct RequestLogLayer {
    observers: Vec<Observer>,
}

impl RequestLogLayer {
    /// Also calls `observer` with each finished request.
    pub fn observe(mut self, observer: impl Fn(&RequestInfo) + Send + Sync + 'static) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }
}

impl<S> tower::Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog { inner, observers: self.observers.clone() }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone)]
pub struct RequestLog<S> {
    inner: S,
    observers: Vec<Observer>,
}

/// The incoming id when it is 1-128 visible ASCII characters (anything else could
/// forge log lines or bloat them), else a fresh one.
fn request_id<B>(request: &Request<B>) -> Arc<str> {
    request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().simple().to_string()))
}

impl<S, B, R> tower::Service<Request<B>> for RequestLog<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let id = request_id(&request);
        let method = request.method().to_string();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "unmatched".into());
        request.extensions_mut().insert(RequestId(id.clone()));
        let observers = self.observers.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(HEADER, value);
            }
            let info = RequestInfo {
                method,
                route,
                status: response.status().as_u16(),
                duration: started.elapsed(),
                request_id: id,
            };
            tracing::info!(
                target: "gantry::request",
                method = %info.method,
                route = %info.route,
                status = info.status,
                duration_ms = info.duration.as_secs_f64() * 1000.0,
                request_id = %info.request_id,
                "request"
            );
            for observe in &observers {
                observe(&info);
            }
            Ok(response)
        })
    }
}
