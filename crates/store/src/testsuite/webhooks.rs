//! Conformance checks for webhook endpoints and the outbox (see the parent module).

use gantry_types::event::EventType;
use gantry_types::list::Paging;
use gantry_types::webhook::{DeliveryStatus, Webhook, WebhookDelivery};
use gantry_types::{AccountId, Timestamp, WebhookDeliveryId, WebhookId};

use super::{T0, assert_missing, new_account};
use crate::{Store, WebhookRecord};

fn endpoint(account: AccountId, at: i64, events: Vec<EventType>) -> WebhookRecord {
    WebhookRecord {
        webhook: Webhook {
            object: "webhook".into(),
            uuid: WebhookId::new(),
            url: format!("https://hooks.example.com/{at}"),
            events,
            description: Some("ci".into()),
            account_uuid: account,
            secret: None,
            created_at: Timestamp(at),
        },
        secret_encrypted: "v1:sealed".into(),
        after_event_id: 7,
    }
}

fn delivery(w: &WebhookRecord, event_id: i64) -> WebhookDelivery {
    WebhookDelivery {
        object: "webhook_delivery".into(),
        uuid: WebhookDeliveryId::new(),
        webhook_uuid: w.webhook.uuid,
        account_uuid: w.webhook.account_uuid,
        event_id,
        event_type: EventType::JobCreated,
        status: DeliveryStatus::Pending,
        attempts: 0,
        status_code: None,
        last_error: None,
        next_attempt_at: Some(Timestamp(T0)),
        delivered_at: None,
        created_at: Timestamp(T0),
        updated_at: Timestamp(T0),
    }
}

/// Endpoints round-trip, list by account, delete in scope only.
pub async fn webhook_create_list_delete_scoped(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let w1 = endpoint(a, T0 + 1, vec![EventType::JobCreated, EventType::BalanceChanged]);
    let w2 = endpoint(a, T0 + 2, vec![]);
    let w3 = endpoint(b, T0 + 3, vec![]);
    for w in [&w1, &w2, &w3] {
        store.webhook_create(w).await.unwrap();
    }
    assert_missing(store.webhook_create(&endpoint(AccountId::new(), T0, vec![])).await);
    assert_eq!(store.webhook_fetch(Some(a), w1.webhook.uuid).await.unwrap(), Some(w1.clone()));
    assert_eq!(store.webhook_fetch(Some(b), w1.webhook.uuid).await.unwrap(), None);
    let page = store.webhook_list(Some(a), Paging::default()).await.unwrap();
    assert_eq!((page.total, page.items), (2, vec![w2.clone(), w1.clone()]), "newest first");
    assert_eq!(store.webhook_list_all().await.unwrap().len(), 3);
    assert_eq!(store.webhook_delete(Some(b), w1.webhook.uuid).await.unwrap(), None, "another account's");
    assert_eq!(store.webhook_delete(Some(a), w1.webhook.uuid).await.unwrap(), Some(w1.clone()));
    assert_eq!(store.webhook_fetch(None, w1.webhook.uuid).await.unwrap(), None);
}

/// The fan-out is idempotent and moves its cursor forward only; the due query gives
/// each endpoint's oldest PENDING delivery; updates are recorded; lists are scoped.
pub async fn webhook_outbox_orders_per_endpoint(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let (w1, w2) = (endpoint(a, T0 + 1, vec![]), endpoint(b, T0 + 2, vec![]));
    store.webhook_create(&w1).await.unwrap();
    store.webhook_create(&w2).await.unwrap();
    let gone = endpoint(a, T0 + 3, vec![]);
    assert_eq!(store.webhook_outbox_cursor().await.unwrap(), 0);

    let batch = vec![delivery(&w1, 10), delivery(&w1, 11), delivery(&w2, 11), delivery(&gone, 11)];
    store.webhook_fanout(&batch, 11).await.unwrap();
    // Repeated (a crash before the cursor moved elsewhere): nothing doubles.
    let again: Vec<_> = batch.iter().map(|d| WebhookDelivery { uuid: WebhookDeliveryId::new(), ..d.clone() }).collect();
    store.webhook_fanout(&again, 9).await.unwrap();
    assert_eq!(store.webhook_outbox_cursor().await.unwrap(), 11, "the cursor never moves back");

    let due = store.webhook_delivery_due(T0, 10).await.unwrap();
    let mut got: Vec<(WebhookId, i64)> = due.iter().map(|d| (d.webhook_uuid, d.event_id)).collect();
    got.sort();
    let mut want = vec![(w1.webhook.uuid, 10), (w2.webhook.uuid, 11)];
    want.sort();
    assert_eq!(got, want, "one per endpoint, its oldest");
    assert!(store.webhook_delivery_due(T0 - 1, 10).await.unwrap().is_empty(), "not due yet");

    // The first of w1 fails and is rescheduled: w1's second waits behind it.
    let first = due.iter().find(|d| d.webhook_uuid == w1.webhook.uuid).unwrap().clone();
    let retry = WebhookDelivery {
        attempts: 1,
        status_code: Some(500),
        last_error: Some("HTTP 500".into()),
        next_attempt_at: Some(Timestamp(T0 + 1000)),
        updated_at: Timestamp(T0 + 1),
        ..first.clone()
    };
    store.webhook_delivery_update(&retry).await.unwrap();
    let due = store.webhook_delivery_due(T0 + 10, 10).await.unwrap();
    assert!(due.iter().all(|d| d.webhook_uuid != w1.webhook.uuid), "w1 is held back by its failed oldest");
    let done = WebhookDelivery {
        status: DeliveryStatus::Delivered,
        attempts: 2,
        status_code: Some(204),
        last_error: None,
        next_attempt_at: None,
        delivered_at: Some(Timestamp(T0 + 1001)),
        ..retry
    };
    store.webhook_delivery_update(&done).await.unwrap();
    let due = store.webhook_delivery_due(T0 + 2000, 10).await.unwrap();
    assert!(due.iter().any(|d| d.webhook_uuid == w1.webhook.uuid && d.event_id == 11), "then the next one");

    let list = store.webhook_delivery_list(Some(a), w1.webhook.uuid, Paging::default()).await.unwrap().unwrap();
    assert_eq!(list.total, 2);
    assert_eq!(list.items[1], done, "newest event first; the update was recorded");
    assert!(store.webhook_delivery_list(Some(b), w1.webhook.uuid, Paging::default()).await.unwrap().is_none());
    // Deleting an endpoint takes its deliveries with it.
    store.webhook_delete(None, w1.webhook.uuid).await.unwrap();
    let due = store.webhook_delivery_due(T0 + 2000, 10).await.unwrap();
    assert!(due.iter().all(|d| d.webhook_uuid == w2.webhook.uuid));
}

/// Fencing: a leader whose lease was taken over can neither fan out (no deliveries,
/// the cursor stays) nor record a delivery attempt; under the current lease both
/// land. SQLite's sole instance is never fenced.
pub async fn webhook_writes_are_fenced(store: &dyn Store) {
    use crate::fence::scope;
    let account = new_account(store, "Hooked").await;
    let w = endpoint(account, T0 + 1, vec![]);
    store.webhook_create(&w).await.unwrap();
    let ttl = std::time::Duration::from_millis(300);
    let old = store.try_lead("old", ttl).await.unwrap().expect("nobody leads yet");
    let old_fence = old.fence();
    if store.backend() == "sqlite" {
        scope(old_fence, store.webhook_fanout(&[delivery(&w, 20)], 20)).await.unwrap();
        assert_eq!(store.webhook_outbox_cursor().await.unwrap(), 20, "SQLite's sole instance is never fenced");
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let new = loop {
        // Long enough for the whole test: the new lease must not run out midway.
        if let Some(lead) = store.try_lead("new", std::time::Duration::from_secs(60)).await.unwrap() {
            break lead;
        }
        assert!(std::time::Instant::now() < deadline, "the leadership never passed on");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };

    let refused = scope(old_fence, store.webhook_fanout(&[delivery(&w, 20)], 20)).await;
    assert!(matches!(refused, Err(crate::StoreError::Fenced { .. })), "{refused:?}");
    assert_eq!(store.webhook_outbox_cursor().await.unwrap(), 0, "a fenced fan-out moves no cursor");
    assert!(store.webhook_delivery_due(T0, 10).await.unwrap().is_empty(), "and adds no delivery");

    scope(new.fence(), store.webhook_fanout(&[delivery(&w, 20)], 20)).await.unwrap();
    assert_eq!(store.webhook_outbox_cursor().await.unwrap(), 20);
    let pending = store.webhook_delivery_due(T0, 10).await.unwrap().pop().expect("fanned out");
    let sent = WebhookDelivery {
        status: DeliveryStatus::Delivered,
        attempts: 1,
        status_code: Some(204),
        next_attempt_at: None,
        delivered_at: Some(Timestamp(T0 + 5)),
        updated_at: Timestamp(T0 + 5),
        ..pending.clone()
    };
    let refused = scope(old_fence, store.webhook_delivery_update(&sent)).await;
    assert!(matches!(refused, Err(crate::StoreError::Fenced { .. })), "{refused:?}");
    let list = store.webhook_delivery_list(None, w.webhook.uuid, Paging::default()).await.unwrap().unwrap();
    assert_eq!(list.items, vec![pending], "a fenced attempt records nothing");
    scope(new.fence(), store.webhook_delivery_update(&sent)).await.unwrap();
    let list = store.webhook_delivery_list(None, w.webhook.uuid, Paging::default()).await.unwrap().unwrap();
    assert_eq!(list.items, vec![sent]);
    drop(old);
    drop(new);
}
