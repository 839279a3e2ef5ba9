//! GPU discovery behind one trait: NVML on real nodes, the fake spec for tests and demos.

use gantry_types::node::{GpuSample, InventoryGpu};
use gantry_types::protocol::RunSpec;
use nvml_wrapper::Nvml;

use super::gb;

/// Where a node's GPUs come from.
pub trait GpuProbe: Send + Sync {
    /// The GPUs found, in index order.
    fn gpus(&self) -> Vec<InventoryGpu>;
    /// Load and free VRAM per GPU now. `held` are the runs the node holds; only probes that
    /// cannot measure (fake GPUs) use it.
    fn sample(&self, held: &[RunSpec]) -> Vec<GpuSample>;
    /// Why there are no (real) GPUs, if that needs saying.
    fn note(&self) -> Option<String>;
    /// Core temperature per GPU index, °C, where it can be measured (not fake GPUs).
    fn temperatures(&self) -> Vec<(u32, f64)> {
        Vec::new()
    }
}

/// Pretended GPUs (`--fake-gpus`). Nothing to measure, so a sample reports what the held runs
/// reserve, as simulated nodes always have.
#[derive(Clone, Debug, Default)]
pub struct FakeGpus {
    gpus: Vec<InventoryGpu>,
}

impl FakeGpus {
    /// These GPUs.
    pub fn new(gpus: Vec<InventoryGpu>) -> Self {
        Self { gpus }
    }
}

impl GpuProbe for FakeGpus {
    fn gpus(&self) -> Vec<InventoryGpu> {
        self.gpus.clone()
    }

    fn sample(&self, held: &[RunSpec]) -> Vec<GpuSample> {
        reserved_gpu_sample(&self.gpus, held)
    }

    fn note(&self) -> Option<String> {
        Some(format!("{} GPU(s) are simulated (--fake-gpus), not measured", self.gpus.len()))
    }
}

/// The sample of GPUs that cannot be measured: a GPU a held run was assigned is fully loaded
/// with no free VRAM, the others idle and empty.
pub fn reserved_gpu_sample(gpus: &[InventoryGpu], held: &[RunSpec]) -> Vec<GpuSample> {
    gpus.iter()
        .map(|g| {
            let busy = held.iter().any(|r| r.gpu_indices.contains(&g.index));
            GpuSample {
                index: g.index,
                load: if busy { 100.0 } else { 0.0 },
                vram_free_gb: if busy { 0.0 } else { g.vram_gb },
            }
        })
        .collect()
}

/// NVIDIA GPUs through NVML. The inventory is read once (devices do not come and go while the
/// driver runs); samples query the driver each time.
pub struct NvmlProbe {
    // None when the library or driver is missing; the note says why.
    nvml: Option<Nvml>,
    gpus: Vec<InventoryGpu>,
    note: Option<String>,
}

impl NvmlProbe {
    /// Loads `libnvidia-ml.so.1` and lists the devices. Never fails: without a driver the
    /// probe has no GPUs and a note with NVML's reason.
    pub fn init() -> Self {
        // Nvml::init loads the library with libloading and calls nvmlInit_v2; on a machine
        // without the driver it returns "a libloading error occurred: libnvidia-ml.so.1:
        // cannot open shared object file".
        Self::from_init(Nvml::init())
    }

    /// The probe for the outcome of `Nvml::init()`.
    pub fn from_init(init: Result<Nvml, nvml_wrapper::error::NvmlError>) -> Self {
        let nvml = match init {
            Ok(nvml) => nvml,
            Err(e) => {
                tracing::debug!(error = %e, "NVML unavailable; this node offers no GPUs");
                return Self { nvml: None, gpus: Vec::new(), note: Some(no_driver_note(&e.to_string())) };
            }
        };
        let (gpus, problems) = list_devices(&nvml);
        let note = if !problems.is_empty() {
            Some(format!("NVML could not read some GPUs, which are left out: {}", problems.join("; ")))
        } else if gpus.is_empty() {
            Some("the NVIDIA driver is loaded but NVML reports no GPUs".into())
        } else {
            None
        };
        Self { nvml: Some(nvml), gpus, note }
    }
}

/// The note for a node where NVML could not start.
pub(crate) fn no_driver_note(reason: &str) -> String {
    format!("no GPUs: NVML could not start ({reason}); is the NVIDIA driver installed?")
}

/// Every device's index, uuid, name and total memory; devices that fail to answer are listed
/// as problems rather than failing the whole inventory.
fn list_devices(nvml: &Nvml) -> (Vec<InventoryGpu>, Vec<String>) {
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => return (Vec::new(), vec![format!("device count: {e}")]),
    };
    let mut gpus = Vec::new();
    let mut problems = Vec::new();
    for index in 0..count {
        // Device<'_> borrows the Nvml handle; each getter is one NVML call.
        let read = nvml.device_by_index(index).and_then(|device| {
            Ok(InventoryGpu {
                index,
                uuid: device.uuid()?, // "GPU-xxxxxxxx-...", what Docker's device_ids take
                name: device.name()?, // e.g. "NVIDIA GeForce RTX 4090"
                vram_gb: gb(device.memory_info()?.total), // bytes
            })
        });
        match read {
            Ok(gpu) => gpus.push(gpu),
            Err(e) => problems.push(format!("GPU {index}: {e}")),
        }
    }
    (gpus, problems)
}

impl GpuProbe for NvmlProbe {
    fn gpus(&self) -> Vec<InventoryGpu> {
        self.gpus.clone()
    }

    fn sample(&self, _held: &[RunSpec]) -> Vec<GpuSample> {
        let Some(nvml) = &self.nvml else { return Vec::new() };
        self.gpus
            .iter()
            .filter_map(|g| {
                let read = nvml.device_by_index(g.index).and_then(|device| {
                    // utilization_rates().gpu: % of the last sample period a kernel ran.
                    let load = f64::from(device.utilization_rates()?.gpu);
                    let free = device.memory_info()?.free;
                    Ok(GpuSample { index: g.index, load, vram_free_gb: gb(free) })
                });
                // A GPU that stops answering (e.g. fallen off the bus) is left out of this
                // sample rather than reported with made-up numbers.
                read.map_err(|e| tracing::warn!(index = g.index, error = %e, "cannot sample GPU")).ok()
            })
            .collect()
    }

    fn note(&self) -> Option<String> {
        self.note.clone()
    }

    fn temperatures(&self) -> Vec<(u32, f64)> {
        use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
        let Some(nvml) = &self.nvml else { return Vec::new() };
        self.gpus
            .iter()
            .filter_map(|g| {
                let celsius = nvml.device_by_index(g.index).and_then(|d| d.temperature(TemperatureSensor::Gpu)).ok()?;
                Some((g.index, f64::from(celsius)))
            })
            .collect()
    }
}
