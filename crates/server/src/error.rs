//! The one place where errors become HTTP responses. Every layer has its own error
//! type; handlers convert into [`ApiError`], whose `IntoResponse` picks the status
//! and writes the upstream-shaped body `{"error":{"code","message","details"}}`.
//!
//! Status codes: 400 bad input (with the fields named; also a body that is not
//! `application/json`, as the foundation issue asks, with code `unsupported_media_type`), 401 missing/bad/expired/
//! replayed signature or unknown/revoked/expired key, 402 the balance cannot pay (billing
//! enforced), 403 the key lacks a permission
//! or is used from a disallowed IP, 404 not found *or another account's* (existence
//! is never revealed), 413 body too large, 500 a bug (logged
//! with its cause chain, never shown), 503 the store is unavailable.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gantry_types::{ErrorBody, ErrorDetail, FieldError};

/// An error on its way to the client.
#[derive(Debug)]
pub enum ApiError {
    /// 401: authentication failed; `code` says how.
    Unauthorized { code: &'static str, message: String },
    /// 403: authenticated, but not allowed.
    Forbidden { code: &'static str, message: String },
    /// 404.
    NotFound { message: String },
    /// 400 with one entry per bad field.
    Validation(Vec<FieldError>),
    /// 400 without field details (e.g. malformed JSON).
    BadRequest { code: &'static str, message: String },
    /// 429: the account's request rate is over its limit; retry after this long.
    TooManyRequests { retry_after_secs: u64 },
    /// 414: the request target is longer than the server reads.
    UriTooLong { limit: usize },
    /// 431: the request's header fields are larger than the server reads.
    HeadersTooLarge { limit: usize },
    /// 402: the account's balance cannot pay for what was asked (billing enforced).
    PaymentRequired { message: String },
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 400 with code `unsupported_media_type`: a body sent as something other than JSON.
    UnsupportedMediaType { got: String },
    /// 500/503 from the store.
    Store(gantry_store::StoreError),
    /// 500: a bug; the message is logged, not returned.
    Internal(String),
}

impl ApiError {
    /// 404 for a resource kind and id.
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound { message: format!("no {kind} with uuid {id}") }
    }

    /// 400 naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<gantry_store::StoreError> for ApiError {
    fn from(e: gantry_store::StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(e: Vec<FieldError>) -> Self {
        Self::Validation(e)
    }
}

/// Formats an error and its `source()` chain on one line, for logs.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use gantry_store::StoreError as S;
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let (status, code, message, details) = match self {
            Self::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, code, message, vec![]),
            Self::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message, vec![]),
            Self::NotFound { message } => (StatusCode::NOT_FOUND, "not_found", message, vec![]),
            Self::Validation(details) => {
                let names: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
                let message = format!("invalid request: check {}", names.join(", "));
                (StatusCode::BAD_REQUEST, "validation_failed", message, details)
            }
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message, vec![]),
            Self::PaymentRequired { message } => (StatusCode::PAYMENT_REQUIRED, "payment_required", message, vec![]),
            Self::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this account; retry after {retry_after_secs} s"),
                vec![],
            ),
            Self::UriTooLong { limit } => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the request path and query are longer than {limit} bytes"),
                vec![],
            ),
            Self::HeadersTooLarge { limit } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!("the request's header fields are larger than {limit} bytes in all"),
                vec![],
            ),
            Self::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body is larger than {limit} bytes"),
                vec![],
            ),
            Self::UnsupportedMediaType { got } => (
                StatusCode::BAD_REQUEST,
                "unsupported_media_type",
                format!("request bodies must be JSON with Content-Type: application/json (got {got:?})"),
                vec![],
            ),
            Self::Store(S::Conflict { what }) => {
                (StatusCode::CONFLICT, "conflict", format!("{what} already exists"), vec![])
            }
            Self::Store(e @ S::Unavailable) => {
                tracing::error!(error = %chain(&e), "store unavailable");
                let msg = "the store is unavailable; retry shortly".to_string();
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg, vec![])
            }
            Self::Store(e) => {
                tracing::error!(error = %chain(&e), "store error");
                let msg = "internal error; the server log has the cause".to_string();
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", msg, vec![])
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                let msg = "internal error; the server log has the cause".to_string();
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", msg, vec![])
            }
        };
        let body = ErrorBody { error: ErrorDetail { code: code.to_string(), message, details } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}
