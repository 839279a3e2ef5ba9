//! The store's write counters, read at scrape time: they live in the store as plain
//! atomics ([`gantry_store::WriteStats`]) so the store needs no metrics library.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Unit;

/// Encodes `gantry_store_commits_total`, `gantry_store_writes_total` and
/// `gantry_store_commit_duration_seconds` from the store's counters.
pub struct StoreCollector(pub Arc<dyn gantry_store::Store>);

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.write_stats();
        let commits = ConstCounter::new(stats.commits);
        commits.encode(encoder.encode_descriptor(
            "gantry_store_commits",
            "Store transactions committed (one fsync each on SQLite)",
            None,
            commits.metric_type(),
        )?)?;
        let writes = ConstCounter::new(stats.writes);
        writes.encode(encoder.encode_descriptor(
            "gantry_store_writes",
            "Write operations carried by those commits",
            None,
            writes.metric_type(),
        )?)?;
        let times = stats.commit_times;
        let buckets: Vec<(f64, u64)> = gantry_store::stats::COMMIT_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(times.buckets.iter().copied())
            .collect();
        let mut histogram = encoder.encode_descriptor(
            "gantry_store_commit_duration",
            "Duration of store commits (SQLite group commits, BEGIN to fsynced COMMIT)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        histogram.encode_histogram::<NoLabelSet>(times.sum_micros as f64 / 1e6, times.count(), &buckets, None)
    }
}
