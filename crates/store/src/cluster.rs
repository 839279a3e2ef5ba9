//! Records of the cluster: nodes (machines running `gantry agent`) and job runs (one
//! execution of a job on one node), with the arguments of their conditional writes.
//!
//! Nodes and runs are written by the control plane's node protocol and the scheduler:
//! heartbeats, placements and run reports are frequent, so every write is a single
//! compare-and-set (or, for placements, one transaction per batch), group-committed on
//! SQLite like every other write.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gantry_types::{
    AccountId, GpuModelId, JobId, JobRunId, NodeId,
    job_run::{JobRun, JobRunStatus, NodeUrl},
    list::Paging,
    node::{HardwareSample, NodeInventory, NodeStatus},
};

use crate::{Page, StoreResult};

/// One node's latest heartbeat, for [`ClusterStore::node_heartbeats`].
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat {
    /// The node.
    pub node: NodeId,
    /// The epoch the node synced under (applies only while the node still has it).
    pub lease_epoch: i64,
    /// When the node was heard (epoch ms); last_seen_at_ms never moves back.
    pub seen_at_ms: i64,
    /// Its latest sample, if it sent one since the last write.
    pub sample: Option<HardwareSample>,
}

/// What loss detection needs of an ONLINE node ([`ClusterStore::node_list_online`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLiveness {
    /// ID.
    pub uuid: NodeId,
    /// Display name (for the reason its runs end with).
    pub name: String,
    /// Its stored heartbeat, epoch ms.
    pub last_seen_at_ms: i64,
}

/// A node as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    /// ID.
    pub uuid: NodeId,
    /// Owner (the account whose key registered it).
    pub account_uuid: AccountId,
    /// Display name.
    pub name: String,
    /// Region code.
    pub region_code: Option<String>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Where published ports are reached.
    pub hostname: Option<String>,
    /// Hardware, as registered.
    pub inventory: NodeInventory,
    /// The registry model of each inventory GPU, in the order of `inventory.gpus`.
    pub gpu_models: Vec<Option<GpuModelId>>,
    /// ONLINE or LOST.
    pub status: NodeStatus,
    /// No new runs while draining (kept across re-registrations).
    pub is_draining: bool,
    /// Fencing epoch of the current registration.
    pub lease_epoch: i64,
    /// Last registration or heartbeat, epoch ms.
    pub last_seen_at_ms: i64,
    /// The latest hardware sample.
    pub latest_sample: Option<HardwareSample>,
    /// First registration, epoch ms.
    pub created_at_ms: i64,
    /// Last registration or status change, epoch ms (heartbeats do not move it).
    pub updated_at_ms: i64,
}

/// A job run as stored: the wire object plus what it reserves on its node.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The run; `logs` is always `None` here (see `ClusterStore::run_logs_fetch`).
    pub run: JobRun,
    /// Cores reserved on the node.
    pub cpu: u32,
    /// RAM reserved on the node, GB.
    pub ram_gb: f64,
    /// Disk reserved on the node, GB.
    pub storage_gb: f64,
}

/// What the run and GPU gauges need of the active runs
/// ([`ClusterStore::run_count_active`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveRunCounts {
    /// Active runs per status; a status without runs is absent.
    pub by_status: std::collections::HashMap<JobRunStatus, u64>,
    /// The GPUs the active runs hold, as (node, device index), each once.
    pub gpus_held: std::collections::BTreeSet<(NodeId, u32)>,
}

/// One job's placement: its runs (one per gang member), created atomically with the
/// job's PENDING -> ASSIGNED transition.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPlacement {
    /// The job; placed only while it is PENDING.
    pub job: JobId,
    /// Its new runs (each `run.job_uuid` is `job`).
    pub runs: Vec<RunRecord>,
    /// Time of the placement, epoch ms (the job's `updated_at`).
    pub now_ms: i64,
}

/// A conditional run change: applied only while the run's status is one of `from`
/// (compare-and-set), like [`crate::JobTransition`].
#[derive(Clone, Debug, PartialEq)]
pub struct RunUpdate {
    /// Statuses the run must be in.
    pub from: Vec<JobRunStatus>,
    /// New status.
    pub to: JobRunStatus,
    /// New `status_reason` (replaces the old one, also when `None`).
    pub reason: Option<String>,
    /// Time of the change, epoch ms (`updated_at`; `started_at` on the first RUNNING;
    /// `ended_at` when `to` is terminal).
    pub now_ms: i64,
    /// Set when `Some`.
    pub exit_code: Option<i32>,
    /// Replaced when `Some`.
    pub node_urls: Option<Vec<NodeUrl>>,
    /// When `Some`, recorded as the run's job's `image_size_bytes`.
    pub image_size_bytes: Option<i64>,
}

/// Which runs a list returns (the `GET /v1/job-runs` filters).
pub type RunFilter = gantry_types::list::JobRunFilter;

/// Nodes and job runs in the store.
#[async_trait]
pub trait ClusterStore {
    /// Inserts a node or, for an existing uuid of the same account, replaces its
    /// registration fields (name, region, labels, hostname, inventory, gpu_models,
    /// status, lease_epoch, last_seen, updated_at; latest_sample only when `Some`),
    /// keeping created_at and is_draining. `MissingReference` if the account does not
    /// exist; `Conflict` if the uuid belongs to another account (nothing changes).
    async fn node_upsert(&self, node: &NodeRecord) -> StoreResult<()>;
    /// Fetches a node in scope.
    async fn node_fetch(&self, account: Option<AccountId>, id: NodeId) -> StoreResult<Option<NodeRecord>>;
    /// Lists nodes in scope by (created_at, uuid), newest first unless `paging` says
    /// otherwise; `statuses` narrows (empty = all).
    async fn node_list(
        &self,
        account: Option<AccountId>,
        statuses: &[NodeStatus],
        paging: Paging,
    ) -> StoreResult<Page<NodeRecord>>;
    /// Every node, unpaged, oldest first (the scheduler's snapshot).
    async fn node_list_all(&self) -> StoreResult<Vec<NodeRecord>>;
    /// Every ONLINE node's liveness, in no particular order: loss detection's read,
    /// twice a second, which decodes none of a node's inventory or sample (reading
    /// every full node row for it was a cost of its own at 10,000 nodes).
    async fn node_list_online(&self) -> StoreResult<Vec<NodeLiveness>>;
    /// The nodes of `ids` (no scope) in one read, in no particular order; unknown
    /// ids are left out. The scheduler rereads the nodes a mass loss or a burst of
    /// reports changed with it, rather than one read per node.
    async fn node_fetch_many(&self, ids: &[NodeId]) -> StoreResult<Vec<NodeRecord>>;
    /// A heartbeat: moves last_seen_at_ms forward to `now_ms` (and replaces
    /// latest_sample when `Some`) only if the node is ONLINE with `lease_epoch`;
    /// returns whether it applied. Does not move updated_at. Group-committed on SQLite.
    async fn node_heartbeat(
        &self,
        id: NodeId,
        lease_epoch: i64,
        now_ms: i64,
        sample: Option<&HardwareSample>,
    ) -> StoreResult<bool>;
    /// Many heartbeats in one write (the server's coalesced heartbeats, flushed about
    /// once a second): each applies as [`ClusterStore::node_heartbeat`] would, alone
    /// (a stale epoch, a LOST or unknown node skip theirs). Returns how many applied.
    async fn node_heartbeats(&self, beats: &[Heartbeat]) -> StoreResult<u64>;
    /// Sets is_draining (updated_at moves only when it changes); the node after, or
    /// `None` when it does not exist in scope.
    async fn node_set_draining(
        &self,
        account: Option<AccountId>,
        id: NodeId,
        draining: bool,
        now_ms: i64,
    ) -> StoreResult<Option<NodeRecord>>;
    /// Marks an ONLINE node LOST if its last_seen_at_ms < `seen_before_ms`
    /// (compare-and-set, so a heartbeat racing in wins); returns whether it did.
    async fn node_mark_lost(&self, id: NodeId, seen_before_ms: i64, now_ms: i64) -> StoreResult<bool>;
    /// [`ClusterStore::node_mark_lost`] for many nodes in ONE transaction (fenced like
    /// it, with one event per node marked): each of `ids` that is ONLINE with
    /// last_seen_at_ms < `seen_before_ms` becomes LOST; the others (heard since,
    /// already LOST, unknown) are skipped. Returns the nodes marked, in no particular
    /// order. A mass loss (a rack, a partition: hundreds of nodes) is then a few
    /// commits instead of one per node.
    async fn node_mark_lost_many(&self, ids: &[NodeId], seen_before_ms: i64, now_ms: i64) -> StoreResult<Vec<NodeId>>;

    /// Places jobs, in ONE transaction per call (group-committed on SQLite): for each
    /// placement whose job is still PENDING, sets the job ASSIGNED (status_reason
    /// cleared, updated_at = `now_ms`) and inserts its runs; any other job is skipped
    /// and gets no runs (so is a repeated job: the first placement wins). Returns the
    /// jobs placed, in the order given. An error (a run on an unknown node:
    /// `MissingReference`; a duplicate run uuid: `Conflict`) places nothing.
    async fn run_place(&self, placements: &[JobPlacement]) -> StoreResult<Vec<JobId>>;
    /// Fetches a run in scope (without logs).
    async fn run_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<RunRecord>>;
    /// Lists runs in scope matching `filter`, by (created_at, uuid), newest first
    /// unless `paging` says otherwise.
    async fn run_list(
        &self,
        account: Option<AccountId>,
        filter: &RunFilter,
        paging: Paging,
    ) -> StoreResult<Page<RunRecord>>;
    /// Every non-terminal run (ASSIGNED, PREPARING, RUNNING), unpaged, oldest first.
    async fn run_list_active(&self) -> StoreResult<Vec<RunRecord>>;
    /// [`Self::run_list_active`], except that each run's `job_snapshot` holds only the
    /// job's timeouts (`max_timeout_start_ms`, `max_timeout_run_ms`; null when the job
    /// has none): for the callers that read every active run again and again (the
    /// lifecycle pass, about once a second; the model's rebuild; billing; gauges) and
    /// need nothing else of the job. The snapshots are most of a run's bytes (about a
    /// kilobyte each), and reading and decoding thousands of them every pass was a
    /// burst of CPU that the placements and submits of that moment waited out; the
    /// timeouts have columns of their own (migration 17), read instead. (A run placed
    /// by a binary older than that keeps its whole snapshot.)
    async fn run_list_active_brief(&self) -> StoreResult<Vec<RunRecord>>;
    /// The active runs counted per status, and the GPUs they hold: for the gauges,
    /// every few seconds. Counted by the database, which sends a row per status, and
    /// per status, node and GPU list held: reading every active run (even brief) for
    /// this was 30-80 ms of PostgreSQL's time at 10,000 runs, a stall placements
    /// waited out.
    async fn run_count_active(&self) -> StoreResult<ActiveRunCounts>;
    /// The active runs a lifecycle pass at `now_ms` acts on, brief as in
    /// [`Self::run_list_active_brief`]: those on a LOST node, and those past their
    /// job's start limit (ASSIGNED, PREPARING: since created) or run limit (RUNNING:
    /// since started). The caller decides with the limits the snapshots hold
    /// (`gantry_lifecycle::timeouts`) and with the nodes it reads after: more is
    /// harmless, a run left out would never time out. Filtered by the database, so a
    /// pass no longer reads every active run (at 10,000 of them, 60-100 ms of
    /// PostgreSQL's CPU per pass, which the submits and placements of that moment
    /// waited out).
    async fn run_list_due(&self, now_ms: i64) -> StoreResult<Vec<RunRecord>>;
    /// Of `ids`, the runs still wanted on their nodes: active (ASSIGNED, PREPARING,
    /// RUNNING) and of a job ASSIGNED or RUNNING, so not being cancelled or ended (the
    /// rule of a node's desired state). Unknown ids are left out; order is unspecified.
    /// One indexed query, whatever the run count: a relay asks every half second
    /// which of the runs it carries ended (`POST /v1/relays/ended-runs`).
    async fn run_still_wanted(&self, ids: &[JobRunId]) -> StoreResult<Vec<JobRunId>>;
    /// Every run of one job, oldest first: (created_at, attempt, rank, uuid).
    async fn run_list_for_job(&self, job: JobId) -> StoreResult<Vec<RunRecord>>;
    /// Applies `update` if the run is in one of `update.from` (compare-and-set): sets
    /// started_at on the first move to RUNNING, ended_at and duration (ended -
    /// started, when it started) when `to` is terminal, exit_code and node_urls when
    /// `Some`, and the job's image_size_bytes when `Some`. The run after, or `None`
    /// when it is absent or in another status.
    async fn run_update(&self, id: JobRunId, update: &RunUpdate) -> StoreResult<Option<RunRecord>>;
    /// [`ClusterStore::run_update`] for many runs in ONE transaction (fenced like it,
    /// with one event per run changed): each update applies or not as it would alone.
    /// The runs after, in the order given (`None` where the compare-and-set did not
    /// apply). An error writes nothing. The runs of a mass loss end in a few commits.
    async fn run_update_many(&self, updates: &[(JobRunId, RunUpdate)]) -> StoreResult<Vec<Option<RunRecord>>>;
    /// Appends container output, keeping only the newest `max_bytes` bytes (cut at a
    /// UTF-8 boundary). Returns the bytes ever appended to the run, this chunk
    /// included (see [`LogTail`]). `MissingReference` for an unknown run.
    async fn run_logs_append(&self, id: JobRunId, chunk: &str, max_bytes: usize) -> StoreResult<u64>;
    /// A run's stored logs with the bytes ever appended, for a follower catching up
    /// (no scope: the caller checked it); `None` when the run does not exist.
    async fn run_logs_tail(&self, id: JobRunId) -> StoreResult<Option<LogTail>>;
    /// A run's logs (`Some("")` before any output), `None` when the run does not
    /// exist in scope.
    async fn run_logs_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<String>>;
}

/// A run's stored logs and how many bytes were ever appended to it. The logs keep
/// only the newest bytes, so they are the last `logs.len()` of `appended_bytes`: a
/// reader that has seen the first N bytes of the output has not seen the last
/// `appended_bytes - N` (all of them still stored when that is at most `logs.len()`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogTail {
    /// The stored (newest) output.
    pub logs: String,
    /// Bytes ever appended.
    pub appended_bytes: u64,
}
