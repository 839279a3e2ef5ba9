//! Conformance checks for the event log (see the parent module): every change
//! appends its event in the same transaction, reads are scoped and filtered, ids only
//! grow in commit order (checked under concurrent writers by a reader resuming with
//! `after`), and retention moves the horizon.

use std::sync::Arc;

use gantry_types::billing::LedgerKind;
use gantry_types::event::{Event, EventType};
use gantry_types::job::JobStatus;
use gantry_types::job_run::JobRunStatus;

use super::cluster::{new_node, run_record};
use super::{StoreFixture, T0, full_job, job, new_account};
use crate::{JobPlacement, JobTransition, LedgerPosting, RunUpdate, Store};

fn types(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

/// Every kind of change leaves its event, with the object after the change,
/// secrets redacted, scoped to its account and filterable by type.
pub async fn event_log_follows_changes(store: &dyn Store) {
    let (a, b) = (new_account(store, "Events").await, new_account(store, "Other").await);
    let watch = store.event_watch();
    let start = store.event_horizon().await.unwrap().last_id;

    let j = full_job(a, T0 + 1);
    store.job_create(&j).await.unwrap();
    let node = new_node(store, b, T0 + 2, 1).await;
    let run = run_record(&j, &node, 0, 0, T0 + 3);
    let placement = JobPlacement { job: j.uuid, runs: vec![run.clone()], now_ms: T0 + 3 };
    assert_eq!(store.run_place(&[placement]).await.unwrap(), vec![j.uuid]);
    let update = RunUpdate {
        from: vec![JobRunStatus::Assigned],
        to: JobRunStatus::Running,
        reason: None,
        now_ms: T0 + 4,
        exit_code: None,
        node_urls: None,
        image_size_bytes: None,
    };
    store.run_update(run.run.uuid, &update).await.unwrap().unwrap();
    let running =
        JobTransition { from: vec![JobStatus::Assigned], to: JobStatus::Running, reason: None, now_ms: T0 + 5 };
    store.job_transition(None, j.uuid, &running).await.unwrap().unwrap();
    // A compare-and-set that does not apply tells nothing.
    assert!(store.job_transition(None, j.uuid, &running).await.unwrap().is_none());
    assert!(store.node_mark_lost(node.uuid, T0 + 100, T0 + 6).await.unwrap());
    assert!(!store.node_mark_lost(node.uuid, T0 + 100, T0 + 7).await.unwrap());
    let credit = LedgerPosting::new(LedgerKind::Credit, &[(a, 2_500_000)], T0 + 8);
    assert!(store.ledger_post(&credit).await.unwrap());

    let all = store.event_list(None, start, &[], 100).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let mine = store.event_list(Some(a), start, &[], 100).await.unwrap();
    assert_eq!(
        types(&mine),
        [
            EventType::JobCreated,
            EventType::JobStatusChanged,
            EventType::JobRunCreated,
            EventType::JobRunStatusChanged,
            EventType::JobStatusChanged,
            EventType::BalanceChanged,
        ]
    );
    let theirs = store.event_list(Some(b), start, &[], 100).await.unwrap();
    assert_eq!(types(&theirs), [EventType::NodeRegistered, EventType::NodeStatusChanged]);
    assert!(mine.iter().chain(&theirs).all(|e| all.contains(e)));
    assert!(mine.iter().all(|e| e.account_uuid == a) && theirs.iter().all(|e| e.account_uuid == b));

    // The data is the object after the change, secrets redacted.
    let created = &mine[0];
    assert_eq!(created.data["uuid"], j.uuid.to_string());
    let params = &created.data["parameters"]["parameters"];
    assert_eq!(params["secret"], "********");
    assert_eq!(params["volumes"][0]["secret"], "********");
    assert_eq!(params["env"]["A"], "********");
    assert!(!created.data.to_string().contains("enc:v1"), "no ciphertext in events");
    // `job.created` is the job as created, not as it is now (it has run since): the
    // stored snapshot, redacted exactly as `Job::redacted` does.
    assert_eq!(created.data, serde_json::to_value(j.clone().redacted()).unwrap());
    assert_eq!(created.data["status"], j.status.as_str());
    assert_eq!(mine[1].data["status"], "ASSIGNED");
    assert_eq!(mine[2].data["uuid"], run.run.uuid.to_string());
    assert_eq!(mine[3].data["status"], "RUNNING");
    assert_eq!(mine[4].data["status"], "RUNNING");
    assert_eq!(mine[5].data["amount_micros"], 2_500_000);
    assert_eq!(theirs[1].data["status"], "LOST");
    assert_eq!(theirs[1].created_at.0, T0 + 6);

    // Filters and resuming.
    let status = store.event_list(Some(a), start, &[EventType::JobStatusChanged], 100).await.unwrap();
    assert_eq!(status.iter().map(|e| e.id).collect::<Vec<_>>(), [mine[1].id, mine[4].id]);
    let after = store.event_list(Some(a), mine[2].id, &[], 2).await.unwrap();
    assert_eq!(after, mine[3..5]);
    let typed = store.event_list_types(start, 100).await.unwrap();
    assert_eq!(typed, all.iter().map(|e| (e.id, e.event_type)).collect::<Vec<_>>());
    let horizon = store.event_horizon().await.unwrap();
    assert_eq!(horizon.last_id, *ids.last().unwrap());
    assert_eq!(*watch.borrow(), horizon.last_id, "the watch carries the newest committed id");
    assert!(store.event_list(None, horizon.last_id, &[], 10).await.unwrap().is_empty());
}

/// A failed write appends nothing (its event goes with its rollback).
pub async fn event_not_written_when_the_change_fails(store: &dyn Store) {
    let a = new_account(store, "Fails").await;
    let j = job(a, T0 + 1, 0);
    store.job_create(&j).await.unwrap();
    let before = store.event_horizon().await.unwrap().last_id;
    assert!(store.job_create(&j).await.is_err(), "duplicate uuid");
    let missing = LedgerPosting::new(LedgerKind::Credit, &[(gantry_types::AccountId::new(), 1)], T0 + 2);
    assert!(store.ledger_post(&missing).await.is_err());
    assert!(store.event_list(None, before, &[], 10).await.unwrap().is_empty());
}

/// Under concurrent writers, a reader that resumes with `after=<last id seen>`
/// sees every event exactly once: no id becomes visible below one already read.
pub async fn event_ids_follow_commit_order(fixture: &mut dyn StoreFixture) {
    let store: Arc<dyn Store> = fixture.store();
    let a = new_account(&*store, "Order").await;
    let start = store.event_horizon().await.unwrap().last_id;
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let at = T0 + i64::try_from(w * EACH + i).unwrap();
                store.job_create(&job(a, at, i)).await.unwrap();
            }
        }));
    }
    let reader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let (mut seen, mut after) = (Vec::new(), start);
            while seen.len() < WRITERS * EACH {
                let page = store.event_list(Some(a), after, &[], 7).await.unwrap();
                if let Some(last) = page.last() {
                    after = last.id;
                }
                seen.extend(page.into_iter().map(|e| e.id));
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(60), reader).await.unwrap().unwrap();
    let all: Vec<i64> = store.event_list(Some(a), start, &[], 1000).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(all.len(), WRITERS * EACH);
    assert_eq!(seen, all, "the resuming reader saw every event once, in order");
}

/// Retention deletes a prefix and records the horizon; the newest id survives it.
pub async fn event_prune_moves_the_horizon(store: &dyn Store) {
    let a = new_account(store, "Prune").await;
    for i in 0..5 {
        store.job_create(&job(a, T0 + i, 0)).await.unwrap();
    }
    let mine = store.event_list(Some(a), 0, &[], 10).await.unwrap();
    assert_eq!(mine.len(), 5);
    let deleted = store.event_prune(T0 + 3).await.unwrap();
    assert!(deleted >= 3, "deleted {deleted}");
    let horizon = store.event_horizon().await.unwrap();
    assert_eq!(horizon.pruned_through, mine[2].id);
    assert_eq!(horizon.last_id, mine[4].id);
    assert_eq!(store.event_list(Some(a), 0, &[], 10).await.unwrap(), mine[3..]);
    assert_eq!(store.event_prune(T0 + 100).await.unwrap(), 1, "all but the newest event");
    let horizon = store.event_horizon().await.unwrap();
    assert_eq!((horizon.pruned_through, horizon.last_id), (mine[3].id, mine[4].id));
    assert_eq!(store.event_prune(T0 + 100).await.unwrap(), 0);
    // Ids go on from the newest: none is reused.
    store.job_create(&job(a, T0 + 10, 0)).await.unwrap();
    let next = store.event_list(Some(a), mine[4].id, &[], 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].id > mine[4].id);
}
