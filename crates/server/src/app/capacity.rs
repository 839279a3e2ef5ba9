//! A node's free capacity: the one place it is computed.
//!
//! Capacity is derived, never stored: a node's free cores, RAM, disk and GPUs are its
//! inventory minus what its active runs (ASSIGNED, PREPARING, RUNNING) reserve. The
//! scheduler loop (as the planner's `NodeView`s), compute offers and the node objects
//! of the API all read it from here, so they can never disagree about what is free.

use std::collections::HashMap;

use gantry_scheduler::{GpuView, NodeView};
use gantry_store::{NodeRecord, RunRecord};
use gantry_types::NodeId;
use gantry_types::node::NodeStatus;

/// What is free on one node. RAM and storage may be negative when a node re-registered
/// with less than its runs reserve; callers showing them clamp at zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Free {
    /// Cores.
    pub cpu: u32,
    /// RAM, GB.
    pub ram_gb: f64,
    /// Disk for jobs, GB.
    pub storage_gb: f64,
    /// Per inventory GPU (same order as `inventory.gpus`): whether an active run holds it.
    pub gpu_in_use: Vec<bool>,
}

/// Whether new runs may be placed on `node`: online and not draining.
pub fn is_schedulable(node: &NodeRecord) -> bool {
    node.status == NodeStatus::Online && !node.is_draining
}

/// The free capacity of `node`, given *its* active runs.
pub fn free(node: &NodeRecord, runs: &[&RunRecord]) -> Free {
    let used_cpu: u32 = runs.iter().map(|r| r.cpu).sum();
    Free {
        cpu: node.inventory.cores().saturating_sub(used_cpu),
        ram_gb: node.inventory.ram_gb - runs.iter().map(|r| r.ram_gb).sum::<f64>(),
        storage_gb: node.inventory.storage_gb - runs.iter().map(|r| r.storage_gb).sum::<f64>(),
        gpu_in_use: node
            .inventory
            .gpus
            .iter()
            .map(|g| runs.iter().any(|r| r.run.gpu_indices.contains(&g.index)))
            .collect(),
    }
}

/// Active runs grouped by node.
pub fn runs_by_node(active: &[RunRecord]) -> HashMap<NodeId, Vec<&RunRecord>> {
    let mut by_node: HashMap<NodeId, Vec<&RunRecord>> = HashMap::new();
    for r in active {
        by_node.entry(r.run.node_uuid).or_default().push(r);
    }
    by_node
}

/// Every node's capacity as the planner sees it.
pub fn node_views(nodes: &[NodeRecord], active: &[RunRecord]) -> Vec<NodeView> {
    let by_node = runs_by_node(active);
    nodes
        .iter()
        .map(|n| {
            let free = free(n, by_node.get(&n.uuid).map(Vec::as_slice).unwrap_or(&[]));
            NodeView {
                id: n.uuid,
                schedulable: is_schedulable(n),
                region: n.region_code.clone(),
                free_cpu: free.cpu,
                free_ram_gb: free.ram_gb,
                free_storage_gb: free.storage_gb,
                gpus: n
                    .inventory
                    .gpus
                    .iter()
                    .zip(free.gpu_in_use)
                    .enumerate()
                    .map(|(i, (g, in_use))| GpuView {
                        index: g.index,
                        model: n.gpu_models.get(i).copied().flatten(),
                        vram_gb: g.vram_gb,
                        free: !in_use,
                    })
                    .collect(),
            }
        })
        .collect()
}
