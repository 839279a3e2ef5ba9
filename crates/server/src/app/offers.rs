//! Compute offers (API.md §4.10): what live capacity is for sale, at what price.
//!
//! Built on demand from the same snapshot the scheduler plans with (online,
//! undrained nodes; capacity = inventory minus active runs' reservations), so an
//! offer is something a job could be placed on right now. A node's free capacity is
//! one offer per GPU model it has free GPUs of (or one CPU-only offer when it has
//! none free); nodes whose free capacity is identical, in the same region, are one
//! offer with `availability.node_count` > 1. The price is the whole offer's hourly
//! price from the price table (see `pricing`); `offer_id` names the shape, so it is
//! stable while the capacity is.

use std::collections::BTreeMap;

use gantry_types::billing::{
    ComputeOffer, HardwareSummary, OfferAvailability, OfferFilter, OfferGpuModel, OfferPricing,
};
use gantry_types::money::micros_to_usd;
use gantry_types::{GpuModelId, Timestamp};

use crate::app::capacity::node_views;
use crate::app::error::AppError;
use crate::app::pricing::{Reservation, hourly};
use crate::app::profiles::effective_regions;
use crate::state::{AppState, now_ms};

/// An offer's shape: what groups nodes into one offer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    region: Option<String>,
    model: Option<GpuModelId>,
    gpu_name: Option<String>,
    gpus: u32,
    /// Smallest free VRAM among the GPUs, in MiB (integral, so shapes compare exactly).
    min_vram_mib: u64,
    cores: u32,
    ram_mib: u64,
    storage_mib: u64,
}

fn mib(gb: f64) -> u64 {
    (gb.max(0.0) * 1024.0).floor() as u64
}

fn gb(mib: u64) -> f64 {
    mib as f64 / 1024.0
}

/// The offers matching `filter`, cheapest first (ties by `offer_id`); `profile_regions`
/// is the caller's allowlist, intersected with `filter.allowed_region_codes`.
pub async fn list(
    state: &AppState,
    filter: &OfferFilter,
    profile_regions: &[String],
) -> Result<Vec<ComputeOffer>, AppError> {
    let wanted_model = match (&filter.gpu_name, filter.gpu_registry_uuid) {
        (Some(name), _) => Some(
            state
                .caches
                .gpus
                .resolve(name)
                .ok_or_else(|| AppError::field("filter[gpu_name]", format!("no GPU model is named {name:?}")))?,
        ),
        (None, Some(id)) if !state.caches.gpus.contains(id) => {
            return Err(AppError::field("filter[gpu_registry_uuid]", format!("no GPU model has uuid {id}")));
        }
        (None, id) => id,
    };
    let regions = effective_regions(&filter.allowed_region_codes, profile_regions);
    let nodes = state.store.node_list_all().await?;
    let active = state.store.run_list_active_brief().await?;
    let mut shapes: BTreeMap<Shape, u32> = BTreeMap::new();
    for view in node_views(&nodes, &active).iter().filter(|v| v.schedulable) {
        if let Some(allowed) = &regions
            && !view.region.as_ref().is_some_and(|r| allowed.contains(r))
        {
            continue;
        }
        let mut by_model: BTreeMap<Option<GpuModelId>, (u32, f64)> = BTreeMap::new();
        for g in view.gpus.iter().filter(|g| g.free) {
            let e = by_model.entry(g.model).or_insert((0, f64::INFINITY));
            e.0 += 1;
            e.1 = e.1.min(g.vram_gb);
        }
        let base = Shape {
            region: view.region.clone(),
            model: None,
            gpu_name: None,
            gpus: 0,
            min_vram_mib: 0,
            cores: view.free_cpu,
            ram_mib: mib(view.free_ram_gb),
            storage_mib: mib(view.free_storage_gb),
        };
        let mut node_shapes = Vec::new();
        if by_model.is_empty() {
            node_shapes.push(base);
        } else {
            for (model, (count, vram)) in by_model {
                let gpu_name = match model {
                    Some(m) => state.caches.gpus.name(m),
                    None => nodes
                        .iter()
                        .find(|n| n.uuid == view.id)
                        .and_then(|n| n.inventory.gpus.first().map(|g| g.name.clone())),
                };
                node_shapes.push(Shape { model, gpu_name, gpus: count, min_vram_mib: mib(vram), ..base.clone() });
            }
        }
        for shape in node_shapes {
            *shapes.entry(shape).or_default() += 1;
        }
    }
    let quoted_at = Timestamp(now_ms());
    let mut offers: Vec<ComputeOffer> = shapes
        .into_iter()
        .filter(|(s, _)| matches(s, filter, wanted_model))
        .map(|(s, count)| offer(state, &s, count, quoted_at))
        .collect();
    offers
        .sort_by(|a, b| (a.pricing.hourly_rate_micros, &a.offer_id).cmp(&(b.pricing.hourly_rate_micros, &b.offer_id)));
    Ok(offers)
}

fn matches(s: &Shape, f: &OfferFilter, model: Option<GpuModelId>) -> bool {
    let at_least = |have: f64, want: Option<f64>| want.is_none_or(|w| have + 1e-9 >= w);
    f.cpu_count.is_none_or(|c| s.cores >= c)
        && f.gpu_count.is_none_or(|g| s.gpus >= g)
        && model.is_none_or(|m| s.model == Some(m) && s.gpus > 0)
        && (f.min_vram_gb.is_none_or(|v| v <= 0.0) || s.gpus > 0 && at_least(gb(s.min_vram_mib), f.min_vram_gb))
        && at_least(gb(s.ram_mib), f.min_ram_gb)
        && at_least(gb(s.storage_mib), f.min_storage_gb)
}

fn offer(state: &AppState, s: &Shape, node_count: u32, quoted_at: Timestamp) -> ComputeOffer {
    let rate = hourly(state, Reservation { gpus: s.gpus, cores: s.cores, ram_gb: gb(s.ram_mib) }, s.model);
    let label = match (&s.gpu_name, s.gpus) {
        (_, 0) => "CPU only".to_string(),
        (Some(name), n) => format!("{n}x {name}"),
        (None, n) => format!("{n}x GPU"),
    };
    let models = if s.gpus == 0 {
        vec![]
    } else {
        vec![OfferGpuModel {
            count: s.gpus,
            gpu_registry_uuid: s.model,
            min_vram_gib: gb(s.min_vram_mib),
            name: s.gpu_name.clone().unwrap_or_else(|| "unknown GPU".into()),
        }]
    };
    let offer_id = format!(
        "ofr_{}_{}_{}x{}_{}c_{}r_{}s",
        s.region.as_deref().unwrap_or("none"),
        s.model.map_or_else(|| "cpu".to_string(), |m| m.0.simple().to_string()),
        s.gpus,
        s.min_vram_mib,
        s.cores,
        s.ram_mib,
        s.storage_mib
    );
    ComputeOffer {
        availability: OfferAvailability { node_count },
        hardware_summary: HardwareSummary {
            cpu_cores: s.cores,
            gpu_count: s.gpus,
            gpu_model_label: label,
            gpu_models: models,
            gpu_registry_uuid: s.model,
            min_gpu_vram_gib: gb(s.min_vram_mib),
            ram_gib: gb(s.ram_mib),
            storage_gib: gb(s.storage_mib),
        },
        offer_id,
        pricing: OfferPricing { hourly_rate_usd: micros_to_usd(rate), hourly_rate_micros: rate, quoted_at },
        region_code: s.region.clone(),
    }
}

/// The cheapest hourly price a job of this shape would pay on matching live offers:
/// its own reservation priced at each matching offer's GPU model, times its gang size
/// (a gang pays on each of its nodes). With no matching offer, the price at the job's
/// named model (or the default GPU price), so a job waiting for capacity is still
/// judged against what it will cost.
pub async fn cheapest_quote(
    state: &AppState,
    spec: &gantry_types::job::JobSpec,
    profile_regions: &[String],
) -> Result<i64, AppError> {
    let r = Reservation {
        gpus: u32::try_from(spec.gpu_count).unwrap_or(0),
        cores: u32::try_from(spec.cpu_count).unwrap_or(0),
        ram_gb: spec.min_ram_gb,
    };
    let named = match (&spec.gpu_registry_uuid, &spec.gpu_name) {
        (Some(id), _) => id.parse().ok(),
        (None, Some(name)) => state.caches.gpus.resolve(name),
        (None, None) => None,
    };
    let filter = OfferFilter {
        cpu_count: Some(r.cores),
        gpu_count: Some(r.gpus),
        gpu_registry_uuid: named,
        min_vram_gb: (r.gpus > 0).then_some(spec.min_vram_gb),
        min_ram_gb: Some(spec.min_ram_gb),
        min_storage_gb: Some(spec.min_storage_gb),
        allowed_region_codes: spec.allowed_region_codes.clone(),
        ..Default::default()
    };
    let offers = list(state, &filter, profile_regions).await?;
    let quote = offers
        .iter()
        .map(|o| hourly(state, r, o.hardware_summary.gpu_registry_uuid))
        .min()
        .unwrap_or_else(|| hourly(state, r, named));
    Ok(quote.saturating_mul(spec.max_node_count.max(1)))
}
