//! One test (or a few) per rule of the planner, and `explain`'s wording.

use gantry_types::ids::{AccountId, GpuModelId, JobId, NodeId};
use uuid::Uuid;

use crate::{GpuView, JobRequest, NodeAssignment, NodeView, Placement, Plan, explain, plan};

fn node_id(n: u128) -> NodeId {
    NodeId(Uuid::from_u128(n))
}
fn job_id(n: u128) -> JobId {
    JobId(Uuid::from_u128(n))
}
fn account(n: u128) -> AccountId {
    AccountId(Uuid::from_u128(n))
}
fn model(n: u128) -> GpuModelId {
    GpuModelId(Uuid::from_u128(0xA000 + n))
}
const H100: u128 = 1;
const RTX5090: u128 = 2;

fn model_name(m: GpuModelId) -> String {
    match m.0.as_u128() - 0xA000 {
        H100 => "NVIDIA H100".to_owned(),
        RTX5090 => "NVIDIA RTX 5090".to_owned(),
        other => format!("model {other}"),
    }
}

/// A schedulable node without region, with `cpu` cores, 64 GB RAM, 500 GB storage, no GPUs.
fn node(n: u128, cpu: u32) -> NodeView {
    NodeView {
        id: node_id(n),
        schedulable: true,
        region: None,
        free_cpu: cpu,
        free_ram_gb: 64.0,
        free_storage_gb: 500.0,
        gpus: Vec::new(),
    }
}

/// Adds `count` free GPUs of `m` with `vram` GB, indices continuing after the existing ones.
fn with_gpus(mut node: NodeView, m: Option<u128>, count: u32, vram: f64) -> NodeView {
    for _ in 0..count {
        let index = node.gpus.len() as u32;
        node.gpus.push(GpuView { index, model: m.map(model), vram_gb: vram, free: true });
    }
    node
}

fn in_region(mut node: NodeView, region: &str) -> NodeView {
    node.region = Some(region.to_owned());
    node
}

/// A 1-cpu job of account 1 created at `n`, nothing else.
fn job(n: u128) -> JobRequest {
    JobRequest {
        id: job_id(n),
        account: account(1),
        created_at_ms: n as i64,
        cpu: 1,
        ram_gb: 0.0,
        storage_gb: 0.0,
        gpu_count: 0,
        gpu_models: None,
        min_vram_gb: 0.0,
        regions: None,
        node_count: 1,
        avoid_nodes: Vec::new(),
        account_usage: 0,
    }
}

fn gpu_job(n: u128, gpus: u32) -> JobRequest {
    JobRequest { gpu_count: gpus, ..job(n) }
}

/// The node each job went to (first node of its placement), in `plan.placements` order.
fn placed_on(plan: &Plan) -> Vec<(JobId, NodeId)> {
    plan.placements.iter().map(|p| (p.job, p.nodes[0].node)).collect()
}

fn node_of(plan: &Plan, job: u128) -> Option<NodeId> {
    plan.placements.iter().find(|p| p.job == job_id(job)).map(|p| p.nodes[0].node)
}

// ---- fit per constraint ----

#[test]
fn cpu_must_fit() {
    let nodes = [node(1, 4)];
    let p = plan(&nodes, &[JobRequest { cpu: 4, ..job(1) }, JobRequest { cpu: 1, ..job(2) }]);
    assert_eq!(placed_on(&p), [(job_id(1), node_id(1))]);
    assert_eq!(p.unplaced, [job_id(2)], "the 4 cores are used up");

    let p = plan(&nodes, &[JobRequest { cpu: 5, ..job(1) }]);
    assert_eq!(p.unplaced, [job_id(1)]);
}

#[test]
fn ram_and_storage_must_fit() {
    let nodes = [node(1, 64)];
    let p = plan(&nodes, &[JobRequest { ram_gb: 64.5, ..job(1) }, JobRequest { storage_gb: 500.5, ..job(2) }]);
    assert!(p.placements.is_empty());
    let p = plan(&nodes, &[JobRequest { ram_gb: 40.0, ..job(1) }, JobRequest { ram_gb: 30.0, ..job(2) }]);
    assert_eq!(p.placements.len(), 1, "40 + 30 GB RAM would over-commit 64");
    let p = plan(&nodes, &[JobRequest { storage_gb: 300.0, ..job(1) }, JobRequest { storage_gb: 200.0, ..job(2) }]);
    assert_eq!(p.placements.len(), 2, "300 + 200 GB storage fits 500 exactly");
}

#[test]
fn zero_requirements_always_fit_and_negatives_count_as_zero() {
    let mut full = node(1, 0);
    full.free_ram_gb = 0.0;
    full.free_storage_gb = 0.0;
    let jobs: Vec<JobRequest> =
        (1..=3).map(|n| JobRequest { cpu: 0, ram_gb: 0.0, storage_gb: -5.0, min_vram_gb: -1.0, ..job(n) }).collect();
    let p = plan(&[full], &jobs);
    assert_eq!(p.placements.len(), 3);
    assert!(p.placements.iter().all(|pl| pl.nodes == [NodeAssignment { node: node_id(1), gpu_indices: vec![] }]));
}

#[test]
fn gpu_count_uses_only_free_gpus() {
    let mut n = with_gpus(node(1, 64), Some(H100), 4, 80.0);
    n.gpus[1].free = false;
    let p = plan(&[n.clone()], &[gpu_job(1, 4)]);
    assert_eq!(p.unplaced, [job_id(1)], "only 3 of the 4 GPUs are free");
    let p = plan(&[n], &[gpu_job(1, 2), gpu_job(2, 1), gpu_job(3, 1)]);
    let used: Vec<Vec<u32>> = p.placements.iter().map(|pl| pl.nodes[0].gpu_indices.clone()).collect();
    assert_eq!(used, [vec![0, 2], vec![3]], "GPU 1 is busy; each free GPU is assigned once");
    assert_eq!(p.unplaced, [job_id(3)]);
}

#[test]
fn gpu_models_restrict_and_unknown_models_serve_only_any_model_jobs() {
    let nodes = [with_gpus(node(1, 64), Some(H100), 1, 80.0), with_gpus(node(2, 64), None, 1, 80.0)];
    let wants_5090 = JobRequest { gpu_models: Some(vec![model(RTX5090)]), ..gpu_job(1, 1) };
    let wants_h100 = JobRequest { gpu_models: Some(vec![model(RTX5090), model(H100)]), ..gpu_job(2, 1) };
    let wants_h100_again = JobRequest { gpu_models: Some(vec![model(H100)]), ..gpu_job(3, 1) };
    let any = gpu_job(4, 1);
    let p = plan(&nodes, &[wants_5090, wants_h100, wants_h100_again, any]);
    assert_eq!(placed_on(&p), [(job_id(2), node_id(1)), (job_id(4), node_id(2))]);
    assert_eq!(p.unplaced, [job_id(1), job_id(3)]);
}

#[test]
fn a_job_may_mix_allowed_models_on_one_node() {
    let n = with_gpus(with_gpus(node(1, 64), Some(H100), 1, 80.0), Some(RTX5090), 1, 32.0);
    let j = JobRequest { gpu_models: Some(vec![model(H100), model(RTX5090)]), ..gpu_job(1, 2) };
    let p = plan(&[n], &[j]);
    assert_eq!(p.placements[0].nodes[0].gpu_indices, [0, 1]);
}

#[test]
fn vram_is_per_gpu() {
    let mut n = with_gpus(node(1, 64), Some(H100), 3, 80.0);
    n.gpus[0].vram_gb = 20.0;
    let p = plan(&[n.clone()], &[JobRequest { min_vram_gb: 40.0, ..gpu_job(1, 3) }]);
    assert_eq!(p.unplaced, [job_id(1)], "one of the three GPUs has only 20 GB free");
    let p = plan(&[n], &[JobRequest { min_vram_gb: 40.0, ..gpu_job(1, 2) }, gpu_job(2, 1)]);
    assert_eq!(p.placements[0].nodes[0].gpu_indices, [1, 2]);
    assert_eq!(p.placements[1].nodes[0].gpu_indices, [0]);
}

#[test]
fn gpus_are_picked_best_fit_by_vram() {
    let mut n = with_gpus(node(1, 64), Some(H100), 3, 80.0);
    n.gpus[1].vram_gb = 24.0;
    let p = plan(&[n], &[JobRequest { min_vram_gb: 16.0, ..gpu_job(1, 1) }]);
    assert_eq!(p.placements[0].nodes[0].gpu_indices, [1], "the smallest GPU that suffices");
}

#[test]
fn regions_restrict_and_nodes_without_region_never_match_a_restricted_job() {
    let nodes = [node(1, 8), in_region(node(2, 8), "eu-west"), in_region(node(3, 8), "us-east")];
    let jobs = [
        JobRequest { cpu: 8, regions: Some(vec!["us-east".into(), "ap-south".into()]), ..job(1) },
        JobRequest { cpu: 8, regions: Some(vec!["us-east".into()]), ..job(2) },
        JobRequest { cpu: 8, regions: Some(vec![]), ..job(3) },
        JobRequest { cpu: 8, regions: Some(vec!["nowhere".into()]), ..job(4) },
        JobRequest { cpu: 8, ..job(5) },
        JobRequest { cpu: 8, ..job(6) },
    ];
    let p = plan(&nodes, &jobs);
    assert_eq!(node_of(&p, 1), Some(node_id(3)));
    assert_eq!(node_of(&p, 5), Some(node_id(1)));
    assert_eq!(node_of(&p, 6), Some(node_id(2)));
    assert_eq!(p.unplaced, [job_id(2), job_id(3), job_id(4)]);
}

#[test]
fn unschedulable_nodes_get_nothing() {
    let mut off = with_gpus(node(1, 64), None, 8, 80.0);
    off.schedulable = false;
    let p = plan(&[off], &[job(1), gpu_job(2, 1), JobRequest { cpu: 0, ..job(3) }]);
    assert!(p.placements.is_empty());
    assert_eq!(p.unplaced.len(), 3);
}

#[test]
fn malformed_jobs_and_duplicate_nodes_are_handled() {
    let nodes = [node(1, 8), node(1, 64)];
    let jobs = [
        JobRequest { node_count: 0, ..job(1) },
        JobRequest { ram_gb: f64::NAN, ..job(2) },
        JobRequest { storage_gb: f64::INFINITY, ..job(3) },
        JobRequest { cpu: 16, ..job(4) },
        JobRequest { cpu: 8, ..job(5) },
    ];
    let p = plan(&nodes, &jobs);
    assert_eq!(placed_on(&p), [(job_id(5), node_id(1))], "only the first view of node 1 counts");
    assert_eq!(p.unplaced, [job_id(1), job_id(2), job_id(3), job_id(4)]);
}

// ---- gangs ----

#[test]
fn gang_gets_distinct_nodes_each_with_the_per_node_requirement() {
    let nodes: Vec<NodeView> = (1..=4).map(|n| with_gpus(node(n, 16), Some(H100), 2, 80.0)).collect();
    let p = plan(&nodes, &[JobRequest { cpu: 16, node_count: 3, ..gpu_job(1, 2) }]);
    let pl = &p.placements[0];
    assert_eq!(pl.nodes.len(), 3);
    let mut ids: Vec<NodeId> = pl.nodes.iter().map(|a| a.node).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(pl.nodes.iter().all(|a| a.gpu_indices == [0, 1]));
}

#[test]
fn gang_is_all_or_nothing_and_holds_no_partial_capacity() {
    let nodes = [node(1, 8), node(2, 8), node(3, 4)];
    let gang = JobRequest { cpu: 8, node_count: 3, ..job(1) };
    let single = JobRequest { cpu: 8, ..job(2) };
    let p = plan(&nodes, &[gang.clone(), single.clone()]);
    assert_eq!(p.unplaced, [job_id(1)]);
    assert_eq!(node_of(&p, 2), Some(node_id(1)), "the gang took nothing, the single job gets the best node");

    // Once enough nodes exist the gang goes, and then the single job has no room left.
    let nodes = [node(1, 8), node(2, 8), node(3, 8)];
    let p = plan(&nodes, &[gang, single]);
    assert_eq!(p.placements.len(), 1);
    assert_eq!(p.placements[0].job, job_id(1));
    assert_eq!(p.unplaced, [job_id(2)]);
}

#[test]
fn failed_gang_size_is_remembered_but_smaller_gangs_still_go() {
    let nodes: Vec<NodeView> = (1..=3).map(|n| node(n, 8)).collect();
    let jobs = [
        JobRequest { cpu: 8, node_count: 4, ..job(1) },
        JobRequest { cpu: 8, node_count: 5, ..job(2) },
        JobRequest { cpu: 8, node_count: 2, ..job(3) },
        JobRequest { cpu: 8, node_count: 2, ..job(4) },
        JobRequest { cpu: 8, node_count: 1, ..job(5) },
    ];
    let p = plan(&nodes, &jobs);
    assert_eq!(p.placements.iter().map(|pl| pl.job).collect::<Vec<_>>(), [job_id(3), job_id(5)]);
    assert_eq!(p.unplaced, [job_id(1), job_id(2), job_id(4)]);
}

// ---- order: backfill, FIFO, fairness ----

#[test]
fn backfill_skips_a_job_that_does_not_fit_and_places_later_smaller_ones() {
    let nodes = [node(1, 8)];
    let p = plan(&nodes, &[JobRequest { cpu: 16, ..job(1) }, JobRequest { cpu: 4, ..job(2) }]);
    assert_eq!(p.unplaced, [job_id(1)]);
    assert_eq!(node_of(&p, 2), Some(node_id(1)));
}

#[test]
fn fifo_within_an_account_by_created_at_then_id() {
    let nodes = [node(1, 2)];
    let jobs = [
        JobRequest { created_at_ms: 30, ..job(1) },
        JobRequest { created_at_ms: 10, ..job(9) },
        JobRequest { created_at_ms: 10, ..job(5) },
    ];
    let p = plan(&nodes, &jobs);
    assert_eq!(p.placements.iter().map(|pl| pl.job).collect::<Vec<_>>(), [job_id(5), job_id(9)]);
    assert_eq!(p.unplaced, [job_id(1)]);
}

#[test]
fn accounts_take_turns_so_a_burst_cannot_starve_a_single_job() {
    let nodes = [node(1, 3)];
    // Account 1 submitted 100 jobs first; account 2 one job afterwards; room for 3 jobs.
    let mut jobs: Vec<JobRequest> = (0..100).map(|n| JobRequest { created_at_ms: n as i64, ..job(100 + n) }).collect();
    jobs.push(JobRequest { account: account(2), created_at_ms: 1_000, ..job(1) });
    let p = plan(&nodes, &jobs);
    let placed: Vec<JobId> = p.placements.iter().map(|pl| pl.job).collect();
    assert_eq!(placed, [job_id(100), job_id(1), job_id(101)]);
    assert_eq!(p.unplaced.len(), 98);
}

#[test]
fn an_account_holding_fewer_runs_goes_first_across_passes() {
    // One slot frees per pass: without usage the burst account (older job) would win
    // every pass; holding a run already, it yields to the account holding none.
    let nodes = [node(1, 1)];
    let jobs = [
        JobRequest { account: account(1), created_at_ms: 10, account_usage: 1, ..job(1) },
        JobRequest { account: account(2), created_at_ms: 20, account_usage: 0, ..job(2) },
    ];
    let p = plan(&nodes, &jobs);
    assert_eq!(placed_on(&p), [(job_id(2), node_id(1))]);
}

#[test]
fn accounts_are_ordered_by_their_oldest_pending_job() {
    let nodes = [node(1, 1)];
    let jobs = [
        JobRequest { account: account(1), created_at_ms: 50, ..job(1) },
        JobRequest { account: account(2), created_at_ms: 20, ..job(2) },
        JobRequest { account: account(3), created_at_ms: 40, ..job(3) },
    ];
    let p = plan(&nodes, &jobs);
    assert_eq!(placed_on(&p), [(job_id(2), node_id(1))]);
    assert_eq!(p.unplaced, [job_id(3), job_id(1)], "decision order: account 2, 3, then 1");
}

// ---- choice among fitting nodes ----

#[test]
fn best_fit_keeps_big_nodes_free_for_big_jobs() {
    let nodes = [
        with_gpus(node(1, 64), Some(H100), 8, 80.0),
        with_gpus(node(2, 64), Some(H100), 2, 80.0),
        node(3, 64),
        node(4, 16),
    ];
    let jobs = [gpu_job(1, 1), JobRequest { cpu: 8, ..job(2) }, gpu_job(3, 8)];
    let p = plan(&nodes, &jobs);
    assert_eq!(node_of(&p, 1), Some(node_id(2)), "fewest free GPUs that suffice");
    assert_eq!(node_of(&p, 2), Some(node_id(4)), "no GPUs, then least free cpu");
    assert_eq!(node_of(&p, 3), Some(node_id(1)), "the 8-GPU node stayed whole");
}

#[test]
fn ties_are_broken_by_node_id() {
    let nodes = [node(7, 8), node(3, 8), node(5, 8)];
    let p = plan(&nodes, &[job(1), JobRequest { cpu: 8, ..job(2) }]);
    assert_eq!(node_of(&p, 1), Some(node_id(3)));
    assert_eq!(node_of(&p, 2), Some(node_id(5)), "node 3 has 7 cores left, under 8");
}

#[test]
fn avoid_nodes_are_used_only_when_nothing_else_fits() {
    let nodes = [node(1, 8), node(2, 8)];
    let retry = JobRequest { avoid_nodes: vec![node_id(1)], ..job(1) };
    let p = plan(&nodes, std::slice::from_ref(&retry));
    assert_eq!(node_of(&p, 1), Some(node_id(2)), "node 1 is the better fit by id but is avoided");

    let p = plan(&nodes[..1], &[retry]);
    assert_eq!(node_of(&p, 1), Some(node_id(1)), "soft: nothing else fits");

    let gang = JobRequest { node_count: 2, avoid_nodes: vec![node_id(1)], ..job(2) };
    let p = plan(&[node(1, 8), node(2, 8), node(3, 8)], &[gang]);
    let used: Vec<NodeId> = p.placements[0].nodes.iter().map(|a| a.node).collect();
    assert_eq!(used, [node_id(2), node_id(3)]);
}

// ---- memo, determinism ----

#[test]
fn many_identical_unplaceable_jobs_are_all_unplaced_and_others_still_go() {
    let nodes = [with_gpus(node(1, 8), Some(H100), 1, 80.0)];
    let mut jobs: Vec<JobRequest> = (0..1000).map(|n| gpu_job(n + 10, 2)).collect();
    jobs.push(JobRequest { account: account(2), ..gpu_job(1, 1) });
    let p = plan(&nodes, &jobs);
    assert_eq!(placed_on(&p), [(job_id(1), node_id(1))]);
    assert_eq!(p.unplaced.len(), 1000);
}

#[test]
fn plan_is_deterministic() {
    let nodes: Vec<NodeView> =
        (1..=20).map(|n| with_gpus(node(n, 8 * (n as u32 % 4 + 1)), Some(n % 2), 4, 40.0)).collect();
    let jobs: Vec<JobRequest> = (1..=60)
        .map(|n| JobRequest {
            account: account(n % 3),
            cpu: (n % 5) as u32 + 1,
            gpu_count: (n % 3) as u32,
            node_count: if n % 17 == 0 { 2 } else { 1 },
            ..job(n)
        })
        .collect();
    let first = plan(&nodes, &jobs);
    assert_eq!(first, plan(&nodes, &jobs));
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(first, plan(&reversed, &jobs), "input order of nodes does not matter");
    assert!(!first.placements.is_empty());
    let _: &Placement = &first.placements[0];
}

// ---- explain ----

#[test]
fn explain_attributes_each_node_to_its_first_failing_constraint() {
    // 9 nodes without an RTX 5090, 3 whose 5090 has under 32 GB free.
    let mut nodes: Vec<NodeView> = (1..=9).map(|n| with_gpus(node(n, 16), Some(H100), 2, 80.0)).collect();
    nodes.extend((10..=12).map(|n| with_gpus(node(n, 16), Some(RTX5090), 1, 24.0)));
    let j = JobRequest { gpu_models: Some(vec![model(RTX5090)]), min_vram_gb: 32.0, ..gpu_job(1, 1) };
    assert_eq!(
        explain(&nodes, &j, &model_name),
        "0 of 12 online nodes match: 9 have no free NVIDIA RTX 5090, 3 have under 32 GB VRAM free"
    );
}

#[test]
fn explain_follows_the_fixed_order_and_mentions_unschedulable_nodes_and_gangs() {
    let mut busy = with_gpus(node(6, 16), Some(H100), 2, 80.0);
    busy.gpus[0].free = false;
    let mut offline = with_gpus(node(8, 64), Some(H100), 8, 80.0);
    offline.schedulable = false;
    let nodes = [
        in_region(with_gpus(node(1, 64), Some(H100), 8, 80.0), "us-east"), // region
        in_region(node(2, 2), "us-east"),                                  // region (before cpu)
        in_region(node(3, 2), "eu-west"),                                  // cpu
        in_region(NodeView { free_ram_gb: 8.0, ..node(4, 16) }, "eu-west"), // ram
        in_region(NodeView { free_storage_gb: 10.0, ..node(5, 16) }, "eu-west"), // storage
        in_region(busy, "eu-west"),                                        // gpu count (1 free)
        in_region(with_gpus(node(7, 16), Some(RTX5090), 2, 32.0), "eu-west"), // model
        offline,
        in_region(with_gpus(node(9, 16), Some(H100), 2, 40.0), "eu-west"), // vram
        in_region(with_gpus(node(10, 16), Some(H100), 2, 80.0), "eu-west"), // match
    ];
    let j = JobRequest {
        cpu: 4,
        ram_gb: 16.0,
        storage_gb: 100.0,
        gpu_models: Some(vec![model(H100)]),
        min_vram_gb: 48.0,
        regions: Some(vec!["eu-west".into(), "eu-north".into()]),
        node_count: 2,
        ..gpu_job(1, 2)
    };
    assert_eq!(
        explain(&nodes, &j, &model_name),
        "1 of 9 online nodes matches: 2 are outside regions eu-west, eu-north, 1 has under 4 CPU cores free, \
         1 has under 16 GB RAM free, 1 has under 100 GB storage free, 1 has under 2 free GPUs, \
         1 has under 2 free NVIDIA H100, 1 has under 2 matching GPUs with 48 GB VRAM free; \
         1 more is offline or draining; needs 2 nodes at once, only 1 matches"
    );
}

#[test]
fn explain_for_a_job_that_fits_and_for_malformed_jobs() {
    let nodes = [node(1, 8), node(2, 8)];
    assert_eq!(explain(&nodes, &job(1), &model_name), "2 of 2 online nodes match");
    assert_eq!(
        explain(&nodes, &JobRequest { node_count: 2, ..job(1) }, &model_name),
        "2 of 2 online nodes match; needs 2 nodes at once"
    );
    assert_eq!(
        explain(&nodes, &JobRequest { node_count: 0, ..job(1) }, &model_name),
        "node_count is 0: a job needs at least 1 node"
    );
    assert!(explain(&nodes, &JobRequest { ram_gb: f64::NAN, ..job(1) }, &model_name).contains("not a finite number"));
    assert_eq!(
        explain(
            &nodes,
            &JobRequest { gpu_models: Some(vec![model(H100), model(RTX5090)]), ..gpu_job(1, 1) },
            &model_name
        ),
        "0 of 2 online nodes match: 2 have no free GPU"
    );
    let n = with_gpus(node(1, 8), None, 1, 80.0);
    assert_eq!(
        explain(
            &[n],
            &JobRequest { gpu_models: Some(vec![model(H100), model(RTX5090)]), ..gpu_job(1, 1) },
            &model_name
        ),
        "0 of 1 online node match: 1 has no free NVIDIA H100 or NVIDIA RTX 5090"
    );
}

#[test]
fn the_observer_sees_every_decision_in_order_and_changes_nothing() {
    struct Log(Vec<(JobId, bool)>, usize);
    impl crate::DecisionObserver for Log {
        fn decision_started(&mut self) {
            self.1 += 1;
        }
        fn decision_finished(&mut self, job: JobId, placed: bool) {
            self.0.push((job, placed));
        }
    }
    let nodes = [node(1, 2)];
    let jobs = [job(1), JobRequest { cpu: 4, ..job(2) }, JobRequest { account: account(2), ..job(3) }];
    let mut log = Log(Vec::new(), 0);
    let observed = crate::plan_with_observer(&nodes, &jobs, &mut log);
    assert_eq!(observed, plan(&nodes, &jobs));
    assert_eq!(log.1, 3);
    assert_eq!(log.0, [(job_id(1), true), (job_id(3), true), (job_id(2), false)]);
}

#[test]
fn cpu_only_jobs_fill_every_node_not_just_the_best_fitting_one() {
    let nodes: Vec<NodeView> = (1..=3).map(|i| NodeView { free_cpu: 2, gpus: vec![], ..node(i, 0) }).collect();
    let jobs: Vec<JobRequest> = (0..6).map(|n| JobRequest { cpu: 1, gpu_count: 0, ..job(n) }).collect();
    let p = plan(&nodes, &jobs);
    assert_eq!(p.placements.len(), 6, "{p:?}");
}

#[test]
fn a_queue_spreads_over_many_partly_full_nodes() {
    // 200 nodes of 64 cores, some already full: 8,000 one-core jobs all fit.
    let nodes: Vec<NodeView> = (1..=200).map(|i| node(i, if i <= 31 { 0 } else { 64 })).collect();
    let jobs: Vec<JobRequest> = (0..8000).map(|n| JobRequest { cpu: 1, gpu_count: 0, ..job(n) }).collect();
    let p = plan(&nodes, &jobs);
    assert_eq!(p.placements.len(), 8000, "unplaced {}", p.unplaced.len());
}
