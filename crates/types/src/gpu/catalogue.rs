//! Gantry's seeded GPU catalogue: current NVIDIA data-centre, workstation and
//! consumer GPUs, written into every store at server start (missing entries only,
//! so operators' additions are never touched).
//!
//! **The uuids are fixed literals.** Job specs and client configs name models by
//! `gpu_registry_uuid`, so an entry's uuid must never change: never regenerate them,
//! and give a new entry a new hand-written literal. The RTX 5090 keeps upstream's
//! uuid ([`RTX_5090_UUID`], API.md §6.9) so configs written for upstream keep working;
//! the others are Gantry's own, UUIDv7-shaped (`0198ac1c-7000-7000-8000-0000000001NN`
//! data-centre/workstation, `...-0000000002NN` consumer).
//!
//! **Names.** `name` is NVIDIA's product name; `aliases` are the names NVML reports
//! (`nvidia-smi --query-gpu=name`) for every variant sold under it, and the short forms
//! clients send (`NVIDIA RTX 4090`, `RTX 4090`, `H100`). A bare family name that
//! several entries share (`H100`, `A100`, `V100`) names the flagship variant (the SXM
//! board with the most memory); clients that care send the full name or the uuid.
//!
//! **`vram_gb`** is the memory per GPU of the largest configuration sold under the
//! name (the RTX 3080 exists with 10 and 12 GB and reports the same NVML name): jobs
//! that need a minimum say `min_vram_gb`, which is checked against what nodes report.

use super::{GpuModel, OBJECT};
use crate::ids::GpuModelId;
use crate::time::Timestamp;

/// Upstream's registry uuid of the RTX 5090 (API.md §6.9, from a client's config).
pub const RTX_5090_UUID: &str = "0198ac1c-7063-4be8-bb94-57a5bd83548e";

/// `created_at` of seeded entry `i` is this plus `i` ms (2025-01-01T00:00:00Z, before
/// any Gantry deployment), so lists order the catalogue as written here, identically
/// on every server, and operators' additions after it.
pub const SEEDED_AT_MS: i64 = 1_735_689_600_000;

/// Vendor of every seeded entry.
pub const VENDOR: &str = "NVIDIA";

/// One seeded entry.
#[derive(Clone, Copy, Debug)]
pub struct CatalogueEntry {
    /// Fixed uuid literal (never regenerated).
    pub uuid: &'static str,
    /// NVIDIA's product name.
    pub name: &'static str,
    /// Memory per GPU, GB.
    pub vram_gb: f64,
    /// NVML names and client short forms.
    pub aliases: &'static [&'static str],
}

const fn gpu(uuid: &'static str, name: &'static str, vram_gb: f64, aliases: &'static [&'static str]) -> CatalogueEntry {
    CatalogueEntry { uuid, name, vram_gb, aliases }
}

/// A GeForce card: NVML reports `NVIDIA GeForce RTX <n>`; clients send
/// `NVIDIA RTX <n>` (upstream's own examples), `GeForce RTX <n>` or `RTX <n>`.
macro_rules! geforce {
    ($uuid:literal, $model:literal, $vram:literal) => {
        gpu(
            $uuid,
            concat!("NVIDIA GeForce RTX ", $model),
            $vram,
            &[concat!("NVIDIA RTX ", $model), concat!("GeForce RTX ", $model), concat!("RTX ", $model)],
        )
    };
}

/// The catalogue, data-centre and workstation GPUs first, then consumer cards.
pub const CATALOGUE: &[CatalogueEntry] = &[
    // --- Data-centre: Hopper, Blackwell ---
    gpu(
        "0198ac1c-7000-7000-8000-000000000101",
        "NVIDIA H200",
        141.0,
        &["NVIDIA H200 SXM", "NVIDIA H200 141GB HBM3e", "H200", "H200 SXM"],
    ),
    gpu("0198ac1c-7000-7000-8000-000000000102", "NVIDIA H200 NVL", 141.0, &["H200 NVL"]),
    gpu(
        "0198ac1c-7000-7000-8000-000000000103",
        "NVIDIA H100 SXM",
        80.0,
        &["NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB", "NVIDIA H100", "H100 SXM", "H100 SXM5", "H100"],
    ),
    gpu("0198ac1c-7000-7000-8000-000000000104", "NVIDIA H100 PCIe", 80.0, &["NVIDIA H100 80GB PCIe", "H100 PCIe"]),
    gpu("0198ac1c-7000-7000-8000-000000000105", "NVIDIA H100 NVL", 94.0, &["H100 NVL"]),
    gpu("0198ac1c-7000-7000-8000-000000000106", "NVIDIA GH200 480GB", 96.0, &["NVIDIA GH200", "GH200", "GH200 480GB"]),
    gpu(
        "0198ac1c-7000-7000-8000-000000000107",
        "NVIDIA GH200 144GB HBM3e",
        144.0,
        &["NVIDIA GH200 144G HBM3e", "GH200 144GB"],
    ),
    gpu("0198ac1c-7000-7000-8000-000000000108", "NVIDIA B200", 180.0, &["NVIDIA HGX B200", "B200"]),
    gpu("0198ac1c-7000-7000-8000-000000000109", "NVIDIA B100", 192.0, &["NVIDIA HGX B100", "B100"]),
    // --- Data-centre: Ampere, Ada, Turing, Volta ---
    gpu(
        "0198ac1c-7000-7000-8000-00000000010a",
        "NVIDIA A100 80GB",
        80.0,
        &[
            "NVIDIA A100-SXM4-80GB",
            "NVIDIA A100 80GB PCIe",
            "A100-SXM4-80GB",
            "A100 80GB PCIe",
            "A100 80GB",
            "NVIDIA A100",
            "A100",
        ],
    ),
    gpu(
        "0198ac1c-7000-7000-8000-00000000010b",
        "NVIDIA A100 40GB",
        40.0,
        &["NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB", "A100-SXM4-40GB", "A100-PCIE-40GB", "A100 40GB"],
    ),
    gpu("0198ac1c-7000-7000-8000-00000000010c", "NVIDIA L40S", 48.0, &["L40S"]),
    gpu("0198ac1c-7000-7000-8000-00000000010d", "NVIDIA L40", 48.0, &["L40"]),
    gpu("0198ac1c-7000-7000-8000-00000000010e", "NVIDIA L4", 24.0, &["L4"]),
    gpu("0198ac1c-7000-7000-8000-00000000010f", "NVIDIA A40", 48.0, &["A40"]),
    gpu("0198ac1c-7000-7000-8000-000000000110", "NVIDIA A10", 24.0, &["A10"]),
    gpu("0198ac1c-7000-7000-8000-000000000111", "NVIDIA A10G", 24.0, &["A10G"]),
    gpu("0198ac1c-7000-7000-8000-000000000112", "NVIDIA A30", 24.0, &["A30"]),
    gpu("0198ac1c-7000-7000-8000-000000000113", "NVIDIA T4", 16.0, &["Tesla T4", "NVIDIA Tesla T4", "T4"]),
    gpu(
        "0198ac1c-7000-7000-8000-000000000114",
        "NVIDIA V100 32GB",
        32.0,
        &[
            "Tesla V100-SXM2-32GB",
            "Tesla V100-PCIE-32GB",
            "Tesla V100-SXM3-32GB",
            "V100 32GB",
            "NVIDIA V100",
            "Tesla V100",
            "V100",
        ],
    ),
    gpu(
        "0198ac1c-7000-7000-8000-000000000115",
        "NVIDIA V100 16GB",
        16.0,
        &["Tesla V100-SXM2-16GB", "Tesla V100-PCIE-16GB", "V100 16GB"],
    ),
    gpu("0198ac1c-7000-7000-8000-000000000116", "NVIDIA A16", 16.0, &["A16"]),
    gpu("0198ac1c-7000-7000-8000-000000000117", "NVIDIA A2", 16.0, &["A2"]),
    // --- Workstation ---
    gpu(
        "0198ac1c-7000-7000-8000-000000000118",
        "NVIDIA RTX PRO 6000 Blackwell",
        96.0,
        &[
            "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
            "NVIDIA RTX PRO 6000 Blackwell Server Edition",
            "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
            "NVIDIA RTX PRO 6000",
            "RTX PRO 6000 Blackwell",
            "RTX PRO 6000",
        ],
    ),
    gpu(
        "0198ac1c-7000-7000-8000-000000000119",
        "NVIDIA RTX 6000 Ada Generation",
        48.0,
        &["NVIDIA RTX 6000 Ada", "RTX 6000 Ada Generation", "RTX 6000 Ada"],
    ),
    gpu("0198ac1c-7000-7000-8000-00000000011a", "NVIDIA RTX A6000", 48.0, &["RTX A6000", "A6000"]),
    gpu("0198ac1c-7000-7000-8000-00000000011b", "NVIDIA RTX A5000", 24.0, &["RTX A5000", "A5000"]),
    gpu("0198ac1c-7000-7000-8000-00000000011c", "NVIDIA RTX A4000", 16.0, &["RTX A4000", "A4000"]),
    // --- Consumer: Blackwell (RTX 50) ---
    geforce!("0198ac1c-7063-4be8-bb94-57a5bd83548e", "5090", 32.0),
    geforce!("0198ac1c-7000-7000-8000-000000000202", "5080", 16.0),
    geforce!("0198ac1c-7000-7000-8000-000000000203", "5070 Ti", 16.0),
    geforce!("0198ac1c-7000-7000-8000-000000000204", "5070", 12.0),
    geforce!("0198ac1c-7000-7000-8000-000000000205", "5060 Ti", 16.0),
    // --- Consumer: Ada (RTX 40) ---
    geforce!("0198ac1c-7000-7000-8000-000000000206", "4090", 24.0),
    geforce!("0198ac1c-7000-7000-8000-000000000207", "4080 SUPER", 16.0),
    geforce!("0198ac1c-7000-7000-8000-000000000208", "4080", 16.0),
    geforce!("0198ac1c-7000-7000-8000-000000000209", "4070 Ti SUPER", 16.0),
    geforce!("0198ac1c-7000-7000-8000-00000000020a", "4070 Ti", 12.0),
    geforce!("0198ac1c-7000-7000-8000-00000000020b", "4070 SUPER", 12.0),
    geforce!("0198ac1c-7000-7000-8000-00000000020c", "4070", 12.0),
    geforce!("0198ac1c-7000-7000-8000-00000000020d", "4060 Ti", 16.0),
    geforce!("0198ac1c-7000-7000-8000-00000000020e", "4060", 8.0),
    // --- Consumer: Ampere (RTX 30) ---
    geforce!("0198ac1c-7000-7000-8000-00000000020f", "3090 Ti", 24.0),
    geforce!("0198ac1c-7000-7000-8000-000000000210", "3090", 24.0),
    geforce!("0198ac1c-7000-7000-8000-000000000211", "3080 Ti", 12.0),
    geforce!("0198ac1c-7000-7000-8000-000000000212", "3080", 12.0),
    geforce!("0198ac1c-7000-7000-8000-000000000213", "3070 Ti", 8.0),
    geforce!("0198ac1c-7000-7000-8000-000000000214", "3070", 8.0),
    geforce!("0198ac1c-7000-7000-8000-000000000215", "3060 Ti", 8.0),
    geforce!("0198ac1c-7000-7000-8000-000000000216", "3060", 12.0),
];

/// The catalogue as registry entries (`is_official`, created at
/// [`SEEDED_AT_MS`] + position).
pub fn seeded_models() -> Vec<GpuModel> {
    CATALOGUE
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let at = Timestamp(SEEDED_AT_MS + i as i64);
            GpuModel {
                object: OBJECT.into(),
                // The literals are checked by `every_uuid_is_a_fixed_valid_literal`.
                uuid: e.uuid.parse().unwrap_or(GpuModelId(uuid::Uuid::nil())),
                name: e.name.into(),
                vendor: VENDOR.into(),
                vram_gb: e.vram_gb,
                aliases: e.aliases.iter().map(|a| a.to_string()).collect(),
                is_official: true,
                created_at: at,
                updated_at: at,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::gpu::{match_gpu_name, normalize_gpu_name};

    #[test]
    fn every_uuid_is_a_fixed_valid_literal() {
        let mut seen = BTreeSet::new();
        for e in CATALOGUE {
            let id: uuid::Uuid = e.uuid.parse().unwrap_or_else(|_| panic!("{}: bad uuid {}", e.name, e.uuid));
            assert_eq!(id.hyphenated().to_string(), e.uuid, "{}: uuid literals are lower-case, hyphenated", e.name);
            assert!(seen.insert(id), "{}: uuid {} used twice", e.name, e.uuid);
        }
        assert!(!seeded_models().iter().any(|m| m.uuid.0.is_nil()));
    }

    #[test]
    fn no_name_or_alias_maps_to_two_models() {
        let mut owner: BTreeMap<String, &str> = BTreeMap::new();
        for e in CATALOGUE {
            for name in std::iter::once(&e.name).chain(e.aliases) {
                if let Some(first) = owner.insert(normalize_gpu_name(name), e.name) {
                    panic!("{name:?} names both {first:?} and {:?}", e.name);
                }
            }
        }
    }

    #[test]
    fn the_rtx_5090_keeps_the_upstream_uuid() {
        let models = seeded_models();
        let m = match_gpu_name(&models, "NVIDIA GeForce RTX 5090").unwrap();
        assert_eq!(m.uuid.to_string(), RTX_5090_UUID);
        assert_eq!(m.vram_gb, 32.0);
    }

    #[test]
    fn nvml_names_and_client_short_forms_resolve() {
        let models = seeded_models();
        let cases: &[(&str, &str, f64)] = &[
            ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", 24.0),
            ("NVIDIA RTX 4090", "NVIDIA GeForce RTX 4090", 24.0),
            ("RTX 4090", "NVIDIA GeForce RTX 4090", 24.0),
            ("rtx 5090", "NVIDIA GeForce RTX 5090", 32.0),
            ("NVIDIA RTX 5090", "NVIDIA GeForce RTX 5090", 32.0),
            ("RTX 3090", "NVIDIA GeForce RTX 3090", 24.0),
            ("NVIDIA GeForce RTX 4080 SUPER", "NVIDIA GeForce RTX 4080 SUPER", 16.0),
            ("NVIDIA GeForce RTX 4070 Ti SUPER", "NVIDIA GeForce RTX 4070 Ti SUPER", 16.0),
            ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", 80.0),
            ("H100", "NVIDIA H100 SXM", 80.0),
            ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe", 80.0),
            ("NVIDIA H200", "NVIDIA H200", 141.0),
            ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB", 80.0),
            ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB", 40.0),
            ("Tesla T4", "NVIDIA T4", 16.0),
            ("Tesla V100-SXM2-16GB", "NVIDIA V100 16GB", 16.0),
            ("NVIDIA RTX 6000 Ada Generation", "NVIDIA RTX 6000 Ada Generation", 48.0),
            ("NVIDIA RTX A6000", "NVIDIA RTX A6000", 48.0),
            ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "NVIDIA RTX PRO 6000 Blackwell", 96.0),
            ("NVIDIA L40S", "NVIDIA L40S", 48.0),
        ];
        for &(sent, name, vram) in cases {
            let m = match_gpu_name(&models, sent).unwrap_or_else(|| panic!("{sent:?} does not resolve"));
            assert_eq!((m.name.as_str(), m.vram_gb), (name, vram), "{sent:?}");
        }
    }

    #[test]
    fn the_catalogue_covers_the_current_lineup() {
        let models = seeded_models();
        for name in [
            "H200",
            "H100 SXM",
            "H100 PCIe",
            "H100 NVL",
            "GH200",
            "B200",
            "B100",
            "A100 40GB",
            "A100 80GB",
            "L40S",
            "L40",
            "L4",
            "A40",
            "A10",
            "A30",
            "T4",
            "V100 16GB",
            "V100 32GB",
            "A16",
            "A2",
            "RTX 6000 Ada",
            "RTX A6000",
            "RTX A5000",
            "RTX A4000",
            "RTX PRO 6000",
            "RTX 5090",
            "RTX 5080",
            "RTX 5070 Ti",
            "RTX 5070",
            "RTX 5060 Ti",
            "RTX 4090",
            "RTX 4080 SUPER",
            "RTX 4080",
            "RTX 4070 Ti SUPER",
            "RTX 4070 Ti",
            "RTX 4070 SUPER",
            "RTX 4070",
            "RTX 4060 Ti",
            "RTX 4060",
            "RTX 3090 Ti",
            "RTX 3090",
            "RTX 3080 Ti",
            "RTX 3080",
            "RTX 3070 Ti",
            "RTX 3070",
            "RTX 3060 Ti",
            "RTX 3060",
        ] {
            assert!(match_gpu_name(&models, name).is_some(), "{name} is missing");
        }
        for m in &models {
            assert!(m.vram_gb > 0.0 && m.is_official && m.vendor == "NVIDIA", "{m:?}");
            assert_eq!(m.name, m.name.split_whitespace().collect::<Vec<_>>().join(" "), "untidy name");
        }
    }
}
