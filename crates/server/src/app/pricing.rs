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
///
/// Reservations are bounded by `gantry_types::limits` at submit and prices by the
/// operator's flags, so this fits easily; it is still computed in 128 bits and checked,
/// and a result beyond [`MAX_HOURLY_MICROS`] is clamped to it rather than wrapping or
/// saturating at `i64::MAX` (which once turned balances negative).
pub fn hourly(state: &AppState, r: Reservation, model: Option<GpuModelId>) -> i64 {
    let b = &state.billing;
    let gpus = i128::from(r.gpus) * i128::from(if r.gpus == 0 { 0 } else { gpu_price(state, model) });
    let cores = i128::from(r.cores) * i128::from(b.cpu_core_price);
    // RAM is priced per whole micro-USD: GB can be fractional, money cannot. The
    // float is finite and bounded (limits::MAX_RAM_GB); `as` saturates otherwise.
    let ram_gb = if r.ram_gb.is_finite() { r.ram_gb.clamp(0.0, gantry_types::limits::MAX_RAM_GB) } else { 0.0 };
    let ram = (ram_gb * b.ram_gb_price as f64).floor() as i128;
    i64::try_from(gpus + cores + ram).map_or(MAX_HOURLY_MICROS, |v| v.clamp(0, MAX_HOURLY_MICROS))
}

/// The highest hourly rate Gantry quotes (2^53-1 micro-USD, about 9 billion USD): what
/// every client reads exactly, and small enough that any charge over any real run time
/// and any sum of such charges stays far inside 64 bits.
pub const MAX_HOURLY_MICROS: i64 = gantry_types::num::MAX_SAFE_INTEGER;

/// A job's reservation on each of its nodes.
pub fn reservation(job: &gantry_types::job::Job) -> Reservation {
    Reservation {
        gpus: u32::try_from(job.gpu_count).unwrap_or(0),
        cores: u32::try_from(job.cpu_count).unwrap_or(0),
        ram_gb: job.min_ram_gb,
    }
}
