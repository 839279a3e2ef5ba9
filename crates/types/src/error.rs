//! The error body every 4xx/5xx carries:
//! `{"error":{"code":"...","message":"...","details":[{"field":"...","message":"..."}]}}`.
//! Upstream names the schema `ErrorResponse` without publishing it; one client parses
//! `error.code`, so the shape keeps that and adds `details` naming each bad field.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `validation_failed`, `invalid_signature`, `not_found`.
    pub code: String,
    /// A sentence saying what happened and what to do.
    pub message: String,
    /// One entry per offending field (validation errors); empty otherwise.
    #[serde(default)]
    pub details: Vec<FieldError>,
}

/// One invalid field, named by its JSON path (`parameters.parameters.ports[0]`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Builds one field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}
