//! Conformance checks for the batched writes and reads a mass loss takes (a rack or a
//! partition: hundreds of nodes and their runs at once): each item of a batch
//! applies exactly as its one-item call would, the answers come in the order asked,
//! every change has its one event, and a batch that fails writes nothing.

use gantry_types::billing::LedgerKind;
use gantry_types::event::EventType;
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::JobRunStatus;
use gantry_types::{AccountId, JobId, JobRunId, NodeId};

use super::cluster::{job_change, new_job, new_node, place, run_record, status_change};
use super::{T0, new_account};
use crate::{JobTransition, LedgerPosting, NodeLiveness, NodeRecord, RunRecord, RunUpdate, Store, StoreError};

/// The uuids `account`'s events after `start` are about, in order, asserting each
/// is of type `expected`.
async fn events_since(store: &dyn Store, account: AccountId, start: i64, expected: EventType) -> Vec<String> {
    let events = store.event_list(Some(account), start, &[], 100).await.unwrap();
    events
        .iter()
        .map(|e| {
            assert_eq!(e.event_type, expected);
            e.data["uuid"].as_str().expect("uuid").to_string()
        })
        .collect()
}

/// Four jobs of `account`, each placed on `node` with one ASSIGNED run.
async fn four_placed(store: &dyn Store, account: AccountId, node: &NodeRecord) -> Vec<(Job, RunRecord)> {
    let mut placed = Vec::new();
    for i in 0..4 {
        let job = new_job(store, account, T0 + 1 + i as i64, i).await;
        let run = run_record(&job, node, 0, 0, T0 + 10);
        assert!(place(store, job.uuid, std::slice::from_ref(&run), T0 + 10).await);
        placed.push((job, run));
    }
    placed
}

/// Reading many nodes at once returns each known one as a fetch would, and leaves
/// unknown ids out.
pub async fn node_fetch_many_returns_the_known_ones(store: &dyn Store) {
    let account = new_account(store, "Read together").await;
    let (a, b) = (new_node(store, account, T0, 1).await, new_node(store, account, T0 + 1, 2).await);
    new_node(store, account, T0 + 2, 3).await;
    assert_eq!(store.node_fetch_many(&[]).await.unwrap(), vec![]);
    let mut got = store.node_fetch_many(&[b.uuid, NodeId::new(), a.uuid]).await.unwrap();
    got.sort_by_key(|n| n.created_at_ms);
    assert_eq!(got, vec![a, b]);
}

/// Loss detection's read lists every ONLINE node with its name and stored
/// heartbeat, and no other.
pub async fn node_list_online_is_the_online_ones(store: &dyn Store) {
    let account = new_account(store, "Alive").await;
    assert_eq!(store.node_list_online().await.unwrap(), vec![]);
    let (a, b, lost) = (
        new_node(store, account, T0, 1).await,
        new_node(store, account, T0 + 1, 2).await,
        new_node(store, account, T0 + 2, 3).await,
    );
    assert!(store.node_heartbeat(b.uuid, b.lease_epoch, T0 + 500, None).await.unwrap());
    assert!(store.node_mark_lost(lost.uuid, T0 + 1_000, T0 + 1_000).await.unwrap());
    let mut online = store.node_list_online().await.unwrap();
    online.sort_by_key(|n| n.name.clone());
    let mut expected = vec![
        NodeLiveness { uuid: a.uuid, name: a.name.clone(), last_seen_at_ms: a.last_seen_at_ms },
        NodeLiveness { uuid: b.uuid, name: b.name.clone(), last_seen_at_ms: T0 + 500 },
    ];
    expected.sort_by_key(|n| n.name.clone());
    assert_eq!(online, expected);
}

/// Ending many runs at once: each update is the compare-and-set it would be alone
/// (an ended run, an unknown one and a stale `from` are skipped), answered in the
/// order asked, with one event per run changed.
pub async fn run_update_many_applies_each_like_one(store: &dyn Store) {
    use JobRunStatus::*;
    let account = new_account(store, "Ended together").await;
    let node = new_node(store, account, T0, 1).await;
    let runs: Vec<RunRecord> = four_placed(store, account, &node).await.into_iter().map(|(_, run)| run).collect();
    let running = store.run_update(runs[1].run.uuid, &status_change(&[Assigned], Running, T0 + 20)).await.unwrap();
    assert!(running.is_some());
    let ended = store.run_update(runs[2].run.uuid, &status_change(&[Assigned], Completed, T0 + 20)).await.unwrap();
    assert!(ended.is_some());
    assert_eq!(store.run_update_many(&[]).await.unwrap(), vec![]);
    let start = store.event_horizon().await.unwrap().last_id;

    let fail = |now| RunUpdate {
        reason: Some("node lost".into()),
        ..status_change(&[Assigned, Preparing, Running], Failed, now)
    };
    let updates = [
        (runs[1].run.uuid, fail(T0 + 100)),
        (JobRunId::new(), fail(T0 + 100)),
        (runs[2].run.uuid, fail(T0 + 100)),
        (runs[0].run.uuid, fail(T0 + 101)),
        (runs[3].run.uuid, status_change(&[Running], Failed, T0 + 100)),
    ];
    let after = store.run_update_many(&updates).await.unwrap();
    let statuses: Vec<Option<JobRunStatus>> = after.iter().map(|r| r.as_ref().map(|r| r.run.status)).collect();
    assert_eq!(statuses, [Some(Failed), None, None, Some(Failed), None], "each as its own compare-and-set");
    let first = after[0].as_ref().unwrap();
    assert_eq!(first.run.uuid, runs[1].run.uuid, "answers in the order asked");
    assert_eq!((first.run.ended_at_ms, first.run.duration_ms), (Some(T0 + 100), Some(80)));
    assert_eq!(first.run.status_reason.as_deref(), Some("node lost"));
    assert_eq!(after[3].as_ref().unwrap().run.ended_at_ms, Some(T0 + 101), "each update its own time");
    for (id, expected) in [(runs[1].run.uuid, Failed), (runs[2].run.uuid, Completed), (runs[3].run.uuid, Assigned)] {
        assert_eq!(store.run_fetch(None, id).await.unwrap().unwrap().run.status, expected);
    }
    let changed = events_since(store, account, start, EventType::JobRunStatusChanged).await;
    assert_eq!(changed, [runs[1].run.uuid.to_string(), runs[0].run.uuid.to_string()], "one event per run changed");

    // One run twice in one call, beside another run: applied in the order asked (the
    // second sees the first), each with its own time; an image size reaches the job.
    let (twice, other) = (runs[3].run.uuid, runs[2].run.uuid);
    let start = store.event_horizon().await.unwrap().last_id;
    let updates = [
        (twice, status_change(&[Assigned], Preparing, T0 + 110)),
        (other, status_change(&[Running], Failed, T0 + 110)),
        (twice, RunUpdate { image_size_bytes: Some(4096), ..status_change(&[Preparing], Running, T0 + 111) }),
    ];
    let after = store.run_update_many(&updates).await.unwrap();
    let statuses: Vec<Option<JobRunStatus>> = after.iter().map(|r| r.as_ref().map(|r| r.run.status)).collect();
    assert_eq!(statuses, [Some(Preparing), None, Some(Running)], "in the order asked");
    assert_eq!(after[2].as_ref().unwrap().run.started_at_ms, Some(T0 + 111));
    let job = store.job_fetch(None, runs[3].run.job_uuid).await.unwrap().unwrap();
    assert_eq!(job.image_size_bytes, Some(4096), "the run's image size is its job's");
    let changed = events_since(store, account, start, EventType::JobRunStatusChanged).await;
    assert_eq!(changed, [twice.to_string(), twice.to_string()], "one event per change applied, in order");
}

/// Settling many jobs at once: each transition is the compare-and-set it would be
/// alone, the usage counters follow (a job back to PENDING counts again), and a job
/// named twice fails the whole batch before anything is written.
pub async fn job_transition_many_applies_each_like_one(store: &dyn Store) {
    use JobStatus::*;
    let account = new_account(store, "Settled together").await;
    let node = new_node(store, account, T0, 1).await;
    let jobs: Vec<Job> = four_placed(store, account, &node).await.into_iter().map(|(job, _)| job).collect();
    store.job_transition(None, jobs[0].uuid, &job_change(&[Assigned], Running, T0 + 20)).await.unwrap().unwrap();
    assert_eq!(store.job_usage(account).await.unwrap().pending_jobs, 0);
    assert_eq!(store.job_transition_many(&[]).await.unwrap(), vec![]);

    let retry =
        JobTransition { reason: Some("retrying".into()), ..job_change(&[Running, Assigned], Pending, T0 + 100) };
    let twice = [(jobs[1].uuid, job_change(&[Assigned], Failed, T0 + 100)), (jobs[1].uuid, retry.clone())];
    assert!(matches!(store.job_transition_many(&twice).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.job_fetch(None, jobs[1].uuid).await.unwrap().unwrap().status, Assigned, "nothing written");
    let start = store.event_horizon().await.unwrap().last_id;

    let transitions = [
        (jobs[0].uuid, retry.clone()),
        (JobId::new(), retry.clone()),
        (jobs[1].uuid, job_change(&[Assigned], Failed, T0 + 101)),
        (jobs[2].uuid, job_change(&[Running], Completed, T0 + 100)),
        (jobs[3].uuid, job_change(&[Assigned], Running, T0 + 102)),
    ];
    let after = store.job_transition_many(&transitions).await.unwrap();
    let statuses: Vec<Option<JobStatus>> = after.iter().map(|j| j.as_ref().map(|j| j.status)).collect();
    assert_eq!(statuses, [Some(Pending), None, Some(Failed), None, Some(Running)]);
    let retried = after[0].as_ref().unwrap();
    assert_eq!((retried.uuid, retried.status_reason.as_deref()), (jobs[0].uuid, Some("retrying")));
    assert_eq!(retried.started_at.map(|t| t.0), Some(T0 + 20), "started_at kept");
    assert_eq!(after[2].as_ref().unwrap().completed_at.map(|t| t.0), Some(T0 + 101));
    assert_eq!(after[4].as_ref().unwrap().started_at.map(|t| t.0), Some(T0 + 102));
    assert_eq!(store.job_fetch(None, jobs[2].uuid).await.unwrap().unwrap().status, Assigned, "stale: untouched");
    assert_eq!(store.job_usage(account).await.unwrap().pending_jobs, 1, "the retried job counts as pending again");

    let changed = events_since(store, account, start, EventType::JobStatusChanged).await;
    let expected: Vec<String> = [0, 1, 3].iter().map(|&i| jobs[i].uuid.to_string()).collect();
    assert_eq!(changed, expected, "one event per job changed, in the order of the batch");
}

/// Charging many runs at once: each posting is posted once (a key posted before,
/// or twice in the batch, answers `false`), and one naming an unknown account
/// fails the batch with nothing posted.
pub async fn ledger_post_many_posts_each_once(store: &dyn Store) {
    let (a, b) = (new_account(store, "Payer").await, new_account(store, "Owner").await);
    let node = NodeId::new();
    let charge = |run: JobRunId, micros: i64| {
        LedgerPosting::new(LedgerKind::RunCharge, &[(a, -micros), (b, micros / 2)], T0 + 10).for_run(run, node)
    };
    let (r1, r2, r3) = (JobRunId::new(), JobRunId::new(), JobRunId::new());
    assert!(store.ledger_post(&charge(r1, 1_000)).await.unwrap());
    assert_eq!(store.ledger_post_many(&[]).await.unwrap(), Vec::<bool>::new());

    let bad = LedgerPosting::new(LedgerKind::Credit, &[(gantry_types::AccountId::new(), 5)], T0 + 11);
    let failing = [charge(r2, 2_000), bad];
    assert!(matches!(store.ledger_post_many(&failing).await, Err(StoreError::MissingReference { .. })));
    assert_eq!(store.ledger_balance(a).await.unwrap(), -1_000, "nothing of a failed batch posted");

    let posted =
        store.ledger_post_many(&[charge(r1, 1_000), charge(r2, 2_000), charge(r3, 4_000), charge(r3, 4_000)]).await;
    assert_eq!(posted.unwrap(), [false, true, true, false]);
    assert_eq!(store.ledger_balance(a).await.unwrap(), -7_000);
    assert_eq!(store.ledger_balance(b).await.unwrap(), 3_500);
    let sum: i64 = store.ledger_balances().await.unwrap().iter().map(|b| b.1).sum();
    assert_eq!(sum, 0, "every posting balanced");
}
