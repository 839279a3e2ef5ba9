//! Placement throughput of the planner on a large heterogeneous cluster, with a same-run
//! reference: a naive planner (linear scan over every node per job, no index).
//!
//! ```sh
//! cargo run --release -p gantry-scheduler --example placement_bench
//! ```
//!
//! Builds 10,000 nodes (0-8 GPUs of 6 models, 8-128 cores, 5 regions, a few unschedulable,
//! some GPUs busy) and 100,000 pending jobs from 50 accounts (cpu-only, 1-GPU, multi-GPU,
//! model-specific, VRAM-specific, region-restricted, a few gangs, some unplaceable), then
//! times `plan` on one core. Input is generated from a fixed seed: every run plans the same
//! thing.

// A benchmark measures wall time: the clock the crate itself may not read (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use gantry_scheduler::{
    DecisionObserver, GpuView, JobRequest, NodeAssignment, NodeView, Plan, plan, plan_with_observer,
};
use gantry_types::ids::{AccountId, GpuModelId, JobId, NodeId};
use uuid::Uuid;

const NODES: usize = 10_000;
const JOBS: usize = 100_000;
const ACCOUNTS: u64 = 50;
const NAIVE_JOBS: usize = 1_000;
const RUNS: usize = 5;

/// SplitMix64: small, fast, and reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn uuid(&mut self) -> Uuid {
        Uuid::from_u128((u128::from(self.next()) << 64) | u128::from(self.next()))
    }
}

/// (name, VRAM GB) of the registry's models.
const MODELS: [(&str, f64); 6] = [
    ("NVIDIA H100", 80.0),
    ("NVIDIA A100 80GB", 80.0),
    ("NVIDIA A100 40GB", 40.0),
    ("NVIDIA L40S", 48.0),
    ("NVIDIA RTX 4090", 24.0),
    ("NVIDIA RTX 5090", 32.0),
];
const REGIONS: [&str; 5] = ["us-east", "us-west", "eu-west", "eu-north", "ap-south"];

fn model_id(m: usize) -> GpuModelId {
    GpuModelId(Uuid::from_u128(0x6a00_0000 + m as u128))
}

fn build_nodes(rng: &mut Rng) -> Vec<NodeView> {
    (0..NODES)
        .map(|_| {
            let gpu_count = rng.pick(&[0, 0, 0, 1, 1, 2, 2, 4, 4, 8, 8, 3, 6]);
            let main_model = rng.below(MODELS.len() as u64) as usize;
            let gpus = (0..gpu_count)
                .map(|index| {
                    // A few nodes mix models.
                    let m = if rng.chance(5) { rng.below(MODELS.len() as u64) as usize } else { main_model };
                    let full = MODELS[m].1;
                    GpuView {
                        index,
                        model: if rng.chance(1) { None } else { Some(model_id(m)) },
                        vram_gb: if rng.chance(10) { full / 2.0 } else { full },
                        free: !rng.chance(8),
                    }
                })
                .collect();
            let cpu = 8 * (1 + rng.below(16) as u32);
            NodeView {
                id: NodeId(rng.uuid()),
                schedulable: !rng.chance(3),
                region: if rng.chance(5) { None } else { Some(rng.pick(&REGIONS).to_owned()) },
                free_cpu: cpu,
                free_ram_gb: f64::from(cpu) * rng.pick(&[4.0, 6.0, 8.0]),
                free_storage_gb: rng.pick(&[500.0, 1000.0, 2000.0, 4000.0]),
                gpus,
            }
        })
        .collect()
}

fn build_jobs(rng: &mut Rng, nodes: &[NodeView]) -> Vec<JobRequest> {
    let accounts: Vec<AccountId> = (0..ACCOUNTS).map(|_| AccountId(rng.uuid())).collect();
    let mut created = 1_700_000_000_000i64;
    (0..JOBS)
        .map(|_| {
            created += rng.below(5) as i64;
            // Skewed: low-numbered accounts submit most of the queue.
            let account = accounts[(rng.below(ACCOUNTS) * rng.below(ACCOUNTS) / ACCOUNTS) as usize];
            let mut job = JobRequest {
                id: JobId(rng.uuid()),
                account,
                created_at_ms: created,
                cpu: rng.pick(&[1, 2, 4, 8]),
                ram_gb: rng.pick(&[2.0, 4.0, 8.0, 16.0]),
                storage_gb: rng.pick(&[10.0, 20.0, 50.0]),
                gpu_count: 0,
                gpu_models: None,
                min_vram_gb: 0.0,
                regions: None,
                node_count: 1,
                avoid_nodes: Vec::new(),
                account_usage: 0,
            };
            match rng.below(100) {
                0..30 => {} // cpu-only
                30..60 => job.gpu_count = 1,
                60..72 => {
                    job.gpu_count = rng.pick(&[2, 4, 8]);
                    job.cpu = 4 * job.gpu_count;
                    job.ram_gb = 16.0 * f64::from(job.gpu_count);
                }
                72..82 => {
                    job.gpu_count = rng.pick(&[1, 1, 2, 4]);
                    let a = rng.below(MODELS.len() as u64) as usize;
                    let b = rng.below(MODELS.len() as u64) as usize;
                    job.gpu_models =
                        Some(if rng.chance(50) { vec![model_id(a)] } else { vec![model_id(a), model_id(b)] });
                }
                82..90 => {
                    job.gpu_count = rng.pick(&[1, 2]);
                    job.min_vram_gb = rng.pick(&[40.0, 48.0, 80.0]);
                }
                90..97 => {
                    job.gpu_count = rng.pick(&[0, 1, 2]);
                    let mut regions = vec![rng.pick(&REGIONS).to_owned()];
                    if rng.chance(30) {
                        regions.push(rng.pick(&REGIONS).to_owned());
                    }
                    job.regions = Some(regions);
                }
                97 => {
                    job.node_count = rng.pick(&[2, 4, 8]);
                    job.gpu_count = rng.pick(&[1, 4, 8]);
                    job.cpu = 4 * job.gpu_count;
                }
                _ => match rng.below(4) {
                    // Unplaceable: more GPUs than any node has, a model no node has, a
                    // region nobody serves, more cores than any node has.
                    0 => job.gpu_count = 16,
                    1 => {
                        job.gpu_count = 1;
                        job.gpu_models = Some(vec![GpuModelId(Uuid::from_u128(0xdead))]);
                    }
                    2 => job.regions = Some(vec!["mars-north".to_owned()]),
                    _ => job.cpu = 512,
                },
            }
            if rng.chance(2) {
                job.avoid_nodes =
                    (0..1 + rng.below(2)).map(|_| nodes[rng.below(nodes.len() as u64) as usize].id).collect();
            }
            job
        })
        .collect()
}

/// Times every decision (the planner itself never reads a clock).
struct Timings {
    started: Option<Instant>,
    /// When the first decision started: the setup phases (snapshot, index, order) are over.
    first: Option<Instant>,
    ns: Vec<u32>,
}

impl DecisionObserver for Timings {
    fn decision_started(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.started = Some(now);
    }
    fn decision_finished(&mut self, _job: JobId, _placed: bool) {
        let ns = self.started.map_or(0, |t| t.elapsed().as_nanos());
        self.ns.push(u32::try_from(ns).unwrap_or(u32::MAX));
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The reference: the same rules, but every decision scans every node (best fit by the same
/// order: fewest usable GPUs, least free cpu, node id; avoided nodes last).
fn naive_plan(nodes: &[NodeView], jobs: &[JobRequest], timings: &mut Vec<u32>) -> Plan {
    struct Left {
        id: NodeId,
        region: Option<String>,
        cpu: u32,
        ram: f64,
        storage: f64,
        gpus: Vec<GpuView>,
    }
    let mut left: Vec<Left> = nodes
        .iter()
        .filter(|n| n.schedulable)
        .map(|n| Left {
            id: n.id,
            region: n.region.clone(),
            cpu: n.free_cpu,
            ram: n.free_ram_gb,
            storage: n.free_storage_gb,
            gpus: n.gpus.clone(),
        })
        .collect();
    let usable = |job: &JobRequest, g: &GpuView| {
        g.free
            && g.vram_gb >= job.min_vram_gb
            && job.gpu_models.as_ref().is_none_or(|list| g.model.is_some_and(|m| list.contains(&m)))
    };
    // Jobs in the same fair order as the planner: FIFO per account, round-robin.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].account, jobs[i].created_at_ms, jobs[i].id));
    let mut rank = vec![0usize; jobs.len()];
    let mut first: std::collections::HashMap<AccountId, (i64, JobId)> = std::collections::HashMap::new();
    for (k, &i) in order.iter().enumerate() {
        let prev = if k > 0 && jobs[order[k - 1]].account == jobs[i].account { rank[order[k - 1]] + 1 } else { 0 };
        rank[i] = prev;
        first.entry(jobs[i].account).or_insert((jobs[i].created_at_ms, jobs[i].id));
    }
    order.sort_by_key(|&i| (rank[i], first[&jobs[i].account]));

    let mut plan = Plan { placements: Vec::new(), unplaced: Vec::new() };
    let mut candidates: Vec<(bool, usize, u32, NodeId, usize)> = Vec::new();
    for i in order {
        let job = &jobs[i];
        let t = Instant::now();
        candidates.clear();
        for (n, node) in left.iter().enumerate() {
            let region_ok =
                job.regions.as_ref().is_none_or(|list| node.region.as_ref().is_some_and(|r| list.contains(r)));
            if !region_ok || node.cpu < job.cpu || node.ram < job.ram_gb || node.storage < job.storage_gb {
                continue;
            }
            let count = if job.gpu_count == 0 {
                node.gpus.iter().filter(|g| g.free).count()
            } else {
                node.gpus.iter().filter(|g| usable(job, g)).count()
            };
            if count >= job.gpu_count as usize {
                candidates.push((job.avoid_nodes.contains(&node.id), count, node.cpu, node.id, n));
            }
        }
        if candidates.len() < job.node_count as usize {
            plan.unplaced.push(job.id);
        } else {
            candidates.sort_unstable();
            let mut assignments = Vec::new();
            for &(_, _, _, _, n) in candidates.iter().take(job.node_count as usize) {
                let node = &mut left[n];
                node.cpu -= job.cpu;
                node.ram -= job.ram_gb;
                node.storage -= job.storage_gb;
                let mut picks: Vec<usize> = (0..node.gpus.len()).filter(|&g| usable(job, &node.gpus[g])).collect();
                picks.sort_by(|&a, &b| node.gpus[a].vram_gb.total_cmp(&node.gpus[b].vram_gb).then(a.cmp(&b)));
                let mut gpu_indices: Vec<u32> = Vec::new();
                for &g in picks.iter().take(job.gpu_count as usize) {
                    node.gpus[g].free = false;
                    gpu_indices.push(node.gpus[g].index);
                }
                gpu_indices.sort_unstable();
                assignments.push(NodeAssignment { node: node.id, gpu_indices });
            }
            plan.placements.push(gantry_scheduler::Placement { job: job.id, nodes: assignments });
        }
        timings.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
    }
    plan
}

fn secs(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut rng = Rng(0x6a27_5c4e_d01e_2026);
    let nodes = build_nodes(&mut rng);
    let jobs = build_jobs(&mut rng, &nodes);
    let schedulable = nodes.iter().filter(|n| n.schedulable).count();
    let gpus: usize = nodes.iter().filter(|n| n.schedulable).map(|n| n.gpus.iter().filter(|g| g.free).count()).sum();
    let gangs = jobs.iter().filter(|j| j.node_count > 1).count();
    println!(
        "input: {NODES} nodes ({schedulable} schedulable, {gpus} free GPUs of {} models, {} regions), \
         {JOBS} jobs from {ACCOUNTS} accounts ({gangs} gangs)",
        MODELS.len(),
        REGIONS.len()
    );

    // Throughput: `plan` itself, no hooks; the median of RUNS runs.
    let mut runs: Vec<(Duration, Plan)> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let p = black_box(plan(black_box(&nodes), black_box(&jobs)));
            (t.elapsed(), p)
        })
        .collect();
    assert!(runs.windows(2).all(|w| w[0].1 == w[1].1), "plan is not deterministic");
    runs.sort_by_key(|r| r.0);
    let (wall, p) = &runs[RUNS / 2];
    let placements = p.placements.len();
    let rate = placements as f64 / wall.as_secs_f64();
    println!(
        "plan:     {placements} placed, {} unplaced, total plan time {} (median of {RUNS}; min {}, max {})",
        p.unplaced.len(),
        secs(*wall),
        secs(runs[0].0),
        secs(runs[RUNS - 1].0)
    );
    println!(
        "          {:.0} placements/s on one core (target >= 100000: {})",
        rate,
        if rate >= 100_000.0 { "met" } else { "NOT met" }
    );

    // Per-decision times, measured through the observer hook (a separate run).
    let mut timings = Timings { started: None, first: None, ns: Vec::with_capacity(JOBS) };
    let t = Instant::now();
    let timed = plan_with_observer(&nodes, &jobs, &mut timings);
    let timed_wall = t.elapsed();
    assert_eq!(&timed, p, "plan_with_observer gives the same plan");
    let mut ns = timings.ns;
    let mean_ns = ns.iter().map(|&x| f64::from(x)).sum::<f64>() / ns.len() as f64;
    ns.sort_unstable();
    let setup = timings.first.map_or(Duration::ZERO, |f| f - t);
    println!(
        "decision: mean {:.0} ns, p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns per job ({} jobs; timed run {}, \
         of which setup {})",
        mean_ns,
        percentile(&ns, 50.0),
        percentile(&ns, 99.0),
        percentile(&ns, 99.9),
        ns.last().copied().unwrap_or(0),
        ns.len(),
        secs(timed_wall),
        secs(setup)
    );

    // Same-run reference on a 1,000-job subset (every 100th job, so the mix is the same).
    let subset: Vec<JobRequest> = jobs.iter().step_by(JOBS / NAIVE_JOBS).cloned().collect();
    let mut naive_ns = Vec::with_capacity(subset.len());
    let naive = naive_plan(&nodes, &subset, &mut naive_ns);
    let mut indexed = Timings { started: None, first: None, ns: Vec::with_capacity(subset.len()) };
    let indexed_plan = plan_with_observer(&nodes, &subset, &mut indexed);
    let mean = |v: &[u32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
    let (naive_mean, indexed_mean) = (mean(&naive_ns), mean(&indexed.ns));
    println!(
        "naive:    {} jobs, linear scan of all nodes per job: mean {:.1} us per decision ({} placed); \
         indexed on the same subset: mean {:.1} us ({} placed)",
        subset.len(),
        naive_mean / 1e3,
        naive.placements.len(),
        indexed_mean / 1e3,
        indexed_plan.placements.len()
    );
    println!(
        "speed-up: {:.0}x per decision on the same subset; {:.0}x against the indexed full-queue mean \
         (naive would need ~{:.1} s for all {JOBS} jobs)",
        naive_mean / indexed_mean,
        naive_mean / mean_ns,
        naive_mean * JOBS as f64 / 1e9
    );
}
