//! The placement planner: a pure function from a snapshot of the cluster ([`NodeView`]s) and
//! the pending jobs ([`JobRequest`]s) to placements ([`Plan`]).
//!
//! The control plane takes the snapshot, calls [`plan`], and persists what comes back; the
//! scheduler itself never touches a store, a socket or a clock, so the same input always
//! gives the same plan (calling it twice is safe, and tests need no fakes).
//!
//! # Guarantees
//!
//! - **No over-commit.** Across one plan, a node's cpu, RAM and storage are used at most up
//!   to what its view says is free, each GPU is assigned at most once, a GPU with
//!   `free: false` never is, and unschedulable nodes get nothing.
//! - **Every placement fits.** cpu, RAM, storage, `gpu_count` GPUs each of an allowed model
//!   with enough free VRAM, and an allowed region, on each of the job's nodes.
//! - **Gangs are all or nothing.** A job with `node_count = N` gets N distinct nodes in the
//!   same plan, or nothing: partial capacity is never held.
//! - **FIFO within an account, round-robin across accounts.** Accounts take turns (one job per
//!   account per round, accounts ordered by their oldest pending job), so a burst from one
//!   account cannot starve another's single job. A job that does not fit is skipped and
//!   later jobs may still go (backfill); see the README for the starvation trade-off.
//! - **No lost opportunity.** A job left unplaced does not fit into the capacity left after
//!   the plan's placements (capacity only shrinks during a plan, so a job that did not fit
//!   when its turn came cannot fit at the end).
//! - **Deterministic.** Ties are broken by [`NodeId`], job id, GPU index; hash maps are used
//!   only for lookups, never for ordering.
//!
//! # Algorithm
//!
//! Phases (details in `README.md`): (1) *snapshot*: keep schedulable nodes, sorted by id,
//! with their model and region names interned to small integers; (2) *index*: put each node
//! into ordered sets keyed by `(free GPUs of a model, free cpu, node)`, one set family per
//! GPU model plus one over all GPUs (which also serves jobs that need no GPU), each both for
//! the whole cluster and per region; (3) *order*: FIFO within accounts, round-robin across
//! them; (4) *decide*: for each job, walk only its candidate sets from the smallest
//! sufficient key upward and take the first nodes that fit (best fit), preferring nodes not
//! in `avoid_nodes`; commit the placement and move the touched nodes in the index. A
//! requirement *shape* that found fewer than N fitting nodes is remembered, so identical
//! jobs that cannot fit cost O(1) each after the first.
//!
//! [`explain`] says, for a person, why a job does not fit; it is separate so the planner's
//! loop never formats strings.

mod explain;
mod norm;
mod planner;
mod queue;

#[cfg(test)]
mod tests;

use gantry_types::ids::{AccountId, GpuModelId, JobId, NodeId};

pub use explain::explain;
pub use queue::queue_shares;

/// One GPU of a node, as the snapshot saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuView {
    /// The GPU's index on its node (what the agent passes to the container runtime).
    pub index: u32,
    /// The GPU's model; `None` when the model is unknown to the registry (such a GPU only
    /// serves jobs that accept any model).
    pub model: Option<GpuModelId>,
    /// Free VRAM of this GPU, in GB.
    pub vram_gb: f64,
    /// Not assigned to a run.
    pub free: bool,
}

/// One node, as the snapshot saw it: what is free on it now.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub id: NodeId,
    /// Online and not draining. Unschedulable nodes get nothing.
    pub schedulable: bool,
    pub region: Option<String>,
    pub free_cpu: u32,
    pub free_ram_gb: f64,
    pub free_storage_gb: f64,
    pub gpus: Vec<GpuView>,
}

/// A pending job's requirements. The capacity fields are **per node**: a gang of N nodes
/// needs them on each of its N nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRequest {
    pub id: JobId,
    pub account: AccountId,
    /// Epoch ms; FIFO order within the account (ties by `id`).
    pub created_at_ms: i64,
    pub cpu: u32,
    pub ram_gb: f64,
    pub storage_gb: f64,
    pub gpu_count: u32,
    /// `None`: any model (including GPUs whose model is unknown); `Some(list)`: each assigned
    /// GPU's model must be in the list.
    pub gpu_models: Option<Vec<GpuModelId>>,
    /// Per assigned GPU: the GPU's free VRAM must be at least this.
    pub min_vram_gb: f64,
    /// `None`: anywhere; `Some(list)`: the node's region must be in the list (a node without
    /// a region never matches a restricted job).
    pub regions: Option<Vec<String>>,
    /// Gang size: this many distinct nodes, all at once or none. Must be at least 1; a job
    /// with 0 is never placed.
    pub node_count: u32,
    /// Soft: prefer other nodes (used on retries); these are used only if nothing else fits.
    pub avoid_nodes: Vec<NodeId>,
    /// How much the job's account already holds or was recently given (the same for all
    /// its jobs; the caller decides the measure, e.g. active runs plus recent placements).
    /// Accounts with less go first in each round, so fairness holds across plans too: when
    /// capacity frees one slot per pass, the account with a burst does not win every pass
    /// just because its oldest job is older.
    pub account_usage: u32,
}

/// The part of a placement on one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeAssignment {
    pub node: NodeId,
    /// Indices of the GPUs assigned on this node, ascending; empty for a job without GPUs.
    pub gpu_indices: Vec<u32>,
}

/// Where one job goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub job: JobId,
    /// `node_count` assignments on distinct nodes, best-fitting node first.
    pub nodes: Vec<NodeAssignment>,
}

/// The result of one planning pass. Both lists are in decision order (the fair order in
/// which jobs were considered); every input job appears in exactly one of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<JobId>,
}

/// Places as many `jobs` as fit on `nodes`. Pure and deterministic: same input, same output.
///
/// Input that the control plane should never send is handled without panicking: a job with
/// `node_count == 0` or a non-finite requirement is left unplaced; negative requirements
/// count as 0; of several nodes with the same id (or several GPUs with the same index on a
/// node) only the first is used.
pub fn plan(nodes: &[NodeView], jobs: &[JobRequest]) -> Plan {
    planner::run(nodes, jobs, &mut NoObserver)
}

/// Hooks called around each job's decision inside the planner's loop, for measurement (the
/// benchmark reads a clock in them; the planner itself never does). Both default to no-ops.
pub trait DecisionObserver {
    /// Called just before the planner decides a job.
    fn decision_started(&mut self) {}
    /// Called right after the planner decided `job` (placed or not).
    fn decision_finished(&mut self, job: JobId, placed: bool) {
        let _ = (job, placed);
    }
}

/// The observer [`plan`] uses: does nothing, and compiles away.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl DecisionObserver for NoObserver {}

/// [`plan`], calling `observer` around each job's decision (in decision order). The setup
/// phases (snapshot, index, order) run before the first call. Gives the same [`Plan`] as
/// [`plan`].
pub fn plan_with_observer<O: DecisionObserver + ?Sized>(
    nodes: &[NodeView],
    jobs: &[JobRequest],
    observer: &mut O,
) -> Plan {
    planner::run(nodes, jobs, observer)
}
