//! Webhooks (Gantry's addition): endpoints that receive events as signed POSTs.
//!
//! A delivery is a POST of the event JSON (the same object `GET /v1/events` returns)
//! with `X-Gantry-Event` (its type), `X-Gantry-Delivery` (the delivery uuid, the same
//! across retries: receivers deduplicate on it) and `X-Gantry-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. The secret is
//! returned once, when the endpoint is created. See docs/webhooks.md.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::event::EventType;
use crate::ids::{AccountId, WebhookDeliveryId, WebhookId};
use crate::time::Timestamp;

/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;

/// Longest accepted description.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// `POST /v1/webhooks`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhookRequest {
    /// Where events are POSTed: an `http` or `https` URL.
    pub url: Option<String>,
    /// Which event types to send (empty or absent: all).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Free text.
    pub description: Option<String>,
}

/// A checked [`CreateWebhookRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookSpec {
    /// The URL, as given.
    pub url: String,
    /// Its scheme (`http` or `https`).
    pub https: bool,
    /// Its host (a name, or an IP literal without brackets).
    pub host: String,
    /// Its port (the scheme's default when absent).
    pub port: u16,
    /// Event types (empty: all).
    pub events: Vec<EventType>,
    /// Free text.
    pub description: Option<String>,
}

/// Checks a create body: every bad field, each named.
pub fn validate_create_webhook(req: CreateWebhookRequest) -> Result<WebhookSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let url = req.url.unwrap_or_default();
    let parsed = parse_url(&url);
    if let Err(e) = &parsed {
        errors.push(FieldError::new("url", e.clone()));
    }
    let mut events = Vec::new();
    for (i, name) in req.events.unwrap_or_default().iter().enumerate() {
        match EventType::parse(name) {
            Some(t) if !events.contains(&t) => events.push(t),
            Some(_) => {}
            None => errors.push(FieldError::new(format!("events[{i}]"), crate::event::unknown(name))),
        }
    }
    if let Some(d) = &req.description
        && d.chars().count() > MAX_DESCRIPTION_LEN
    {
        errors.push(FieldError::new("description", format!("at most {MAX_DESCRIPTION_LEN} characters")));
    }
    match parsed {
        Ok((https, host, port)) if errors.is_empty() => {
            Ok(WebhookSpec { url, https, host, port, events, description: req.description })
        }
        _ => Err(errors),
    }
}

/// `scheme://host[:port][/path][?query]` → (https?, host, port). No user info, no
/// fragment, no whitespace.
pub fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    if url.is_empty() {
        return Err("is required (an http or https URL)".into());
    }
    if url.len() > MAX_URL_LEN {
        return Err(format!("at most {MAX_URL_LEN} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".into());
    }
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("must start with http:// or https://, got {url:?}"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if rest[authority.len()..].contains('#') {
        return Err("must not have a fragment (#...)".into());
    }
    if authority.contains('@') {
        return Err("must not carry user info (user@host)".into());
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("has an unclosed [ in its host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("has a bad port {p:?}"))?,
    };
    let valid_name = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !valid_name {
        return Err(format!("has a bad host {host:?}"));
    }
    Ok((https, host.to_ascii_lowercase(), port))
}

/// A webhook endpoint (`GET /v1/webhooks`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// Always `webhook`.
    pub object: String,
    /// Its ID.
    pub uuid: WebhookId,
    /// Where events are POSTed.
    pub url: String,
    /// Types sent (empty: all).
    pub events: Vec<EventType>,
    /// Free text.
    pub description: Option<String>,
    /// Owner: the account whose events it receives.
    pub account_uuid: AccountId,
    /// The signing secret (`whsec_...`): only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Created.
    pub created_at: Timestamp,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Not acknowledged yet; `next_attempt_at` says when it is tried (again).
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Given up after 24 hours of attempts (or its event was deleted).
    Failed,
}

impl DeliveryStatus {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|s| s.as_str() == text)
    }
}

/// One event's delivery to one endpoint (`GET /v1/webhooks/{uuid}/deliveries`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    /// Always `webhook_delivery`.
    pub object: String,
    /// Its ID (the `X-Gantry-Delivery` header; the same on every attempt).
    pub uuid: WebhookDeliveryId,
    /// The endpoint.
    pub webhook_uuid: WebhookId,
    /// The owner.
    pub account_uuid: AccountId,
    /// The event delivered.
    pub event_id: i64,
    /// Its type.
    pub event_type: EventType,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's HTTP status, if it got one.
    pub status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it is tried next (PENDING only).
    pub next_attempt_at: Option<Timestamp>,
    /// When it was acknowledged.
    pub delivered_at: Option<Timestamp>,
    /// When the event was handed to the outbox.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_name_what_is_wrong() {
        assert_eq!(parse_url("https://Hooks.Example.com/x?y=1").unwrap(), (true, "hooks.example.com".into(), 443));
        assert_eq!(parse_url("http://127.0.0.1:8080/h").unwrap(), (false, "127.0.0.1".into(), 8080));
        assert_eq!(parse_url("http://[::1]:9/").unwrap(), (false, "::1".into(), 9));
        for bad in
            ["", "ftp://x", "http://", "http://u:p@h/", "http://h:0/", "http://h:x/", "http://h /", "http://h/#f"]
        {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let req = CreateWebhookRequest { url: None, events: Some(vec!["job.nope".into()]), description: None };
        let fields: Vec<String> = validate_create_webhook(req).unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["url", "events[0]"]);
    }
}
