//! Commit timings of the write path, kept as a fixed-bucket histogram of atomics so
//! the store needs no metrics library: the server's `/metrics` reads a
//! [`CommitTimes`] snapshot (through `Store::write_stats`) and exposes it as the
//! `gantry_store_commit_duration_seconds` histogram. Recording is two relaxed atomic
//! increments, cheap enough for the SQLite writer thread's hot loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the commit-duration buckets; a last bucket counts the
/// rest (`+Inf`). From half a millisecond (group commit on a fast disk) to seconds
/// (a disk in trouble).
pub const COMMIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A snapshot of the commit-duration histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitTimes {
    /// Commits per bucket (not cumulative), one per [`COMMIT_BUCKETS`] bound and a
    /// last one for longer commits.
    pub buckets: [u64; COMMIT_BUCKETS.len() + 1],
    /// Sum of all commit durations, microseconds.
    pub sum_micros: u64,
}

impl CommitTimes {
    /// Commits observed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Records commit durations (shared between the writer and the store handle).
#[derive(Debug, Default)]
pub struct CommitClock {
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl CommitClock {
    /// Counts one commit that took `took`.
    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = COMMIT_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The histogram so far.
    pub fn snapshot(&self) -> CommitTimes {
        CommitTimes {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_land_in_the_bucket_of_their_duration() {
        let clock = CommitClock::default();
        clock.record(Duration::from_micros(300)); // ≤ 0.5 ms
        clock.record(Duration::from_millis(3)); // ≤ 5 ms
        clock.record(Duration::from_secs(10)); // +Inf
        let t = clock.snapshot();
        assert_eq!(t.count(), 3);
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[3], 1);
        assert_eq!(t.buckets[COMMIT_BUCKETS.len()], 1);
        assert_eq!(t.sum_micros, 10_003_300);
    }
}
