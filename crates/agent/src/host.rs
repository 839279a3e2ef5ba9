//! What a real node has (issue 4 item 7): GPUs from NVML, CPUs, RAM and free disk from the
//! host, region and labels from the agent's configuration, and live samples of the same for
//! each heartbeat.
//!
//! **`--fake-gpus SPEC` on a real host** replaces the GPUs, and only the other facts the spec
//! names explicitly (`cpus=`, `ram=`, `disk=`, `region=`, `label.K=V`); everything else is
//! measured. That lets a demo or test node on a GPU-less machine run real containers while
//! advertising GPUs, without lying about its CPUs or disk. Configuration flags (`--region`,
//! `--label`) win over the spec's `region=`/`label.` items, because they are the more specific
//! statement of the operator. Simulated nodes (`--simulate`) do not use this module: they take
//! the whole node from the spec ([`crate::inventory::parse_fake_spec`]).
//!
//! **Why sysinfo, not /proc + statvfs by hand:** `statvfs` needs `unsafe` (forbidden in this
//! workspace) or another crate anyway, and `gantry dev` should also work on a developer's
//! macOS machine; sysinfo reads /proc on Linux and the native APIs elsewhere. Only its
//! `system` and `disk` features are enabled.
//!
//! **Why NVML through nvml-wrapper:** it loads `libnvidia-ml.so.1` at run time, so one binary
//! runs on GPU and non-GPU machines; without a driver the probe reports no GPUs and a note
//! saying why, never an error.
//!
//! Units: GB here are binary (2^30 bytes), as GPU and RAM sizes are labelled (an "RTX 4090
//! 24 GB" has 24 GiB), rounded to 0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gantry_types::node::{HardwareSample, InventoryGpu, NodeCpu, NodeInventory};
use gantry_types::protocol::RunSpec;

use crate::inventory::{FakeSpec, NodeDescription, parse_fake_items};

mod gpu;
mod print;

pub use gpu::{FakeGpus, GpuProbe, NvmlProbe, reserved_gpu_sample};
pub use print::{inventory_json, inventory_report, print_inventory};

/// What the agent's configuration says about the node (the CLI's `--fake-gpus`, `--region`,
/// `--label KEY=VALUE` and the Docker data root).
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// `--fake-gpus SPEC`: pretend these GPUs (and whatever else the spec names). `None` asks
    /// NVML; `Some("")` means a node with no GPUs, without asking NVML.
    pub fake_gpus: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--label KEY=VALUE` (see [`parse_label`]).
    pub labels: BTreeMap<String, String>,
    /// Whose file system's free space is the node's disk: the Docker data root (Docker's
    /// `DockerRootDir`). `None`: `/var/lib/docker` if it exists, else `/`.
    pub disk_path: Option<PathBuf>,
}

/// Parses a `--label KEY=VALUE` argument; the error names the bad argument.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.trim().to_string())),
        _ => Err(format!("label {text:?}: expected KEY=VALUE with a non-empty KEY")),
    }
}

/// The facts measured from the host, before the fake spec and configuration apply.
#[derive(Clone, Debug, PartialEq)]
pub struct HostFacts {
    /// CPU model name.
    pub cpu_name: String,
    /// Logical CPUs (what Docker's CPU limits count).
    pub cores: u32,
    /// Total RAM, GB.
    pub ram_gb: f64,
    /// Free space where the disk path lives, GB.
    pub disk_free_gb: f64,
}

/// Combines measured facts, the GPUs found, the optional fake spec and configuration into the
/// node's description (the rules are in the module doc).
pub fn describe(
    facts: &HostFacts,
    gpus: Vec<InventoryGpu>,
    fake: Option<&FakeSpec>,
    options: &HostOptions,
) -> NodeDescription {
    let cores = fake.and_then(|f| f.cpus).unwrap_or(facts.cores);
    let inventory = NodeInventory {
        cpus: vec![NodeCpu { name: facts.cpu_name.clone(), num_cores: cores }],
        ram_gb: fake.and_then(|f| f.ram_gb).unwrap_or(facts.ram_gb),
        storage_gb: fake.and_then(|f| f.disk_gb).unwrap_or(facts.disk_free_gb),
        gpus,
    };
    let mut labels = fake.map(|f| f.labels.clone()).unwrap_or_default();
    labels.extend(options.labels.clone());
    let region = options.region.clone().or_else(|| fake.and_then(|f| f.region.clone()));
    NodeDescription { inventory, region, labels }
}

/// The node's hardware as the agent sees it: the description it registers with and the probe
/// behind each heartbeat's [`HardwareSample`].
pub struct HostProbe {
    description: NodeDescription,
    notes: Vec<String>,
    gpus: Box<dyn GpuProbe>,
    disk_path: PathBuf,
    // Kept between samples: CPU load is the difference between two readings.
    system: Mutex<Option<sysinfo::System>>,
    disks: Mutex<Option<sysinfo::Disks>>,
}

impl HostProbe {
    /// Looks at the host: NVML (or the fake spec), CPUs, RAM, disk. Errors only for bad
    /// configuration (a bad spec, a disk path that does not exist); missing hardware or a
    /// missing driver become notes.
    pub fn discover(options: &HostOptions) -> Result<Self, String> {
        let fake =
            options.fake_gpus.as_deref().map(parse_fake_items).transpose().map_err(|e| format!("--fake-gpus: {e}"))?;
        let gpus: Box<dyn GpuProbe> = match &fake {
            Some(f) => Box::new(FakeGpus::new(f.gpus.clone())),
            None => Box::new(NvmlProbe::init()),
        };
        Self::with_gpus(options, fake.as_ref(), gpus)
    }

    /// Like [`HostProbe::discover`] with a given GPU probe (tests, or an NVML probe made once).
    pub fn with_gpus(options: &HostOptions, fake: Option<&FakeSpec>, gpus: Box<dyn GpuProbe>) -> Result<Self, String> {
        let disk_path = match &options.disk_path {
            Some(p) => p.canonicalize().map_err(|e| format!("disk path {}: {e}", p.display()))?,
            None => default_disk_path(),
        };
        let mut notes: Vec<String> = gpus.note().into_iter().collect();
        let mut system = sysinfo::System::new().ok();
        let mut disks = sysinfo::Disks::new_with_refreshed_list_specifics(sysinfo::DiskRefreshKind::nothing()).ok();
        let (cpu_name, cores, ram_gb) = match system.as_mut() {
            Some(s) => {
                s.refresh_cpu_all();
                s.refresh_memory();
                let name = s.cpus().first().map(|c| c.brand().trim().to_string()).filter(|n| !n.is_empty());
                (name.unwrap_or_else(|| "unknown CPU".into()), s.cpus().len() as u32, gb(s.total_memory()))
            }
            None => {
                notes.push("cannot read CPU and memory facts on this system (sysinfo)".into());
                ("unknown CPU".into(), 0, 0.0)
            }
        };
        let disk_free_gb = match disks.as_mut().and_then(|d| free_space(&disk_path, d)) {
            Some(free) => gb(free),
            None => {
                notes.push(format!("cannot find the file system of {}; reporting no disk", disk_path.display()));
                0.0
            }
        };
        let facts = HostFacts { cpu_name, cores, ram_gb, disk_free_gb };
        let description = describe(&facts, gpus.gpus(), fake, options);
        Ok(Self { description, notes, gpus, disk_path, system: Mutex::new(system), disks: Mutex::new(disks) })
    }

    /// What the node registers with.
    pub fn description(&self) -> &NodeDescription {
        &self.description
    }

    /// Why something is missing or pretended (no NVIDIA driver, fake GPUs, unreadable facts).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The path whose file system is the node's disk.
    pub fn disk_path(&self) -> &Path {
        &self.disk_path
    }

    /// GPU core temperatures, °C (NVML; none for fake GPUs), for the agent's metrics.
    pub fn gpu_temperatures(&self) -> Vec<(u32, f64)> {
        self.gpus.temperatures()
    }

    /// Measures load and free capacity now. CPU load is averaged since the previous call (or
    /// since discovery). GPUs come from the GPU probe: NVML measures; fake GPUs report the
    /// reservations of `held` (the runs the node was last told to hold). It blocks for a few
    /// milliseconds (/proc reads, one statvfs, two NVML calls per GPU).
    pub fn sample(&self, held: &[RunSpec]) -> HardwareSample {
        let (cpu_load, ram_free_gb) = match self.system.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(s) => {
                s.refresh_cpu_usage();
                s.refresh_memory();
                (round1(f64::from(s.global_cpu_usage())), gb(s.available_memory()))
            }
            None => (0.0, 0.0),
        };
        let storage_free_gb = match self.disks.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(d) => free_space(&self.disk_path, d).map_or(0.0, gb),
            None => 0.0,
        };
        HardwareSample { cpu_load, ram_free_gb, storage_free_gb, gpus: self.gpus.sample(held) }
    }
}

/// A sample the control plane accepts whatever the probes measured: loads within 0-100,
/// sizes at least 0, nothing that is not a finite number (the control plane refuses a
/// negative or non-finite sample, and a refused heartbeat would lose the node).
pub fn sanitize_sample(mut sample: HardwareSample) -> HardwareSample {
    let load = |x: f64| if x.is_finite() { x.clamp(0.0, 100.0) } else { 0.0 };
    let size = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
    sample.cpu_load = load(sample.cpu_load);
    sample.ram_free_gb = size(sample.ram_free_gb);
    sample.storage_free_gb = size(sample.storage_free_gb);
    for gpu in &mut sample.gpus {
        gpu.load = load(gpu.load);
        gpu.vram_free_gb = size(gpu.vram_free_gb);
    }
    sample
}

fn default_disk_path() -> PathBuf {
    let docker = Path::new("/var/lib/docker");
    if docker.is_dir() { docker.to_path_buf() } else { PathBuf::from("/") }
}

/// Available bytes on the file system holding `path`, refreshing only that file system (a
/// Docker host lists many mounts; one statvfs per heartbeat is enough).
fn free_space(path: &Path, disks: &mut sysinfo::Disks) -> Option<u64> {
    let index = mount_index(path, disks.iter().map(|d| d.mount_point()))?;
    let disk = &mut disks[index];
    disk.refresh_specifics(sysinfo::DiskRefreshKind::nothing().with_storage());
    Some(disk.available_space())
}

/// Which of `mounts` holds `path`: the deepest mount point that is a prefix of it by whole
/// components (so `/var/lib` does not hold `/var/library`).
pub(crate) fn mount_index<'a>(path: &Path, mounts: impl IntoIterator<Item = &'a Path>) -> Option<usize> {
    mounts
        .into_iter()
        .enumerate()
        .filter(|(_, mount)| path.starts_with(mount))
        .max_by_key(|(_, mount)| mount.components().count())
        .map(|(index, _)| index)
}

/// Bytes to GB (2^30), rounded to 0.1.
pub(crate) fn gb(bytes: u64) -> f64 {
    round1(bytes as f64 / (1u64 << 30) as f64)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests;
