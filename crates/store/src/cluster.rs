//! Records of the cluster: nodes (machines running `gantry agent`) and job runs (one
//! execution of a job on one node), with the arguments of their conditional writes.
//!
//! Nodes and runs are written by the control plane's node protocol and the scheduler:
//! heartbeats, placements and run reports are frequent, so every write is a single
//! compare-and-set (or, for placements, one transaction per batch), group-committed on
//! SQLite like every other write.

use std::collections::BTreeMap;

use gantry_types::{
    AccountId, GpuModelId, JobId, NodeId,
    job_run::{JobRun, JobRunStatus, NodeUrl},
    node::{HardwareSample, NodeInventory, NodeStatus},
};

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
    /// The run; `logs` is always `None` here (see `Store::run_logs_fetch`).
    pub run: JobRun,
    /// Cores reserved on the node.
    pub cpu: u32,
    /// RAM reserved on the node, GB.
    pub ram_gb: f64,
    /// Disk reserved on the node, GB.
    pub storage_gb: f64,
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

/// Which runs a list returns; an empty list means "no constraint".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    /// Runs of these jobs.
    pub job_uuids: Vec<JobId>,
    /// Runs in these statuses.
    pub statuses: Vec<JobRunStatus>,
    /// Runs on these nodes.
    pub node_uuids: Vec<NodeId>,
}
