//! Webhook endpoints and their durable outbox of deliveries.
//!
//! The outbox is filled by a fan-out step that reads the event log after a stored
//! cursor and, in one transaction, inserts one delivery per (matching endpoint,
//! event) and moves the cursor ([`WebhookStore::webhook_fanout`]). A delivery row
//! exists at most once per (endpoint, event) (a unique key), so a fan-out repeated
//! after a crash, or run by two servers, inserts nothing twice. The delivery worker
//! asks for each endpoint's oldest PENDING delivery that is due
//! ([`WebhookStore::webhook_delivery_due`]): an endpoint gets its events in log
//! order, one at a time, and a slow endpoint holds back only itself.

use async_trait::async_trait;
use gantry_types::event::EventType;
use gantry_types::list::Paging;
use gantry_types::webhook::{DeliveryStatus, Webhook, WebhookDelivery};
use gantry_types::{AccountId, Timestamp, WebhookId};

use crate::sql::row::{IntoRecord, row};
use crate::{Page, StoreError, StoreResult};

/// An endpoint as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRecord {
    /// The endpoint as the API shows it (`secret` is always `None` here).
    pub webhook: Webhook,
    /// The signing secret, encrypted with the server key.
    pub secret_encrypted: String,
    /// It receives the events with ids above this one.
    pub after_event_id: i64,
}

/// Endpoints and deliveries.
#[async_trait]
pub trait WebhookStore {
    /// Creates an endpoint; `MissingReference` for an unknown account.
    async fn webhook_create(&self, webhook: &WebhookRecord) -> StoreResult<()>;
    /// Fetches an endpoint in scope.
    async fn webhook_fetch(&self, account: Option<AccountId>, id: WebhookId) -> StoreResult<Option<WebhookRecord>>;
    /// Lists endpoints in scope by (created_at, uuid), newest first unless `paging`
    /// says otherwise.
    async fn webhook_list(&self, account: Option<AccountId>, paging: Paging) -> StoreResult<Page<WebhookRecord>>;
    /// Every endpoint (the fan-out step's input).
    async fn webhook_list_all(&self) -> StoreResult<Vec<WebhookRecord>>;
    /// Deletes an endpoint in scope with its deliveries; the endpoint, or `None`.
    async fn webhook_delete(&self, account: Option<AccountId>, id: WebhookId) -> StoreResult<Option<WebhookRecord>>;

    /// How far the fan-out step has read the event log.
    async fn webhook_outbox_cursor(&self) -> StoreResult<i64>;
    /// In one transaction: inserts `deliveries` (skipping those already there and
    /// those whose endpoint was deleted meanwhile) and moves the cursor up to
    /// `cursor` (never back).
    async fn webhook_fanout(&self, deliveries: &[WebhookDelivery], cursor: i64) -> StoreResult<()>;
    /// Each endpoint's oldest PENDING delivery, when it is due (`next_attempt_at <=
    /// now_ms`), soonest first, at most `limit`.
    async fn webhook_delivery_due(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<WebhookDelivery>>;
    /// Records an attempt: writes `delivery`'s status, attempts, status code, error,
    /// next attempt, delivered_at and updated_at.
    async fn webhook_delivery_update(&self, delivery: &WebhookDelivery) -> StoreResult<()>;
    /// An endpoint's deliveries in scope, by (event id), newest first unless `paging`
    /// says otherwise; `None` when the endpoint is not in scope.
    async fn webhook_delivery_list(
        &self,
        account: Option<AccountId>,
        webhook: WebhookId,
        paging: Paging,
    ) -> StoreResult<Option<Page<WebhookDelivery>>>;
}

row! {
    /// An endpoint's row.
    #[derive(Clone, Debug)]
    pub(crate) struct WebhookRow in "webhooks" (read, write) {
        uuid: String,
        account_uuid: String,
        url: String,
        events: String,
        description: Option<String>,
        secret_encrypted: String,
        after_event_id: i64,
        created_at_ms: i64,
    }
}

row! {
    /// A delivery's row.
    #[derive(Clone, Debug)]
    pub(crate) struct DeliveryRow in "webhook_deliveries" (read, write) {
        uuid: String,
        webhook_uuid: String,
        account_uuid: String,
        event_id: i64,
        event_type: String,
        status: String,
        attempts: i64,
        status_code: Option<i64>,
        last_error: Option<String>,
        next_attempt_at_ms: Option<i64>,
        delivered_at_ms: Option<i64>,
        created_at_ms: i64,
        updated_at_ms: i64,
    }
}

/// Column lists.
pub(crate) const WEBHOOK_COLUMNS: &str = <WebhookRow as crate::sql::row::Columns>::LIST;
pub(crate) const DELIVERY_COLUMNS: &str = <DeliveryRow as crate::sql::row::Columns>::LIST;

impl WebhookRow {
    pub(crate) fn new(r: &WebhookRecord) -> StoreResult<Self> {
        let names: Vec<&str> = r.webhook.events.iter().map(|t| t.as_str()).collect();
        let events = serde_json::to_string(&names)
            .map_err(|e| StoreError::Database { during: "webhook encoding", source: Box::new(e) })?;
        Ok(Self {
            uuid: r.webhook.uuid.to_string(),
            account_uuid: r.webhook.account_uuid.to_string(),
            url: r.webhook.url.clone(),
            events,
            description: r.webhook.description.clone(),
            secret_encrypted: r.secret_encrypted.clone(),
            after_event_id: r.after_event_id,
            created_at_ms: r.webhook.created_at.0,
        })
    }
}

impl IntoRecord for WebhookRow {
    type Record = WebhookRecord;

    fn into_record(self) -> StoreResult<WebhookRecord> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "webhooks", detail };
        let names: Vec<String> = serde_json::from_str(&self.events).map_err(|e| corrupt(format!("events: {e}")))?;
        let events = names
            .iter()
            .map(|n| EventType::parse(n).ok_or_else(|| corrupt(format!("unknown event type {n:?}"))))
            .collect::<StoreResult<_>>()?;
        Ok(WebhookRecord {
            webhook: Webhook {
                object: "webhook".into(),
                uuid: self.uuid.parse().map_err(|_| corrupt(format!("bad uuid {:?}", self.uuid)))?,
                url: self.url,
                events,
                description: self.description,
                account_uuid: self.account_uuid.parse().map_err(|_| corrupt("bad account uuid".into()))?,
                secret: None,
                created_at: Timestamp(self.created_at_ms),
            },
            secret_encrypted: self.secret_encrypted,
            after_event_id: self.after_event_id,
        })
    }
}

impl DeliveryRow {
    pub(crate) fn new(d: &WebhookDelivery) -> Self {
        Self {
            uuid: d.uuid.to_string(),
            webhook_uuid: d.webhook_uuid.to_string(),
            account_uuid: d.account_uuid.to_string(),
            event_id: d.event_id,
            event_type: d.event_type.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            attempts: i64::from(d.attempts),
            status_code: d.status_code.map(i64::from),
            last_error: d.last_error.clone(),
            next_attempt_at_ms: d.next_attempt_at.map(|t| t.0),
            delivered_at_ms: d.delivered_at.map(|t| t.0),
            created_at_ms: d.created_at.0,
            updated_at_ms: d.updated_at.0,
        }
    }
}

impl IntoRecord for DeliveryRow {
    type Record = WebhookDelivery;

    fn into_record(self) -> StoreResult<WebhookDelivery> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "webhook_deliveries", detail };
        Ok(WebhookDelivery {
            object: "webhook_delivery".into(),
            uuid: self.uuid.parse().map_err(|_| corrupt(format!("bad uuid {:?}", self.uuid)))?,
            webhook_uuid: self.webhook_uuid.parse().map_err(|_| corrupt("bad webhook uuid".into()))?,
            account_uuid: self.account_uuid.parse().map_err(|_| corrupt("bad account uuid".into()))?,
            event_id: self.event_id,
            event_type: EventType::parse(&self.event_type)
                .ok_or_else(|| corrupt(format!("unknown event type {:?}", self.event_type)))?,
            status: DeliveryStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("unknown status {:?}", self.status)))?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            status_code: self.status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: self.last_error,
            next_attempt_at: self.next_attempt_at_ms.map(Timestamp),
            delivered_at: self.delivered_at_ms.map(Timestamp),
            created_at: Timestamp(self.created_at_ms),
            updated_at: Timestamp(self.updated_at_ms),
        })
    }
}

/// `ORDER BY` of delivery lists.
pub(crate) fn delivery_order(paging: Paging) -> &'static str {
    if paging.newest_first { "ORDER BY event_id DESC" } else { "ORDER BY event_id" }
}

/// The fan-out insert (parameters: the delivery's columns in order), skipping a
/// delivery already there or whose endpoint is gone.
pub(crate) fn fanout_sql(style: crate::sql::Placeholders) -> String {
    let n = <DeliveryRow as crate::sql::row::Columns>::NAMES.len();
    let values: Vec<String> = (1..=n).map(|i| style.nth(i)).collect();
    format!(
        "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) SELECT {} \
         WHERE EXISTS (SELECT 1 FROM webhooks WHERE uuid = {}) ON CONFLICT (webhook_uuid, event_id) DO NOTHING",
        values.join(", "),
        style.nth(2)
    )
}

/// The due query (parameters: now, limit): each endpoint's oldest PENDING delivery.
pub(crate) fn due_sql(style: crate::sql::Placeholders) -> String {
    format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.status = 'PENDING' \
         AND d.next_attempt_at_ms <= {} AND d.event_id = (SELECT MIN(p.event_id) FROM webhook_deliveries p \
         WHERE p.webhook_uuid = d.webhook_uuid AND p.status = 'PENDING') \
         ORDER BY d.next_attempt_at_ms, d.event_id LIMIT {}",
        style.nth(1),
        style.nth(2)
    )
}
