//! What a node offers. Simulated nodes describe theirs with a spec string, the same
//! one `--fake-gpus` takes:
//!
//! `"2xNVIDIA RTX 4090:24,region=eu-west-1,cpus=16,ram=64,disk=500"`: comma-separated
//! items; `NxNAME:VRAM_GB` adds N GPUs (repeatable), `region=`, `cpus=`, `ram=` (GB),
//! `disk=` (GB) and `label.KEY=VALUE` set the rest. Defaults: 16 cores, 64 GB RAM,
//! 500 GB disk, no GPUs, no region.

use std::collections::BTreeMap;

use gantry_types::node::{InventoryGpu, NodeCpu, NodeInventory};

/// A node's inventory and placement facts.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeDescription {
    /// Hardware.
    pub inventory: NodeInventory,
    /// Region code.
    pub region: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Parses a fake node spec; the error names the bad item.
pub fn parse_fake_spec(spec: &str) -> Result<NodeDescription, String> {
    let mut cpus = 16u32;
    let mut inventory = NodeInventory { ram_gb: 64.0, storage_gb: 500.0, ..Default::default() };
    let mut region = None;
    let mut labels = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let number = |v: &str| v.parse::<f64>().map_err(|_| format!("{item:?}: {v:?} is not a number"));
        if let Some((key, value)) = item.split_once('=') {
            match key {
                "region" => region = Some(value.to_string()),
                "cpus" => cpus = value.parse().map_err(|_| format!("{item:?}: cpus must be a whole number"))?,
                "ram" => inventory.ram_gb = number(value)?,
                "disk" => inventory.storage_gb = number(value)?,
                _ if key.starts_with("label.") => {
                    labels.insert(key["label.".len()..].to_string(), value.to_string());
                }
                _ => return Err(format!("{item:?}: unknown key {key:?} (region, cpus, ram, disk, label.NAME)")),
            }
            continue;
        }
        let (count_name, vram) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?}: expected NxNAME:VRAM_GB, e.g. 2xNVIDIA RTX 4090:24"))?;
        let (count, name) = match count_name.split_once('x') {
            Some((n, name)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                (n.parse::<u32>().map_err(|_| format!("{item:?}: bad count"))?, name.trim())
            }
            _ => (1, count_name.trim()),
        };
        let vram_gb = number(vram)?;
        for _ in 0..count {
            let index = inventory.gpus.len() as u32;
            inventory.gpus.push(InventoryGpu {
                index,
                uuid: format!("GPU-fake-{index:02}-{:08x}", fnv(name) ^ index),
                name: name.to_string(),
                vram_gb,
            });
        }
    }
    inventory.cpus = vec![NodeCpu { name: "Simulated CPU".into(), num_cores: cpus }];
    Ok(NodeDescription { inventory, region, labels })
}

/// A small stable hash so fake GPU uuids look distinct per model.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x01000193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let d = parse_fake_spec("2xNVIDIA RTX 4090:24,region=eu-west-1,cpus=8,ram=32,label.tier=gold").unwrap();
        assert_eq!(d.inventory.gpus.len(), 2);
        assert_eq!(d.inventory.gpus[1].index, 1);
        assert_eq!(d.inventory.gpus[0].name, "NVIDIA RTX 4090");
        assert_eq!(d.inventory.gpus[0].vram_gb, 24.0);
        assert_eq!(d.inventory.cores(), 8);
        assert_eq!(d.inventory.ram_gb, 32.0);
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.labels.get("tier").map(String::as_str), Some("gold"));
        assert!(parse_fake_spec("").unwrap().inventory.gpus.is_empty());
        assert!(parse_fake_spec("4090").is_err());
        assert!(parse_fake_spec("colour=red").is_err());
    }
}
