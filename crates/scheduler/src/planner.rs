//! The planner's phases: snapshot, index, fair order, decide. See the crate docs and
//! `README.md` for the why; this file is the how.

use std::collections::{BTreeSet, HashMap};

use gantry_types::ids::{GpuModelId, JobId, NodeId};

use crate::norm::{amount, covers, distinct_gpus, distinct_nodes};
use crate::{DecisionObserver, JobRequest, NodeAssignment, NodeView, Placement, Plan};

/// Interned model of a GPU whose model the registry does not know.
const NO_MODEL: u32 = u32::MAX;
/// Interned region of a node without a region.
const NO_REGION: u32 = u32::MAX;
/// The index bucket over all free GPUs (any model); model `m` is bucket `1 + m`.
const ALL_GPUS: u32 = 0;

struct Gpu {
    index: u32,
    model: u32,
    vram: f64,
    free: bool,
}

/// A schedulable node and what is still free on it as the plan consumes capacity.
struct Node {
    id: NodeId,
    region: u32,
    cpu: u32,
    ram: f64,
    storage: f64,
    /// Sorted by index, distinct indices.
    gpus: Vec<Gpu>,
    free_gpus: u32,
}

/// A job's per-node requirement, normalized (interned, sorted, deduplicated, negatives as 0),
/// so that equivalent jobs share one memo entry. Floats are kept as bits to be hashable.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Shape {
    cpu: u32,
    ram: u64,
    storage: u64,
    gpus: u32,
    /// 0 when `gpus == 0`.
    vram: u64,
    /// `None` when any model will do (or `gpus == 0`); else the allowed models known to the
    /// snapshot (an empty list when none is).
    models: Option<Vec<u32>>,
    /// `None` when anywhere will do; else the allowed regions known to the snapshot.
    regions: Option<Vec<u32>>,
}

impl Shape {
    fn ram(&self) -> f64 {
        f64::from_bits(self.ram)
    }
    fn storage(&self) -> f64 {
        f64::from_bits(self.storage)
    }
    fn vram(&self) -> f64 {
        f64::from_bits(self.vram)
    }
    fn model_ok(&self, model: u32) -> bool {
        match &self.models {
            None => true,
            Some(list) => list.contains(&model),
        }
    }
}

/// Ordered sets of nodes, `[bucket][slot][level] = {(free cpu, node)}`, where `level` is the
/// node's number of free GPUs counted by the bucket (all GPUs, or one model's), and `slot` is
/// a region, or the last slot for the whole cluster. Walking levels upward from the needed
/// count and cpu upward from the needed cpu visits candidates best fit first.
struct Index {
    slots: usize,
    sets: Vec<Vec<BTreeSet<(u32, u32)>>>,
}

impl Index {
    fn all_slot(&self) -> usize {
        self.slots - 1
    }

    fn levels(&self, bucket: u32, slot: usize) -> &[BTreeSet<(u32, u32)>] {
        &self.sets[bucket as usize * self.slots + slot]
    }

    fn insert(&mut self, bucket: u32, slot: usize, level: u32, key: (u32, u32)) {
        let levels = &mut self.sets[bucket as usize * self.slots + slot];
        let level = level as usize;
        if levels.len() <= level {
            levels.resize_with(level + 1, BTreeSet::new);
        }
        levels[level].insert(key);
    }

    fn remove(&mut self, bucket: u32, slot: usize, level: u32, key: (u32, u32)) {
        let removed = self.sets[bucket as usize * self.slots + slot][level as usize].remove(&key);
        debug_assert!(removed, "index out of sync");
    }

    /// Adds (or removes) node `n` under every bucket it belongs to, in the whole-cluster slot
    /// and in its region's slot.
    fn set(&mut self, n: u32, node: &Node, entries: &mut Vec<(u32, u32)>, add: bool) {
        bucket_entries(node, entries);
        let all = self.all_slot();
        for &(bucket, level) in entries.iter() {
            for slot in [Some(all), (node.region != NO_REGION).then_some(node.region as usize)].into_iter().flatten() {
                if add {
                    self.insert(bucket, slot, level, (node.cpu, n));
                } else {
                    self.remove(bucket, slot, level, (node.cpu, n));
                }
            }
        }
    }
}

/// The `(bucket, level)` pairs node `node` is indexed under: all its free GPUs, and each model
/// it has free GPUs of.
fn bucket_entries(node: &Node, entries: &mut Vec<(u32, u32)>) {
    entries.clear();
    entries.push((ALL_GPUS, node.free_gpus));
    for gpu in node.gpus.iter().filter(|g| g.free && g.model != NO_MODEL) {
        let bucket = 1 + gpu.model;
        match entries[1..].iter_mut().find(|e| e.0 == bucket) {
            Some(e) => e.1 += 1,
            None => entries.push((bucket, 1)),
        }
    }
}

/// A node that fits the job being decided: ordered best fit first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    /// Free GPUs of the node that the job could use (all free GPUs for a job without GPUs).
    gpus: u32,
    cpu: u32,
    node: u32,
}

/// Whether `node` fits `shape`; if so, as which candidate.
fn fits(n: u32, node: &Node, shape: &Shape) -> Option<Candidate> {
    if node.cpu < shape.cpu || !covers(node.ram, shape.ram()) || !covers(node.storage, shape.storage()) {
        return None;
    }
    if shape.gpus == 0 {
        return Some(Candidate { gpus: node.free_gpus, cpu: node.cpu, node: n });
    }
    if node.free_gpus < shape.gpus {
        return None;
    }
    let vram = shape.vram();
    let usable = node.gpus.iter().filter(|g| g.free && shape.model_ok(g.model) && covers(g.vram, vram)).count() as u32;
    (usable >= shape.gpus).then_some(Candidate { gpus: usable, cpu: node.cpu, node: n })
}

/// Buffers reused across decisions so the loop does not allocate per job.
#[derive(Default)]
struct Scratch {
    /// Per node: the search generation it was last visited in, and whether it was a fit not
    /// in `avoid_nodes` then (a node reached by several probes is checked once).
    seen: Vec<(u32, bool)>,
    generation: u32,
    found: Vec<Candidate>,
    avoided: Vec<Candidate>,
    avoid: Vec<u32>,
    entries: Vec<(u32, u32)>,
    picks: Vec<(f64, u32, usize)>,
}

struct Planner<'a> {
    nodes: Vec<Node>,
    index: Index,
    models: HashMap<GpuModelId, u32>,
    regions: HashMap<&'a str, u32>,
    shapes: HashMap<Shape, u32>,
    /// Per shape: an upper bound on how many nodes can still fit it (capacity only shrinks
    /// during a plan, so a bound found once stays true). `u32::MAX` until a search fails.
    max_fit: Vec<u32>,
    scratch: Scratch,
}

impl<'a> Planner<'a> {
    /// Phases 1 and 2: snapshot (schedulable, distinct, sorted by id, interned) and index.
    fn new(views: &'a [NodeView]) -> Self {
        let mut models = HashMap::new();
        let mut regions: HashMap<&'a str, u32> = HashMap::new();
        let mut nodes = Vec::new();
        for view in distinct_nodes(views).into_iter().filter(|v| v.schedulable) {
            let region = match view.region.as_deref() {
                None => NO_REGION,
                Some(r) => {
                    let next = regions.len() as u32;
                    *regions.entry(r).or_insert(next)
                }
            };
            let gpus: Vec<Gpu> = distinct_gpus(&view.gpus)
                .into_iter()
                .map(|g| Gpu {
                    index: g.index,
                    model: match g.model {
                        None => NO_MODEL,
                        Some(m) => {
                            let next = models.len() as u32;
                            *models.entry(m).or_insert(next)
                        }
                    },
                    vram: g.vram_gb,
                    free: g.free,
                })
                .collect();
            nodes.push(Node {
                id: view.id,
                region,
                cpu: view.free_cpu,
                ram: view.free_ram_gb,
                storage: view.free_storage_gb,
                free_gpus: gpus.iter().filter(|g| g.free).count() as u32,
                gpus,
            });
        }
        let slots = regions.len() + 1;
        let mut index = Index { slots, sets: vec![Vec::new(); (models.len() + 1) * slots] };
        let mut scratch = Scratch { seen: vec![(0, false); nodes.len()], ..Scratch::default() };
        for (n, node) in nodes.iter().enumerate() {
            index.set(n as u32, node, &mut scratch.entries, true);
        }
        Planner { nodes, index, models, regions, shapes: HashMap::new(), max_fit: Vec::new(), scratch }
    }

    /// The job's normalized per-node requirement, or `None` if the job is malformed.
    fn shape_of(&self, job: &JobRequest) -> Option<Shape> {
        let gpus = job.gpu_count;
        let intern = |list: &mut Vec<u32>| {
            list.sort_unstable();
            list.dedup();
        };
        Some(Shape {
            cpu: job.cpu,
            ram: amount(job.ram_gb)?.to_bits(),
            storage: amount(job.storage_gb)?.to_bits(),
            gpus,
            vram: if gpus == 0 { 0 } else { amount(job.min_vram_gb)?.to_bits() },
            models: job.gpu_models.as_ref().filter(|_| gpus > 0).map(|list| {
                let mut ids: Vec<u32> = list.iter().filter_map(|m| self.models.get(m).copied()).collect();
                intern(&mut ids);
                ids
            }),
            regions: job.regions.as_ref().map(|list| {
                let mut ids: Vec<u32> = list.iter().filter_map(|r| self.regions.get(r.as_str()).copied()).collect();
                intern(&mut ids);
                ids
            }),
        })
    }

    /// Phase 4 for one job: place it (all its nodes) or leave it unplaced.
    fn decide(&mut self, job: &JobRequest, plan: &mut Plan) -> bool {
        let need = job.node_count;
        let Some(shape) = self.shape_of(job).filter(|_| need >= 1) else {
            plan.unplaced.push(job.id);
            return false;
        };
        let shape_id = match self.shapes.get(&shape) {
            Some(&id) => id as usize,
            None => {
                let id = self.max_fit.len();
                self.shapes.insert(shape.clone(), id as u32);
                self.max_fit.push(u32::MAX);
                id
            }
        };
        if self.max_fit[shape_id] < need {
            plan.unplaced.push(job.id);
            return false;
        }
        self.scratch.avoid.clear();
        for id in &job.avoid_nodes {
            if let Ok(n) = self.nodes.binary_search_by_key(id, |n| n.id) {
                self.scratch.avoid.push(n as u32);
            }
        }
        let fitting = self.search(&shape, need as usize);
        if fitting < need as usize {
            self.max_fit[shape_id] = fitting as u32;
            plan.unplaced.push(job.id);
            return false;
        }
        let s = &mut self.scratch;
        s.found.sort_unstable();
        s.avoided.sort_unstable();
        let chosen: Vec<u32> = s.found.iter().chain(s.avoided.iter()).take(need as usize).map(|c| c.node).collect();
        let nodes = chosen.into_iter().map(|n| self.commit(n, &shape)).collect();
        plan.placements.push(Placement { job: job.id, nodes });
        true
    }

    /// Fills `scratch.found` (fits not in `avoid_nodes`) and `scratch.avoided` (fits in it)
    /// by walking the job's candidate sets best fit first; each set is walked until it has
    /// produced `need` fits not to avoid. Returns the number of distinct fits found, which is
    /// exact whenever it is below `need` (then every set was walked to the end).
    fn search(&mut self, shape: &Shape, need: usize) -> usize {
        let s = &mut self.scratch;
        s.found.clear();
        s.avoided.clear();
        s.generation = s.generation.wrapping_add(1);
        if s.generation == 0 {
            s.seen.iter_mut().for_each(|e| *e = (0, false));
            s.generation = 1;
        }
        let all_slot = [self.index.all_slot() as u32];
        let slots: &[u32] = shape.regions.as_deref().unwrap_or(&all_slot);
        let any_model = [ALL_GPUS];
        // `models`: interned models whose buckets to walk (bucket `1 + m`), or the all-GPUs
        // bucket itself.
        let (models, by_model, min_level): (&[u32], bool, u32) = match &shape.models {
            _ if shape.gpus == 0 => (&any_model, false, 0),
            None => (&any_model, false, shape.gpus),
            // A node with `gpus` usable GPUs spread over k models has at least ceil(gpus / k)
            // of one of them, so it sits at or above that level in that model's sets.
            Some(list) => (list, true, shape.gpus.div_ceil(list.len().max(1) as u32)),
        };
        for &m in models {
            let bucket = if by_model { 1 + m } else { m };
            for &slot in slots {
                let levels = self.index.levels(bucket, slot as usize);
                let mut produced = 0;
                'walk: for set in levels.iter().skip(min_level as usize) {
                    for &(_, n) in set.range((shape.cpu, 0)..) {
                        let (gen_seen, good) = s.seen[n as usize];
                        if gen_seen == s.generation {
                            produced += usize::from(good);
                        } else {
                            let fit = fits(n, &self.nodes[n as usize], shape);
                            let avoided = fit.is_some() && s.avoid.contains(&n);
                            s.seen[n as usize] = (s.generation, fit.is_some() && !avoided);
                            match fit {
                                Some(c) if avoided => s.avoided.push(c),
                                Some(c) => {
                                    s.found.push(c);
                                    produced += 1;
                                }
                                None => {}
                            }
                        }
                        if produced >= need {
                            break 'walk;
                        }
                    }
                }
            }
        }
        s.found.len() + s.avoided.len()
    }

    /// Takes the job's capacity on node `n` (which fits it), keeping the index in sync.
    fn commit(&mut self, n: u32, shape: &Shape) -> NodeAssignment {
        let node = &mut self.nodes[n as usize];
        let s = &mut self.scratch;
        self.index.set(n, node, &mut s.entries, false);
        // Best fit among the node's GPUs too: the smallest VRAM that suffices, then index.
        s.picks.clear();
        let vram = shape.vram();
        for (i, g) in node.gpus.iter().enumerate() {
            if shape.gpus > 0 && g.free && shape.model_ok(g.model) && covers(g.vram, vram) {
                s.picks.push((g.vram, g.index, i));
            }
        }
        s.picks.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut gpu_indices: Vec<u32> = Vec::with_capacity(shape.gpus as usize);
        for &(_, index, i) in s.picks.iter().take(shape.gpus as usize) {
            node.gpus[i].free = false;
            gpu_indices.push(index);
        }
        debug_assert_eq!(gpu_indices.len(), shape.gpus as usize);
        gpu_indices.sort_unstable();
        node.free_gpus -= shape.gpus;
        node.cpu -= shape.cpu;
        if shape.ram() > 0.0 {
            node.ram -= shape.ram();
        }
        if shape.storage() > 0.0 {
            node.storage -= shape.storage();
        }
        self.index.set(n, node, &mut s.entries, true);
        NodeAssignment { node: node.id, gpu_indices }
    }
}

/// Phase 3: FIFO (created_at_ms, then id) within each account; accounts take turns, one job
/// per account per round, ordered by the runs they already hold (fewest first), then by
/// their oldest job. Returns indices into `jobs`.
fn fair_order(jobs: &[JobRequest]) -> Vec<usize> {
    let mut by_account: Vec<usize> = (0..jobs.len()).collect();
    let key = |i: usize| (jobs[i].account, jobs[i].created_at_ms, jobs[i].id, i);
    by_account.sort_unstable_by_key(|&i| key(i));
    // (runs the account holds, oldest job's created_at_ms, its id, start, end) per account.
    let mut groups: Vec<(u32, i64, JobId, usize, usize)> = Vec::new();
    let mut start = 0;
    while start < by_account.len() {
        let account = jobs[by_account[start]].account;
        let end = start + by_account[start..].iter().take_while(|&&i| jobs[i].account == account).count();
        let oldest = &jobs[by_account[start]];
        groups.push((oldest.account_usage, oldest.created_at_ms, oldest.id, start, end));
        start = end;
    }
    // Two accounts' oldest jobs can only tie on (time, id) if the input repeats a job id; the
    // start position (account order) breaks that tie.
    groups.sort_unstable_by_key(|g| (g.0, g.1, g.2, g.3));
    let mut order = Vec::with_capacity(jobs.len());
    let mut active: Vec<(usize, usize)> = groups.iter().map(|g| (g.3, g.4)).collect();
    while !active.is_empty() {
        for (cursor, _) in active.iter_mut() {
            order.push(by_account[*cursor]);
            *cursor += 1;
        }
        active.retain(|&(cursor, end)| cursor < end);
    }
    order
}

pub(crate) fn run<O: DecisionObserver + ?Sized>(views: &[NodeView], jobs: &[JobRequest], observer: &mut O) -> Plan {
    let mut planner = Planner::new(views);
    let order = fair_order(jobs);
    let mut plan = Plan { placements: Vec::new(), unplaced: Vec::new() };
    for i in order {
        let job = &jobs[i];
        observer.decision_started();
        let placed = planner.decide(job, &mut plan);
        observer.decision_finished(job.id, placed);
    }
    plan
}
