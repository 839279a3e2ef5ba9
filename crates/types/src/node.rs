//! Nodes (API.md §4.9) and the node agent protocol's registration and heartbeat
//! bodies.
//!
//! The upstream node object is shaped for a console (`cpus`, `gpus`, `rams`,
//! `hard_drives`, `latest_hardware_event`); Gantry fills it from what the agent
//! registers and reports, and adds what scheduling needs (`region_code`, `labels`,
//! `is_draining`, `lease_epoch`, each GPU's `index`/`uuid`/`gpu_registry_uuid`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AccountId, GpuModelId, NodeId};
use crate::num;
use crate::time::Timestamp;

/// Whether the control plane hears from a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Heartbeats arrive; the node may receive runs (unless draining).
    Online,
    /// Heartbeats stopped; its runs were failed and it receives nothing until it
    /// registers again (with a new lease epoch).
    Lost,
}

impl NodeStatus {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "ONLINE",
            Self::Lost => "LOST",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Online, Self::Lost].into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// A CPU package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeCpu {
    /// Model name.
    pub name: String,
    /// Cores offered to jobs.
    pub num_cores: u32,
}

/// A GPU as the agent discovered it (NVML or `--fake-gpus`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InventoryGpu {
    /// Device index on the node.
    pub index: u32,
    /// Device UUID (`GPU-...`), used to pin containers to it.
    pub uuid: String,
    /// Name as NVML reports it (`NVIDIA GeForce RTX 4090`).
    pub name: String,
    /// Total memory, GB.
    pub vram_gb: f64,
}

/// What a node offers, as registered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInventory {
    /// CPU packages.
    #[serde(default)]
    pub cpus: Vec<NodeCpu>,
    /// RAM offered to jobs, GB.
    #[serde(default)]
    pub ram_gb: f64,
    /// Disk offered to jobs, GB.
    #[serde(default)]
    pub storage_gb: f64,
    /// GPUs.
    #[serde(default)]
    pub gpus: Vec<InventoryGpu>,
}

impl NodeInventory {
    /// Total cores.
    pub fn cores(&self) -> u32 {
        self.cpus.iter().map(|c| c.num_cores).sum()
    }
}

/// `POST /v1/nodes/register` body (Gantry's node protocol).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RegisterNodeRequest {
    /// The node's uuid from an earlier registration (an agent restart re-attaches);
    /// absent for a new node.
    pub node_uuid: Option<NodeId>,
    /// Display name (e.g. the host name).
    pub name: Option<String>,
    /// Region code (API.md §4.11).
    pub region_code: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Address clients reach the node's published ports on.
    pub hostname: Option<String>,
    /// Hardware.
    pub inventory: Option<NodeInventory>,
}

/// Load and free capacity the agent measured (one heartbeat's hardware event).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HardwareSample {
    /// Average CPU load, 0-100.
    #[serde(default)]
    pub cpu_load: f64,
    /// Free RAM, GB.
    #[serde(default)]
    pub ram_free_gb: f64,
    /// Free disk, GB.
    #[serde(default)]
    pub storage_free_gb: f64,
    /// Per GPU (by index): load 0-100 and free VRAM, GB.
    #[serde(default)]
    pub gpus: Vec<GpuSample>,
}

/// One GPU's sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuSample {
    /// Device index.
    pub index: u32,
    /// Load, 0-100.
    #[serde(default)]
    pub load: f64,
    /// Free VRAM, GB.
    #[serde(default)]
    pub vram_free_gb: f64,
}

/// The upstream `node_hardware_event` object: a node's latest measurements, in the
/// nested shape upstream consoles read (`metadata.cpu.average`, `metadata.gpu.gpus[]`,
/// `metadata.ram`, `metadata.storage.hard_drives[]`). Built from the last
/// [`HardwareSample`] the agent sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeHardwareEvent {
    /// Always `node_hardware_event`.
    pub object: String,
    /// When it was measured (the heartbeat that carried it), epoch ms.
    pub timestamp_ms: i64,
    /// Same instant, RFC 3339.
    pub created_at: Timestamp,
    /// Same instant, RFC 3339.
    pub updated_at: Timestamp,
    /// The node it describes.
    pub node: NodeId,
    /// The measurements.
    pub metadata: serde_json::Value,
}

impl NodeHardwareEvent {
    /// The upstream-shaped event for `sample`, measured at `at_ms` on a node with `inventory`.
    pub fn from_sample(node: NodeId, inventory: &NodeInventory, sample: &HardwareSample, at_ms: i64) -> Self {
        let gpus: Vec<serde_json::Value> = inventory
            .gpus
            .iter()
            .map(|g| {
                let s = sample.gpus.iter().find(|x| x.index == g.index);
                serde_json::json!({
                    "name": g.name,
                    "load": s.map_or(0.0, |x| x.load),
                    "vram": {"free": s.map_or(g.vram_gb, |x| x.vram_free_gb), "total": g.vram_gb},
                })
            })
            .collect();
        let gpu_average = if gpus.is_empty() {
            0.0
        } else {
            sample.gpus.iter().map(|g| g.load).sum::<f64>() / inventory.gpus.len() as f64
        };
        let metadata = serde_json::json!({
            "cpu": {"average": sample.cpu_load, "cores": []},
            "gpu": {"gpus": gpus, "average": gpu_average},
            "ram": {"free": sample.ram_free_gb, "total": inventory.ram_gb},
            "storage": {"hard_drives": [{"name": "jobs", "model": "", "free_capacity": sample.storage_free_gb,
                                         "total_capacity": inventory.storage_gb}]},
        });
        Self {
            object: "node_hardware_event".into(),
            timestamp_ms: at_ms,
            created_at: Timestamp(at_ms),
            updated_at: Timestamp(at_ms),
            node,
            metadata,
        }
    }
}

/// A GPU in the node object (upstream fields plus Gantry's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeGpu {
    /// Model name.
    pub name: String,
    /// Free VRAM, GB.
    #[serde(serialize_with = "num::gb")]
    pub vram_gb_available: f64,
    /// Total VRAM, GB.
    #[serde(serialize_with = "num::gb")]
    pub vram_gb_max: f64,
    /// Device index.
    pub index: u32,
    /// Device UUID.
    pub uuid: String,
    /// The registry model it matched, if any.
    pub gpu_registry_uuid: Option<GpuModelId>,
    /// Assigned to a run right now.
    pub in_use: bool,
}

/// RAM in the node object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeRam {
    /// Free, GB.
    #[serde(serialize_with = "num::gb")]
    pub memory_gb_available: f64,
    /// Offered, GB.
    #[serde(serialize_with = "num::gb")]
    pub memory_gb_max: f64,
}

/// A disk in the node object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeDrive {
    /// Name.
    pub name: String,
    /// Free, GB.
    #[serde(serialize_with = "num::gb")]
    pub available_capacity_gb: f64,
    /// Offered, GB.
    #[serde(serialize_with = "num::gb")]
    pub max_capacity_gb: f64,
}

/// The node object (API.md §4.9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Always `node`.
    pub object: String,
    /// Upstream's Mongo-style id; equal to `uuid`.
    #[serde(rename = "_id")]
    pub id: NodeId,
    /// The node's ID.
    pub uuid: NodeId,
    /// Display name.
    pub name: String,
    /// Upstream reputation score; Gantry reports a neutral 50.
    pub reputation: u32,
    /// ONLINE or LOST.
    pub status: NodeStatus,
    /// No new runs while draining; running ones finish.
    pub is_draining: bool,
    /// Region code.
    pub region_code: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Where published ports are reached.
    pub hostname: Option<String>,
    /// CPU packages.
    pub cpus: Vec<NodeCpu>,
    /// GPUs.
    pub gpus: Vec<NodeGpu>,
    /// RAM.
    pub rams: Vec<NodeRam>,
    /// Disks.
    pub hard_drives: Vec<NodeDrive>,
    /// Total RAM, GB (upstream's camelCase field).
    #[serde(rename = "ramTotal", serialize_with = "num::gb")]
    pub ram_total: f64,
    /// Last heartbeat.
    pub last_seen_at: Option<Timestamp>,
    /// The latest hardware event (upstream shape), from the last heartbeat's sample.
    pub latest_hardware_event: Option<NodeHardwareEvent>,
    /// Fencing epoch: bumped when a lost node registers again.
    pub lease_epoch: i64,
    /// Owner.
    pub account_uuid: AccountId,
    /// Gantry addition: what the node's billed run time earned its owner; shown to
    /// the owner only (absent for anyone else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earnings: Option<crate::billing::NodeEarnings>,
    /// Registered.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}
