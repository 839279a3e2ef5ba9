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
pub fn hourly(prices: UnitPrices, r: Reservation, gpu_price: i64) -> i64 {
    let gpus = if r.gpus == 0 { 0 } else { i64::from(r.gpus).saturating_mul(gpu_price) };
    // RAM is priced per whole micro-USD: GB can be fractional, money cannot.
    let ram = (r.ram_gb.max(0.0) * prices.ram_gb as f64).floor() as i64;
    gpus.saturating_add(i64::from(r.cores).saturating_mul(prices.cpu_core)).saturating_add(ram)
}

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
    fn huge_reservations_saturate() {
        assert_eq!(hourly(PRICES, Reservation::of(u32::MAX.into(), 0, 0.0), i64::MAX), i64::MAX);
    }
}
