//! Physical maxima for every capacity a node declares and every requirement a job
//! asks for. Without them a node could register `ram_gb: 1e308` or 4,294,967,295 cores
//! and a job could ask for 9e15 GB, and prices computed from those numbers overflowed
//! (negative balances, then 500s from the database's integer sums). The bounds are far
//! above any real machine, so no honest node or job meets them, and they keep every
//! product the billing computes (price × amount × time) inside 64-bit micro-USD.
//!
//! Pure checks: each returns every violation as a [`FieldError`] naming the field.

use crate::error::FieldError;
use crate::node::{HardwareSample, NodeInventory};

/// Most CPU cores one node offers (and one job asks for per node).
pub const MAX_CPU_CORES: u32 = 4_096;
/// Most CPU packages a node lists.
pub const MAX_CPU_PACKAGES: usize = 64;
/// Most GPUs one node offers (and one job asks for per node).
pub const MAX_GPUS: u32 = 64;
/// Most RAM one node offers (and one job asks for), GB: 64 TiB.
pub const MAX_RAM_GB: f64 = 65_536.0;
/// Most memory of one GPU (and the most VRAM per GPU a job asks for), GB.
pub const MAX_VRAM_GB: f64 = 1_024.0;
/// Most disk one node offers (and one job asks for), GB: 1 PiB.
pub const MAX_STORAGE_GB: f64 = 1_048_576.0;
/// Most nodes one gang job spans.
pub const MAX_NODE_COUNT: i64 = 1_024;
/// Most retries a job may ask for.
pub const MAX_RETRY_COUNT: i64 = 1_000;
/// Longest text a node sends for a name, CPU model, GPU name or uuid, in bytes.
pub const MAX_NODE_TEXT: usize = 256;

/// Checks a GB amount: finite, >= 0, at most `max`.
pub fn check_gb(errors: &mut Vec<FieldError>, field: &str, value: f64, max: f64) {
    if !value.is_finite() || value < 0.0 {
        errors.push(FieldError::new(field, format!("must be a number >= 0, got {value}")));
    } else if value > max {
        errors.push(FieldError::new(field, format!("must be at most {max} GB, got {value}")));
    }
}

fn check_fraction(errors: &mut Vec<FieldError>, field: &str, value: f64) {
    if !value.is_finite() || !(0.0..=100.0).contains(&value) {
        errors.push(FieldError::new(field, format!("must be a percentage from 0 to 100, got {value}")));
    }
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.len() > MAX_NODE_TEXT {
        errors.push(FieldError::new(field, format!("must be at most {MAX_NODE_TEXT} bytes")));
    }
}

/// Checks what a node registers: GPUs by index, every amount finite, non-negative and
/// within the physical maxima. Fields are named `inventory.<...>`.
pub fn check_inventory(inventory: &NodeInventory) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if inventory.cpus.len() > MAX_CPU_PACKAGES {
        errors.push(FieldError::new("inventory.cpus", format!("at most {MAX_CPU_PACKAGES} CPU packages")));
    }
    let cores: u64 = inventory.cpus.iter().map(|c| u64::from(c.num_cores)).sum();
    if cores > u64::from(MAX_CPU_CORES) {
        errors.push(FieldError::new(
            "inventory.cpus",
            format!("at most {MAX_CPU_CORES} cores in all (num_cores sums to {cores})"),
        ));
    }
    for (i, cpu) in inventory.cpus.iter().enumerate() {
        check_text(&mut errors, &format!("inventory.cpus[{i}].name"), &cpu.name);
    }
    check_gb(&mut errors, "inventory.ram_gb", inventory.ram_gb, MAX_RAM_GB);
    check_gb(&mut errors, "inventory.storage_gb", inventory.storage_gb, MAX_STORAGE_GB);
    if inventory.gpus.len() > MAX_GPUS as usize {
        errors.push(FieldError::new("inventory.gpus", format!("at most {MAX_GPUS} GPUs")));
    }
    for (i, gpu) in inventory.gpus.iter().enumerate() {
        if gpu.index as usize != i {
            errors
                .push(FieldError::new(format!("inventory.gpus[{i}].index"), "GPUs must be listed by index 0, 1, 2..."));
        }
        check_gb(&mut errors, &format!("inventory.gpus[{i}].vram_gb"), gpu.vram_gb, MAX_VRAM_GB);
        check_text(&mut errors, &format!("inventory.gpus[{i}].name"), &gpu.name);
        check_text(&mut errors, &format!("inventory.gpus[{i}].uuid"), &gpu.uuid);
    }
    errors
}

/// Checks a heartbeat's hardware sample: loads are percentages, free amounts
/// non-negative and within the maxima. Fields are named `sample.<...>`.
pub fn check_sample(sample: &HardwareSample) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_fraction(&mut errors, "sample.cpu_load", sample.cpu_load);
    check_gb(&mut errors, "sample.ram_free_gb", sample.ram_free_gb, MAX_RAM_GB);
    check_gb(&mut errors, "sample.storage_free_gb", sample.storage_free_gb, MAX_STORAGE_GB);
    if sample.gpus.len() > MAX_GPUS as usize {
        errors.push(FieldError::new("sample.gpus", format!("at most {MAX_GPUS} GPUs")));
    }
    for (i, gpu) in sample.gpus.iter().enumerate() {
        check_fraction(&mut errors, &format!("sample.gpus[{i}].load"), gpu.load);
        check_gb(&mut errors, &format!("sample.gpus[{i}].vram_free_gb"), gpu.vram_free_gb, MAX_VRAM_GB);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{GpuSample, InventoryGpu, NodeCpu};

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_real_machine_passes() {
        let inventory = NodeInventory {
            cpus: vec![NodeCpu { name: "EPYC".into(), num_cores: 192 }; 2],
            ram_gb: 2_048.0,
            storage_gb: 30_000.0,
            gpus: (0..8)
                .map(|i| InventoryGpu { index: i, uuid: format!("GPU-{i}"), name: "H200".into(), vram_gb: 141.0 })
                .collect(),
        };
        assert!(check_inventory(&inventory).is_empty());
    }

    #[test]
    fn absurd_capacities_are_named() {
        let inventory = NodeInventory {
            cpus: vec![
                NodeCpu { name: "x".into(), num_cores: u32::MAX },
                NodeCpu { name: "y".into(), num_cores: u32::MAX },
            ],
            ram_gb: 1e308,
            storage_gb: f64::NAN,
            gpus: vec![InventoryGpu { index: 0, uuid: "GPU-0".into(), name: "g".into(), vram_gb: -1.0 }],
        };
        assert_eq!(
            fields(&check_inventory(&inventory)),
            ["inventory.cpus", "inventory.ram_gb", "inventory.storage_gb", "inventory.gpus[0].vram_gb"]
        );
    }

    #[test]
    fn negative_or_absurd_samples_are_named() {
        let sample = HardwareSample {
            cpu_load: -5.0,
            ram_free_gb: -1.0,
            storage_free_gb: 1e300,
            gpus: vec![GpuSample { index: 0, load: 101.0, vram_free_gb: -0.5 }],
        };
        assert_eq!(
            fields(&check_sample(&sample)),
            [
                "sample.cpu_load",
                "sample.ram_free_gb",
                "sample.storage_free_gb",
                "sample.gpus[0].load",
                "sample.gpus[0].vram_free_gb"
            ]
        );
        assert!(check_sample(&HardwareSample::default()).is_empty());
    }
}
