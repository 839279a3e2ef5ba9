//! The GPU registry (API.md §6.9): the GPU models that jobs' `gpu_name` and
//! `gpu_registry_uuid` are matched against.
//!
//! Upstream's registry response shape is unknown (API.md §8 q6); offers embed
//! `gpu_models[{count, gpu_registry_uuid, min_vram_gib, name}]`, so an entry is
//! Gantry's `{object: "gpu_registry_model", uuid, name, vendor, vram_gb, aliases,
//! is_official, created_at, updated_at}`. Gantry ships a seeded catalogue of current
//! NVIDIA GPUs ([`catalogue`]); operators add models to it.
//!
//! **Names.** A model has one display `name` (NVIDIA's product name) and `aliases`:
//! the names NVML reports for it on a node (`NVIDIA GeForce RTX 4090`,
//! `NVIDIA A100-SXM4-80GB`, `Tesla T4`) and the short forms clients send
//! (`NVIDIA RTX 4090`, `RTX 4090`, `H100`). Matching ([`match_gpu_name`]) is
//! case-insensitive and whitespace-normalised ([`normalize_gpu_name`]) over the name
//! and every alias; no normalised name may belong to two models, which
//! [`find_clashes`] enforces for additions and a test enforces for the catalogue.

pub mod catalogue;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::ids::GpuModelId;
use crate::list::{self, Range};
use crate::num;
use crate::time::Timestamp;

/// The `object` of a registry entry.
pub const OBJECT: &str = "gpu_registry_model";

/// Vendor of a model added without one (every node Gantry runs on has NVIDIA GPUs).
pub const DEFAULT_VENDOR: &str = "NVIDIA";

/// Longest name or alias accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Most aliases one model may have.
pub const MAX_ALIASES: usize = 32;

/// Largest `vram_gb` accepted: a sanity bound well above any GPU sold.
pub const MAX_VRAM_GB: f64 = 16_384.0;

/// A GPU model in the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuModel {
    /// Always `gpu_registry_model`.
    pub object: String,
    /// The model's ID: what `gpu_registry_uuid` names.
    pub uuid: GpuModelId,
    /// Display name (NVIDIA's product name, e.g. `NVIDIA GeForce RTX 4090`).
    pub name: String,
    /// Maker, e.g. `NVIDIA`.
    pub vendor: String,
    /// Memory per GPU, GB (the largest configuration sold under this name).
    #[serde(serialize_with = "num::gb")]
    pub vram_gb: f64,
    /// Other names matching this model: what NVML reports on nodes and the short
    /// forms clients send as `gpu_name`.
    pub aliases: Vec<String>,
    /// `true` for Gantry's seeded catalogue, `false` for models operators added.
    pub is_official: bool,
    /// When the entry was created.
    pub created_at: Timestamp,
    /// When the entry last changed.
    pub updated_at: Timestamp,
}

impl GpuModel {
    /// The name, then every alias.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    /// Whether `name` names this model (case-insensitive, whitespace-normalised).
    pub fn is_named(&self, name: &str) -> bool {
        self.names().any(|n| same_gpu_name(n, name))
    }
}

/// `POST /v1/gpu-registry` body (operators only). Unknown fields are ignored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateGpuModelRequest {
    /// Required: the display name, unique among every model's names and aliases.
    pub name: Option<String>,
    /// Default `NVIDIA`.
    pub vendor: Option<String>,
    /// Required: memory per GPU, GB, > 0.
    pub vram_gb: Option<f64>,
    /// Other names (e.g. what NVML reports); each unique among every model's names.
    pub aliases: Option<Vec<String>>,
}

/// A validated create request.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuModelSpec {
    /// Display name, whitespace tidied.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// GB.
    pub vram_gb: f64,
    /// Aliases, whitespace tidied, in the order given.
    pub aliases: Vec<String>,
}

impl GpuModelSpec {
    /// The registry entry for this spec (operator-added, so not official).
    pub fn into_model(self, uuid: GpuModelId, now_ms: i64) -> GpuModel {
        GpuModel {
            object: OBJECT.into(),
            uuid,
            name: self.name,
            vendor: self.vendor,
            vram_gb: self.vram_gb,
            aliases: self.aliases,
            is_official: false,
            created_at: Timestamp(now_ms),
            updated_at: Timestamp(now_ms),
        }
    }
}

/// The characters of `name` as matching sees them: lower case, words separated by
/// one space, no leading or trailing space.
fn normalized_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    name.split_whitespace()
        .enumerate()
        .flat_map(|(i, word)| (i > 0).then_some(' ').into_iter().chain(word.chars().flat_map(char::to_lowercase)))
}

/// The key a name matches by: `"  NVIDIA  GeForce RTX 4090 "` → `"nvidia geforce rtx 4090"`.
pub fn normalize_gpu_name(name: &str) -> String {
    normalized_chars(name).collect()
}

/// Whether two names match (without allocating).
pub fn same_gpu_name(a: &str, b: &str) -> bool {
    normalized_chars(a).eq(normalized_chars(b))
}

/// `name` with runs of whitespace collapsed and ends trimmed (case kept): how names
/// are stored.
fn tidy(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The model `name` names (its name or any alias, case-insensitive,
/// whitespace-normalised), if any.
pub fn match_gpu_name<'a>(models: &'a [GpuModel], name: &str) -> Option<&'a GpuModel> {
    models.iter().find(|m| m.is_named(name))
}

/// A name field, tidied; blank or overlong values are reported (and still returned).
fn text(field: &str, value: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    let value = tidy(value?);
    if value.is_empty() {
        errors.push(FieldError::new(field, "must not be blank"));
    } else if value.len() > MAX_NAME_LEN {
        errors.push(FieldError::new(field, format!("must be at most {MAX_NAME_LEN} bytes")));
    }
    Some(value)
}

/// Checks a create body's shape (not yet against the registry: see [`find_clashes`]).
pub fn validate_create_gpu_model(req: CreateGpuModelRequest) -> Result<GpuModelSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = text("name", req.name.as_deref(), &mut errors).unwrap_or_else(|| {
        errors.push(FieldError::new("name", "is required (e.g. \"NVIDIA GeForce RTX 4090\")"));
        String::new()
    });
    let vendor = text("vendor", req.vendor.as_deref(), &mut errors).unwrap_or_else(|| DEFAULT_VENDOR.into());
    let vram_gb = match req.vram_gb {
        None => {
            errors.push(FieldError::new("vram_gb", "is required: memory per GPU in GB (e.g. 24)"));
            0.0
        }
        Some(v) if !v.is_finite() || v <= 0.0 || v > MAX_VRAM_GB => {
            errors.push(FieldError::new("vram_gb", format!("must be a number > 0 and at most {MAX_VRAM_GB}, got {v}")));
            0.0
        }
        Some(v) => v,
    };
    let raw_aliases = req.aliases.unwrap_or_default();
    if raw_aliases.len() > MAX_ALIASES {
        errors.push(FieldError::new("aliases", format!("at most {MAX_ALIASES} aliases")));
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    if !name.is_empty() {
        seen.insert(normalize_gpu_name(&name), "the name".into());
    }
    let mut aliases = Vec::with_capacity(raw_aliases.len());
    for (i, alias) in raw_aliases.iter().enumerate() {
        let field = format!("aliases[{i}]");
        let Some(alias) = text(&field, Some(alias), &mut errors) else { continue };
        if alias.is_empty() {
            continue;
        }
        match seen.get(&normalize_gpu_name(&alias)) {
            Some(first) => errors.push(FieldError::new(field, format!("{alias:?} repeats {first}"))),
            None => {
                seen.insert(normalize_gpu_name(&alias), field);
                aliases.push(alias);
            }
        }
    }
    if errors.is_empty() { Ok(GpuModelSpec { name, vendor, vram_gb, aliases }) } else { Err(errors) }
}

/// Why a new model cannot join the registry.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistryClash {
    /// The name already names another model (as its name or an alias): a conflict.
    Name {
        /// The model it names.
        existing: GpuModelId,
        /// That model's display name.
        existing_name: String,
    },
    /// Some aliases already name other models: one error per alias (`aliases[i]`).
    Aliases(Vec<FieldError>),
}

/// Checks a new model's names against the registry: a name must never match two
/// models, or matching `gpu_name` would be ambiguous.
pub fn find_clashes(models: &[GpuModel], spec: &GpuModelSpec) -> Option<RegistryClash> {
    if let Some(m) = match_gpu_name(models, &spec.name) {
        return Some(RegistryClash::Name { existing: m.uuid, existing_name: m.name.clone() });
    }
    let errors: Vec<FieldError> = spec
        .aliases
        .iter()
        .enumerate()
        .filter_map(|(i, alias)| {
            let m = match_gpu_name(models, alias)?;
            Some(FieldError::new(
                format!("aliases[{i}]"),
                format!("{alias:?} already names GPU model {:?} ({})", m.name, m.uuid),
            ))
        })
        .collect();
    (!errors.is_empty()).then_some(RegistryClash::Aliases(errors))
}

/// `GET /v1/gpu-registry` filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuModelFilter {
    /// `filter[uuid]`: comma list.
    pub uuids: Vec<GpuModelId>,
    /// `filter[name]`: comma list; each matches a model's name or any alias.
    pub names: Vec<String>,
    /// `filter[vendor]`: comma list, case-insensitive.
    pub vendors: Vec<String>,
    /// `filter[min_vram_gb]`: a single value means "at least"; `a,b` a range.
    pub vram_gb: Option<Range<f64>>,
    /// `filter[is_official]`.
    pub is_official: Option<bool>,
    /// `filter[only_available]=true`: only models on at least one online node
    /// (decided by the server, which knows the nodes).
    pub only_available: bool,
}

impl GpuModelFilter {
    /// Whether `model` passes every filter except `only_available`.
    pub fn matches(&self, model: &GpuModel) -> bool {
        (self.uuids.is_empty() || self.uuids.contains(&model.uuid))
            && (self.names.is_empty() || self.names.iter().any(|n| model.is_named(n)))
            && (self.vendors.is_empty() || self.vendors.iter().any(|v| same_gpu_name(v, &model.vendor)))
            && self.vram_gb.is_none_or(|r| {
                r.min.is_none_or(|min| model.vram_gb >= min) && r.max.is_none_or(|max| model.vram_gb <= max)
            })
            && self.is_official.is_none_or(|o| o == model.is_official)
    }
}

/// Parses the `GET /v1/gpu-registry` filters.
pub fn parse_gpu_model_filter(pairs: &[(String, String)]) -> Result<GpuModelFilter, Vec<FieldError>> {
    const KNOWN: &[&str] = &["uuid", "name", "vendor", "min_vram_gb", "is_official", "only_available"];
    let mut errors = Vec::new();
    let mut f = GpuModelFilter::default();
    let items: Vec<(String, String)> =
        list::filters(pairs, KNOWN, &mut errors).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in &items {
        let (key, value, e) = (key.as_str(), value.as_str(), &mut errors);
        match key {
            "uuid" => f.uuids.extend(list::list(key, value, e, |s| s.parse::<GpuModelId>().ok(), "a UUID")),
            "name" => f.names.extend(list::list(key, value, e, |s| Some(s.to_string()), "")),
            "vendor" => f.vendors.extend(list::list(key, value, e, |s| Some(s.to_string()), "")),
            // "min_vram_gb=24" asks for models with at least 24 GB.
            "min_vram_gb" => f.vram_gb = list::range(key, value, e, list::number, false),
            "is_official" => f.is_official = list::boolean(key, value, e),
            _ => f.only_available = list::boolean(key, value, e).unwrap_or(false),
        }
    }
    if errors.is_empty() { Ok(f) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, aliases: &[&str], vram_gb: f64) -> GpuModel {
        GpuModelSpec {
            name: name.into(),
            vendor: "NVIDIA".into(),
            vram_gb,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
        .into_model(GpuModelId::new(), 0)
    }

    fn req(v: serde_json::Value) -> Result<GpuModelSpec, Vec<FieldError>> {
        validate_create_gpu_model(crate::validate::from_json(v).map_err(|e| vec![e])?)
    }

    fn fields(v: serde_json::Value) -> Vec<String> {
        req(v).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn names_match_case_insensitively_with_whitespace_normalised() {
        let models = [model("NVIDIA GeForce RTX 4090", &["NVIDIA RTX 4090", "RTX 4090"], 24.0)];
        for name in
            ["NVIDIA GeForce RTX 4090", "nvidia geforce rtx 4090", "  RTX   4090 ", "rtx 4090", "Nvidia RTX 4090"]
        {
            assert_eq!(
                match_gpu_name(&models, name).map(|m| m.name.as_str()),
                Some("NVIDIA GeForce RTX 4090"),
                "{name}"
            );
        }
        for name in ["RTX4090", "RTX 4080", "", "4090"] {
            assert!(match_gpu_name(&models, name).is_none(), "{name}");
        }
        assert_eq!(normalize_gpu_name("\tNVIDIA  H100\n80GB HBM3 "), "nvidia h100 80gb hbm3");
        assert!(same_gpu_name("Tesla T4", "tesla  t4"));
    }

    #[test]
    fn create_requests_are_tidied_and_defaulted() {
        let spec = req(serde_json::json!({"name": "  NVIDIA  B300 ", "vram_gb": 288, "aliases": ["B300 "]})).unwrap();
        assert_eq!(
            spec,
            GpuModelSpec {
                name: "NVIDIA B300".into(),
                vendor: "NVIDIA".into(),
                vram_gb: 288.0,
                aliases: vec!["B300".into()]
            }
        );
    }

    #[test]
    fn bad_create_requests_name_every_field() {
        assert_eq!(fields(serde_json::json!({})), ["name", "vram_gb"]);
        assert_eq!(fields(serde_json::json!({"name": " ", "vendor": "", "vram_gb": 0})), ["name", "vendor", "vram_gb"]);
        assert_eq!(fields(serde_json::json!({"name": "X", "vram_gb": -1})), ["vram_gb"]);
        assert_eq!(
            fields(serde_json::json!({"name": "X", "vram_gb": 8, "aliases": ["x", "Y", "", "y "]})),
            ["aliases[0]", "aliases[2]", "aliases[3]"]
        );
        assert_eq!(fields(serde_json::json!({"name": "X", "vram_gb": 8, "aliases": ["a", 7]})), ["aliases[1]"]);
        assert_eq!(fields(serde_json::json!({"name": "X", "vram_gb": "lots"})), ["vram_gb"]);
    }

    #[test]
    fn clashes_with_the_registry() {
        let models = [model("NVIDIA GeForce RTX 4090", &["RTX 4090"], 24.0), model("NVIDIA L4", &["L4"], 24.0)];
        let spec = |name: &str, aliases: &[&str]| GpuModelSpec {
            name: name.into(),
            vendor: "NVIDIA".into(),
            vram_gb: 1.0,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        };
        assert!(matches!(
            find_clashes(&models, &spec("rtx 4090", &[])),
            Some(RegistryClash::Name { existing, .. }) if existing == models[0].uuid
        ));
        let Some(RegistryClash::Aliases(errors)) = find_clashes(&models, &spec("New", &["fresh", "l4", "RTX 4090"]))
        else {
            panic!("expected alias clashes")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["aliases[1]", "aliases[2]"]);
        assert_eq!(find_clashes(&models, &spec("NVIDIA B300", &["B300"])), None);
    }

    #[test]
    fn filters() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let f = parse_gpu_model_filter(&q(&[
            ("filter[min_vram_gb]", "24"),
            ("filter[only_available]", "true"),
            ("filter[name]", "rtx 4090"),
            ("filter[vendor]", "nvidia"),
        ]))
        .unwrap();
        assert_eq!(f.vram_gb, Some(Range { min: Some(24.0), max: None }));
        assert!(f.only_available);
        let rtx = model("NVIDIA GeForce RTX 4090", &["RTX 4090"], 24.0);
        assert!(f.matches(&rtx));
        assert!(!f.matches(&model("NVIDIA L4", &[], 24.0)), "name filter");
        let big = GpuModelFilter { vram_gb: Some(Range { min: Some(25.0), max: None }), ..Default::default() };
        assert!(!big.matches(&rtx));
        let e = parse_gpu_model_filter(&q(&[("filter[min_vram_gb]", "lots"), ("filter[only_available]", "yes")]))
            .unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["filter[min_vram_gb]", "filter[only_available]"]);
        assert!(parse_gpu_model_filter(&q(&[("filter[colour]", "green")])).is_err());
    }
}
