//! Why a job does not fit right now, in words, per constraint.

use std::fmt::Write as _;

use gantry_types::ids::GpuModelId;

use crate::norm::{amount, covers, distinct_gpus, distinct_nodes};
use crate::{JobRequest, NodeView};

/// The constraints in the fixed order nodes are attributed in: each schedulable node counts
/// once, under the first constraint it fails.
#[derive(Clone, Copy)]
enum Constraint {
    Region,
    Cpu,
    Ram,
    Storage,
    GpuCount,
    GpuModel,
    Vram,
}

const ORDER: [Constraint; 7] = [
    Constraint::Region,
    Constraint::Cpu,
    Constraint::Ram,
    Constraint::Storage,
    Constraint::GpuCount,
    Constraint::GpuModel,
    Constraint::Vram,
];

/// The job's requirements, normalized as the planner normalizes them.
struct Need<'a> {
    job: &'a JobRequest,
    ram: f64,
    storage: f64,
    vram: f64,
}

impl Need<'_> {
    fn model_ok(&self, model: Option<GpuModelId>) -> bool {
        match (&self.job.gpu_models, model) {
            (None, _) => true,
            (Some(list), Some(m)) => list.contains(&m),
            (Some(_), None) => false,
        }
    }

    /// The first constraint `node` (schedulable) fails, or `None` if it fits the job.
    fn first_failure(&self, node: &NodeView) -> Option<Constraint> {
        let job = self.job;
        if let Some(regions) = &job.regions
            && !node.region.as_ref().is_some_and(|r| regions.contains(r))
        {
            return Some(Constraint::Region);
        }
        if node.free_cpu < job.cpu {
            return Some(Constraint::Cpu);
        }
        if !covers(node.free_ram_gb, self.ram) {
            return Some(Constraint::Ram);
        }
        if !covers(node.free_storage_gb, self.storage) {
            return Some(Constraint::Storage);
        }
        let g = job.gpu_count as usize;
        if g == 0 {
            return None;
        }
        let gpus = distinct_gpus(&node.gpus);
        let free = gpus.iter().filter(|x| x.free);
        if free.clone().count() < g {
            return Some(Constraint::GpuCount);
        }
        let of_model = free.filter(|x| self.model_ok(x.model));
        if of_model.clone().count() < g {
            return Some(Constraint::GpuModel);
        }
        if of_model.filter(|x| covers(x.vram_gb, self.vram)).count() < g {
            return Some(Constraint::Vram);
        }
        None
    }

    /// "have under 8 CPU cores free" (or "has ..." when `n == 1`).
    fn describe(&self, c: Constraint, n: usize, model_name: &dyn Fn(GpuModelId) -> String) -> String {
        let job = self.job;
        let (have, are) = if n == 1 { ("has", "is") } else { ("have", "are") };
        let g = job.gpu_count;
        match c {
            Constraint::Region => {
                let regions = job.regions.as_deref().unwrap_or_default();
                match regions {
                    [] => format!("{n} {are} outside the allowed regions (none listed)"),
                    [one] => format!("{n} {are} outside region {one}"),
                    many => format!("{n} {are} outside regions {}", many.join(", ")),
                }
            }
            Constraint::Cpu if job.cpu == 1 => format!("{n} {have} no CPU core free"),
            Constraint::Cpu => format!("{n} {have} under {} CPU cores free", job.cpu),
            Constraint::Ram => format!("{n} {have} under {} GB RAM free", self.ram),
            Constraint::Storage => format!("{n} {have} under {} GB storage free", self.storage),
            Constraint::GpuCount if g == 1 => format!("{n} {have} no free GPU"),
            Constraint::GpuCount => format!("{n} {have} under {g} free GPUs"),
            Constraint::GpuModel => {
                let mut names: Vec<String> = Vec::new();
                for m in job.gpu_models.as_deref().unwrap_or_default() {
                    let name = model_name(*m);
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                let names = if names.is_empty() {
                    "GPU of an allowed model (none listed)".to_owned()
                } else {
                    names.join(" or ")
                };
                if g == 1 {
                    format!("{n} {have} no free {names}")
                } else {
                    format!("{n} {have} under {g} free {names}")
                }
            }
            Constraint::Vram if g == 1 => format!("{n} {have} under {} GB VRAM free", self.vram),
            Constraint::Vram => format!("{n} {have} under {g} matching GPUs with {} GB VRAM free", self.vram),
        }
    }
}

/// Why `job` does not fit on `nodes` right now, for a person, per constraint, e.g.
/// `"0 of 12 online nodes match: 9 have no free NVIDIA RTX 5090, 3 have under 32 GB VRAM free"`.
///
/// Counts every schedulable node once (of several views with one id, the first), attributing
/// it to the first constraint it fails in a fixed order: region, cpu, RAM, storage, GPU count,
/// GPU model, VRAM. Also says how many nodes are unschedulable (offline or draining) and, for
/// gangs, how many nodes are needed at once. `model_name` names GPU models.
///
/// This looks at the snapshot alone, not at what a plan has taken from it: a job may match
/// here and still wait, behind older jobs or other accounts' turns. The planner never calls
/// this; the server calls it only for the jobs it displays.
pub fn explain(nodes: &[NodeView], job: &JobRequest, model_name: &dyn Fn(GpuModelId) -> String) -> String {
    if job.node_count == 0 {
        return "node_count is 0: a job needs at least 1 node".to_owned();
    }
    let vram_gb = if job.gpu_count == 0 { 0.0 } else { job.min_vram_gb };
    let (Some(ram), Some(storage), Some(vram)) = (amount(job.ram_gb), amount(job.storage_gb), amount(vram_gb)) else {
        return format!(
            "a requirement is not a finite number (ram_gb {}, storage_gb {}, min_vram_gb {})",
            job.ram_gb, job.storage_gb, job.min_vram_gb
        );
    };
    let need = Need { job, ram, storage, vram };

    let (mut online, mut offline, mut matched) = (0usize, 0usize, 0usize);
    let mut failures = [0usize; ORDER.len()];
    for node in distinct_nodes(nodes) {
        if !node.schedulable {
            offline += 1;
            continue;
        }
        online += 1;
        match need.first_failure(node) {
            None => matched += 1,
            Some(c) => failures[c as usize] += 1,
        }
    }

    let mut text = format!(
        "{matched} of {online} online {} {}",
        if online == 1 { "node" } else { "nodes" },
        if matched == 1 { "matches" } else { "match" }
    );
    let reasons: Vec<String> = ORDER
        .iter()
        .filter(|&&c| failures[c as usize] > 0)
        .map(|&c| need.describe(c, failures[c as usize], model_name))
        .collect();
    if !reasons.is_empty() {
        let _ = write!(text, ": {}", reasons.join(", "));
    }
    if offline > 0 {
        let _ = write!(text, "; {offline} more {} offline or draining", if offline == 1 { "is" } else { "are" });
    }
    let gang = job.node_count as usize;
    if gang > 1 {
        if matched < gang {
            let _ = write!(
                text,
                "; needs {gang} nodes at once, only {matched} {}",
                if matched == 1 { "matches" } else { "match" }
            );
        } else {
            let _ = write!(text, "; needs {gang} nodes at once");
        }
    }
    text
}
