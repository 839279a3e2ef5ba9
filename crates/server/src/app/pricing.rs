//! Prices: what an hour of a job's reservation costs, from the operator's price table
//! (`BillingConfig`). All in micro-USD per hour, integers.
//!
//! The arithmetic is the pure `gantry_lifecycle::pricing` (tested there); this module
//! only looks up which price a GPU model has, which needs the registry to resolve the
//! configured names. Upstream prices whole machines, which Gantry shows as offers (see
//! `offers`).

pub use gantry_lifecycle::pricing::Reservation;
use gantry_lifecycle::pricing::UnitPrices;
use gantry_types::GpuModelId;

use crate::state::AppState;

/// The hourly price of one GPU of `model` (`None`: a GPU the registry does not know).
pub fn gpu_price(state: &AppState, model: Option<GpuModelId>) -> i64 {
    let billing = &state.billing.config;
    model
        .and_then(|m| {
            billing.gpu_prices.iter().find(|(name, _)| state.caches.gpus.resolve(name) == Some(m)).map(|p| p.1)
        })
        .unwrap_or(billing.default_gpu_price)
}

/// The hourly price of `r` on GPUs of `model`.
pub fn hourly(state: &AppState, r: Reservation, model: Option<GpuModelId>) -> i64 {
    let prices =
        UnitPrices { cpu_core: state.billing.config.cpu_core_price, ram_gb: state.billing.config.ram_gb_price };
    let gpu = if r.gpus == 0 { 0 } else { gpu_price(state, model) };
    gantry_lifecycle::pricing::hourly(prices, r, gpu)
}

/// A job's reservation on each of its nodes.
pub fn reservation(job: &gantry_types::job::Job) -> Reservation {
    Reservation::of(job.gpu_count, job.cpu_count, job.min_ram_gb)
}
