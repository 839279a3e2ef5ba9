//! Webhook endpoints: create (the signing secret is shown once and stored encrypted
//! with the server key, like registry secrets), list, fetch, delete, and an
//! endpoint's deliveries. Delivery itself is `background::webhooks`.
//!
//! **Tenancy.** An endpoint belongs to the account whose key created it and receives
//! that account's events only (the same events `GET /v1/events` shows the account),
//! from its creation on. Keys with `jobs.read.all` may list, read and delete every
//! account's endpoints (operators cleaning up), never receive other accounts' events
//! through their own. No new permission: any key of an account may manage its
//! endpoints, as it may read its events.

pub mod destination;

use gantry_store::{Page, WebhookRecord};
use gantry_types::list::Paging;
use gantry_types::webhook::{CreateWebhookRequest, Webhook, WebhookDelivery, validate_create_webhook};
use gantry_types::{AccountId, Timestamp, WebhookId};

use crate::app::caller::Caller;
use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// A new signing secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

/// `POST /v1/webhooks`: checks the body and the destination, stores the endpoint
/// with its secret encrypted, and returns it with the secret (the only time).
pub async fn create(state: &AppState, caller: &Caller, req: CreateWebhookRequest) -> Result<Webhook, AppError> {
    let spec = validate_create_webhook(req).map_err(AppError::Validation)?;
    destination::resolve_checked(&spec.host, spec.port, state.webhooks.allow_private)
        .await
        .map_err(|e| AppError::field("url", e))?;
    let secret = new_secret();
    let webhook = Webhook {
        object: "webhook".into(),
        uuid: WebhookId::new(),
        url: spec.url,
        events: spec.events,
        description: spec.description,
        account_uuid: caller.account(),
        secret: None,
        created_at: Timestamp(now_ms()),
    };
    let after_event_id = state.store.event_horizon().await?.last_id;
    let record = WebhookRecord { webhook, secret_encrypted: state.secrets.encrypt(&secret), after_event_id };
    state.store.webhook_create(&record).await?;
    state.webhooks.changed.notify_one();
    Ok(Webhook { secret: Some(secret), ..record.webhook })
}

/// The accounts whose endpoints `caller` manages: its own, or every one with
/// `jobs.read.all`.
pub fn scope(caller: &Caller) -> Option<AccountId> {
    crate::app::events::scope(caller)
}

/// `GET /v1/webhooks`.
pub async fn list(state: &AppState, scope: Option<AccountId>, paging: Paging) -> Result<Page<Webhook>, AppError> {
    let page = state.store.webhook_list(scope, paging).await?;
    Ok(Page { items: page.items.into_iter().map(|r| r.webhook).collect(), total: page.total })
}

/// `GET /v1/webhooks/{uuid}`.
pub async fn fetch(state: &AppState, scope: Option<AccountId>, id: WebhookId) -> Result<Webhook, AppError> {
    let record = state.store.webhook_fetch(scope, id).await?.ok_or_else(|| AppError::not_found("webhook", id))?;
    Ok(record.webhook)
}

/// `DELETE /v1/webhooks/{uuid}`: the endpoint and its pending deliveries go.
pub async fn delete(state: &AppState, scope: Option<AccountId>, id: WebhookId) -> Result<Webhook, AppError> {
    let record = state.store.webhook_delete(scope, id).await?.ok_or_else(|| AppError::not_found("webhook", id))?;
    state.webhooks.changed.notify_one();
    Ok(record.webhook)
}

/// `GET /v1/webhooks/{uuid}/deliveries`.
pub async fn deliveries(
    state: &AppState,
    scope: Option<AccountId>,
    id: WebhookId,
    paging: Paging,
) -> Result<Page<WebhookDelivery>, AppError> {
    state.store.webhook_delivery_list(scope, id, paging).await?.ok_or_else(|| AppError::not_found("webhook", id))
}
