//! The one place where errors become HTTP responses. Every layer has its own error
//! type; the application layer's [`AppError`] (which knows nothing of HTTP) and the
//! transport's own failures (authentication, body limits, malformed JSON) meet in
//! [`ApiError`], whose `IntoResponse` picks the status and writes the upstream-shaped
//! body `{"error":{"code","message","details"}}`. No other code picks a status.
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

use crate::app::error::AppError;
pub use crate::app::error::chain;

/// An error on its way to the client: a transport failure, or an application error.
#[derive(Debug)]
pub enum ApiError {
    /// 401: authentication failed; `code` says how.
    Unauthorized { code: &'static str, message: String },
    /// 400 without field details (e.g. malformed JSON).
    BadRequest { code: &'static str, message: String },
    /// 429: the account's request rate is over its limit; retry after this long.
    TooManyRequests { retry_after_secs: u64 },
    /// 414: the request target is longer than the server reads.
    UriTooLong { limit: usize },
    /// 431: the request's header fields are larger than the server reads.
    HeadersTooLarge { limit: usize },
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 400 with code `unsupported_media_type`: a body sent as something other than JSON.
    UnsupportedMediaType { got: String },
    /// Whatever the application layer (or the store beneath it) refused.
    App(AppError),
}

impl ApiError {
    /// 404 for a resource kind and id.
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        Self::App(AppError::not_found(kind, id))
    }

    /// 400 naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::App(AppError::field(field, message))
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        Self::App(e)
    }
}

impl From<gantry_store::StoreError> for ApiError {
    fn from(e: gantry_store::StoreError) -> Self {
        Self::App(e.into())
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(e: Vec<FieldError>) -> Self {
        Self::App(AppError::Validation(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            Self::App(AppError::TooMany { retry_after_secs, .. }) => Some(*retry_after_secs),
            _ => None,
        };
        let (status, code, message, details) = match self {
            Self::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, code, message, vec![]),
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message, vec![]),
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
            Self::App(e) => app_status(e),
        };
        let body = ErrorBody { error: ErrorDetail { code: code.to_string(), message, details } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}

/// The status, code, message and field details of an application error.
fn app_status(e: AppError) -> (StatusCode, &'static str, String, Vec<FieldError>) {
    match e {
        AppError::NotFound { message } => (StatusCode::NOT_FOUND, "not_found", message, vec![]),
        AppError::Conflict { what } => (StatusCode::CONFLICT, "conflict", format!("{what} already exists"), vec![]),
        AppError::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message, vec![]),
        AppError::Validation(details) => {
            let names: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
            let message = format!("invalid request: check {}", names.join(", "));
            (StatusCode::BAD_REQUEST, "validation_failed", message, details)
        }
        AppError::TooMany { code, message, .. } => (StatusCode::TOO_MANY_REQUESTS, code, message, vec![]),
        AppError::PaymentRequired { message } => (StatusCode::PAYMENT_REQUIRED, "payment_required", message, vec![]),
        AppError::Gone { message } => (StatusCode::GONE, "gone", message, vec![]),
        e @ AppError::Unavailable(_) => {
            tracing::error!(error = %chain(&e), "store unavailable");
            let msg = "the store is unavailable; retry shortly".to_string();
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg, vec![])
        }
        e @ AppError::Internal { .. } => {
            tracing::error!(error = %chain(&e), "internal error");
            let msg = "internal error; the server log has the cause".to_string();
            (StatusCode::INTERNAL_SERVER_ERROR, "internal", msg, vec![])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: impl Into<ApiError>) -> StatusCode {
        e.into().into_response().status()
    }

    #[test]
    fn every_application_error_has_one_status() {
        use gantry_store::StoreError;
        assert_eq!(status(AppError::not_found("job", "x")), StatusCode::NOT_FOUND);
        assert_eq!(status(AppError::Conflict { what: "key".into() }), StatusCode::CONFLICT);
        assert_eq!(status(AppError::Forbidden { code: "c", message: "m".into() }), StatusCode::FORBIDDEN);
        assert_eq!(status(AppError::field("name", "is required")), StatusCode::BAD_REQUEST);
        assert_eq!(status(AppError::PaymentRequired { message: "m".into() }), StatusCode::PAYMENT_REQUIRED);
        let quota = AppError::TooMany { code: "pending_jobs_quota_exceeded", message: "m".into(), retry_after_secs: 7 };
        let response = ApiError::from(quota).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "7");
        assert_eq!(status(AppError::internal("bug")), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(AppError::Gone { message: "m".into() }), StatusCode::GONE);
        assert_eq!(status(StoreError::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(StoreError::Conflict { what: "job".into() }), StatusCode::CONFLICT);
        let corrupt = StoreError::Corrupt { table: "jobs", detail: "x".into() };
        assert_eq!(status(corrupt), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
