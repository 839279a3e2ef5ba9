//! Prices: what an hour of a reservation costs, in integer micro-USD.
//!
//! A run pays for what it reserves, not for the whole node: `gpu_count` GPUs at the
//! price of their model, plus its cores and its GB of RAM. That is what Gantry can
//! measure fairly on a shared node. Which price a GPU model has is the server's
//! lookup (the registry resolves names); this module only does the arithmetic, which
//! saturates rather than overflows.

/// What a job reserves per node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reservation {
    /// GPUs.
    pub gpus: u32,
    /// Cores.
    pub cores: u32,
    /// RAM, GB (fractions are priced pro rata, rounded down to the micro-USD).
    pub ram_gb: f64,
}

impl Reservation {
    /// A job's reservation from its wire fields (negative counts reserve nothing).
    pub fn of(gpu_count: i64, cpu_count: i64, min_ram_gb: f64) -> Self {
        Self {
            gpus: u32::try_from(gpu_count).unwrap_or(0),
            cores: u32::try_from(cpu_count).unwrap_or(0),
            ram_gb: min_ram_gb,
        }
    }
}

/// The per-unit hourly prices that do not depend on the GPU model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitPrices {
    /// Per CPU core.
    pub cpu_core: i64,
    /// Per GB of RAM.
    pub ram_gb: i64,
}

/// The hourly price of `r`, with `gpu_price` per GPU.
///
/// Reservations are bounded by `gantry_types::limits` at submit and prices by the
/// operator's flags, so this fits easily; it is still computed in 128 bits and checked,
/// and a result beyond [`MAX_HOURLY_MICROS`] is clamped to it rather than wrapping or
/// saturating at `i64::MAX` (which once turned balances negative, issue 15).
pub fn hourly(prices: UnitPrices, r: Reservation, gpu_price: i64) -> i64 {
    let gpus = if r.gpus == 0 { 0 } else { i128::from(r.gpus) * i128::from(gpu_price) };
    let cores = i128::from(r.cores) * i128::from(prices.cpu_core);
    // RAM is priced per whole micro-USD: GB can be fractional, money cannot. The float
    // is clamped to the physical maximum first, so the product is finite and small.
    let ram_gb = if r.ram_gb.is_finite() { r.ram_gb.clamp(0.0, gantry_types::limits::MAX_RAM_GB) } else { 0.0 };
    let ram = (ram_gb * prices.ram_gb as f64).floor() as i128;
    i64::try_from(gpus + cores + ram).map_or(MAX_HOURLY_MICROS, |v| v.clamp(0, MAX_HOURLY_MICROS))
}

/// The highest hourly rate Gantry quotes (2^53-1 micro-USD, about 9 billion USD): what
/// every client reads exactly, and small enough that any charge over any real run time
/// and any sum of such charges stays far inside 64 bits.
pub const MAX_HOURLY_MICROS: i64 = gantry_types::num::MAX_SAFE_INTEGER;

#[cfg(test)]
mod tests {
    use super::*;

    const PRICES: UnitPrices = UnitPrices { cpu_core: 10_000, ram_gb: 2_000 };

    #[test]
    fn a_reservation_pays_for_gpus_cores_and_ram() {
        let r = Reservation::of(2, 8, 32.5);
        assert_eq!(hourly(PRICES, r, 350_000), 2 * 350_000 + 8 * 10_000 + 65_000);
    }

    #[test]
    fn fractions_round_down_and_nothing_is_negative() {
        assert_eq!(hourly(PRICES, Reservation::of(0, 0, 0.0001), 1), 0);
        assert_eq!(hourly(PRICES, Reservation::of(-1, -4, -3.0), 500_000), 0);
        assert_eq!(hourly(PRICES, Reservation::of(0, 1, 0.0), 999_999_999), 10_000, "no GPUs, no GPU price");
    }

    #[test]
    fn huge_reservations_clamp_to_the_highest_quotable_rate() {
        // Issue 15: saturating at i64::MAX once turned balances negative.
        assert_eq!(hourly(PRICES, Reservation::of(u32::MAX.into(), 0, 0.0), i64::MAX), MAX_HOURLY_MICROS);
        assert_eq!(hourly(PRICES, Reservation::of(0, 0, 1e308), 0), (gantry_types::limits::MAX_RAM_GB as i64) * 2_000);
        assert_eq!(hourly(PRICES, Reservation::of(0, 0, f64::NAN), 0), 0);
    }
}
