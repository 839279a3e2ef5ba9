//! Conformance checks for deployment settings (see the parent module).

use std::time::Duration;

use gantry_types::job::JobStatus;
use gantry_types::job_run::JobRunStatus;
use gantry_types::node::NodeStatus;

use super::StoreFixture;
use super::gpu_models::join_all;
use crate::deployment::Leadership;
use crate::fence::scope;
use crate::{Store, StoreError};

/// The first value written under a name stays; later inserts get it back.
pub async fn setting_first_value_wins(store: &dyn Store) {
    assert_eq!(store.setting_fetch("greeting").await.unwrap(), None);
    assert_eq!(store.setting_insert_if_absent("greeting", "hello").await.unwrap(), "hello");
    assert_eq!(store.setting_insert_if_absent("greeting", "bonjour").await.unwrap(), "hello");
    assert_eq!(store.setting_fetch("greeting").await.unwrap().as_deref(), Some("hello"));
    assert_eq!(store.setting_insert_if_absent("other", "x").await.unwrap(), "x");
}

/// Instances starting together all get the one value that was stored.
pub async fn setting_concurrent_inserts_agree(store: &dyn Store) {
    let values: Vec<String> = (0..16).map(|i| format!("v{i}")).collect();
    let inserts = values.iter().map(|v| store.setting_insert_if_absent("race", v));
    let results: Vec<String> = join_all(inserts).await.into_iter().map(|r| r.unwrap()).collect();
    let stored = store.setting_fetch("race").await.unwrap().expect("stored");
    assert!(results.iter().all(|r| *r == stored), "{results:?} vs {stored}");
}

/// A setting is still there after a restart.
pub async fn settings_survive_reopen(fixture: &mut dyn StoreFixture) {
    fixture.store().setting_insert_if_absent("kept", "yes").await.unwrap();
    fixture.reopen().await;
    assert_eq!(fixture.store().setting_fetch("kept").await.unwrap().as_deref(), Some("yes"));
}

/// One leader at a time: while one instance holds the lease, another cannot take
/// it; when the leader gives it up (dropped) or lets it run out, another takes it
/// with the next epoch. SQLite's only instance always leads.
pub async fn leadership_is_exclusive_and_passes_on(store: &dyn Store) {
    let ttl = Duration::from_secs(30);
    let mut first = store.try_lead("first", ttl).await.unwrap().expect("nobody leads yet");
    assert!(first.still_leading().await);
    if store.backend() == "sqlite" {
        assert!(store.try_lead("other", ttl).await.unwrap().is_some(), "the sole instance always leads");
        return;
    }
    assert!(store.try_lead("second", ttl).await.unwrap().is_none(), "a second leader");
    assert!(first.still_leading().await);
    let first_epoch = first.fence().epoch;
    drop(first);
    let mut next = take_within(store, "second", ttl, Duration::from_secs(10)).await;
    assert!(next.still_leading().await);
    assert!(next.fence().epoch > first_epoch, "a new holder gets a new epoch");
}

/// A leader that does not renew within its lease (paused) loses it, by database
/// time: another instance takes over, and the old one's renewal then fails.
pub async fn leadership_lease_runs_out(store: &dyn Store) {
    if store.backend() == "sqlite" {
        return; // the sole instance always leads
    }
    let ttl = Duration::from_millis(300);
    let mut paused = store.try_lead("paused", ttl).await.unwrap().expect("nobody leads yet");
    assert!(store.try_lead("other", ttl).await.unwrap().is_none(), "the lease is held");
    let mut other = take_within(store, "other", ttl, Duration::from_secs(10)).await;
    assert!(other.fence().epoch > paused.fence().epoch);
    assert!(!paused.still_leading().await, "a lease taken over cannot be renewed");
    assert!(other.still_leading().await);
}

/// Fencing: a write made by the loops of a leader whose lease was taken over is
/// refused and writes nothing; the same write under the current lease lands, as
/// does one outside any leader loop. SQLite's sole instance is never fenced.
pub async fn leader_writes_are_fenced(store: &dyn Store) {
    use super::cluster::new_node;
    let account = super::new_account(store, "Fenced").await;
    let node = new_node(store, account, super::T0, 1).await;
    let ttl = Duration::from_millis(300);
    let old = store.try_lead("old", ttl).await.unwrap().expect("nobody leads yet");
    let old_fence = old.fence();
    if store.backend() == "sqlite" {
        let lost = scope(old_fence, store.node_mark_lost(node.uuid, i64::MAX, 1)).await.unwrap();
        assert!(lost, "SQLite's sole instance is never fenced");
        return;
    }
    let new = take_within(store, "new", ttl, Duration::from_secs(10)).await;
    let refused = scope(old_fence, store.node_mark_lost(node.uuid, i64::MAX, 1)).await;
    assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");
    let refused = scope(old_fence, store.node_mark_lost_many(&[node.uuid], i64::MAX, 1)).await;
    assert!(matches!(refused, Err(StoreError::Fenced { .. })), "many: {refused:?}");
    // The batched writes of a mass loss: its runs ended, their jobs settled, charged.
    let job = super::cluster::new_job(store, account, super::T0 + 1, 1).await;
    let run = super::cluster::run_record(&job, &node, 0, 0, super::T0 + 2);
    assert!(super::cluster::place(store, job.uuid, std::slice::from_ref(&run), super::T0 + 2).await);
    let end = super::cluster::status_change(&[JobRunStatus::Assigned], JobRunStatus::Failed, super::T0 + 3);
    let refused = scope(old_fence, store.run_update_many(&[(run.run.uuid, end)])).await;
    assert!(matches!(refused, Err(StoreError::Fenced { .. })), "runs: {refused:?}");
    let settle = super::cluster::job_change(&[JobStatus::Assigned], JobStatus::Failed, super::T0 + 3);
    let refused = scope(old_fence, store.job_transition_many(&[(job.uuid, settle)])).await;
    assert!(matches!(refused, Err(StoreError::Fenced { .. })), "jobs: {refused:?}");
    let charge = crate::LedgerPosting::new(gantry_types::billing::LedgerKind::Credit, &[(account, 5)], super::T0 + 3);
    let refused = scope(old_fence, store.ledger_post_many(&[charge])).await;
    assert!(matches!(refused, Err(StoreError::Fenced { .. })), "charges: {refused:?}");
    assert_eq!(store.run_fetch(None, run.run.uuid).await.unwrap().unwrap().run.status, JobRunStatus::Assigned);
    assert_eq!(store.job_fetch(None, job.uuid).await.unwrap().unwrap().status, JobStatus::Assigned);
    assert_eq!(store.ledger_balance(account).await.unwrap(), 0, "nothing posted");
    let status = store.node_fetch(None, node.uuid).await.unwrap().unwrap().status;
    assert_eq!(status, NodeStatus::Online, "a fenced write wrote nothing");
    assert!(scope(new.fence(), store.node_mark_lost(node.uuid, i64::MAX, 1)).await.unwrap());
    assert_eq!(store.node_fetch(None, node.uuid).await.unwrap().unwrap().status, NodeStatus::Lost);
    drop(old);
}

/// Tries to lead every 20 ms until it does, or fails the test after `within`.
async fn take_within(store: &dyn Store, instance: &str, ttl: Duration, within: Duration) -> Box<dyn Leadership> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(lead) = store.try_lead(instance, ttl).await.unwrap() {
            return lead;
        }
        assert!(std::time::Instant::now() < deadline, "the leadership never passed to {instance}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
