//! Conformance checks for the per-account usage counters (pending jobs, stored job
//! bytes), quota-checked creation, and the scheduler's per-account read of the queue.

use std::sync::Arc;

use gantry_types::job::{Job, JobStatus};
use gantry_types::{AccountId, JobId};

use super::cluster::{new_node, place, run_record};
use super::{StoreFixture, T0, job, new_account};
use crate::{AccountUsage, JobQuota, JobTransition, Quota, QuotaExceeded, Store, StoreError};

/// The bytes a job adds to its account's usage: its stored JSON.
fn bytes(job: &Job) -> u64 {
    serde_json::to_string(job).expect("job encodes").len() as u64
}

fn change(from: JobStatus, to: JobStatus, now_ms: i64) -> JobTransition {
    JobTransition { from: vec![from], to, reason: None, now_ms }
}

fn usage(pending_jobs: u64, job_bytes: u64) -> AccountUsage {
    AccountUsage { pending_jobs, job_bytes }
}

fn quota_error(result: Result<(), StoreError>) -> QuotaExceeded {
    match result {
        Err(StoreError::QuotaExceeded(e)) => e,
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
}

/// The counters follow every way a job enters or leaves PENDING (create, cancel,
/// placement, retry) and count the bytes of every stored job, multi-byte text included.
pub async fn job_usage_follows_status_changes(store: &dyn Store) {
    let (a, b) = (new_account(store, "Usage A").await, new_account(store, "Usage B").await);
    assert_eq!(store.job_usage(a).await.unwrap(), usage(0, 0), "no jobs yet");
    let mut jobs = Vec::new();
    for i in 0..3 {
        let mut j = job(a, T0 + i, i as usize);
        j.title = format!("entraînement-{i} ✓"); // bytes, not characters
        store.job_create(&j).await.unwrap();
        jobs.push(j);
    }
    let mut done = job(a, T0 + 10, 4);
    done.status = JobStatus::Completed;
    store.job_create(&done).await.unwrap();
    let total: u64 = jobs.iter().chain([&done]).map(bytes).sum();
    assert_eq!(store.job_usage(a).await.unwrap(), usage(3, total));
    assert_eq!(store.job_usage(b).await.unwrap(), usage(0, 0), "accounts are separate");

    store.job_transition(None, jobs[0].uuid, &change(JobStatus::Pending, JobStatus::Cancelled, T0 + 20)).await.unwrap();
    assert_eq!(store.job_usage(a).await.unwrap(), usage(2, total), "cancel leaves PENDING; bytes stay stored");
    // A refused compare-and-set changes nothing.
    store.job_transition(None, jobs[0].uuid, &change(JobStatus::Pending, JobStatus::Failed, T0 + 21)).await.unwrap();
    assert_eq!(store.job_usage(a).await.unwrap(), usage(2, total));

    let node = new_node(store, a, T0, 1).await;
    assert!(place(store, jobs[1].uuid, &[run_record(&jobs[1], &node, 0, 0, T0 + 30)], T0 + 30).await);
    assert_eq!(store.job_usage(a).await.unwrap(), usage(1, total), "placement leaves PENDING");
    store.job_transition(None, jobs[1].uuid, &change(JobStatus::Assigned, JobStatus::Pending, T0 + 40)).await.unwrap();
    assert_eq!(store.job_usage(a).await.unwrap(), usage(2, total), "a retry is PENDING again");
    assert_eq!(store.job_pending_accounts().await.unwrap(), vec![(a, 2)]);
}

/// The gauges' count: every account's jobs per status asked for, each status asked
/// for present (0 without jobs), none other.
pub async fn job_count_by_status_counts_across_accounts(store: &dyn Store) {
    use JobStatus::*;
    let counted = |statuses: &'static [JobStatus]| async move {
        let mut counts: Vec<(&str, u64)> =
            store.job_count_by_status(statuses).await.unwrap().into_iter().map(|(s, n)| (s.as_str(), n)).collect();
        counts.sort();
        counts
    };
    assert_eq!(counted(&[Pending, Running]).await, [("PENDING", 0), ("RUNNING", 0)], "no jobs");
    let (a, b) = (new_account(store, "Counted A").await, new_account(store, "Counted B").await);
    for (i, (account, status)) in
        [(a, Pending), (a, Pending), (b, Pending), (a, Running), (b, Completed)].into_iter().enumerate()
    {
        let mut j = job(account, T0 + i as i64, i);
        j.status = status;
        store.job_create(&j).await.unwrap();
    }
    assert_eq!(counted(&[Pending, Running, Cancelling]).await, [("CANCELLING", 0), ("PENDING", 3), ("RUNNING", 1)]);
    assert_eq!(counted(&JobStatus::ALL).await.into_iter().map(|(_, n)| n).sum::<u64>(), 5, "every job once");
    assert_eq!(counted(&[Completed]).await, [("COMPLETED", 1)], "only the statuses asked for");
}

/// Over a quota nothing is written and the error names the quota, its limit and the
/// usage; under it the job is created; other accounts are unaffected.
pub async fn job_create_within_quota(store: &dyn Store) {
    let (a, b) = (new_account(store, "Quota A").await, new_account(store, "Quota B").await);
    let pending_two = JobQuota { max_pending_jobs: Some(2), max_job_bytes: None };
    let first = job(a, T0, 0);
    store.job_create_within(&first, &pending_two).await.unwrap();
    store.job_create_within(&job(a, T0 + 1, 1), &pending_two).await.unwrap();
    let refused = job(a, T0 + 2, 2);
    let e = quota_error(store.job_create_within(&refused, &pending_two).await);
    assert_eq!(e, QuotaExceeded { quota: Quota::PendingJobs, limit: 2, usage: 2, adding: 1 });
    assert_eq!(store.job_fetch(None, refused.uuid).await.unwrap(), None, "nothing written");
    assert_eq!(store.job_usage(a).await.unwrap().pending_jobs, 2);
    store.job_create_within(&job(b, T0 + 3, 3), &pending_two).await.unwrap();
    // A job that is not PENDING does not count against the pending quota.
    let mut done = job(a, T0 + 4, 4);
    done.status = JobStatus::Completed;
    store.job_create_within(&done, &pending_two).await.unwrap();
    // Room again once a job leaves PENDING.
    store.job_transition(None, first.uuid, &change(JobStatus::Pending, JobStatus::Cancelled, T0 + 5)).await.unwrap();
    store.job_create_within(&refused, &pending_two).await.unwrap();

    // Bytes: a job that would pass the limit by one byte is refused; an exact fit is not.
    let used = store.job_usage(a).await.unwrap().job_bytes;
    let next = job(a, T0 + 6, 5);
    let tight = JobQuota { max_pending_jobs: None, max_job_bytes: Some(used + bytes(&next) - 1) };
    let e = quota_error(store.job_create_within(&next, &tight).await);
    assert_eq!(
        e,
        QuotaExceeded { quota: Quota::JobBytes, limit: used + bytes(&next) - 1, usage: used, adding: bytes(&next) }
    );
    assert_eq!(store.job_fetch(None, next.uuid).await.unwrap(), None, "nothing written");
    assert_eq!(store.job_usage(a).await.unwrap().job_bytes, used);
    let exact = JobQuota { max_pending_jobs: None, max_job_bytes: Some(used + bytes(&next)) };
    store.job_create_within(&next, &exact).await.unwrap();
    assert_eq!(store.job_usage(a).await.unwrap().job_bytes, used + bytes(&next));
    // A duplicate uuid is still a conflict under a quota, and is not counted.
    assert!(matches!(store.job_create_within(&next, &JobQuota::UNLIMITED).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.job_usage(a).await.unwrap().job_bytes, used + bytes(&next));
}

/// The scheduler's fair read: which accounts have pending jobs (and how many), and the
/// oldest `n` of each, whatever the others hold.
pub async fn job_list_pending_by_account_takes_each_head(store: &dyn Store) {
    let (big, small, idle) =
        (new_account(store, "Backlog").await, new_account(store, "Single").await, new_account(store, "Idle").await);
    let mut backlog = Vec::new();
    for i in 0..6 {
        let j = job(big, T0 + i, i as usize);
        store.job_create(&j).await.unwrap();
        backlog.push(j);
    }
    let single = job(small, T0 + 100, 1);
    store.job_create(&single).await.unwrap();
    let mut done = job(idle, T0, 2);
    done.status = JobStatus::Completed;
    store.job_create(&done).await.unwrap();

    let mut expected = vec![(big, 6), (small, 1)];
    expected.sort_by_key(|(a, _)| a.to_string());
    assert_eq!(store.job_pending_accounts().await.unwrap(), expected, "idle accounts are not listed");
    let got = store.job_list_pending_by_account(&[(big, 2), (small, 5), (idle, 3)]).await.unwrap();
    let mut ids: Vec<JobId> = got.iter().map(|j| j.uuid).collect();
    ids.sort();
    let mut want = vec![backlog[0].uuid, backlog[1].uuid, single.uuid];
    want.sort();
    assert_eq!(ids, want, "each account's oldest n, pending only");
    assert_eq!(got.iter().find(|j| j.uuid == single.uuid), Some(&single), "full jobs");
    assert!(store.job_list_pending_by_account(&[]).await.unwrap().is_empty());
    assert!(store.job_list_pending_by_account(&[(AccountId::new(), 5)]).await.unwrap().is_empty());
}

/// Concurrent submissions of one account under a quota: exactly the quota succeed,
/// the rest are refused, and the counter agrees with the jobs stored.
pub async fn job_create_within_quota_concurrent(fixture: &mut dyn StoreFixture) {
    const N: i64 = 60;
    const LIMIT: u64 = 25;
    let store = fixture.store();
    let account = new_account(&*store, "Concurrent quota").await;
    let quota = JobQuota { max_pending_jobs: Some(LIMIT), max_job_bytes: None };
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.job_create_within(&job(account, T0 + i, i as usize), &quota).await })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => created += 1,
            Err(StoreError::QuotaExceeded(e)) => {
                assert_eq!((e.quota, e.limit, e.usage), (Quota::PendingJobs, LIMIT, LIMIT));
                refused += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((created, refused), (LIMIT, N as u64 - LIMIT));
    let stored = store.job_list_pending(u32::MAX).await.unwrap().iter().filter(|j| j.account_uuid == account).count();
    assert_eq!(stored as u64, LIMIT);
    assert_eq!(store.job_usage(account).await.unwrap().pending_jobs, LIMIT);
}

/// A placement (many jobs leaving PENDING in one statement) racing concurrent,
/// group-committed creations of the same account: every write succeeds (on
/// PostgreSQL the two once took the account's counter shards in different orders and
/// deadlocked) and the counters end exact.
pub async fn placements_racing_creations_keep_counters_exact(fixture: &mut dyn StoreFixture) {
    const CHUNKS: usize = 8;
    const PER_CHUNK: usize = 64;
    let store = fixture.store();
    let account = new_account(&*store, "Placement race").await;
    let node = new_node(&*store, account, T0, 3).await;
    let mut queued = Vec::new();
    for i in 0..CHUNKS * PER_CHUNK {
        let j = job(account, T0 + 1 + i as i64, i);
        store.job_create(&j).await.unwrap();
        queued.push(j);
    }
    let placer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for (c, chunk) in queued.chunks(PER_CHUNK).enumerate() {
                let at = T0 + 10_000 + c as i64;
                let batch: Vec<crate::JobPlacement> = chunk
                    .iter()
                    .map(|j| crate::JobPlacement {
                        job: j.uuid,
                        runs: vec![run_record(j, &node, 0, 0, at)],
                        now_ms: at,
                    })
                    .collect();
                let placed = store.run_place(&batch).await.expect("placement racing creations");
                assert_eq!(placed.len(), chunk.len(), "every queued job of chunk {c} placed");
            }
        })
    };
    let creators: Vec<_> = (0..CHUNKS * PER_CHUNK)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.job_create(&job(account, T0 + 20_000 + i as i64, i)).await })
        })
        .collect();
    for task in creators {
        task.await.expect("task").expect("creation racing placements");
    }
    placer.await.expect("placer");
    let pending = store.job_list_pending(u32::MAX).await.unwrap().iter().filter(|j| j.account_uuid == account).count();
    assert_eq!(pending, CHUNKS * PER_CHUNK, "only the new jobs wait");
    assert_eq!(store.job_usage(account).await.unwrap().pending_jobs, (CHUNKS * PER_CHUNK) as u64);
}

/// One group commit holding creations of several accounts together with what moves
/// the same counters another way (cancels, placements of earlier jobs) and with
/// creations that fail (a duplicate uuid, a byte quota, an account's very first
/// creation failing): the counters end exact for every account, pending jobs and
/// bytes alike. (SQLite moves each account's row once per group commit for all its
/// creations; a failed creation or any other op must not leave that sum wrong.)
pub async fn counters_exact_across_mixed_group_commits(fixture: &mut dyn StoreFixture) {
    const ROUNDS: i64 = 4;
    const PER_ROUND: i64 = 48;
    let store = fixture.store();
    let (a, fresh) = (new_account(&*store, "Mixed A").await, new_account(&*store, "Mixed fresh").await);
    let node = new_node(&*store, a, T0, 2).await;
    let mut earlier = Vec::new();
    for i in 0..ROUNDS * PER_ROUND / 4 {
        let j = job(a, T0 + 1 + i, i as usize);
        store.job_create(&j).await.unwrap();
        earlier.push(j);
    }
    // A byte quota that lets about half of this test's creations of `a` in.
    let per_job = bytes(&job(a, T0, 0));
    let base = store.job_usage(a).await.unwrap().job_bytes;
    let quota = JobQuota { max_pending_jobs: None, max_job_bytes: Some(base + per_job * 40) };
    let mut tasks = Vec::new();
    let mut at = T0 + 1_000;
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            at += 1;
            let store = Arc::clone(&store);
            let k = (round * PER_ROUND + i) as usize;
            let old = earlier[k / 4].clone();
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                match k % 6 {
                    0 => {
                        // Leaves PENDING through a trigger, in someone's batch.
                        let t = JobTransition {
                            from: vec![JobStatus::Pending],
                            to: JobStatus::Cancelled,
                            reason: None,
                            now_ms: at,
                        };
                        store.job_transition(None, old.uuid, &t).await.unwrap();
                        None
                    }
                    1 => {
                        let placement = crate::JobPlacement {
                            job: old.uuid,
                            runs: vec![run_record(&old, &node, 0, 0, at)],
                            now_ms: at,
                        };
                        store.run_place(&[placement]).await.unwrap();
                        None
                    }
                    2 => {
                        // The same uuid as an earlier job: a conflict, counted nowhere.
                        let mut dup = job(fresh, at, k);
                        dup.uuid = old.uuid;
                        assert!(matches!(store.job_create(&dup).await, Err(StoreError::Conflict { .. })));
                        None
                    }
                    3 => {
                        let j = job(fresh, at, k);
                        store.job_create(&j).await.unwrap();
                        Some(j)
                    }
                    _ => {
                        let j = job(a, at, k);
                        match store.job_create_within(&j, &quota).await {
                            Ok(()) => Some(j),
                            Err(StoreError::QuotaExceeded(e)) => {
                                assert_eq!(e.quota, Quota::JobBytes);
                                None
                            }
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                }
            }));
        }
    }
    let mut created = Vec::new();
    for task in tasks {
        created.extend(task.await.expect("task"));
    }
    let limited = created.iter().filter(|j| j.account_uuid == a).count();
    assert!(limited > 0 && limited < (ROUNDS * PER_ROUND / 3) as usize, "the byte quota let some in ({limited})");
    let pending = store.job_list_pending(u32::MAX).await.unwrap();
    for account in [a, fresh] {
        let stored_bytes: u64 = earlier.iter().chain(&created).filter(|j| j.account_uuid == account).map(bytes).sum();
        let waiting = pending.iter().filter(|j| j.account_uuid == account).count() as u64;
        assert_eq!(store.job_usage(account).await.unwrap(), usage(waiting, stored_bytes), "counters of {account}");
    }
    assert!(store.job_usage(a).await.unwrap().job_bytes <= quota.max_job_bytes.unwrap(), "the quota held");
}
