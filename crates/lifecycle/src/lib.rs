//! The lifecycle rules of jobs and runs, as pure functions over plain data.
//!
//! The control plane's reconcilers and `app::runs::settle_job` *read* the store,
//! ask this crate what to do, and *write* the answer; nothing here does IO or reads
//! a clock (time comes in as `now_ms`), so every rule is unit- and property-tested
//! the way the scheduler is:
//!
//! - [`settle`]: what a job's status becomes given its latest attempt's runs
//!   (complete, retry, fail, finish a cancel), and the retry choice;
//! - [`timeouts`]: start, run and assignment timeouts;
//! - [`nodes`]: when a silent node counts as lost, and how its runs' failure reads;
//! - [`pricing`]: what an hour of a reservation costs.
//!
//! Invariants (checked by `tests/properties.rs`): a job never leaves a terminal
//! status; a cancelled job is never retried; a job never runs more than
//! `max_retry_count + 1` attempts; a gang settles and retries as one.

pub mod nodes;
pub mod pricing;
pub mod settle;
pub mod timeouts;

/// A duration for people: whole minutes as `5m`, anything else as seconds (`2.5s`).
pub fn human(ms: i64) -> String {
    if ms % 60_000 == 0 { format!("{}m", ms / 60_000) } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_durations() {
        assert_eq!(super::human(300_000), "5m");
        assert_eq!(super::human(2_500), "2.5s");
        assert_eq!(super::human(0), "0m");
    }
}
