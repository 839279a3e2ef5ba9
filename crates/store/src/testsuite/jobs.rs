//! Conformance checks for jobs: round trip, listing, compare-and-set transitions,
//! concurrency and durability (see the parent module).

use std::collections::BTreeSet;
use std::sync::Arc;

use gantry_types::event::EventType;
use gantry_types::{
    AccountId, JobId, Timestamp,
    job::{JobStatus, JobTask},
    list::{JobFilter, Paging},
};

use super::{StoreFixture, T0, api_key, assert_conflict, assert_missing, full_job, job, job_ids, new_account, range};
use crate::{AccountRecord, ApiKeyRecord, JobQuota, JobTransition, Store, StoreError};

/// A job comes back exactly as created: every field, nested ones and f64 sizes.
pub async fn job_create_fetch_roundtrip(store: &dyn Store) {
    let account = new_account(store, "Roundtrip").await;
    let full = full_job(account, T0);
    store.job_create(&full).await.unwrap();
    assert_eq!(store.job_fetch(Some(account), full.uuid).await.unwrap(), Some(full.clone()));
    assert_eq!(store.job_fetch(None, full.uuid).await.unwrap(), Some(full));
    for variant in 0..6 {
        let job = job(account, T0 + 1 + variant as i64, variant);
        store.job_create(&job).await.unwrap();
        assert_eq!(store.job_fetch(Some(account), job.uuid).await.unwrap(), Some(job));
    }
    // A job created in a non-initial state keeps it (imports, tests).
    let mut done = job(account, T0 + 10, 3);
    (done.status, done.status_reason) = (JobStatus::Completed, Some("exit 0".into()));
    (done.started_at, done.completed_at) = (Some(Timestamp(T0 + 11)), Some(Timestamp(T0 + 12)));
    done.updated_at = Timestamp(T0 + 12);
    store.job_create(&done).await.unwrap();
    assert_eq!(store.job_fetch(None, done.uuid).await.unwrap(), Some(done));
}

/// Another account's job, and an unknown one, are absent.
pub async fn job_fetch_other_account_is_none(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let job = job(a, T0, 1);
    store.job_create(&job).await.unwrap();
    assert_eq!(store.job_fetch(Some(b), job.uuid).await.unwrap(), None);
    assert_eq!(store.job_fetch(Some(a), JobId::new()).await.unwrap(), None);
    assert_eq!(store.job_fetch(None, JobId::new()).await.unwrap(), None);
}

/// A duplicate uuid conflicts (whatever the account); an unknown account is refused.
pub async fn job_duplicate_uuid_conflicts(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let original = job(a, T0, 0);
    store.job_create(&original).await.unwrap();
    assert_conflict(store.job_create(&original).await);
    let mut hijack = job(b, T0 + 1, 2);
    hijack.uuid = original.uuid;
    assert_conflict(store.job_create(&hijack).await);
    assert_eq!(store.job_fetch(None, original.uuid).await.unwrap(), Some(original));
    assert_missing(store.job_create(&job(AccountId::new(), T0, 0)).await);
}

/// page/limit/total, newest first by default, oldest first on request, and uuid as
/// the tie-breaker for equal `created_at`.
pub async fn job_list_paging_and_order(store: &dyn Store) {
    let account = new_account(store, "Paging").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let job = job(account, T0 + i * 1000, i as usize);
        store.job_create(&job).await.unwrap();
        ids.push(job.uuid);
    }
    let all = JobFilter::default();
    let page = |page, newest_first| Paging { page, limit: 3, newest_first };
    let all_ref = &all;
    let list = |p: Paging| async move {
        let page = store.job_list(Some(account), all_ref, p).await.unwrap();
        (page.total, page.items.iter().map(|j| j.uuid).collect::<Vec<_>>())
    };
    let r = |ix: &[usize]| ix.iter().map(|&i| ids[i]).collect::<Vec<_>>();
    assert_eq!(list(page(1, true)).await, (7, r(&[6, 5, 4])));
    assert_eq!(list(page(2, true)).await, (7, r(&[3, 2, 1])));
    assert_eq!(list(page(3, true)).await, (7, r(&[0])));
    assert_eq!(list(page(4, true)).await, (7, vec![]));
    assert_eq!(list(page(1, false)).await, (7, r(&[0, 1, 2])));
    assert_eq!(list(page(3, false)).await, (7, r(&[6])));
    let default = store.job_list(Some(account), &all, Paging::default()).await.unwrap();
    assert_eq!(default.items.first().map(|j| j.uuid), Some(ids[6]));

    // Same millisecond: ordered by uuid, in the requested direction.
    let other = new_account(store, "Ties").await;
    let (x, y) = (job(other, T0, 0), job(other, T0, 1));
    store.job_create(&y).await.unwrap();
    store.job_create(&x).await.unwrap();
    let mut by_uuid = vec![x.uuid.to_string(), y.uuid.to_string()];
    by_uuid.sort();
    let got: Vec<String> = job_ids(store, Some(other), &all).await.iter().map(ToString::to_string).collect();
    assert_eq!(got, by_uuid);
    let newest = store.job_list(Some(other), &all, Paging::default()).await.unwrap();
    let got: Vec<String> = newest.items.iter().map(|j| j.uuid.to_string()).collect();
    by_uuid.reverse();
    assert_eq!(got, by_uuid);
}

/// Every JobFilter field: lists (empty = no constraint), exact values, inclusive
/// ranges with open ends, and combinations.
pub async fn job_list_filters(store: &dyn Store) {
    use JobStatus::*;
    use JobTask::*;
    let account = new_account(store, "Filters").await;
    // Job i is variant i (see `job`): cpu 1, 2, 4, 8, 16, 32; gpu 0, 1, 2, 4, 8, 1;
    // ram 0.5, 1, 8, 16, 32, 64; storage 1, 10, 20.5, 50, 100, 250; vram 0, 8, 16,
    // 24, 40.5, 80; BATCH for even i; recipe a, b, none, a, b, none; created T0 + i s.
    let statuses = [Pending, Running, Completed, Pending, Failed, Running];
    let mut ids = Vec::new();
    for (i, status) in statuses.into_iter().enumerate() {
        let mut job = job(account, T0 + i as i64 * 1000, i);
        job.status = status;
        store.job_create(&job).await.unwrap();
        ids.push(job.uuid);
    }
    let r = |ix: &[usize]| ix.iter().map(|&i| ids[i]).collect::<Vec<_>>();
    let with = |edit: &dyn Fn(&mut JobFilter)| {
        let mut filter = JobFilter::default();
        edit(&mut filter);
        filter
    };
    let recipes = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    let cases: Vec<(JobFilter, Vec<JobId>)> = vec![
        (JobFilter::default(), r(&[0, 1, 2, 3, 4, 5])),
        (with(&|f| f.uuids = r(&[4, 1])), r(&[1, 4])),
        (with(&|f| f.uuids = vec![JobId::new()]), vec![]),
        (with(&|f| f.statuses = vec![Pending]), r(&[0, 3])),
        (with(&|f| f.statuses = vec![Running, Failed]), r(&[1, 4, 5])),
        (with(&|f| f.statuses = vec![Cancelled]), vec![]),
        (with(&|f| f.tasks = vec![Persistent]), r(&[1, 3, 5])),
        (with(&|f| f.tasks = vec![Batch, Persistent]), r(&[0, 1, 2, 3, 4, 5])),
        (with(&|f| f.cpu_count = range(Some(4), Some(4))), r(&[2])),
        (with(&|f| f.cpu_count = range(Some(2), Some(8))), r(&[1, 2, 3])),
        (with(&|f| f.cpu_count = range(Some(16), None)), r(&[4, 5])),
        (with(&|f| f.cpu_count = range(None, Some(1))), r(&[0])),
        (with(&|f| f.gpu_count = range(Some(1), Some(1))), r(&[1, 5])),
        (with(&|f| f.gpu_count = range(Some(2), None)), r(&[2, 3, 4])),
        (with(&|f| f.created_at = range(Some(T0 + 1000), Some(T0 + 3000))), r(&[1, 2, 3])),
        (with(&|f| f.created_at = range(Some(T0 + 4000), None)), r(&[4, 5])),
        (with(&|f| f.created_at = range(None, Some(T0 + 999))), r(&[0])),
        (with(&|f| f.min_ram_gb = range(Some(0.5), Some(0.5))), r(&[0])),
        (with(&|f| f.min_ram_gb = range(Some(1.0), Some(16.0))), r(&[1, 2, 3])),
        (with(&|f| f.min_ram_gb = range(None, Some(0.75))), r(&[0])),
        (with(&|f| f.min_ram_gb = range(Some(32.0), None)), r(&[4, 5])),
        (with(&|f| f.min_storage_gb = range(Some(20.5), Some(50.0))), r(&[2, 3])),
        (with(&|f| f.min_storage_gb = range(Some(100.0), None)), r(&[4, 5])),
        (with(&|f| f.min_vram_gb = range(Some(0.0), Some(0.0))), r(&[0])),
        (with(&|f| f.min_vram_gb = range(None, Some(16.0))), r(&[0, 1, 2])),
        (with(&|f| f.min_vram_gb = range(Some(40.5), None)), r(&[4, 5])),
        (with(&|f| f.source_recipe_uuids = recipes(&["recipe-a"])), r(&[0, 3])),
        (with(&|f| f.source_recipe_uuids = recipes(&["recipe-a", "recipe-b"])), r(&[0, 1, 3, 4])),
        // Combined: every condition must hold.
        (
            with(&|f| {
                f.statuses = vec![Running, Pending];
                f.tasks = vec![Persistent];
                f.min_ram_gb = range(Some(8.0), None);
            }),
            r(&[3, 5]),
        ),
    ];
    for (filter, expected) in cases {
        let found = job_ids(store, Some(account), &filter).await;
        assert_eq!(found, expected, "filter {filter:?}");
    }
}

/// A scoped list sees only the account's jobs; an unscoped one sees all.
pub async fn job_list_account_scoping(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let mut a_jobs = Vec::new();
    for i in 0..3 {
        let job = job(a, T0 + i, i as usize);
        store.job_create(&job).await.unwrap();
        a_jobs.push(job.uuid);
    }
    let mut b_jobs = Vec::new();
    for i in 0..2 {
        let job = job(b, T0 + 10 + i, i as usize);
        store.job_create(&job).await.unwrap();
        b_jobs.push(job.uuid);
    }
    let all = JobFilter::default();
    assert_eq!(job_ids(store, Some(a), &all).await, a_jobs);
    assert_eq!(job_ids(store, Some(b), &all).await, b_jobs);
    // Asking for B's job by uuid while scoped to A finds nothing.
    assert!(job_ids(store, Some(a), &JobFilter { uuids: b_jobs.clone(), ..all.clone() }).await.is_empty());
    let everyone: BTreeSet<JobId> = job_ids(store, None, &all).await.into_iter().collect();
    assert!(a_jobs.iter().chain(&b_jobs).all(|j| everyone.contains(j)));
}

/// Compare-and-set: applies only from an allowed status, else `None` and nothing
/// changes; `updated_at` always moves, `started_at` on the first RUNNING,
/// `completed_at` only for terminal statuses.
pub async fn job_transition_compare_and_set(store: &dyn Store) {
    let account = new_account(store, "Transitions").await;
    let original = full_job(account, T0);
    store.job_create(&original).await.unwrap();
    let t = |from: &[JobStatus], to, reason: Option<&str>, now_ms| JobTransition {
        from: from.to_vec(),
        to,
        reason: reason.map(Into::into),
        now_ms,
    };
    use JobStatus::*;

    // Not in `from`: no change.
    let refused = store.job_transition(Some(account), original.uuid, &t(&[Running], Completed, None, T0 + 5)).await;
    assert_eq!(refused.unwrap(), None);
    assert_eq!(store.job_fetch(None, original.uuid).await.unwrap(), Some(original.clone()));

    let mut expected = original.clone();
    let assigned = store
        .job_transition(Some(account), original.uuid, &t(&[Pending, Assigned], Assigned, Some("node-7"), T0 + 10))
        .await
        .unwrap();
    (expected.status, expected.status_reason, expected.updated_at) =
        (Assigned, Some("node-7".into()), Timestamp(T0 + 10));
    assert_eq!(assigned.as_ref(), Some(&expected));
    assert_eq!(store.job_fetch(Some(account), original.uuid).await.unwrap(), Some(expected.clone()));

    let running = store.job_transition(None, original.uuid, &t(&[Assigned], Running, None, T0 + 20)).await.unwrap();
    (expected.status, expected.status_reason, expected.updated_at) = (Running, None, Timestamp(T0 + 20));
    expected.started_at = Some(Timestamp(T0 + 20));
    assert_eq!(running.as_ref(), Some(&expected));

    // RUNNING again (e.g. a retry): started_at keeps the first run's time.
    let cancelling = store.job_transition(None, original.uuid, &t(&[Running], Cancelling, None, T0 + 25)).await;
    (expected.status, expected.updated_at) = (Cancelling, Timestamp(T0 + 25));
    assert_eq!(cancelling.unwrap().as_ref(), Some(&expected));
    assert_eq!(expected.completed_at, None, "CANCELLING is not terminal");
    let back = store.job_transition(None, original.uuid, &t(&[Cancelling], Running, None, T0 + 27)).await;
    (expected.status, expected.updated_at) = (Running, Timestamp(T0 + 27));
    assert_eq!(back.unwrap().as_ref(), Some(&expected));

    let failed = store
        .job_transition(Some(account), original.uuid, &t(&[Running], Failed, Some("exit 137"), T0 + 30))
        .await
        .unwrap();
    (expected.status, expected.status_reason, expected.updated_at) =
        (Failed, Some("exit 137".into()), Timestamp(T0 + 30));
    expected.completed_at = Some(Timestamp(T0 + 30));
    assert_eq!(failed.as_ref(), Some(&expected));

    // Terminal: nothing moves it from an outdated `from`.
    let late = store.job_transition(None, original.uuid, &t(&[Running], Completed, None, T0 + 40)).await;
    assert_eq!(late.unwrap(), None);
    assert_eq!(store.job_fetch(None, original.uuid).await.unwrap(), Some(expected.clone()));
    // An empty `from` never applies.
    assert_eq!(store.job_transition(None, original.uuid, &t(&[], Pending, None, T0 + 50)).await.unwrap(), None);
    // The status column and the list filter agree with the transition.
    let failed_jobs = JobFilter { statuses: vec![Failed], ..JobFilter::default() };
    assert_eq!(job_ids(store, Some(account), &failed_jobs).await, [original.uuid]);
}

/// A transition scoped to another account, or of an unknown job, is `None`.
pub async fn job_transition_out_of_scope_is_none(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let job = job(a, T0, 0);
    store.job_create(&job).await.unwrap();
    let cancel = JobTransition {
        from: vec![JobStatus::Pending],
        to: JobStatus::Cancelled,
        reason: Some("Cancelled by user".into()),
        now_ms: T0 + 1,
    };
    assert_eq!(store.job_transition(Some(b), job.uuid, &cancel).await.unwrap(), None);
    assert_eq!(store.job_transition(Some(a), JobId::new(), &cancel).await.unwrap(), None);
    assert_eq!(store.job_fetch(None, job.uuid).await.unwrap(), Some(job.clone()));
    let done = store.job_transition(Some(a), job.uuid, &cancel).await.unwrap().expect("in scope");
    assert_eq!((done.status, done.completed_at), (JobStatus::Cancelled, Some(Timestamp(T0 + 1))));
}

// ---------------------------------------------------------------------------------
// Concurrency and durability

/// 200 concurrent creates all land and are listed.
pub async fn job_create_concurrent(fixture: &mut dyn StoreFixture) {
    const N: i64 = 200;
    let store = fixture.store();
    let account = new_account(&*store, "Concurrent").await;
    let before = store.write_stats();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let job = job(account, T0 + i, i as usize);
                store.job_create(&job).await.map(|()| job.uuid)
            })
        })
        .collect();
    let mut created = BTreeSet::new();
    for task in tasks {
        created.insert(task.await.expect("task").expect("job create"));
    }
    let mut listed = BTreeSet::new();
    for page in 1..=4 {
        let paging = Paging { page, limit: 50, newest_first: true };
        let found = store.job_list(Some(account), &JobFilter::default(), paging).await.unwrap();
        assert_eq!(found.total, N as u64);
        listed.extend(found.items.iter().map(|j| j.uuid));
    }
    assert_eq!(listed, created);
    let after = store.write_stats();
    assert!(after.writes - before.writes >= N as u64, "{before:?} -> {after:?}");
    assert!(after.commits > before.commits, "{before:?} -> {after:?}");
}

/// What one creation of [`job_create_batch_isolates_failures`] should get.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Created,
    Conflict,
    Missing,
    /// Created or refused by the quota (which ones is a race; how many is not).
    QuotaLimited,
}

/// Concurrent creations that share a group commit keep their own outcomes: a
/// duplicate uuid (of a stored job, or of a batch-mate), a job of an unknown account
/// and jobs past their account's quota fail alone, while every other job commits with
/// its `job.created` event.
pub async fn job_create_batch_isolates_failures(fixture: &mut dyn StoreFixture) {
    const LIMIT: u64 = 3;
    let store = fixture.store();
    let (a, limited) = (new_account(&*store, "Batch").await, new_account(&*store, "Batch quota").await);
    let existing = job(a, T0, 0);
    store.job_create(&existing).await.unwrap();
    let events_before = store.event_horizon().await.unwrap().last_id;
    let quota = JobQuota { max_pending_jobs: Some(LIMIT), max_job_bytes: None };
    let twin = JobId::new();
    let mut cases = Vec::new();
    for i in 0..120_i64 {
        let variant = i as usize;
        let case = match i % 8 {
            1 => {
                let mut dup = job(a, T0 + i, variant);
                dup.uuid = existing.uuid;
                (dup, JobQuota::UNLIMITED, Expect::Conflict)
            }
            3 => (job(AccountId::new(), T0 + i, variant), JobQuota::UNLIMITED, Expect::Missing),
            5 => (job(limited, T0 + i, 0), quota, Expect::QuotaLimited),
            7 if i < 16 => {
                // Two new jobs with one new uuid: exactly one is created.
                let mut j = job(a, T0 + i, variant);
                j.uuid = twin;
                (j, JobQuota::UNLIMITED, Expect::QuotaLimited)
            }
            _ => (job(a, T0 + i, variant), JobQuota::UNLIMITED, Expect::Created),
        };
        cases.push(case);
    }
    let tasks: Vec<_> = cases
        .iter()
        .cloned()
        .map(|(j, q, _)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.job_create_within(&j, &q).await })
        })
        .collect();
    let (mut created, mut twins, mut quota_created) = (BTreeSet::new(), 0, 0);
    for ((j, _, expect), task) in cases.iter().zip(tasks) {
        let result = task.await.expect("task");
        let ok = result.is_ok();
        match (expect, &result) {
            (Expect::Created, Ok(())) => {}
            (Expect::Conflict, _) => assert_conflict(result),
            (Expect::Missing, _) => assert_missing(result),
            (Expect::QuotaLimited, Ok(())) if j.uuid == twin => twins += 1,
            (Expect::QuotaLimited, Err(StoreError::Conflict { .. })) if j.uuid == twin => {}
            (Expect::QuotaLimited, Ok(())) => quota_created += 1,
            (Expect::QuotaLimited, Err(StoreError::QuotaExceeded(e))) => assert_eq!(e.usage, LIMIT),
            (expect, result) => panic!("job {} expected {expect:?}, got {result:?}", j.uuid),
        }
        if ok {
            created.insert(j.uuid);
        }
    }
    assert_eq!((twins, quota_created), (1, LIMIT), "one twin and exactly the quota are created");
    assert_eq!(store.job_fetch(None, existing.uuid).await.unwrap(), Some(existing), "the stored job is untouched");
    for (j, _, expect) in &cases {
        if *expect == Expect::Created {
            assert_eq!(
                store.job_fetch(None, j.uuid).await.unwrap().as_ref(),
                Some(j),
                "a batch-mate of failures commits"
            );
        }
    }
    assert_eq!(store.job_usage(limited).await.unwrap().pending_jobs, LIMIT);
    let events = store.event_list(None, events_before, &[EventType::JobCreated], 1000).await.unwrap();
    let announced: BTreeSet<JobId> = events.iter().map(|e| e.data["uuid"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(events.len(), created.len(), "one job.created per created job");
    assert_eq!(announced, created);
}

/// Concurrent creations with no quota to check (PostgreSQL commits such a batch in one
/// round trip, a function call with the rows as column arrays): a stored uuid
/// conflicts alone and a job of an unknown account fails alone, their batch-mates
/// commit, and text holding quotes, backslashes, dollar quotes, non-ASCII, or the
/// delimiter the rows' JSON literals once travelled in comes back unchanged.
pub async fn job_create_batch_of_plain_jobs(fixture: &mut dyn StoreFixture) {
    let store = fixture.store();
    let a = new_account(&*store, "Plain batch").await;
    let existing = job(a, T0, 0);
    store.job_create(&existing).await.unwrap();
    let events_before = store.event_horizon().await.unwrap().last_id;
    let awkward = ["it's \"quoted\" \\ $$ $tag$", "Zürich 東京 \u{1F680}"];
    let cases: Vec<(gantry_types::job::Job, Expect)> = (0..96_i64)
        .map(|i| {
            let mut j = job(a, T0 + 1 + i, i as usize);
            match i % 12 {
                // Once only: two in one batch are caught before the database is asked.
                5 if i == 5 => {
                    j.uuid = existing.uuid;
                    (j, Expect::Conflict)
                }
                7 => (job(AccountId::new(), T0 + 1 + i, 0), Expect::Missing),
                n => {
                    j.title = format!("{} {i}", awkward[n as usize % awkward.len()]);
                    (j, Expect::Created)
                }
            }
        })
        .collect();
    let tasks: Vec<_> = cases
        .iter()
        .map(|(j, _)| {
            let (store, j) = (Arc::clone(&store), j.clone());
            tokio::spawn(async move { store.job_create(&j).await })
        })
        .collect();
    let mut created = BTreeSet::new();
    for ((j, expect), task) in cases.iter().zip(tasks) {
        let result = task.await.expect("task");
        match expect {
            Expect::Created => {
                assert!(result.is_ok(), "job {} failed: {result:?}", j.uuid);
                created.insert(j.uuid);
                assert_eq!(store.job_fetch(None, j.uuid).await.unwrap().as_ref(), Some(j), "every byte kept");
            }
            Expect::Conflict => assert_conflict(result),
            _ => assert_missing(result),
        }
    }
    assert_eq!(store.job_fetch(None, existing.uuid).await.unwrap(), Some(existing), "the stored job is untouched");
    // A job holding the delimiter itself (its batch takes the parameterized path).
    let mut tagged = job(a, T0 + 500, 1);
    tagged.title = "$gantry_batch_json$ $gantry_batch_json$".into();
    store.job_create(&tagged).await.unwrap();
    assert_eq!(store.job_fetch(None, tagged.uuid).await.unwrap().as_ref(), Some(&tagged));
    created.insert(tagged.uuid);
    let events = store.event_list(None, events_before, &[EventType::JobCreated], 1000).await.unwrap();
    let announced: BTreeSet<JobId> = events.iter().map(|e| e.data["uuid"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(announced, created, "one job.created per created job");
    assert_eq!(events.len(), created.len());
}

/// Everything written is there after the store is dropped and reopened.
pub async fn data_survives_reopen(fixture: &mut dyn StoreFixture) {
    let store = fixture.store();
    let account = AccountRecord { uuid: AccountId::new(), name: "Durable".into(), email: None, created_at_ms: T0 };
    store.account_create(&account).await.unwrap();
    let key = api_key(account.uuid, T0);
    store.api_key_create(&key).await.unwrap();
    store.api_key_touch(&[(key.uuid, T0 + 3)]).await.unwrap();
    let full = full_job(account.uuid, T0 + 1);
    store.job_create(&full).await.unwrap();
    let pending = job(account.uuid, T0 + 2, 3);
    store.job_create(&pending).await.unwrap();
    let transition =
        JobTransition { from: vec![JobStatus::Pending], to: JobStatus::Assigned, reason: None, now_ms: T0 + 4 };
    let assigned = store.job_transition(None, full.uuid, &transition).await.unwrap().expect("applies");
    drop(store);

    fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.account_fetch(account.uuid).await.unwrap(), Some(account.clone()));
    let key_after = store.api_key_fetch_by_public_key(&key.public_key).await.unwrap();
    assert_eq!(key_after, Some(ApiKeyRecord { last_used_at_ms: Some(T0 + 3), ..key }));
    assert_eq!(store.job_fetch(None, full.uuid).await.unwrap(), Some(assigned));
    assert_eq!(store.job_fetch(None, pending.uuid).await.unwrap(), Some(pending));
    let page = store.job_list(Some(account.uuid), &JobFilter::default(), Paging::default()).await.unwrap();
    assert_eq!(page.total, 2);
    // And the reopened store still writes.
    store.job_create(&job(account.uuid, T0 + 5, 5)).await.unwrap();
}
