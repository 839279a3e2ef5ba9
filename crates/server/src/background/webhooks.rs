//! Webhook delivery: the fan-out step (event log → durable outbox) and the delivery
//! worker (outbox → POSTs, retried with exponential backoff and jitter for up to
//! 24 hours).
//!
//! **Fan-out** wakes on the store's event watch (and a fallback timer), reads the
//! events after the outbox cursor, and writes one PENDING delivery per matching
//! (endpoint, event) together with the new cursor, in one transaction: a crash
//! between reading and writing repeats the step, and the store's unique key per
//! (endpoint, event) makes the repeat a no-op. With no endpoints at all it reads
//! nothing (each endpoint starts after the newest event at its creation anyway).
//!
//! **Delivery** asks the store for each endpoint's oldest PENDING delivery that is
//! due and sends it in a task of its own; an endpoint with an attempt in flight is
//! skipped until it ends. So an endpoint receives its events in log order, one at a
//! time, and a slow or dead endpoint delays nobody else (at most [`MAX_IN_FLIGHT`]
//! endpoints are attempted at once; the request path never waits for any of it).
//! At-least-once: a delivery is marked DELIVERED only after a 2xx, so a crash in
//! between sends it again; receivers deduplicate on `X-Gantry-Delivery`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_store::WebhookRecord;
use gantry_types::event::Event;
use gantry_types::webhook::{DeliveryStatus, WebhookDelivery};
use gantry_types::{Timestamp, WebhookDeliveryId, WebhookId};

use crate::app::events::FALLBACK_POLL;
use crate::app::webhooks::destination;
use crate::metrics::OutcomeLabel;
use crate::state::{AppState, now_ms};

/// Events read per fan-out step.
const FANOUT_BATCH: u32 = 500;

/// Deliveries asked for per worker step.
const DUE_BATCH: u32 = 200;

/// Endpoints attempted at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Most bytes of a failed response's body kept in `last_error`.
const ERROR_BODY_BYTES: usize = 200;

/// How long "there is no endpoint at all" is believed without asking the store again
/// (endpoints created by another server process; one created here says so at once).
const NO_ENDPOINTS_FOR: Duration = Duration::from_secs(1);

/// Runs the fan-out step until aborted.
pub async fn run_fanout(state: Arc<AppState>) {
    let mut watch = state.store.event_watch();
    let mut cursor = None;
    // When the store last said there is no endpoint. Skipping a step never moves the
    // cursor, so an endpoint noticed late still gets every event after its creation.
    let mut none_since: Option<tokio::time::Instant> = None;
    loop {
        watch.borrow_and_update();
        if none_since.is_some_and(|t| t.elapsed() < NO_ENDPOINTS_FOR) {
            tokio::select! {
                _ = watch.changed() => {}
                _ = state.webhooks.changed.notified() => none_since = None,
                _ = tokio::time::sleep(FALLBACK_POLL) => {}
            }
            continue;
        }
        none_since = None;
        match fanout_step(&state, &mut cursor, &mut none_since).await {
            Ok(true) => continue, // a full batch: more may be waiting
            Ok(false) => {}
            Err(e) => {
                cursor = None; // reread it: the store is the truth
                tracing::warn!(error = %crate::app::error::chain(&e), "webhook fan-out failed");
            }
        }
        tokio::select! {
            _ = watch.changed() => {}
            _ = state.webhooks.changed.notified() => {}
            _ = tokio::time::sleep(FALLBACK_POLL) => {}
        }
    }
}

/// One step; `Ok(true)` when it read a full batch.
///
/// The endpoints that filter a batch are read *after* the batch: an endpoint created
/// later starts after the newest event at its creation, so it wants none of the batch,
/// and an endpoint created before is in the list. Reading them before the batch would
/// let an endpoint created in between miss events the cursor then moves past.
async fn fanout_step(
    state: &AppState,
    cursor: &mut Option<i64>,
    none_since: &mut Option<tokio::time::Instant>,
) -> Result<bool, crate::app::error::AppError> {
    // No endpoint at all: nothing to read (each starts after its creation anyway).
    let Some(first) = state.store.webhook_list_all().await?.iter().map(|h| h.after_event_id).min() else {
        *none_since = Some(tokio::time::Instant::now());
        return Ok(false);
    };
    let stored = match *cursor {
        Some(c) => c,
        None => state.store.webhook_outbox_cursor().await?,
    };
    let from = stored.max(first);
    let events = state.store.event_list(None, from, &[], FANOUT_BATCH).await?;
    let Some(last) = events.last().map(|e| e.id) else {
        return Ok(false);
    };
    let hooks = state.store.webhook_list_all().await?;
    let now = now_ms();
    let deliveries: Vec<WebhookDelivery> = events
        .iter()
        .flat_map(|e| hooks.iter().filter(|h| wants(h, e)).map(move |h| new_delivery(h, e, now)))
        .collect();
    state.store.webhook_fanout(&deliveries, last).await?;
    *cursor = Some(last);
    if !deliveries.is_empty() {
        state.webhooks.outbox.notify_one();
    }
    Ok(events.len() == FANOUT_BATCH as usize)
}

fn wants(hook: &WebhookRecord, event: &Event) -> bool {
    let w = &hook.webhook;
    w.account_uuid == event.account_uuid
        && event.id > hook.after_event_id
        && (w.events.is_empty() || w.events.contains(&event.event_type))
}

fn new_delivery(hook: &WebhookRecord, event: &Event, now: i64) -> WebhookDelivery {
    WebhookDelivery {
        object: "webhook_delivery".into(),
        uuid: WebhookDeliveryId::new(),
        webhook_uuid: hook.webhook.uuid,
        account_uuid: hook.webhook.account_uuid,
        event_id: event.id,
        event_type: event.event_type,
        status: DeliveryStatus::Pending,
        attempts: 0,
        status_code: None,
        last_error: None,
        next_attempt_at: Some(Timestamp(now)),
        delivered_at: None,
        created_at: Timestamp(now),
        updated_at: Timestamp(now),
    }
}

/// Runs the delivery worker until aborted.
pub async fn run_delivery(state: Arc<AppState>) {
    let claims: Arc<Mutex<Claims>> = Arc::default();
    loop {
        lock(&claims).before_query();
        match state.store.webhook_delivery_due(now_ms(), DUE_BATCH).await {
            Ok(due) => {
                for delivery in due {
                    let endpoint = delivery.webhook_uuid;
                    if !lock(&claims).claim(endpoint) {
                        continue;
                    }
                    let (state, claims) = (state.clone(), claims.clone());
                    let attempt = async move {
                        attempt(&state, delivery).await;
                        lock(&claims).finish(endpoint);
                        state.webhooks.outbox.notify_one();
                    };
                    // The attempt records its outcome under the loop's fence (a
                    // task-local, which a spawned task does not inherit): a leader
                    // that lost its lease mid-attempt records nothing.
                    match gantry_store::fence::current() {
                        Some(fence) => tokio::spawn(gantry_store::fence::scope(fence, attempt)),
                        None => tokio::spawn(attempt),
                    };
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading due webhook deliveries failed"),
        }
        tokio::select! {
            _ = state.webhooks.outbox.notified() => {}
            _ = tokio::time::sleep(state.webhooks.poll_every) => {}
        }
    }
}

fn lock(claims: &Mutex<Claims>) -> std::sync::MutexGuard<'_, Claims> {
    claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Which endpoints the worker may start an attempt for.
///
/// An endpoint with an attempt in flight is busy. An endpoint whose attempt *ended*
/// while the worker was reading the due list is skipped too: that list may have been
/// read before the attempt was recorded, so its "oldest PENDING" can be the delivery
/// just sent, and sending it again would duplicate it. The finished attempt wakes the
/// worker, whose next read sees the record.
#[derive(Default)]
struct Claims {
    busy: HashSet<WebhookId>,
    finished_since_query: HashSet<WebhookId>,
}

impl Claims {
    fn before_query(&mut self) {
        self.finished_since_query.clear();
    }

    /// Whether an attempt for `endpoint` may start now (and if so, it is busy).
    fn claim(&mut self, endpoint: WebhookId) -> bool {
        if self.busy.len() >= MAX_IN_FLIGHT || self.finished_since_query.contains(&endpoint) {
            return false;
        }
        self.busy.insert(endpoint)
    }

    fn finish(&mut self, endpoint: WebhookId) {
        self.busy.remove(&endpoint);
        self.finished_since_query.insert(endpoint);
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Failed {
        status: Option<u16>,
        error: String,
    },
    /// Nothing to send any more (the endpoint was deleted).
    Gone,
}

/// One attempt at `delivery`, recorded in the store.
async fn attempt(state: &AppState, mut delivery: WebhookDelivery) {
    let outcome = send(state, &delivery).await;
    let now = now_ms();
    delivery.updated_at = Timestamp(now);
    let label = match outcome {
        Outcome::Gone => return,
        Outcome::Delivered(code) => {
            delivery.attempts += 1;
            delivery.status = DeliveryStatus::Delivered;
            delivery.status_code = Some(code);
            delivery.last_error = None;
            delivery.next_attempt_at = None;
            delivery.delivered_at = Some(Timestamp(now));
            "delivered"
        }
        Outcome::Failed { status, error } => {
            delivery.attempts += 1;
            delivery.status_code = status;
            delivery.last_error = Some(error);
            let give_up = i64::try_from(state.webhooks.give_up_after.as_millis()).unwrap_or(i64::MAX);
            let next =
                now + i64::try_from(backoff(state.webhooks.retry_base, delivery.attempts).as_millis()).unwrap_or(0);
            if next - delivery.created_at.0 > give_up {
                delivery.status = DeliveryStatus::Failed;
                delivery.next_attempt_at = None;
                "failed"
            } else {
                delivery.next_attempt_at = Some(Timestamp(next));
                "retried"
            }
        }
    };
    state.metrics.webhook_deliveries.get_or_create(&OutcomeLabel { outcome: label }).inc();
    if let Err(e) = state.store.webhook_delivery_update(&delivery).await {
        // Not recorded: it stays PENDING and is sent again (at least once).
        tracing::warn!(error = %e, delivery = %delivery.uuid, "recording a webhook attempt failed");
    }
}

/// The wait before attempt `attempts + 1`: `base * 2^(attempts-1)`, capped at an
/// hour, times a random factor in [0.5, 1) (jitter: endpoints that failed together
/// do not retry in lockstep).
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(MAX_BACKOFF);
    exp.mul_f64(rand::random_range(0.5..1.0))
}

/// Sends `delivery` once.
async fn send(state: &AppState, delivery: &WebhookDelivery) -> Outcome {
    let hook = match state.store.webhook_fetch(None, delivery.webhook_uuid).await {
        Ok(Some(h)) => h,
        Ok(None) => return Outcome::Gone,
        Err(e) => return Outcome::Failed { status: None, error: format!("store: {e}") },
    };
    let event = match state.store.event_list(None, delivery.event_id - 1, &[], 1).await {
        Ok(events) => match events.into_iter().next() {
            Some(e) if e.id == delivery.event_id => e,
            _ => {
                return Outcome::Failed { status: None, error: "the event was deleted by retention".into() };
            }
        },
        Err(e) => return Outcome::Failed { status: None, error: format!("store: {e}") },
    };
    let secret = match state.secrets.decrypt(&hook.secret_encrypted) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed { status: None, error: format!("the signing secret does not decrypt: {e}") },
    };
    // An IP literal never reaches the resolver: check it here (the flag may have
    // been turned off since the endpoint was created).
    if let Ok((_, host, port)) = gantry_types::webhook::parse_url(&hook.webhook.url)
        && host.parse::<std::net::IpAddr>().is_ok()
        && let Err(e) = destination::resolve_checked(&host, port, state.webhooks.allow_private).await
    {
        return Outcome::Failed { status: None, error: e };
    }
    let body = serde_json::to_vec(&event).unwrap_or_default();
    let t = now_ms() / 1000;
    let signature = sign(&secret, t, &body);
    let request = state
        .webhooks
        .client
        .post(&hook.webhook.url)
        .header("Content-Type", "application/json")
        .header("X-Gantry-Event", event.event_type.as_str())
        .header("X-Gantry-Delivery", delivery.uuid.to_string())
        .header("X-Gantry-Signature", format!("t={t},v1={signature}"))
        .body(body);
    match request.send().await {
        Ok(resp) if resp.status().is_success() => Outcome::Delivered(resp.status().as_u16()),
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let snippet: String = text.chars().take(ERROR_BODY_BYTES).collect();
            Outcome::Failed { status: Some(status.as_u16()), error: format!("HTTP {status}: {snippet}") }
        }
        Err(e) => Outcome::Failed { status: None, error: crate::chain(&e) },
    }
}

/// `hex(HMAC-SHA256(secret, "<t>.<body>"))`: what `X-Gantry-Signature`'s `v1` carries.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    gantry_auth::sign_bytes(secret, &signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(1);
        for attempts in 1..=30 {
            let d = backoff(base, attempts);
            let exp = (base * (1u32 << (attempts - 1).min(20))).min(MAX_BACKOFF);
            assert!(d >= exp / 2 && d < exp, "attempt {attempts}: {d:?} vs {exp:?}");
        }
    }

    #[test]
    fn an_endpoint_whose_attempt_ended_during_the_read_waits_for_the_next_read() {
        let (a, b) = (WebhookId::new(), WebhookId::new());
        let mut claims = Claims::default();
        claims.before_query();
        assert!(claims.claim(a));
        assert!(!claims.claim(a), "one attempt per endpoint at a time");
        claims.before_query();
        // The read is under way when a's attempt ends: its result may predate the record.
        claims.finish(a);
        assert!(!claims.claim(a), "a due list read before the record could resend it");
        assert!(claims.claim(b));
        claims.before_query();
        assert!(claims.claim(a), "a read begun after the record is trusted");
    }

    #[test]
    fn signature_is_hmac_of_t_dot_body() {
        // Independently: HMAC-SHA256("whsec_test", "1700000000.{}").
        let sig = sign("whsec_test", 1_700_000_000, b"{}");
        assert_eq!(sig.len(), 64);
        assert_eq!(sig, gantry_auth::sign("whsec_test", "1700000000.{}"));
    }
}
