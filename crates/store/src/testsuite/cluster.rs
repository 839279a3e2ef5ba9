//! Conformance checks for nodes and job runs: registration and heartbeats, the
//! lost-node compare-and-set, atomic placement (one batch per call), run updates,
//! logs, the scheduler's reads, and durability (see the parent module).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gantry_types::{
    AccountId, GpuModelId, JobId, JobRunId, NodeId, Timestamp,
    event::EventType,
    job::{ContainerAccessToken, Job, JobStatus},
    job_run::{JobRun, JobRunStatus, NodeUrl},
    list::Paging,
    node::{GpuSample, HardwareSample, InventoryGpu, NodeCpu, NodeInventory, NodeStatus},
};

use super::{StoreFixture, T0, full_job, job, new_account, oldest_first};
use crate::{
    Heartbeat, JobPlacement, JobTransition, LogTail, NodeRecord, RunFilter, RunRecord, RunUpdate, Store, StoreError,
};

// ---------------------------------------------------------------------------------
// Test data

/// A realistic ONLINE node of `account` registered at `created_at_ms`; `variant`
/// varies its GPUs (0-3, some matched to a registry model), region and labels.
pub fn node_record(account: AccountId, created_at_ms: i64, variant: usize) -> NodeRecord {
    let gpus = u32::try_from(variant % 4).expect("small");
    NodeRecord {
        uuid: NodeId::new(),
        account_uuid: account,
        name: format!("gpu-host-{variant}"),
        region_code: (variant % 3 != 2).then(|| if variant.is_multiple_of(2) { "eu-west" } else { "us-east" }.into()),
        labels: BTreeMap::from([("rack".into(), format!("r{variant}")), ("tier".into(), "gpu".into())]),
        hostname: Some(format!("host-{variant}.example.com")),
        inventory: NodeInventory {
            cpus: vec![NodeCpu { name: "AMD EPYC 9654".into(), num_cores: 32 + gpus }],
            ram_gb: 256.0 + f64::from(gpus) / 4.0,
            storage_gb: 1800.5,
            gpus: (0..gpus)
                .map(|index| InventoryGpu {
                    index,
                    uuid: format!("GPU-{}", uuid::Uuid::new_v4()),
                    name: "NVIDIA H100 80GB HBM3".into(),
                    vram_gb: 79.5,
                })
                .collect(),
        },
        gpu_models: (0..gpus).map(|i| (i % 2 == 0).then(GpuModelId::new)).collect(),
        status: NodeStatus::Online,
        is_draining: false,
        lease_epoch: 1,
        last_seen_at_ms: created_at_ms,
        latest_sample: None,
        created_at_ms,
        updated_at_ms: created_at_ms,
    }
}

/// A node with every optional field set, nested ones included.
pub fn full_node_record(account: AccountId, created_at_ms: i64) -> NodeRecord {
    let mut node = node_record(account, created_at_ms, 3);
    node.labels.insert("note".into(), "with \"quotes\", unicode é and\nnewlines".into());
    node.labels.insert(String::new(), String::new());
    node.is_draining = true;
    node.lease_epoch = 7;
    node.last_seen_at_ms = created_at_ms + 5;
    node.updated_at_ms = created_at_ms + 3;
    node.latest_sample = Some(sample(12.5));
    node
}

/// A hardware sample whose CPU load is `cpu_load`.
pub fn sample(cpu_load: f64) -> HardwareSample {
    HardwareSample {
        cpu_load,
        ram_free_gb: 100.25,
        storage_free_gb: 900.0,
        gpus: vec![
            GpuSample { index: 0, load: 99.0, vram_free_gb: 1.5 },
            GpuSample { index: 1, load: 0.0, vram_free_gb: 79.5 },
        ],
    }
}

/// A new ASSIGNED run of `job` on `node` (attempt, rank), created at `created_at_ms`,
/// reserving the job's request, with every optional field the placement sets.
pub fn run_record(job: &Job, node: &NodeRecord, attempt: u32, rank: u32, created_at_ms: i64) -> RunRecord {
    let uuid = JobRunId::new();
    let count = |n: i64| u32::try_from(n).expect("small");
    RunRecord {
        run: JobRun {
            object: "job_run".into(),
            uuid,
            job_uuid: job.uuid,
            job_snapshot: serde_json::to_value(job).expect("job json"),
            node_uuid: node.uuid,
            status: JobRunStatus::Assigned,
            status_reason: Some(format!("placed on {}", node.name)),
            started_at_ms: None,
            ended_at_ms: None,
            duration_ms: None,
            exit_code: None,
            node_urls: vec![],
            container_access_tokens: vec![ContainerAccessToken { token: format!("cat_{}", uuid.0.simple()) }],
            hourly_rate_usd: Some(1.75),
            attempt,
            rank,
            gang_size: count(job.max_node_count),
            gpu_indices: (0..count(job.gpu_count)).collect(),
            lease_epoch: node.lease_epoch,
            account_uuid: job.account_uuid,
            logs: None,
            created_at: Timestamp(created_at_ms),
            updated_at: Timestamp(created_at_ms),
        },
        cpu: count(job.cpu_count),
        ram_gb: job.min_ram_gb,
        storage_gb: job.min_storage_gb,
    }
}

/// Registers `node_record(account, created_at_ms, variant)`.
pub(super) async fn new_node(store: &dyn Store, account: AccountId, created_at_ms: i64, variant: usize) -> NodeRecord {
    let node = node_record(account, created_at_ms, variant);
    store.node_upsert(&node).await.expect("node upsert");
    node
}

/// Creates `job(account, created_at_ms, variant)` (PENDING).
pub(super) async fn new_job(store: &dyn Store, account: AccountId, created_at_ms: i64, variant: usize) -> Job {
    let job = job(account, created_at_ms, variant);
    store.job_create(&job).await.expect("job create");
    job
}

/// Places one job with `runs`; returns whether it was placed.
pub(super) async fn place(store: &dyn Store, job: JobId, runs: &[RunRecord], now_ms: i64) -> bool {
    let placement = JobPlacement { job, runs: runs.to_vec(), now_ms };
    let placed = store.run_place(&[placement]).await.expect("run place");
    placed == [job]
}

pub(super) fn status_change(from: &[JobRunStatus], to: JobRunStatus, now_ms: i64) -> RunUpdate {
    RunUpdate {
        from: from.to_vec(),
        to,
        reason: None,
        now_ms,
        exit_code: None,
        node_urls: None,
        image_size_bytes: None,
    }
}

pub(super) fn job_change(from: &[JobStatus], to: JobStatus, now_ms: i64) -> JobTransition {
    JobTransition { from: from.to_vec(), to, reason: None, now_ms }
}

/// The run ids a list returns (asserting the total agrees), oldest first.
async fn run_ids(store: &dyn Store, account: Option<AccountId>, filter: &RunFilter) -> Vec<JobRunId> {
    let page = store.run_list(account, filter, oldest_first(50)).await.expect("run list");
    assert_eq!(page.total, page.items.len() as u64, "total vs items for {filter:?}");
    page.items.iter().map(|r| r.run.uuid).collect()
}

fn ids(runs: &[&RunRecord]) -> Vec<JobRunId> {
    runs.iter().map(|r| r.run.uuid).collect()
}

// ---------------------------------------------------------------------------------
// Nodes

/// A node comes back exactly as upserted (every field, JSON ones included), scoped
/// and unscoped; an unknown account is a missing reference.
pub async fn node_upsert_fetch_roundtrip(store: &dyn Store) {
    let account = new_account(store, "Nodes").await;
    let full = full_node_record(account, T0);
    store.node_upsert(&full).await.unwrap();
    assert_eq!(store.node_fetch(Some(account), full.uuid).await.unwrap(), Some(full.clone()));
    assert_eq!(store.node_fetch(None, full.uuid).await.unwrap(), Some(full));
    for variant in 0..6 {
        let node = new_node(store, account, T0 + 1 + variant as i64, variant).await;
        assert_eq!(store.node_fetch(None, node.uuid).await.unwrap(), Some(node));
    }
    let mut lost = node_record(account, T0 + 10, 1);
    (lost.status, lost.region_code, lost.hostname) = (NodeStatus::Lost, None, None);
    (lost.labels, lost.inventory, lost.gpu_models) = (BTreeMap::new(), NodeInventory::default(), vec![]);
    store.node_upsert(&lost).await.unwrap();
    assert_eq!(store.node_fetch(None, lost.uuid).await.unwrap(), Some(lost));

    let orphan = node_record(AccountId::new(), T0, 0);
    let result = store.node_upsert(&orphan).await;
    assert!(matches!(result, Err(StoreError::MissingReference { .. })), "{result:?}");
    assert_eq!(store.node_fetch(None, orphan.uuid).await.unwrap(), None);
}

/// Re-registering replaces the registration fields but keeps created_at and
/// is_draining (and the latest sample unless a new one is given); another account
/// cannot take the uuid over.
pub async fn node_upsert_keeps_created_at_and_draining(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let mut original = node_record(a, T0, 2);
    original.latest_sample = Some(sample(50.0));
    store.node_upsert(&original).await.unwrap();
    let drained = store.node_set_draining(Some(a), original.uuid, true, T0 + 5).await.unwrap().expect("exists");
    assert!(drained.is_draining);

    let mut again = node_record(a, T0 + 100, 3);
    again.uuid = original.uuid;
    (again.status, again.lease_epoch, again.last_seen_at_ms) = (NodeStatus::Online, 2, T0 + 100);
    again.latest_sample = None;
    store.node_upsert(&again).await.unwrap();
    let expected = NodeRecord {
        created_at_ms: original.created_at_ms,
        is_draining: true,
        latest_sample: original.latest_sample.clone(),
        ..again.clone()
    };
    assert_eq!(store.node_fetch(None, original.uuid).await.unwrap(), Some(expected.clone()));

    // A new sample replaces the old one.
    again.latest_sample = Some(sample(1.0));
    again.updated_at_ms = T0 + 200;
    store.node_upsert(&again).await.unwrap();
    let expected = NodeRecord { latest_sample: Some(sample(1.0)), updated_at_ms: T0 + 200, ..expected };
    assert_eq!(store.node_fetch(None, original.uuid).await.unwrap(), Some(expected.clone()));

    // The same uuid from another account: refused, nothing changes.
    let mut hijack = node_record(b, T0 + 300, 0);
    hijack.uuid = original.uuid;
    let result = store.node_upsert(&hijack).await;
    assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
    assert_eq!(store.node_fetch(None, original.uuid).await.unwrap(), Some(expected));
}

/// Another account's node, and an unknown one, are absent.
pub async fn node_fetch_other_account_is_none(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let node = new_node(store, a, T0, 1).await;
    assert_eq!(store.node_fetch(Some(b), node.uuid).await.unwrap(), None);
    assert_eq!(store.node_fetch(Some(a), NodeId::new()).await.unwrap(), None);
    assert_eq!(store.node_fetch(None, NodeId::new()).await.unwrap(), None);
}

/// Status filter, paging (newest first by default), totals, scoping, and the
/// unpaged snapshot of every node.
pub async fn node_list_filters_paging_and_scoping(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let mut a_nodes = Vec::new();
    for i in 0..5 {
        let mut node = node_record(a, T0 + i * 1000, i as usize);
        if i % 2 == 1 {
            node.status = NodeStatus::Lost;
        }
        store.node_upsert(&node).await.unwrap();
        a_nodes.push(node);
    }
    let b_node = new_node(store, b, T0 + 500, 0).await;
    let uuids = |page: crate::Page<NodeRecord>| (page.total, page.items.iter().map(|n| n.uuid).collect::<Vec<_>>());
    let r = |ix: &[usize]| ix.iter().map(|&i| a_nodes[i].uuid).collect::<Vec<_>>();

    let all = store.node_list(Some(a), &[], oldest_first(50)).await.unwrap();
    assert_eq!(all.items, a_nodes, "every field comes back in lists too");
    let newest = |page, limit| Paging { page, limit, newest_first: true };
    assert_eq!(uuids(store.node_list(Some(a), &[], newest(1, 2)).await.unwrap()), (5, r(&[4, 3])));
    assert_eq!(uuids(store.node_list(Some(a), &[], newest(3, 2)).await.unwrap()), (5, r(&[0])));
    assert_eq!(uuids(store.node_list(Some(a), &[], newest(4, 2)).await.unwrap()), (5, vec![]));
    let online = [NodeStatus::Online];
    assert_eq!(uuids(store.node_list(Some(a), &online, oldest_first(50)).await.unwrap()), (3, r(&[0, 2, 4])));
    let lost = [NodeStatus::Lost];
    assert_eq!(uuids(store.node_list(Some(a), &lost, oldest_first(1)).await.unwrap()), (2, r(&[1])));
    let both = [NodeStatus::Lost, NodeStatus::Online];
    assert_eq!(store.node_list(Some(a), &both, Paging::default()).await.unwrap().total, 5);
    assert_eq!(uuids(store.node_list(Some(b), &[], oldest_first(50)).await.unwrap()), (1, vec![b_node.uuid]));

    // Unscoped: everyone's, in (created_at, uuid) order.
    let mut everyone = a_nodes.clone();
    everyone.insert(1, b_node.clone());
    assert_eq!(store.node_list(None, &[], oldest_first(50)).await.unwrap().items, everyone);
    assert_eq!(store.node_list_all().await.unwrap(), everyone);
}

/// A heartbeat applies only to an ONLINE node with the current lease epoch; it
/// moves last_seen forward (never back), replaces the sample only when given, and
/// leaves updated_at alone.
pub async fn node_heartbeat_needs_epoch_and_online(store: &dyn Store) {
    let account = new_account(store, "Heartbeats").await;
    let mut node = node_record(account, T0, 2);
    node.lease_epoch = 3;
    store.node_upsert(&node).await.unwrap();
    let fetch = || async { store.node_fetch(None, node.uuid).await.unwrap().expect("exists") };

    assert!(!store.node_heartbeat(node.uuid, 2, T0 + 10, Some(&sample(5.0))).await.unwrap(), "stale epoch");
    assert!(!store.node_heartbeat(node.uuid, 4, T0 + 10, None).await.unwrap(), "future epoch");
    assert!(!store.node_heartbeat(NodeId::new(), 3, T0 + 10, None).await.unwrap(), "unknown node");
    assert_eq!(fetch().await, node);

    assert!(store.node_heartbeat(node.uuid, 3, T0 + 10, Some(&sample(5.0))).await.unwrap());
    let expected = NodeRecord { last_seen_at_ms: T0 + 10, latest_sample: Some(sample(5.0)), ..node.clone() };
    assert_eq!(fetch().await, expected);
    assert!(store.node_heartbeat(node.uuid, 3, T0 + 20, None).await.unwrap());
    let expected = NodeRecord { last_seen_at_ms: T0 + 20, ..expected };
    assert_eq!(fetch().await, expected);
    // A delayed heartbeat still applies its sample, but last_seen stays.
    assert!(store.node_heartbeat(node.uuid, 3, T0 + 15, Some(&sample(7.0))).await.unwrap());
    let expected = NodeRecord { latest_sample: Some(sample(7.0)), ..expected };
    assert_eq!(fetch().await, expected);

    // LOST: heartbeats no longer apply, whatever the epoch.
    assert!(store.node_mark_lost(node.uuid, T0 + 100, T0 + 100).await.unwrap());
    assert!(!store.node_heartbeat(node.uuid, 3, T0 + 110, None).await.unwrap());
    let lost = fetch().await;
    assert_eq!((lost.status, lost.last_seen_at_ms), (NodeStatus::Lost, T0 + 20));
}

/// A batch of heartbeats applies each as a single heartbeat would: only to ONLINE
/// nodes with the epoch given, last_seen only forward, the sample only when given;
/// the others in the batch (stale epoch, LOST, unknown) are skipped, not an error.
pub async fn node_heartbeats_apply_each_like_one(store: &dyn Store) {
    let account = new_account(store, "Batched heartbeats").await;
    let (a, b, c) = (
        new_node(store, account, T0, 1).await,
        new_node(store, account, T0, 2).await,
        new_node(store, account, T0, 3).await,
    );
    assert!(store.node_mark_lost(c.uuid, T0 + 1, T0 + 1).await.unwrap());
    let fetch = |id: NodeId| async move { store.node_fetch(None, id).await.unwrap().expect("exists") };
    let beat = |node: &NodeRecord, epoch: i64, at: i64, s: Option<HardwareSample>| Heartbeat {
        node: node.uuid,
        lease_epoch: epoch,
        seen_at_ms: at,
        sample: s,
    };
    assert_eq!(store.node_heartbeats(&[]).await.unwrap(), 0);
    let batch = [
        beat(&a, a.lease_epoch, T0 + 50, Some(sample(5.0))),
        beat(&b, b.lease_epoch + 1, T0 + 50, Some(sample(6.0))),
        beat(&c, c.lease_epoch, T0 + 50, None),
        Heartbeat { node: NodeId::new(), lease_epoch: 1, seen_at_ms: T0 + 50, sample: None },
    ];
    assert_eq!(store.node_heartbeats(&batch).await.unwrap(), 1, "only the ONLINE node with its epoch");
    assert_eq!(
        fetch(a.uuid).await,
        NodeRecord { last_seen_at_ms: T0 + 50, latest_sample: Some(sample(5.0)), ..a.clone() }
    );
    assert_eq!(fetch(b.uuid).await, b, "stale epoch: untouched");
    assert_eq!(fetch(c.uuid).await.last_seen_at_ms, c.last_seen_at_ms, "LOST: untouched");

    // A delayed batch keeps last_seen, takes the sample; none keeps the old sample.
    let batch = [beat(&a, a.lease_epoch, T0 + 20, Some(sample(7.0))), beat(&b, b.lease_epoch, T0 + 60, None)];
    assert_eq!(store.node_heartbeats(&batch).await.unwrap(), 2);
    assert_eq!(
        fetch(a.uuid).await,
        NodeRecord { last_seen_at_ms: T0 + 50, latest_sample: Some(sample(7.0)), ..a.clone() }
    );
    assert_eq!(fetch(b.uuid).await, NodeRecord { last_seen_at_ms: T0 + 60, ..b.clone() });
    // mark_lost sees the batch's last_seen.
    assert!(!store.node_mark_lost(b.uuid, T0 + 60, T0 + 70).await.unwrap(), "heard at the cutoff");
}

/// mark_lost_many marks, in one call, each node mark_lost would mark alone (ONLINE,
/// silent before the cutoff) and skips the others (heard at the cutoff, already
/// LOST, unknown), with one status event per node marked and none for the rest.
pub async fn node_mark_lost_many_marks_each_like_one(store: &dyn Store) {
    let account = new_account(store, "Lost together").await;
    let mut nodes = Vec::new();
    for variant in 1..=4 {
        nodes.push(new_node(store, account, T0, variant).await);
    }
    let [a, b, heard, gone] = [&nodes[0], &nodes[1], &nodes[2], &nodes[3]];
    assert!(store.node_heartbeat(heard.uuid, heard.lease_epoch, T0 + 100, None).await.unwrap());
    assert!(store.node_mark_lost(gone.uuid, T0 + 1, T0 + 1).await.unwrap());
    assert_eq!(store.node_mark_lost_many(&[], T0 + 100, T0 + 200).await.unwrap(), vec![]);
    let start = store.event_horizon().await.unwrap().last_id;

    let ids = [a.uuid, heard.uuid, gone.uuid, NodeId::new(), b.uuid];
    let marked: BTreeSet<NodeId> =
        store.node_mark_lost_many(&ids, T0 + 100, T0 + 200).await.unwrap().into_iter().collect();
    assert_eq!(marked, BTreeSet::from([a.uuid, b.uuid]), "only the silent ONLINE nodes");
    let fetch = |id: NodeId| async move { store.node_fetch(None, id).await.unwrap().expect("exists") };
    for n in [a, b] {
        let expected = NodeRecord { status: NodeStatus::Lost, updated_at_ms: T0 + 200, ..n.clone() };
        assert_eq!(fetch(n.uuid).await, expected);
    }
    assert_eq!(fetch(heard.uuid).await.status, NodeStatus::Online, "heard at the cutoff");
    assert_eq!(fetch(gone.uuid).await.updated_at_ms, T0 + 1, "already LOST: untouched");

    let events = store.event_list(Some(account), start, &[], 100).await.unwrap();
    let changed: BTreeSet<String> = events
        .iter()
        .map(|e| {
            assert_eq!(e.event_type, EventType::NodeStatusChanged);
            assert_eq!(e.data["status"], "LOST");
            e.data["uuid"].as_str().expect("uuid").to_string()
        })
        .collect();
    assert_eq!(changed, BTreeSet::from([a.uuid.to_string(), b.uuid.to_string()]), "one event per node marked");
    assert_eq!(events.len(), 2);
    assert_eq!(store.node_mark_lost_many(&ids, T0 + 100, T0 + 300).await.unwrap(), vec![], "not twice");
}

/// mark_lost is a compare-and-set: not while recently seen, not twice, and a
/// re-registration (new epoch) brings the node back.
pub async fn node_mark_lost_compare_and_set(store: &dyn Store) {
    let account = new_account(store, "Lost").await;
    let node = new_node(store, account, T0, 1).await;
    assert!(store.node_heartbeat(node.uuid, 1, T0 + 100, None).await.unwrap());
    assert!(!store.node_mark_lost(node.uuid, T0 + 100, T0 + 150).await.unwrap(), "seen at the cutoff");
    assert!(!store.node_mark_lost(NodeId::new(), T0 + 1000, T0 + 150).await.unwrap(), "unknown node");
    assert_eq!(store.node_fetch(None, node.uuid).await.unwrap().unwrap().status, NodeStatus::Online);

    assert!(store.node_mark_lost(node.uuid, T0 + 101, T0 + 200).await.unwrap());
    let lost = store.node_fetch(None, node.uuid).await.unwrap().unwrap();
    let expected =
        NodeRecord { status: NodeStatus::Lost, last_seen_at_ms: T0 + 100, updated_at_ms: T0 + 200, ..node.clone() };
    assert_eq!(lost, expected);
    assert!(!store.node_mark_lost(node.uuid, T0 + 1000, T0 + 300).await.unwrap(), "already lost");
    assert_eq!(store.node_fetch(None, node.uuid).await.unwrap(), Some(expected));

    let back = NodeRecord { lease_epoch: 2, last_seen_at_ms: T0 + 400, updated_at_ms: T0 + 400, ..node.clone() };
    store.node_upsert(&back).await.unwrap();
    assert!(!store.node_heartbeat(node.uuid, 1, T0 + 410, None).await.unwrap(), "old epoch is fenced");
    assert!(store.node_heartbeat(node.uuid, 2, T0 + 410, None).await.unwrap());
    assert_eq!(store.node_fetch(None, node.uuid).await.unwrap().unwrap().status, NodeStatus::Online);
}

/// Draining is scoped, returns the node after, and moves updated_at only on a change.
pub async fn node_set_draining_is_scoped(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let node = new_node(store, a, T0, 0).await;
    assert_eq!(store.node_set_draining(Some(b), node.uuid, true, T0 + 1).await.unwrap(), None);
    assert_eq!(store.node_set_draining(None, NodeId::new(), true, T0 + 1).await.unwrap(), None);
    assert_eq!(store.node_fetch(None, node.uuid).await.unwrap(), Some(node.clone()));

    let drained = NodeRecord { is_draining: true, updated_at_ms: T0 + 10, ..node.clone() };
    assert_eq!(store.node_set_draining(Some(a), node.uuid, true, T0 + 10).await.unwrap(), Some(drained.clone()));
    assert_eq!(store.node_set_draining(None, node.uuid, true, T0 + 20).await.unwrap(), Some(drained.clone()));
    assert_eq!(store.node_fetch(Some(a), node.uuid).await.unwrap(), Some(drained));
    let undrained = NodeRecord { is_draining: false, updated_at_ms: T0 + 30, ..node };
    assert_eq!(store.node_set_draining(None, undrained.uuid, false, T0 + 30).await.unwrap(), Some(undrained));
}

// ---------------------------------------------------------------------------------
// Placement

/// A placed job becomes ASSIGNED (reason cleared, updated_at = now) with exactly its
/// runs; a job no longer PENDING is skipped and gets none; a job named twice is
/// placed once, by its first placement.
pub async fn run_place_assigns_pending_jobs_only(store: &dyn Store) {
    let account = new_account(store, "Place").await;
    let node = new_node(store, account, T0, 3).await;
    let mut j1 = full_job(account, T0 + 1);
    j1.max_node_count = 1;
    store.job_create(&j1).await.unwrap();
    let mut j2 = job(account, T0 + 2, 1);
    j2.max_node_count = 2;
    store.job_create(&j2).await.unwrap();
    let j3 = new_job(store, account, T0 + 3, 2).await;
    let j4 = new_job(store, account, T0 + 4, 3).await;
    store
        .job_transition(None, j3.uuid, &job_change(&[JobStatus::Pending], JobStatus::Cancelled, T0 + 5))
        .await
        .unwrap();

    let r1 = run_record(&j1, &node, 0, 0, T0 + 10);
    let r2 = [run_record(&j2, &node, 0, 0, T0 + 10), run_record(&j2, &node, 0, 1, T0 + 10)];
    let r3 = run_record(&j3, &node, 0, 0, T0 + 10);
    let (r4a, r4b) = (run_record(&j4, &node, 0, 0, T0 + 10), run_record(&j4, &node, 0, 0, T0 + 10));
    let placements = vec![
        JobPlacement { job: j1.uuid, runs: vec![r1.clone()], now_ms: T0 + 10 },
        JobPlacement { job: j3.uuid, runs: vec![r3.clone()], now_ms: T0 + 10 },
        JobPlacement { job: j2.uuid, runs: r2.to_vec(), now_ms: T0 + 11 },
        JobPlacement { job: j4.uuid, runs: vec![r4a.clone()], now_ms: T0 + 12 },
        JobPlacement { job: j4.uuid, runs: vec![r4b.clone()], now_ms: T0 + 13 },
    ];
    let placed = store.run_place(&placements).await.unwrap();
    assert_eq!(placed, [j1.uuid, j2.uuid, j4.uuid]);

    for (job, now) in [(&j1, T0 + 10), (&j2, T0 + 11), (&j4, T0 + 12)] {
        let expected =
            Job { status: JobStatus::Assigned, status_reason: None, updated_at: Timestamp(now), ..job.clone() };
        assert_eq!(store.job_fetch(None, job.uuid).await.unwrap(), Some(expected));
    }
    assert_eq!(store.job_fetch(None, j3.uuid).await.unwrap().unwrap().status, JobStatus::Cancelled);
    assert_eq!(store.run_fetch(None, r1.run.uuid).await.unwrap(), Some(r1.clone()));
    assert_eq!(store.run_list_for_job(j1.uuid).await.unwrap(), std::slice::from_ref(&r1));
    assert_eq!(store.run_list_for_job(j2.uuid).await.unwrap(), r2);
    assert_eq!(store.run_list_for_job(j3.uuid).await.unwrap(), []);
    assert_eq!(store.run_list_for_job(j4.uuid).await.unwrap(), [r4a]);
    assert_eq!(store.run_fetch(None, r4b.run.uuid).await.unwrap(), None);

    // Placing again: the jobs are ASSIGNED now, so nothing happens.
    let again = JobPlacement { job: j1.uuid, runs: vec![run_record(&j1, &node, 0, 0, T0 + 20)], now_ms: T0 + 20 };
    assert_eq!(store.run_place(&[again]).await.unwrap(), []);
    assert_eq!(store.run_list_for_job(j1.uuid).await.unwrap(), [r1]);
    assert_eq!(store.run_place(&[]).await.unwrap(), []);
    // An unknown job is skipped like any job that is not PENDING.
    let ghost = JobPlacement { job: JobId::new(), runs: vec![], now_ms: T0 + 30 };
    assert_eq!(store.run_place(&[ghost]).await.unwrap(), []);
}

/// A failing run insert (unknown node, duplicate run uuid) fails the whole call:
/// no job of the batch is placed and no run is written.
pub async fn run_place_error_places_nothing(store: &dyn Store) {
    let account = new_account(store, "Atomic").await;
    let node = new_node(store, account, T0, 1).await;
    let (j1, j2) = (new_job(store, account, T0 + 1, 1).await, new_job(store, account, T0 + 2, 2).await);
    let good = run_record(&j1, &node, 0, 0, T0 + 10);
    let mut bad = run_record(&j2, &node, 0, 0, T0 + 10);
    bad.run.node_uuid = NodeId::new();
    let batch = [
        JobPlacement { job: j1.uuid, runs: vec![good.clone()], now_ms: T0 + 10 },
        JobPlacement { job: j2.uuid, runs: vec![bad], now_ms: T0 + 10 },
    ];
    let result = store.run_place(&batch).await;
    assert!(matches!(result, Err(StoreError::MissingReference { .. })), "{result:?}");
    let pending: Vec<JobId> = store.job_list_pending(10).await.unwrap().iter().map(|j| j.uuid).collect();
    assert_eq!(pending, [j1.uuid, j2.uuid]);
    assert_eq!(store.run_fetch(None, good.run.uuid).await.unwrap(), None);
    assert!(store.run_list_active().await.unwrap().is_empty());

    // A run uuid that exists already: Conflict, and again nothing is placed.
    assert!(place(store, j1.uuid, std::slice::from_ref(&good), T0 + 20).await);
    let mut duplicate = run_record(&j2, &node, 0, 0, T0 + 30);
    duplicate.run.uuid = good.run.uuid;
    let j3 = new_job(store, account, T0 + 3, 3).await;
    let batch = [
        JobPlacement { job: j3.uuid, runs: vec![run_record(&j3, &node, 0, 0, T0 + 30)], now_ms: T0 + 30 },
        JobPlacement { job: j2.uuid, runs: vec![duplicate], now_ms: T0 + 30 },
    ];
    let result = store.run_place(&batch).await;
    assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
    let pending: Vec<JobId> = store.job_list_pending(10).await.unwrap().iter().map(|j| j.uuid).collect();
    assert_eq!(pending, [j2.uuid, j3.uuid]);
    assert_eq!(store.run_list_active().await.unwrap(), [good]);
}

/// The scheduler's batch: 1,000 placements in one call, one write.
pub async fn run_place_batch_of_1000(fixture: &mut dyn StoreFixture) {
    const N: i64 = 1000;
    let store = fixture.store();
    let account = new_account(&*store, "Batch").await;
    let node = new_node(&*store, account, T0, 3).await;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let job = job(account, T0 + 1 + i, i as usize);
                store.job_create(&job).await.map(|()| job)
            })
        })
        .collect();
    let mut jobs = Vec::new();
    for task in tasks {
        jobs.push(task.await.expect("task").expect("job create"));
    }
    let pending = store.job_list_pending(u32::MAX).await.unwrap();
    assert_eq!(pending, jobs, "every job, oldest first");

    let placements: Vec<JobPlacement> = jobs
        .iter()
        .map(|job| JobPlacement {
            job: job.uuid,
            runs: vec![run_record(job, &node, 0, 0, T0 + N + 10)],
            now_ms: T0 + N + 10,
        })
        .collect();
    let before = store.write_stats();
    let placed = store.run_place(&placements).await.unwrap();
    let after = store.write_stats();
    assert_eq!(placed, jobs.iter().map(|j| j.uuid).collect::<Vec<_>>());
    assert_eq!(after.writes - before.writes, 1, "one write for the whole batch: {before:?} -> {after:?}");
    assert!(store.job_list_pending(10).await.unwrap().is_empty());
    let active = store.run_list_active().await.unwrap();
    assert_eq!(active.len(), jobs.len());
    let expected: BTreeSet<JobRunId> = placements.iter().map(|p| p.runs[0].run.uuid).collect();
    assert_eq!(active.iter().map(|r| r.run.uuid).collect::<BTreeSet<_>>(), expected);
    let filter = RunFilter { node_uuids: vec![node.uuid], ..RunFilter::default() };
    assert_eq!(store.run_list(Some(account), &filter, Paging::default()).await.unwrap().total, N as u64);
}

// ---------------------------------------------------------------------------------
// Runs

/// run_fetch and run_list: every filter field (empty = no constraint), combinations,
/// paging and scoping by the job's account.
pub async fn run_fetch_list_filters_and_scoping(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let (n1, n2) = (new_node(store, a, T0, 1).await, new_node(store, b, T0 + 1, 2).await);
    // Runs 0-3 belong to A's jobs, 4-5 to B's; run i is created at T0 + 100 + i.
    let specs = [(a, &n1), (a, &n2), (a, &n1), (a, &n2), (b, &n1), (b, &n2)];
    let mut jobs = Vec::new();
    let mut runs = Vec::new();
    for (i, (account, node)) in specs.into_iter().enumerate() {
        let at = T0 + 100 + i as i64;
        let job = new_job(store, account, at, i).await;
        let run = run_record(&job, node, 0, 0, at);
        assert!(place(store, job.uuid, std::slice::from_ref(&run), at).await);
        jobs.push(job.uuid);
        runs.push(run);
    }
    use JobRunStatus::*;
    for (i, to) in [(1, Running), (2, Failed), (4, Running)] {
        let from = if to == Running { vec![Assigned] } else { vec![Assigned, Running] };
        store.run_update(runs[i].run.uuid, &status_change(&from, to, T0 + 200)).await.unwrap().expect("applies");
    }
    for run in &runs {
        let got = store.run_fetch(Some(run.run.account_uuid), run.run.uuid).await.unwrap().expect("in scope");
        assert_eq!((got.run.uuid, got.cpu, got.ram_gb), (run.run.uuid, run.cpu, run.ram_gb));
    }
    assert_eq!(store.run_fetch(Some(b), runs[0].run.uuid).await.unwrap(), None);
    assert_eq!(store.run_fetch(Some(a), runs[4].run.uuid).await.unwrap().map(|r| r.run.uuid), None);
    assert_eq!(store.run_fetch(None, JobRunId::new()).await.unwrap(), None);
    assert_eq!(store.run_fetch(None, runs[0].run.uuid).await.unwrap(), Some(runs[0].clone()));

    let r = |ix: &[usize]| ix.iter().map(|&i| runs[i].run.uuid).collect::<Vec<_>>();
    let with = |edit: &dyn Fn(&mut RunFilter)| {
        let mut filter = RunFilter::default();
        edit(&mut filter);
        filter
    };
    let cases: Vec<(Option<AccountId>, RunFilter, Vec<JobRunId>)> = vec![
        (Some(a), RunFilter::default(), r(&[0, 1, 2, 3])),
        (Some(b), RunFilter::default(), r(&[4, 5])),
        (None, RunFilter::default(), r(&[0, 1, 2, 3, 4, 5])),
        (None, with(&|f| f.job_uuids = vec![jobs[3], jobs[5]]), r(&[3, 5])),
        (Some(a), with(&|f| f.job_uuids = vec![jobs[3], jobs[5]]), r(&[3])),
        (None, with(&|f| f.job_uuids = vec![JobId::new()]), vec![]),
        (None, with(&|f| f.statuses = vec![Running]), r(&[1, 4])),
        (None, with(&|f| f.statuses = vec![Assigned, Failed]), r(&[0, 2, 3, 5])),
        (None, with(&|f| f.statuses = vec![Completed]), vec![]),
        (None, with(&|f| f.node_uuids = vec![n1.uuid]), r(&[0, 2, 4])),
        (Some(b), with(&|f| f.node_uuids = vec![n1.uuid, n2.uuid]), r(&[4, 5])),
        (
            Some(a),
            with(&|f| {
                f.node_uuids = vec![n2.uuid];
                f.statuses = vec![Assigned, Running];
            }),
            r(&[1, 3]),
        ),
    ];
    for (scope, filter, expected) in cases {
        assert_eq!(run_ids(store, scope, &filter).await, expected, "scope {scope:?}, filter {filter:?}");
    }
    let newest = |page| Paging { page, limit: 4, newest_first: true };
    let page = store.run_list(None, &RunFilter::default(), newest(1)).await.unwrap();
    assert_eq!((page.total, ids(&page.items.iter().collect::<Vec<_>>())), (6, r(&[5, 4, 3, 2])));
    let page = store.run_list(None, &RunFilter::default(), newest(2)).await.unwrap();
    assert_eq!((page.total, ids(&page.items.iter().collect::<Vec<_>>())), (6, r(&[1, 0])));
}

/// run_list_active has exactly the non-terminal runs; run_list_for_job has every run
/// of the job (attempts and gang ranks) in (created_at, attempt, rank) order.
pub async fn run_list_active_and_for_job(store: &dyn Store) {
    use JobRunStatus::*;
    let account = new_account(store, "Active").await;
    let node = new_node(store, account, T0, 3).await;
    let mut gang = job(account, T0 + 1, 1);
    gang.max_node_count = 2;
    gang.max_retry_count = 1;
    store.job_create(&gang).await.unwrap();
    // Attempt 0: two ranks, inserted rank 1 first; the job fails and is retried.
    let first = [run_record(&gang, &node, 0, 1, T0 + 10), run_record(&gang, &node, 0, 0, T0 + 10)];
    assert!(place(store, gang.uuid, &first, T0 + 10).await);
    for run in &first {
        store.run_update(run.run.uuid, &status_change(&[Assigned], Failed, T0 + 20)).await.unwrap().expect("applies");
    }
    let retry = job_change(&[JobStatus::Assigned], JobStatus::Pending, T0 + 21);
    store.job_transition(None, gang.uuid, &retry).await.unwrap().expect("retry");
    let second = [run_record(&gang, &node, 1, 0, T0 + 30), run_record(&gang, &node, 1, 1, T0 + 31)];
    assert!(place(store, gang.uuid, &second, T0 + 30).await);
    store.run_update(second[1].run.uuid, &status_change(&[Assigned], Preparing, T0 + 31)).await.unwrap().unwrap();

    // Other jobs' runs in every status.
    let others = runs_in_every_status(store, account, &node, T0 + 40).await;

    let for_job = store.run_list_for_job(gang.uuid).await.unwrap();
    let order: Vec<(u32, u32)> = for_job.iter().map(|r| (r.run.attempt, r.run.rank)).collect();
    assert_eq!(order, [(0, 0), (0, 1), (1, 0), (1, 1)]);
    assert_eq!(ids(&for_job.iter().collect::<Vec<_>>()), ids(&[&first[1], &first[0], &second[0], &second[1]]));
    assert!(store.run_list_for_job(JobId::new()).await.unwrap().is_empty());

    let active = store.run_list_active().await.unwrap();
    let expected = ids(&[&second[0], &second[1], &others[0], &others[1], &others[2]]);
    assert_eq!(ids(&active.iter().collect::<Vec<_>>()), expected);
    assert!(active.iter().all(|r| !r.run.status.is_terminal()));
    assert_eq!(active[1].run.status, Preparing);
    assert_eq!(active[0], second[0], "every field comes back");

    // The brief list: the same runs with every field but the snapshot, which keeps
    // only the job's timeouts (null where the job has none).
    let brief = store.run_list_active_brief().await.unwrap();
    assert_eq!(ids(&brief.iter().collect::<Vec<_>>()), expected);
    for (short, full) in brief.iter().zip(&active) {
        let timeouts: serde_json::Map<String, serde_json::Value> = ["max_timeout_start_ms", "max_timeout_run_ms"]
            .into_iter()
            .map(|k| (k.to_string(), full.run.job_snapshot[k].clone()))
            .collect();
        assert!(timeouts["max_timeout_start_ms"].is_i64(), "a job always has a start timeout");
        assert_eq!(short.run.job_snapshot, serde_json::Value::Object(timeouts), "only the job's timeouts");
        let mut expected = full.clone();
        expected.run.job_snapshot = short.run.job_snapshot.clone();
        assert_eq!(*short, expected, "every other field as run_list_active has it");
    }
    let timeouts_of = |r: &RunRecord| r.run.job_snapshot["max_timeout_run_ms"].as_i64();
    assert!(brief.iter().any(|r| timeouts_of(r).is_some()) && brief.iter().any(|r| timeouts_of(r).is_none()));
}

/// Places `job(account, t, variant)` on `node` with one run created at `t`.
async fn placed_run(store: &dyn Store, account: AccountId, node: &NodeRecord, t: i64, variant: usize) -> RunRecord {
    let job = new_job(store, account, t, variant).await;
    let run = run_record(&job, node, 0, 0, t);
    assert!(place(store, job.uuid, std::slice::from_ref(&run), t).await);
    run
}

/// run_list_due has the active runs a lifecycle pass acts on (on a LOST node, past the
/// start limit while ASSIGNED or PREPARING, past the run limit while RUNNING), brief,
/// and none of the others.
pub async fn run_list_due_has_the_runs_a_pass_acts_on(store: &dyn Store) {
    use JobRunStatus::*;
    const START: i64 = 300_000; // every `job` fixture's start limit
    const RUN: i64 = 3_600_000; // the batch ones' run limit (even variants)
    let account = new_account(store, "Due").await;
    let (node, doomed_node) = (new_node(store, account, T0, 1).await, new_node(store, account, T0, 2).await);
    let assigned = placed_run(store, account, &node, T0 + 10, 0).await;
    let running = placed_run(store, account, &node, T0 + 10, 2).await;
    store.run_update(running.run.uuid, &status_change(&[Assigned], Running, T0 + 20)).await.unwrap().unwrap();
    let unlimited = placed_run(store, account, &node, T0 + 10, 1).await; // PERSISTENT: no run limit
    store.run_update(unlimited.run.uuid, &status_change(&[Assigned], Running, T0 + 20)).await.unwrap().unwrap();
    // A run limit no clock reaches (the API sets no upper bound): never due, and the
    // database must not overflow adding it to the start.
    let endless = {
        let mut job = job(account, T0 + 10, 2);
        job.max_timeout_run_ms = Some(i64::MAX);
        store.job_create(&job).await.expect("job create");
        let run = run_record(&job, &node, 0, 0, T0 + 10);
        assert!(place(store, job.uuid, std::slice::from_ref(&run), T0 + 10).await);
        run
    };
    store.run_update(endless.run.uuid, &status_change(&[Assigned], Running, T0 + 20)).await.unwrap().unwrap();
    let ended = placed_run(store, account, &node, T0 + 10, 4).await;
    store.run_update(ended.run.uuid, &status_change(&[Assigned], Completed, T0 + 20)).await.unwrap().unwrap();
    let on_lost = placed_run(store, account, &doomed_node, T0 + 10, 0).await;
    for run in [&assigned, &running, &unlimited, &ended, &on_lost] {
        assert_eq!(run.run.job_snapshot["max_timeout_start_ms"], START, "the fixture's start limit");
    }
    assert_eq!(
        (
            running.run.job_snapshot["max_timeout_run_ms"].as_i64(),
            unlimited.run.job_snapshot["max_timeout_run_ms"].as_i64()
        ),
        (Some(RUN), None)
    );

    let due = |now: i64| async move {
        let runs = store.run_list_due(now).await.unwrap();
        for r in &runs {
            let keys: Vec<&String> = r.run.job_snapshot.as_object().expect("an object").keys().collect();
            assert_eq!(keys.len(), 2, "brief: {keys:?}");
        }
        ids(&runs.iter().collect::<Vec<_>>())
    };
    assert!(due(T0 + 11).await.is_empty(), "nothing lost, nothing overstayed");
    assert!(store.node_mark_lost(doomed_node.uuid, T0 + 1000, T0 + 1000).await.unwrap());
    assert_eq!(due(T0 + 1000).await, ids(&[&on_lost]), "the run of the LOST node");
    assert_eq!(due(T0 + 10 + START).await, ids(&[&on_lost]), "at its start limit, not past it");
    assert_eq!(due(T0 + 11 + START).await, ids(&[&assigned, &on_lost]), "past its start limit");
    assert_eq!(
        due(T0 + 21 + RUN).await,
        ids(&[&assigned, &running, &on_lost]),
        "past its run limit since it started; no limit (or one past any clock), never; ended, never"
    );
    assert_eq!(due(i64::MAX / 2).await, ids(&[&assigned, &running, &on_lost]), "far in the future too");
}

/// One job per run status on `node`, each with one run placed at `t0 + i` and moved
/// to ASSIGNED, PREPARING, RUNNING, COMPLETED, FAILED and CANCELLED in that order.
async fn runs_in_every_status(store: &dyn Store, account: AccountId, node: &NodeRecord, t0: i64) -> Vec<RunRecord> {
    use JobRunStatus::*;
    let mut runs = Vec::new();
    for (i, to) in [Assigned, Preparing, Running, Completed, Failed, Cancelled].into_iter().enumerate() {
        let at = t0 + i as i64;
        let job = new_job(store, account, at, i).await;
        let run = run_record(&job, node, 0, 0, at);
        assert!(place(store, job.uuid, std::slice::from_ref(&run), at).await);
        if to != Assigned {
            let from = [Assigned, Preparing, Running];
            store.run_update(run.run.uuid, &status_change(&from, to, at)).await.unwrap().expect("applies");
        }
        runs.push(run);
    }
    runs
}

/// The gauges' counts: one per active status, and each GPU an active run holds once
/// (the fixture's PREPARING run holds GPU 0, its RUNNING run GPUs 0 and 1, as a
/// hand-over leaves them); ended runs hold nothing, whatever their `gpu_indices`.
pub async fn run_count_active_counts_active_runs_and_their_gpus(store: &dyn Store) {
    use JobRunStatus::*;
    assert_eq!(store.run_count_active().await.unwrap(), crate::ActiveRunCounts::default(), "no runs");
    let account = new_account(store, "Counted").await;
    let node = new_node(store, account, T0, 5).await;
    let runs = runs_in_every_status(store, account, &node, T0 + 10).await;
    assert_eq!(
        runs.iter().map(|r| r.run.gpu_indices.len()).collect::<Vec<_>>(),
        [0, 1, 2, 4, 8, 1],
        "the fixture's GPUs per run"
    );
    let counts = store.run_count_active().await.unwrap();
    assert_eq!(counts.by_status, [(Assigned, 1), (Preparing, 1), (Running, 1)].into_iter().collect());
    assert_eq!(counts.gpus_held, [(node.uuid, 0), (node.uuid, 1)].into_iter().collect());

    store.run_update(runs[2].run.uuid, &status_change(&[Running], Completed, T0 + 20)).await.unwrap().unwrap();
    let counts = store.run_count_active().await.unwrap();
    assert_eq!(counts.by_status, [(Assigned, 1), (Preparing, 1)].into_iter().collect());
    assert_eq!(counts.gpus_held, [(node.uuid, 0)].into_iter().collect());
}

/// Of the ids asked about, only active runs of jobs still ASSIGNED or RUNNING are
/// still wanted: a run whose job is cancelling (its node may be down and never say
/// the run stopped), an ended run and an unknown id are not.
pub async fn run_still_wanted_follows_run_and_job(store: &dyn Store) {
    let account = new_account(store, "Wanted").await;
    let node = new_node(store, account, T0, 5).await;
    let runs = runs_in_every_status(store, account, &node, T0 + 10).await;
    let mut asked: Vec<JobRunId> = runs.iter().map(|r| r.run.uuid).collect();
    asked.push(JobRunId::new());
    let mut wanted = store.run_still_wanted(&asked).await.unwrap();
    wanted.sort();
    let mut expected = ids(&[&runs[0], &runs[1], &runs[2]]);
    expected.sort();
    assert_eq!(wanted, expected, "the active runs of live jobs");

    // The RUNNING run's job is cancelled: its run is still RUNNING, but not wanted.
    let job = runs[2].run.job_uuid;
    let running = job_change(&[JobStatus::Assigned], JobStatus::Running, T0 + 30);
    store.job_transition(None, job, &running).await.unwrap().expect("job runs");
    assert!(store.run_still_wanted(&[runs[2].run.uuid]).await.unwrap() == [runs[2].run.uuid]);
    let cancelling = job_change(&[JobStatus::Running], JobStatus::Cancelling, T0 + 31);
    store.job_transition(None, job, &cancelling).await.unwrap().expect("cancelling");
    assert!(store.run_still_wanted(&[runs[2].run.uuid, runs[0].run.uuid]).await.unwrap() == [runs[0].run.uuid]);
    assert!(store.run_still_wanted(&[]).await.unwrap().is_empty());

    // A thousand ids at once (what a relay may ask in one request).
    let many: Vec<JobRunId> = (0..1000).map(|_| JobRunId::new()).chain([runs[1].run.uuid]).collect();
    assert_eq!(store.run_still_wanted(&many).await.unwrap(), [runs[1].run.uuid]);
}

/// Compare-and-set: applies only from an allowed status, else `None` and nothing
/// changes; started_at on the first RUNNING, ended_at and duration on a terminal
/// status, exit code and node URLs only when given.
pub async fn run_update_compare_and_set(store: &dyn Store) {
    use JobRunStatus::*;
    let account = new_account(store, "Updates").await;
    let node = new_node(store, account, T0, 2).await;
    let job = new_job(store, account, T0 + 1, 1).await;
    let original = run_record(&job, &node, 0, 0, T0 + 10);
    assert!(place(store, job.uuid, std::slice::from_ref(&original), T0 + 10).await);

    let refused = store.run_update(original.run.uuid, &status_change(&[Running], Completed, T0 + 15)).await;
    assert_eq!(refused.unwrap(), None);
    assert_eq!(store.run_update(original.run.uuid, &status_change(&[], Running, T0 + 15)).await.unwrap(), None);
    assert_eq!(store.run_update(JobRunId::new(), &status_change(&[Assigned], Running, T0 + 15)).await.unwrap(), None);
    assert_eq!(store.run_fetch(None, original.run.uuid).await.unwrap(), Some(original.clone()));

    let mut expected = original.clone();
    let preparing =
        RunUpdate { reason: Some("pulling image".into()), ..status_change(&[Assigned], Preparing, T0 + 20) };
    let after = store.run_update(original.run.uuid, &preparing).await.unwrap();
    (expected.run.status, expected.run.status_reason) = (Preparing, Some("pulling image".into()));
    expected.run.updated_at = Timestamp(T0 + 20);
    assert_eq!(after.as_ref(), Some(&expected));

    let urls = vec![
        NodeUrl {
            description: "ssh".into(),
            hostname: "host.example.com".into(),
            port: 40022,
            protocol: "tcp".into(),
            tls: false,
        },
        NodeUrl {
            description: "8888".into(),
            hostname: "host.example.com".into(),
            port: 48888,
            protocol: "tcp".into(),
            tls: false,
        },
    ];
    let running =
        RunUpdate { node_urls: Some(urls.clone()), ..status_change(&[Assigned, Preparing], Running, T0 + 30) };
    let after = store.run_update(original.run.uuid, &running).await.unwrap();
    (expected.run.status, expected.run.status_reason, expected.run.node_urls) = (Running, None, urls.clone());
    (expected.run.started_at_ms, expected.run.updated_at) = (Some(T0 + 30), Timestamp(T0 + 30));
    assert_eq!(after.as_ref(), Some(&expected));

    // RUNNING again (a report repeated): started_at keeps the first time.
    let again = store.run_update(original.run.uuid, &status_change(&[Running], Running, T0 + 35)).await.unwrap();
    expected.run.updated_at = Timestamp(T0 + 35);
    assert_eq!(again.as_ref(), Some(&expected));

    let completed = RunUpdate {
        exit_code: Some(0),
        reason: Some("exit 0".into()),
        ..status_change(&[Running], Completed, T0 + 130)
    };
    let after = store.run_update(original.run.uuid, &completed).await.unwrap();
    (expected.run.status, expected.run.status_reason, expected.run.exit_code) =
        (Completed, Some("exit 0".into()), Some(0));
    (expected.run.ended_at_ms, expected.run.duration_ms) = (Some(T0 + 130), Some(100));
    expected.run.updated_at = Timestamp(T0 + 130);
    assert_eq!(after.as_ref(), Some(&expected));
    assert_eq!(expected.run.node_urls, urls, "node URLs kept when not given");

    // Terminal: an outdated `from` changes nothing.
    let late = RunUpdate { exit_code: Some(137), ..status_change(&[Running], Failed, T0 + 140) };
    assert_eq!(store.run_update(original.run.uuid, &late).await.unwrap(), None);
    assert_eq!(store.run_fetch(None, original.run.uuid).await.unwrap(), Some(expected));

    // Ended without ever running: no start, no duration; a negative exit code.
    let job2 = new_job(store, account, T0 + 2, 2).await;
    let never = run_record(&job2, &node, 0, 0, T0 + 50);
    assert!(place(store, job2.uuid, std::slice::from_ref(&never), T0 + 50).await);
    let failed = RunUpdate {
        exit_code: Some(-1),
        reason: Some("image pull failed".into()),
        ..status_change(&[Assigned, Preparing, Running], Failed, T0 + 60)
    };
    let after = store.run_update(never.run.uuid, &failed).await.unwrap().expect("applies");
    assert_eq!((after.run.started_at_ms, after.run.ended_at_ms, after.run.duration_ms), (None, Some(T0 + 60), None));
    assert_eq!((after.run.status, after.run.exit_code), (Failed, Some(-1)));
}

/// A reported image size lands on the run's job, only when the update applies.
pub async fn run_update_records_image_size(store: &dyn Store) {
    use JobRunStatus::*;
    let account = new_account(store, "Images").await;
    let node = new_node(store, account, T0, 1).await;
    let job = new_job(store, account, T0 + 1, 1).await;
    assert_eq!(job.image_size_bytes, None);
    let run = run_record(&job, &node, 0, 0, T0 + 10);
    assert!(place(store, job.uuid, std::slice::from_ref(&run), T0 + 10).await);

    let refused = RunUpdate { image_size_bytes: Some(1), ..status_change(&[Running], Completed, T0 + 20) };
    assert_eq!(store.run_update(run.run.uuid, &refused).await.unwrap(), None);
    assert_eq!(store.job_fetch(None, job.uuid).await.unwrap().unwrap().image_size_bytes, None);

    let pulled = RunUpdate { image_size_bytes: Some(7_340_032_000), ..status_change(&[Assigned], Preparing, T0 + 20) };
    store.run_update(run.run.uuid, &pulled).await.unwrap().expect("applies");
    let after = store.job_fetch(None, job.uuid).await.unwrap().unwrap();
    assert_eq!(after.image_size_bytes, Some(7_340_032_000));
    assert_eq!(after.status, JobStatus::Assigned);
    // Not given: kept.
    store.run_update(run.run.uuid, &status_change(&[Preparing], Running, T0 + 30)).await.unwrap().expect("applies");
    assert_eq!(store.job_fetch(None, job.uuid).await.unwrap().unwrap().image_size_bytes, Some(7_340_032_000));
}

/// Logs append, are scoped like their run, and keep only the newest `max_bytes`
/// bytes, cut at a character boundary.
pub async fn run_logs_keep_the_newest_bytes(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let node = new_node(store, a, T0, 1).await;
    let mut runs = Vec::new();
    for i in 0..3 {
        let job = new_job(store, a, T0 + 1 + i, i as usize).await;
        let run = run_record(&job, &node, 0, 0, T0 + 10 + i);
        assert!(place(store, job.uuid, std::slice::from_ref(&run), T0 + 10).await);
        runs.push(run.run.uuid);
    }
    let logs = |scope, id| async move { store.run_logs_fetch(scope, id).await.unwrap() };
    assert_eq!(logs(None, runs[0]).await.as_deref(), Some(""), "no output yet");
    assert_eq!(logs(None, JobRunId::new()).await, None);

    store.run_logs_append(runs[0], "hello ", 1024).await.unwrap();
    store.run_logs_append(runs[0], "wörld\n", 1024).await.unwrap();
    assert_eq!(logs(Some(a), runs[0]).await.as_deref(), Some("hello wörld\n"));
    assert_eq!(logs(Some(b), runs[0]).await, None);
    assert_eq!(logs(None, runs[1]).await.as_deref(), Some(""), "logs are per run");

    // Small limit: the oldest bytes go.
    store.run_logs_append(runs[1], "abcdef", 8).await.unwrap();
    store.run_logs_append(runs[1], "ghij", 8).await.unwrap();
    assert_eq!(logs(None, runs[1]).await.as_deref(), Some("cdefghij"));
    // The cut falls inside 'é' (2 bytes) of the stored logs: the whole char goes.
    store.run_logs_append(runs[2], "aé€", 5).await.unwrap(); // 6 bytes: chunk alone over the limit
    assert_eq!(logs(None, runs[2]).await.as_deref(), Some("é€"));
    store.run_logs_append(runs[2], "b", 5).await.unwrap();
    assert_eq!(logs(None, runs[2]).await.as_deref(), Some("€b"));
    // The cut falls inside '€' (3 bytes) of a chunk longer than the limit.
    store.run_logs_append(runs[2], "x€€", 4).await.unwrap();
    assert_eq!(logs(None, runs[2]).await.as_deref(), Some("€"));
    store.run_logs_append(runs[2], "", 4).await.unwrap();
    assert_eq!(logs(None, runs[2]).await.as_deref(), Some("€"));

    // Many small appends against a real-sized limit end at exactly the newest bytes.
    let mut all = String::new();
    for i in 0..200 {
        let line = format!("line {i:03} ✓\n");
        all.push_str(&line);
        store.run_logs_append(runs[0], &line, 1000).await.unwrap();
    }
    let kept = logs(None, runs[0]).await.unwrap();
    assert!(kept.len() <= 1000 && kept.len() > 990, "{}", kept.len());
    assert!(all.ends_with(&kept));

    let result = store.run_logs_append(JobRunId::new(), "lost", 1024).await;
    assert!(matches!(result, Err(StoreError::MissingReference { .. })), "{result:?}");

    // Bytes ever appended count every path (append in place, trim, replace by a chunk
    // over the limit), so a follower can tell what it has not seen.
    let tail = |id| async move { store.run_logs_tail(id).await.unwrap() };
    assert_eq!(tail(JobRunId::new()).await, None);
    let fresh = new_job(store, a, T0 + 50, 9).await;
    let fresh_run = run_record(&fresh, &node, 0, 0, T0 + 51);
    assert!(place(store, fresh.uuid, std::slice::from_ref(&fresh_run), T0 + 51).await);
    let id = fresh_run.run.uuid;
    assert_eq!(tail(id).await, Some(LogTail { logs: String::new(), appended_bytes: 0 }), "no output yet");
    assert_eq!(store.run_logs_append(id, "abc", 8).await.unwrap(), 3);
    assert_eq!(store.run_logs_append(id, "défg", 8).await.unwrap(), 8, "é is two bytes");
    assert_eq!(store.run_logs_append(id, "hij", 8).await.unwrap(), 11, "trimmed");
    assert_eq!(store.run_logs_append(id, "0123456789", 8).await.unwrap(), 21, "replaced");
    let t = tail(id).await.unwrap();
    assert_eq!((t.logs.as_str(), t.appended_bytes), ("23456789", 21));
    assert_eq!(tail(runs[1]).await.unwrap().appended_bytes, 10, "abcdef + ghij");
}

// ---------------------------------------------------------------------------------
// Jobs, as the scheduler and the run lifecycle use them

/// The scheduler's input: PENDING jobs only, oldest first (uuid breaking ties), at
/// most `limit`.
pub async fn job_list_pending_order_and_limit(store: &dyn Store) {
    let account = new_account(store, "Pending").await;
    assert!(store.job_list_pending(10).await.unwrap().is_empty());
    let late = new_job(store, account, T0 + 3000, 0).await;
    let early = new_job(store, account, T0 + 1000, 1).await;
    let (x, y) = (job(account, T0 + 2000, 2), job(account, T0 + 2000, 3));
    store.job_create(&y).await.unwrap();
    store.job_create(&x).await.unwrap();
    let mut tied = [x.clone(), y.clone()];
    tied.sort_by_key(|j| j.uuid.to_string());
    for (i, status) in [JobStatus::Assigned, JobStatus::Running, JobStatus::Completed].into_iter().enumerate() {
        let mut other = job(account, T0 + i as i64, i);
        other.status = status;
        store.job_create(&other).await.unwrap();
    }
    let cancelled = new_job(store, account, T0 + 500, 4).await;
    store
        .job_transition(None, cancelled.uuid, &job_change(&[JobStatus::Pending], JobStatus::Cancelled, T0 + 600))
        .await
        .unwrap();

    let expected = vec![early.clone(), tied[0].clone(), tied[1].clone(), late];
    assert_eq!(store.job_list_pending(10).await.unwrap(), expected, "full jobs, oldest first");
    assert_eq!(store.job_list_pending(2).await.unwrap(), expected[..2]);
    assert!(store.job_list_pending(0).await.unwrap().is_empty());
    // A retried job is pending again, in its creation place.
    let node = new_node(store, account, T0, 1).await;
    assert!(place(store, early.uuid, &[run_record(&early, &node, 0, 0, T0 + 4000)], T0 + 4000).await);
    assert_eq!(store.job_list_pending(1).await.unwrap()[0].uuid, tied[0].uuid);
    let retry = job_change(&[JobStatus::Assigned], JobStatus::Pending, T0 + 5000);
    store.job_transition(None, early.uuid, &retry).await.unwrap().expect("retry");
    assert_eq!(store.job_list_pending(1).await.unwrap()[0].uuid, early.uuid);
}

/// The run lifecycle's job transitions: ASSIGNED and RUNNING back to PENDING for a
/// retry (started_at kept, completed_at unset), and to each terminal status.
pub async fn job_transition_retry_and_end(store: &dyn Store) {
    use JobStatus::*;
    let account = new_account(store, "Retry").await;
    let node = new_node(store, account, T0, 1).await;
    let original = new_job(store, account, T0 + 1, 1).await;
    let id = original.uuid;
    let fetch = || async { store.job_fetch(None, id).await.unwrap().expect("exists") };

    assert!(place(store, id, &[run_record(&original, &node, 0, 0, T0 + 10)], T0 + 10).await);
    let back = JobTransition { reason: Some("retrying".into()), ..job_change(&[Assigned], Pending, T0 + 20) };
    store.job_transition(None, id, &back).await.unwrap().expect("ASSIGNED -> PENDING");
    let job = fetch().await;
    assert_eq!((job.status, job.status_reason.as_deref(), job.started_at), (Pending, Some("retrying"), None));

    assert!(place(store, id, &[run_record(&original, &node, 1, 0, T0 + 30)], T0 + 30).await);
    store.job_transition(None, id, &job_change(&[Assigned], Running, T0 + 40)).await.unwrap().expect("runs");
    store
        .job_transition(None, id, &job_change(&[Running], Pending, T0 + 50))
        .await
        .unwrap()
        .expect("RUNNING -> PENDING");
    let job = fetch().await;
    assert_eq!((job.status, job.started_at, job.completed_at), (Pending, Some(Timestamp(T0 + 40)), None));

    assert!(place(store, id, &[run_record(&original, &node, 2, 0, T0 + 60)], T0 + 60).await);
    store.job_transition(None, id, &job_change(&[Assigned], Running, T0 + 70)).await.unwrap().expect("runs again");
    store.job_transition(None, id, &job_change(&[Running], Completed, T0 + 80)).await.unwrap().expect("completes");
    let job = fetch().await;
    assert_eq!(
        (job.status, job.started_at, job.completed_at),
        (Completed, Some(Timestamp(T0 + 40)), Some(Timestamp(T0 + 80)))
    );
    assert_eq!(store.run_list_for_job(id).await.unwrap().iter().map(|r| r.run.attempt).collect::<Vec<_>>(), [0, 1, 2]);

    for (i, (from, to)) in
        [(Assigned, Failed), (Assigned, Cancelled), (Running, Failed), (Running, Cancelled)].into_iter().enumerate()
    {
        let job = new_job(store, account, T0 + 100 + i as i64, i).await;
        assert!(place(store, job.uuid, &[run_record(&job, &node, 0, 0, T0 + 110)], T0 + 110).await);
        if from == Running {
            store.job_transition(None, job.uuid, &job_change(&[Assigned], Running, T0 + 120)).await.unwrap().unwrap();
        }
        let done = store.job_transition(None, job.uuid, &job_change(&[from], to, T0 + 130)).await.unwrap();
        let done = done.expect("to a terminal status");
        assert_eq!((done.status, done.completed_at), (to, Some(Timestamp(T0 + 130))));
    }
}

/// Many nodes report at once (PostgreSQL group-commits such status writes): each run
/// update and job transition answers its own compare-and-set, a stale one changes
/// nothing, a change the database refuses fails alone (never its batch-mates), and
/// every applied change has its one event, in id order.
pub async fn status_writes_at_once_answer_each_their_own(fixture: &mut dyn StoreFixture) {
    use JobRunStatus::*;
    const N: usize = 48;
    let store = fixture.store();
    let account = new_account(&*store, "Reports").await;
    let node = new_node(&*store, account, T0, 3).await;
    let mut placed = Vec::new();
    for i in 0..N {
        let job = new_job(&*store, account, T0 + 1 + i as i64, i).await;
        let run = run_record(&job, &node, 0, 0, T0 + 100);
        assert!(place(&*store, job.uuid, std::slice::from_ref(&run), T0 + 100).await);
        placed.push((job, run));
    }
    let start = store.event_horizon().await.unwrap().last_id;
    let tasks: Vec<_> = placed
        .iter()
        .enumerate()
        .map(|(i, (job, run))| {
            let (store, job, run) = (Arc::clone(&store), job.uuid, run.run.uuid);
            tokio::spawn(async move {
                let now = T0 + 200 + i as i64;
                match i % 4 {
                    // Stale: the run is not RUNNING yet.
                    0 => {
                        let stale = store.run_update(run, &status_change(&[Running], Completed, now)).await;
                        (stale.map(|r| r.is_none()), Ok(true))
                    }
                    // Refused by PostgreSQL (a NUL in text); SQLite may store it.
                    1 => {
                        let bad = RunUpdate {
                            reason: Some("bad\0reason".into()),
                            ..status_change(&[Assigned], Preparing, now)
                        };
                        let _ = store.run_update(run, &bad).await;
                        (Ok(true), Ok(true))
                    }
                    _ => {
                        let r = store.run_update(run, &status_change(&[Assigned], Running, now)).await;
                        let ran = r.map(|r| r.is_some_and(|r| r.run.status == Running && r.run.uuid == run));
                        let t = store
                            .job_transition(None, job, &job_change(&[JobStatus::Assigned], JobStatus::Running, now))
                            .await;
                        (ran, t.map(|j| j.is_some_and(|j| j.status == JobStatus::Running && j.uuid == job)))
                    }
                }
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (run, job) = task.await.expect("task");
        assert!(run.expect("run update") && job.expect("job transition"), "change {i} answered another's outcome");
    }
    for (i, (job, run)) in placed.iter().enumerate() {
        let r = store.run_fetch(None, run.run.uuid).await.unwrap().expect("run");
        let j = store.job_fetch(None, job.uuid).await.unwrap().expect("job");
        match i % 4 {
            0 => assert_eq!((r.run.status, j.status), (Assigned, JobStatus::Assigned), "stale: unchanged"),
            1 => assert!(matches!(r.run.status, Assigned | Preparing)),
            _ => assert_eq!((r.run.status, j.status), (Running, JobStatus::Running)),
        }
    }
    let events = store.event_list(Some(account), start, &[], 1000).await.unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order: {ids:?}");
    let running = N / 2;
    let count = |t: EventType| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count(EventType::JobStatusChanged), running, "one event per applied job transition");
    let bad_applied = placed.iter().enumerate().filter(|(i, _)| i % 4 == 1).count();
    let run_events = count(EventType::JobRunStatusChanged);
    assert!((running..=running + bad_applied).contains(&run_events), "one event per applied run update: {run_events}");
}

// ---------------------------------------------------------------------------------
// Durability

/// Nodes, runs, logs and placements are there after the store is reopened.
pub async fn cluster_survives_reopen(fixture: &mut dyn StoreFixture) {
    use JobRunStatus::*;
    let store = fixture.store();
    let account = new_account(&*store, "Durable").await;
    let node = full_node_record(account, T0);
    store.node_upsert(&node).await.unwrap();
    assert!(store.node_heartbeat(node.uuid, node.lease_epoch, T0 + 50, Some(&sample(33.0))).await.unwrap());
    let lost = new_node(&*store, account, T0 + 1, 2).await;
    assert!(store.node_mark_lost(lost.uuid, T0 + 10, T0 + 60).await.unwrap());
    let job = new_job(&*store, account, T0 + 2, 1).await;
    let run = run_record(&job, &node, 0, 0, T0 + 70);
    assert!(place(&*store, job.uuid, std::slice::from_ref(&run), T0 + 70).await);
    let running = RunUpdate { image_size_bytes: Some(42), ..status_change(&[Assigned], Running, T0 + 80) };
    let run_after = store.run_update(run.run.uuid, &running).await.unwrap().expect("applies");
    store.run_logs_append(run.run.uuid, "started ✓\n", 1024).await.unwrap();
    let node_after = store.node_fetch(None, node.uuid).await.unwrap();
    let lost_after = store.node_fetch(None, lost.uuid).await.unwrap();
    let job_after = store.job_fetch(None, job.uuid).await.unwrap();
    assert_eq!(job_after.as_ref().map(|j| (j.status, j.image_size_bytes)), Some((JobStatus::Assigned, Some(42))));
    drop(store);

    fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.node_fetch(None, node.uuid).await.unwrap(), node_after);
    assert_eq!(store.node_fetch(None, lost.uuid).await.unwrap(), lost_after);
    assert_eq!(store.job_fetch(None, job.uuid).await.unwrap(), job_after);
    assert_eq!(store.run_fetch(None, run.run.uuid).await.unwrap(), Some(run_after.clone()));
    assert_eq!(store.run_list_active().await.unwrap(), [run_after]);
    assert_eq!(store.run_logs_fetch(None, run.run.uuid).await.unwrap().as_deref(), Some("started ✓\n"));
    // And the reopened store still writes.
    assert!(store.node_heartbeat(node.uuid, node.lease_epoch, T0 + 90, None).await.unwrap());
}
