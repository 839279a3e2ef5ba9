//! The application layer's error: what went wrong in business terms, with no HTTP in
//! it. `api` turns it into a response in one place (`crate::error::AppError`'s
//! `IntoResponse`); the CLI's admin commands print it as a sentence (its `Display`,
//! with the `source()` chain for internal errors).
//!
//! Store errors convert here too: a clash is [`AppError::Conflict`], an unavailable
//! store is [`AppError::Unavailable`], anything else is [`AppError::Internal`] (a bug
//! or corruption) carrying the store error as its source, so logs keep the cause chain.

use gantry_types::FieldError;

/// Why an application operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No such resource, *or another account's* (existence is never revealed).
    #[error("{message}")]
    NotFound {
        /// A sentence naming the kind and id.
        message: String,
    },
    /// A unique key clashed.
    #[error("{what} already exists")]
    Conflict {
        /// What clashed.
        what: String,
    },
    /// The caller may not do this; `code` is the machine-readable reason.
    #[error("{message}")]
    Forbidden {
        /// A stable code (`missing_permission`, `ip_not_allowed`, ...).
        code: &'static str,
        /// What is missing and how to get it.
        message: String,
    },
    /// Bad input, one entry per offending field.
    #[error("{}", describe_fields(.0))]
    Validation(Vec<FieldError>),
    /// The account is at a quota that frees up by itself (its pending jobs get placed or
    /// end); retrying after `retry_after_secs` may work.
    #[error("{message}")]
    TooMany {
        /// A stable code (`pending_jobs_quota_exceeded`).
        code: &'static str,
        /// The limit and the current usage.
        message: String,
        /// When to try again, seconds.
        retry_after_secs: u64,
    },
    /// The account's balance cannot pay for what was asked (billing enforced).
    #[error("{message}")]
    PaymentRequired {
        /// What it would cost and what is available.
        message: String,
    },
    /// What was asked for existed once but is gone for good (an event id older than
    /// the retention kept).
    #[error("{message}")]
    Gone {
        /// What is gone and what to do instead.
        message: String,
    },
    /// The store is shutting down or cannot be reached; retrying later may work.
    #[error("the store is unavailable; retry shortly")]
    Unavailable(#[source] gantry_store::StoreError),
    /// A bug or corrupt data: `what` says what failed, the source (if any) why.
    #[error("{what}")]
    Internal {
        /// What failed.
        what: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl AppError {
    /// Not found, for a resource kind and id.
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound { message: format!("no {kind} with uuid {id}") }
    }

    /// Bad input naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// A broken invariant without an underlying error.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal { what: what.into(), source: None }
    }
}

fn describe_fields(fields: &[FieldError]) -> String {
    let each: Vec<String> = fields.iter().map(|f| format!("{} {}", f.field, f.message)).collect();
    format!("invalid input: {}", each.join("; "))
}

impl From<gantry_store::StoreError> for AppError {
    fn from(e: gantry_store::StoreError) -> Self {
        use gantry_store::StoreError as S;
        match e {
            S::Conflict { what } => Self::Conflict { what },
            S::QuotaExceeded(e) => crate::app::quotas::refusal(e),
            e @ (S::Unavailable | S::Unreachable { .. }) => Self::Unavailable(e),
            e => Self::Internal { what: "store error".into(), source: Some(Box::new(e)) },
        }
    }
}

impl From<Vec<FieldError>> for AppError {
    fn from(e: Vec<FieldError>) -> Self {
        Self::Validation(e)
    }
}

/// Formats an error and its `source()` chain on one line, for logs and the CLI.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_name_fields_and_keep_the_store_cause() {
        let e = AppError::Validation(vec![
            FieldError::new("name", "is required"),
            FieldError::new("amount", "must be > 0"),
        ]);
        assert_eq!(e.to_string(), "invalid input: name is required; amount must be > 0");
        let e = AppError::from(gantry_store::StoreError::Corrupt { table: "jobs", detail: "bad json".into() });
        assert_eq!(chain(&e), "store error: corrupt row in jobs: bad json");
        let e = AppError::from(gantry_store::StoreError::Conflict { what: "api key".into() });
        assert_eq!(e.to_string(), "api key already exists");
        assert!(matches!(AppError::from(gantry_store::StoreError::Unavailable), AppError::Unavailable(_)));
    }
}
