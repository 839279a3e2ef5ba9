//! What a lenient HTTP server forgives, applied before routing: a trailing slash on a
//! path (`/v1/jobs/`) routes as the path without it. Clients built on other HTTP
//! stacks (and people with curl) add one, and upstream's API answers either.
//!
//! The client signed the path it sent, so the signature check ([`crate::signed`])
//! accepts the path as received ([`ReceivedPath`]) as well as the trimmed one.
//! Other leniencies live where they apply: `HEAD` is answered by every `GET` route
//! (axum), a body-less request may say `Content-Type: application/json`, and `Accept`
//! is not negotiated (every endpoint has one representation; see the README).

use axum::extract::Request;
use axum::http::Uri;

/// The path as the client sent it, when routing used a trimmed one.
#[derive(Clone, Debug)]
pub struct ReceivedPath(pub String);

/// Trims trailing slashes from the path (never the root `/`), keeping the query.
pub fn trim_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() <= 1 || !path.ends_with('/') {
        return req;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let rebuilt = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_string(),
    };
    let received = path.to_string();
    let mut parts = req.uri().clone().into_parts();
    let Ok(path_and_query) = rebuilt.parse() else { return req };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
        req.extensions_mut().insert(ReceivedPath(received));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trim(uri: &str) -> (String, Option<String>) {
        let req = trim_trailing_slash(Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap());
        (req.uri().to_string(), req.extensions().get::<ReceivedPath>().map(|p| p.0.clone()))
    }

    #[test]
    fn trailing_slashes_are_trimmed_and_the_received_path_kept() {
        assert_eq!(trim("/v1/jobs/"), ("/v1/jobs".into(), Some("/v1/jobs/".into())));
        assert_eq!(trim("/v1/jobs//?limit=2"), ("/v1/jobs?limit=2".into(), Some("/v1/jobs//".into())));
        assert_eq!(trim("/v1/jobs"), ("/v1/jobs".into(), None));
        assert_eq!(trim("/"), ("/".into(), None));
    }
}
