//! What a node offers. Simulated nodes describe theirs with a spec string, the same
//! one `--fake-gpus` takes:
//!
//! `"2xNVIDIA RTX 4090:24,region=eu-west-1,cpus=16,ram=64,disk=500"`: comma-separated
//! items; `NxNAME:VRAM_GB` adds N GPUs (repeatable), `region=`, `cpus=`, `ram=` (GB),
//! `disk=` (GB) and `label.KEY=VALUE` set the rest. Defaults: 16 cores, 64 GB RAM,
//! 500 GB disk, no GPUs, no region. On a real node the agent measures the host instead and
//! the spec only overrides what it names ([`parse_fake_items`], used by [`crate::host`]).

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

/// What a fake spec sets: only what it names, so a real host can fill in the rest
/// (see [`crate::host`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeSpec {
    /// The `NxNAME:VRAM_GB` items, numbered from 0.
    pub gpus: Vec<InventoryGpu>,
    /// `cpus=`.
    pub cpus: Option<u32>,
    /// `ram=` (GB).
    pub ram_gb: Option<f64>,
    /// `disk=` (GB).
    pub disk_gb: Option<f64>,
    /// `region=`.
    pub region: Option<String>,
    /// `label.KEY=VALUE` items.
    pub labels: BTreeMap<String, String>,
}

/// Parses a fake node spec; the error names the bad item. Unset facts take the defaults of
/// a simulated node (16 cores, 64 GB RAM, 500 GB disk).
pub fn parse_fake_spec(spec: &str) -> Result<NodeDescription, String> {
    let fake = parse_fake_items(spec)?;
    let inventory = NodeInventory {
        cpus: vec![NodeCpu { name: "Simulated CPU".into(), num_cores: fake.cpus.unwrap_or(16) }],
        ram_gb: fake.ram_gb.unwrap_or(64.0),
        storage_gb: fake.disk_gb.unwrap_or(500.0),
        gpus: fake.gpus,
    };
    Ok(NodeDescription { inventory, region: fake.region, labels: fake.labels })
}

/// Parses a fake node spec into what it sets explicitly; the error names the bad item.
pub fn parse_fake_items(spec: &str) -> Result<FakeSpec, String> {
    let mut fake = FakeSpec::default();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let number = |v: &str| v.parse::<f64>().map_err(|_| format!("{item:?}: {v:?} is not a number"));
        if let Some((key, value)) = item.split_once('=') {
            match key {
                "region" => fake.region = Some(value.to_string()),
                "cpus" => {
                    fake.cpus = Some(value.parse().map_err(|_| format!("{item:?}: cpus must be a whole number"))?)
                }
                "ram" => fake.ram_gb = Some(number(value)?),
                "disk" => fake.disk_gb = Some(number(value)?),
                _ if key.starts_with("label.") => {
                    fake.labels.insert(key["label.".len()..].to_string(), value.to_string());
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
            let index = fake.gpus.len() as u32;
            fake.gpus.push(InventoryGpu {
                index,
                uuid: format!("GPU-fake-{index:02}-{:08x}", fnv(name) ^ index),
                name: name.to_string(),
                vram_gb,
            });
        }
    }
    Ok(fake)
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

    #[test]
    fn items_record_only_what_the_spec_sets() {
        let f = parse_fake_items("1xA100:80,ram=128").unwrap();
        assert_eq!(f.gpus.len(), 1);
        assert_eq!(f.ram_gb, Some(128.0));
        assert_eq!((f.cpus, f.disk_gb, f.region.as_deref()), (None, None, None));
        assert_eq!(parse_fake_items("").unwrap(), FakeSpec::default());
        // The simulated-node defaults fill what the spec leaves out.
        let d = parse_fake_spec("ram=128").unwrap();
        assert_eq!((d.inventory.cores(), d.inventory.ram_gb, d.inventory.storage_gb), (16, 128.0, 500.0));
    }
}
