//! Prices: what an hour of a job's reservation costs, from the operator's price table
//! (`BillingConfig`). All in micro-USD per hour, integers.
//!
//! A run pays for what it reserves, not for the whole node: `gpu_count` GPUs at the
//! price of their model, plus its cores and its GB of RAM. That is what Gantry can
//! measure fairly on a shared node (several jobs' runs on one machine); upstream
//! prices whole machines, which Gantry shows as offers (see `offers`).

use gantry_types::GpuModelId;

use crate::state::AppState;

/// What a job reserves per node, for pricing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reservation {
    /// GPUs.
    pub gpus: u32,
    /// Cores.
    pub cores: u32,
    /// RAM, GB (fractions are priced pro rata, rounded down to the micro-USD).
    pub ram_gb: f64,
}

/// The hourly price of one GPU of `model` (`None`: a GPU the registry does not know).
pub fn gpu_price(state: &AppState, model: Option<GpuModelId>) -> i64 {
    let billing = &state.billing;
    model
        .and_then(|m| billing.gpu_prices.iter().find(|(name, _)| state.gpus.resolve(name) == Some(m)).map(|p| p.1))
        .unwrap_or(billing.default_gpu_price)
}

/// The hourly price of `r` on GPUs of `model`.
pub fn hourly(state: &AppState, r: Reservation, model: Option<GpuModelId>) -> i64 {
    let b = &state.billing;
    let gpus = i64::from(r.gpus) * if r.gpus == 0 { 0 } else { gpu_price(state, model) };
    // RAM is priced per whole micro-USD: GB can be fractional, money cannot.
    let ram = (r.ram_gb.max(0.0) * b.ram_gb_price as f64).floor() as i64;
    gpus.saturating_add(i64::from(r.cores).saturating_mul(b.cpu_core_price)).saturating_add(ram)
}

/// A job's reservation on each of its nodes.
pub fn reservation(job: &gantry_types::job::Job) -> Reservation {
    Reservation {
        gpus: u32::try_from(job.gpu_count).unwrap_or(0),
        cores: u32::try_from(job.cpu_count).unwrap_or(0),
        ram_gb: job.min_ram_gb,
    }
}
