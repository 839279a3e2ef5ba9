//! Properties of `plan` on random heterogeneous clusters and random jobs, checked against a
//! reference written independently of the planner (a plain loop over nodes and GPUs).

use std::collections::{HashMap, HashSet};

use gantry_scheduler::{GpuView, JobRequest, NodeView, Plan, plan};
use gantry_types::ids::{AccountId, GpuModelId, JobId, NodeId};
use proptest::prelude::*;
use uuid::Uuid;

const REGIONS: [&str; 4] = ["r0", "r1", "r2", "r3"]; // no node is in r3
const MODELS: u128 = 4;

fn model(m: u128) -> GpuModelId {
    GpuModelId(Uuid::from_u128(0xA000 + m))
}

/// Sizes in quarters, so that sums of them are exact in f64.
fn quarters(max: u32) -> impl Strategy<Value = f64> {
    (0..=max * 4).prop_map(|q| f64::from(q) / 4.0)
}

fn gpu() -> impl Strategy<Value = (Option<u128>, f64, bool)> {
    (prop::option::weighted(0.85, 0..MODELS), quarters(80), prop::bool::weighted(0.8))
}

fn node() -> impl Strategy<Value = NodeView> {
    (
        prop::bool::weighted(0.85),
        prop::option::weighted(0.85, 0..3usize),
        0..=32u32,
        quarters(128),
        quarters(400),
        prop::collection::vec(gpu(), 0..=8),
    )
        .prop_map(|(schedulable, region, cpu, ram, storage, gpus)| NodeView {
            id: NodeId(Uuid::nil()), // set by `cluster`
            schedulable,
            region: region.map(|r| REGIONS[r].to_owned()),
            free_cpu: cpu,
            free_ram_gb: ram,
            free_storage_gb: storage,
            gpus: gpus
                .into_iter()
                .enumerate()
                .map(|(i, (m, vram, free))| GpuView { index: i as u32, model: m.map(model), vram_gb: vram, free })
                .collect(),
        })
}

fn cluster() -> impl Strategy<Value = Vec<NodeView>> {
    prop::collection::vec(node(), 0..=24).prop_map(|mut nodes| {
        for (i, n) in nodes.iter_mut().enumerate() {
            // Ids not in input order, so sorting by id matters.
            n.id = NodeId(Uuid::from_u128(((i as u128 * 7919) % 1009) + 1));
        }
        nodes
    })
}

fn subset(bits: u32, n: usize) -> impl Iterator<Item = usize> {
    (0..n).filter(move |i| bits & (1 << i) != 0)
}

fn job() -> impl Strategy<Value = JobRequest> {
    (
        (0..4u128, 0..10i64, 0..=16u32, quarters(64), quarters(120)),
        (
            prop_oneof![4 => Just(0u32), 3 => Just(1u32), 2 => 2..=4u32, 1 => 5..=8u32],
            prop::option::weighted(0.5, 0..16u32),
        ),
        (prop_oneof![3 => Just(0.0), 1 => quarters(80)], prop::option::weighted(0.3, 0..16u32)),
        (prop_oneof![8 => Just(1u32), 2 => 2..=3u32], prop_oneof![4 => Just(0u32), 1 => any::<u32>()]),
    )
        .prop_map(
            |((account, created, cpu, ram, storage), (gpu_count, models), (vram, regions), (node_count, avoid))| {
                JobRequest {
                    id: JobId(Uuid::nil()), // set by `jobs`
                    account: AccountId(Uuid::from_u128(account + 1)),
                    created_at_ms: created,
                    cpu,
                    ram_gb: ram,
                    storage_gb: storage,
                    gpu_count,
                    gpu_models: models.map(|bits| subset(bits, MODELS as usize).map(|m| model(m as u128)).collect()),
                    min_vram_gb: vram,
                    regions: regions.map(|bits| subset(bits, REGIONS.len()).map(|r| REGIONS[r].to_owned()).collect()),
                    node_count,
                    // Filled in by `input` from the cluster's ids.
                    avoid_nodes: vec![NodeId(Uuid::from_u128(u128::from(avoid)))],
                    account_usage: 0,
                }
            },
        )
}

/// A cluster and jobs; each job's `avoid_nodes` is a random subset of the cluster's ids.
fn input() -> impl Strategy<Value = (Vec<NodeView>, Vec<JobRequest>)> {
    (cluster(), prop::collection::vec(job(), 0..=40)).prop_map(|(nodes, mut jobs)| {
        for (i, j) in jobs.iter_mut().enumerate() {
            j.id = JobId(Uuid::from_u128(((i as u128 * 104_729) % 1013) + 1));
            let bits = j.avoid_nodes[0].0.as_u128() as u32;
            j.avoid_nodes = subset(bits, nodes.len().min(32)).map(|n| nodes[n].id).collect();
        }
        (nodes, jobs)
    })
}

/// What is left of a node: the reference's own bookkeeping.
#[derive(Clone)]
struct Left {
    cpu: i64,
    ram: f64,
    storage: f64,
    region: Option<String>,
    /// GPU index -> (model, vram, free).
    gpus: HashMap<u32, (Option<GpuModelId>, f64, bool)>,
}

fn left_of(nodes: &[NodeView]) -> HashMap<NodeId, Left> {
    nodes
        .iter()
        .filter(|n| n.schedulable)
        .map(|n| {
            let gpus = n.gpus.iter().map(|g| (g.index, (g.model, g.vram_gb, g.free))).collect();
            let left = Left {
                cpu: i64::from(n.free_cpu),
                ram: n.free_ram_gb,
                storage: n.free_storage_gb,
                region: n.region.clone(),
                gpus,
            };
            (n.id, left)
        })
        .collect()
}

fn model_ok(job: &JobRequest, m: Option<GpuModelId>) -> bool {
    match (&job.gpu_models, m) {
        (None, _) => true,
        (Some(list), Some(m)) => list.contains(&m),
        (Some(_), None) => false,
    }
}

fn region_ok(job: &JobRequest, region: &Option<String>) -> bool {
    match (&job.regions, region) {
        (None, _) => true,
        (Some(list), Some(r)) => list.contains(r),
        (Some(_), None) => false,
    }
}

/// Whether `job`'s per-node requirement fits into what is left of a node.
fn fits_left(job: &JobRequest, left: &Left) -> bool {
    let usable = left.gpus.values().filter(|&&(m, vram, free)| free && model_ok(job, m) && vram >= job.min_vram_gb);
    region_ok(job, &left.region)
        && left.cpu >= i64::from(job.cpu)
        && left.ram >= job.ram_gb
        && left.storage >= job.storage_gb
        && usable.count() >= job.gpu_count as usize
}

/// Checks properties (1), (2), (3), (5), (6) for one plan; returns what is left afterwards.
fn check(nodes: &[NodeView], jobs: &[JobRequest], plan: &Plan) -> Result<(), TestCaseError> {
    let by_id: HashMap<JobId, &JobRequest> = jobs.iter().map(|j| (j.id, j)).collect();

    // (6) Every job is placed or unplaced, exactly once.
    let mut seen: Vec<JobId> = plan.placements.iter().map(|p| p.job).chain(plan.unplaced.iter().copied()).collect();
    seen.sort();
    let mut all: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    all.sort();
    prop_assert_eq!(seen, all);

    let mut left = left_of(nodes);
    for p in &plan.placements {
        let job = by_id[&p.job];
        // (3) A gang gets exactly node_count distinct nodes.
        prop_assert_eq!(p.nodes.len(), job.node_count as usize);
        let distinct: HashSet<NodeId> = p.nodes.iter().map(|a| a.node).collect();
        prop_assert_eq!(distinct.len(), p.nodes.len());
        for a in &p.nodes {
            // (2) Only schedulable nodes (the only ones in `left`).
            let Some(l) = left.get_mut(&a.node) else {
                return Err(TestCaseError::fail(format!("job {} placed on unschedulable or unknown node", job.id)));
            };
            // (3) Every requirement of the job, against the node's view.
            prop_assert!(region_ok(job, &l.region));
            prop_assert_eq!(a.gpu_indices.len(), job.gpu_count as usize);
            for index in &a.gpu_indices {
                let Some(g) = l.gpus.get_mut(index) else {
                    return Err(TestCaseError::fail(format!("GPU {index} does not exist")));
                };
                // (1)+(2) Each GPU free in the view and assigned at most once.
                prop_assert!(g.2, "GPU {} of {} not free (busy in the view or assigned twice)", index, a.node);
                prop_assert!(model_ok(job, g.0));
                prop_assert!(g.1 >= job.min_vram_gb);
                g.2 = false;
            }
            // (1) No over-commit (sizes are quarters, so the sums are exact).
            l.cpu -= i64::from(job.cpu);
            l.ram -= job.ram_gb;
            l.storage -= job.storage_gb;
            prop_assert!(l.cpu >= 0 && l.ram >= 0.0 && l.storage >= 0.0, "over-commit on {}", a.node);
        }
    }

    // (5) An unplaced job does not fit into what is left.
    for id in &plan.unplaced {
        let job = by_id[id];
        let fitting = left.values().filter(|l| fits_left(job, l)).count();
        prop_assert!(
            fitting < job.node_count as usize,
            "job {} (needs {} nodes) was left unplaced but fits on {} nodes of what is left",
            id,
            job.node_count,
            fitting
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_valid_complete_and_leave_no_fitting_job_behind((nodes, jobs) in input()) {
        let first = plan(&nodes, &jobs);
        check(&nodes, &jobs, &first)?;
    }

    /// (4) Same input, same plan; and the input order of nodes or jobs does not matter.
    #[test]
    fn plans_are_deterministic((nodes, jobs) in input(), rotate in 0..64usize) {
        let first = plan(&nodes, &jobs);
        prop_assert_eq!(&first, &plan(&nodes, &jobs));
        let mut nodes2 = nodes.clone();
        let mut jobs2 = jobs.clone();
        nodes2.reverse();
        if !jobs2.is_empty() {
            let k = rotate % jobs2.len();
            jobs2.rotate_left(k);
        }
        prop_assert_eq!(&first, &plan(&nodes2, &jobs2));
    }

    /// Plenty of capacity and cpu-only jobs: everything is placed (the planner does not give up).
    #[test]
    fn everything_fits_when_capacity_is_ample(count in 0..200usize, cpu in 0..=4u32) {
        let nodes: Vec<NodeView> = (0..10u128)
            .map(|i| NodeView {
                id: NodeId(Uuid::from_u128(i + 1)),
                schedulable: true,
                region: None,
                free_cpu: 100,
                free_ram_gb: 1000.0,
                free_storage_gb: 1000.0,
                gpus: Vec::new(),
            })
            .collect();
        let jobs: Vec<JobRequest> = (0..count as u128)
            .map(|i| JobRequest {
                id: JobId(Uuid::from_u128(i + 1)),
                account: AccountId(Uuid::from_u128(i % 7)),
                created_at_ms: 0,
                cpu,
                ram_gb: 1.0,
                storage_gb: 1.0,
                gpu_count: 0,
                gpu_models: None,
                min_vram_gb: 0.0,
                regions: None,
                node_count: 1,
                avoid_nodes: Vec::new(),
                account_usage: 0,
            })
            .collect();
        let p = plan(&nodes, &jobs);
        prop_assert_eq!(p.placements.len(), count);
        check(&nodes, &jobs, &p)?;
    }
}
