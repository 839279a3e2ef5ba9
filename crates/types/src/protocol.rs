//! The node agent protocol: how `gantry agent` and the control plane converge.
//!
//! Agent-initiated only (nodes may sit behind NAT; the control plane never dials a
//! node). After registering (`POST /v1/nodes/register`), the agent loops on
//! `POST /v1/nodes/{uuid}/sync`: each call is a heartbeat, carries the agent's
//! *observed* run states, and returns the node's *desired* runs. When the agent
//! already holds the current desired `version`, the call long-polls (up to
//! `wait_ms`) so a new assignment reaches the agent within milliseconds.
//!
//! Reconciliation, not commands: the agent starts what is desired and not running,
//! and stops what runs and is not desired (or is desired `STOP`). Every desired state
//! carries the node's `lease_epoch`; a node declared lost gets a new epoch when it
//! registers again, and a sync with a stale epoch is answered `fenced`, telling the
//! agent that none of its old runs are desired any more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AccountId, JobId, JobRunId, NodeId};
use crate::job::Volume;
use crate::job_run::{JobRunStatus, NodeUrl};
use crate::node::HardwareSample;

/// What the agent saw of one run since its last sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObservedRun {
    /// The run.
    pub run_uuid: JobRunId,
    /// PREPARING, RUNNING, COMPLETED (exit 0), FAILED, or CANCELLED (stopped on request).
    pub status: JobRunStatus,
    /// Container exit code, once exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why (e.g. "image pull failed: unauthorized").
    #[serde(default)]
    pub reason: Option<String>,
    /// Published ports, once reachable.
    #[serde(default)]
    pub node_urls: Option<Vec<NodeUrl>>,
    /// New container output since the last sync.
    #[serde(default)]
    pub logs: Option<String>,
    /// Size of the pulled image.
    #[serde(default)]
    pub image_size_bytes: Option<i64>,
}

/// `POST /v1/nodes/{uuid}/sync` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncRequest {
    /// The epoch the agent's runs were granted under.
    pub lease_epoch: i64,
    /// Load and free capacity now.
    #[serde(default)]
    pub sample: Option<HardwareSample>,
    /// Run states that changed (or all, after a restart).
    #[serde(default)]
    pub runs: Vec<ObservedRun>,
    /// The desired-state version the agent holds; the call waits while it is current.
    #[serde(default)]
    pub desired_version: Option<u64>,
    /// How long to wait for a change, ms (capped by the server at 25 s).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Asks for a relay token in the answer (an agent whose ports a relay carries).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub want_relay_token: bool,
}

/// Whether a desired run should be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredAction {
    /// Keep it running (start it if it is not).
    Run,
    /// Stop it (cancel or run timeout) and report CANCELLED or FAILED.
    Stop,
}

/// Everything the agent needs to run one container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunSpec {
    /// Image (may include a registry host).
    pub image: String,
    /// Tag (`latest` when the job gave none).
    pub tag: String,
    /// Registry host for private images.
    pub registry_host: Option<String>,
    /// Registry user.
    pub registry_user: Option<String>,
    /// Registry password, in clear (sent only to the node running the job, over the
    /// signed channel).
    pub registry_secret: Option<String>,
    /// Environment: the job's, plus `CONTAINER_ACCESS_TOKEN`, `SSH_PUBKEY` and `GANTRY_*`.
    pub env: BTreeMap<String, String>,
    /// Container ports to publish.
    pub ports: Vec<u16>,
    /// Source CIDRs admitted to the published ports; empty = anyone.
    pub allowed_ips: Vec<String>,
    /// Image mounts.
    pub volumes: Vec<Volume>,
    /// GPU device indices on this node.
    pub gpu_indices: Vec<u32>,
    /// GPU device UUIDs, in the same order.
    pub gpu_uuids: Vec<String>,
    /// CPU cores to limit the container to (0 = no limit).
    pub cpu: u32,
    /// Memory limit, GB (0 = no limit).
    pub ram_gb: f64,
    /// BATCH run timeout, ms (enforced by the control plane too).
    pub max_timeout_run_ms: Option<i64>,
    /// How long preparing (pulls included) may take, ms: the agent gives up on a pull
    /// that has not finished by then and says so, rather than leaving the run hanging.
    #[serde(default)]
    pub max_timeout_start_ms: Option<i64>,
    /// The account the job belongs to: the agent gives each account on the node a
    /// network of its own, shared by that account's runs (Gantry's; absent from older
    /// servers, whose runs then get one network each).
    #[serde(default)]
    pub account_uuid: Option<AccountId>,
}

/// One run the node should hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredRun {
    /// The run.
    pub run_uuid: JobRunId,
    /// Its job.
    pub job_uuid: JobId,
    /// Run or stop.
    pub action: DesiredAction,
    /// Its container.
    pub spec: RunSpec,
}

/// `POST /v1/nodes/{uuid}/sync` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredState {
    /// The node.
    pub node_uuid: NodeId,
    /// The node's current epoch.
    pub lease_epoch: i64,
    /// True when the agent's epoch is stale (the node was declared lost): none of
    /// its runs are desired; it must stop them and register again.
    pub fenced: bool,
    /// Version of this desired state; send it back to long-poll for the next.
    pub version: u64,
    /// Runs the node should hold.
    pub runs: Vec<DesiredRun>,
    /// How often to sync when nothing changes, ms.
    pub sync_interval_ms: u64,
    /// A token admitting this node at the control plane's relays, when asked for
    /// (`want_relay_token`); it expires, so agents ask on every sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_token: Option<String>,
    /// The relay (`HOST:PORT` of its tunnel listener) the control plane offers, when it
    /// runs one (`gantry server --relay`); agents started with `--relay auto` use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// `POST /v1/nodes/register` answer: the node and the epoch to sync under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    /// The node as the control plane sees it.
    pub node: crate::node::Node,
    /// The epoch to send with every sync.
    pub lease_epoch: i64,
}

/// Most runs one `POST /v1/relays/ended-runs` asks about (a relay with more asks in
/// several requests).
pub const MAX_ENDED_RUNS_QUERY: usize = 1000;

/// `POST /v1/relays/ended-runs` body: the runs whose ports a relay carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndedRunsQuery {
    /// Run uuids, at most [`MAX_ENDED_RUNS_QUERY`].
    pub runs: Vec<crate::JobRunId>,
}

/// `POST /v1/relays/ended-runs` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndedRuns {
    /// Those of the asked runs that no node should carry any more: ended, being
    /// cancelled, or unknown to this control plane.
    pub ended: Vec<crate::JobRunId>,
}

/// `GET /v1/relays/token-key` answer: what relays verify nodes' relay tokens with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayTokenKey {
    /// The Ed25519 public key (hex) relay tokens are signed with.
    pub public_key: String,
    /// The token format it verifies (`v1`).
    pub format: String,
}
