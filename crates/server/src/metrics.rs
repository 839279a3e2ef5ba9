//! Prometheus metrics of the control plane, served unauthenticated on `GET /metrics`
//! in the Prometheus text format (0.0.4), encoded by `prometheus-client`.
//!
//! **Where metrics live.** Every family is declared and registered here, in
//! [`Metrics::new`], so the whole catalogue (and the README table that documents it)
//! has one place. Code elsewhere only increments a field of [`Metrics`]; families a
//! loop will feed (`gantry_events_total`, `gantry_webhook_deliveries_total`) are
//! registered at 0, so dashboards and alerts see them before the first event.
//!
//! **Labels** are route templates, methods, statuses and outcomes: closed sets, never
//! an account, a key, a raw path or anything else a caller chooses (cardinality stays
//! bounded and nothing secret leaks to an unauthenticated endpoint).
//!
//! **Cost.** On the request path a metric is an atomic add (counters) or a short
//! uncontended lock inside `prometheus-client`'s histogram, never held across an
//! await. Gauges of stored state (`gantry_jobs`, `gantry_nodes`, ...) are recomputed
//! by a background task at most once per [`Metrics::refresh_every`] ([`gauges`]); a
//! scrape only encodes what is in memory and never reads the store.

pub mod gauges;
pub mod http;
mod store;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `{status}`: a job, run or node status as the API spells it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// e.g. `PENDING`.
    pub status: &'static str,
}

/// `{state}` of a GPU: `free` or `used`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `free` or `used`.
    pub state: &'static str,
}

/// `{outcome}` of a finished run or a webhook delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// e.g. `completed`.
    pub outcome: &'static str,
}

/// `{type}` of an event (`job.created`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TypeLabel {
    /// The event type.
    pub event_type: &'static str,
}

impl EncodeLabelSet for TypeLabel {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("type", self.event_type)].encode(encoder)
    }
}

/// Event types of `gantry_events_total` (issue 12's event log; each starts at 0).
pub const EVENT_TYPES: [&str; 7] = [
    "job.created",
    "job.status_changed",
    "job_run.created",
    "job_run.status_changed",
    "node.registered",
    "node.status_changed",
    "balance.changed",
];

/// Outcomes of `gantry_webhook_deliveries_total` (each starts at 0).
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "failed", "retried"];

/// Outcomes of `gantry_job_runs_finished_total`.
pub const RUN_OUTCOMES: [&str; 5] = ["completed", "failed", "timed_out", "cancelled", "node_lost"];

/// Every metric of the control plane.
pub struct Metrics {
    registry: Registry,
    /// How often the stored-state gauges are recomputed.
    pub refresh_every: Duration,
    /// Requests and their latency by route template.
    pub http: http::HttpMetrics,
    /// `gantry_jobs{status}`.
    pub jobs: Family<StatusLabel, Gauge>,
    /// `gantry_job_runs{status}` (active statuses).
    pub job_runs: Family<StatusLabel, Gauge>,
    /// `gantry_nodes{status}`.
    pub nodes: Family<StatusLabel, Gauge>,
    /// `gantry_node_gpus{state}` (GPUs of ONLINE nodes).
    pub node_gpus: Family<StateLabel, Gauge>,
    /// `gantry_pending_jobs_oldest_age_seconds`.
    pub pending_oldest_age: Gauge<f64, AtomicU64>,
    /// `gantry_metrics_gauges_refreshed_timestamp_seconds`: when the gauges above were
    /// last recomputed (an alert can tell stale gauges from quiet ones).
    pub gauges_refreshed_at: Gauge<f64, AtomicU64>,
    /// `gantry_placement_latency_seconds`: from (re-)entering PENDING to being placed.
    pub placement_latency: Histogram,
    /// `gantry_scheduler_pass_duration_seconds`: every pass, placing or not.
    pub scheduler_pass: Histogram,
    /// `gantry_leader_fenced_writes_total`: leader-loop writes the store refused
    /// because this instance no longer held the lease they ran under.
    pub fenced_writes: Counter,
    /// `gantry_job_runs_finished_total{outcome}`.
    pub runs_finished: Family<OutcomeLabel, Counter>,
    /// `gantry_billing_charged_usd_total`: run charges posted to the ledger.
    pub billing_charged_usd: Counter<f64, AtomicU64>,
    /// `gantry_events_total{type}`: events appended to the event log, counted once
    /// per event by `background::events` as it follows the log, with a type from
    /// [`EVENT_TYPES`].
    pub events: Family<TypeLabel, Counter>,
    /// `gantry_webhook_deliveries_total{outcome}`: one per delivery attempt, with an
    /// outcome from [`WEBHOOK_OUTCOMES`] (`delivered`: 2xx; `retried`: failed, another
    /// attempt scheduled; `failed`: failed and given up). Fed by
    /// `background::webhooks`.
    pub webhook_deliveries: Family<OutcomeLabel, Counter>,
    /// `gantry_nonce_cache_entries`: set from the nonce cache at each scrape.
    pub nonce_entries: Gauge,
}

/// Buckets for latencies from a millisecond to a minute.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0].into_iter()
}

/// Buckets for placement latency: from 10 ms to an hour (a job may wait for a node).
fn placement_buckets() -> impl Iterator<Item = f64> {
    [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0].into_iter()
}

impl Metrics {
    /// Registers every family. `store` feeds the store's write counters at scrape time.
    pub fn new(store: Arc<dyn gantry_store::Store>, refresh_every: Duration) -> Self {
        let mut registry = Registry::default();
        let http = http::HttpMetrics::register(&mut registry);
        let m = Self {
            refresh_every,
            http,
            jobs: Family::default(),
            job_runs: Family::default(),
            nodes: Family::default(),
            node_gpus: Family::default(),
            pending_oldest_age: Gauge::default(),
            gauges_refreshed_at: Gauge::default(),
            placement_latency: Histogram::new(placement_buckets()),
            scheduler_pass: Histogram::new(latency_buckets()),
            fenced_writes: Counter::default(),
            runs_finished: Family::default(),
            billing_charged_usd: Counter::default(),
            events: Family::default(),
            webhook_deliveries: Family::default(),
            nonce_entries: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("gantry_jobs", "Jobs by status (refreshed in the background)", m.jobs.clone());
        r.register(
            "gantry_job_runs",
            "Active job runs by status (ended runs: gantry_job_runs_finished_total)",
            m.job_runs.clone(),
        );
        r.register("gantry_nodes", "Nodes by status", m.nodes.clone());
        r.register("gantry_node_gpus", "GPUs of ONLINE nodes, free or used by an active run", m.node_gpus.clone());
        r.register(
            "gantry_pending_jobs_oldest_age_seconds",
            "Time since the oldest PENDING job entered the queue (0 when none)",
            m.pending_oldest_age.clone(),
        );
        r.register(
            "gantry_metrics_gauges_refreshed_timestamp_seconds",
            "When the stored-state gauges were last recomputed, Unix seconds",
            m.gauges_refreshed_at.clone(),
        );
        r.register(
            "gantry_placement_latency_seconds",
            "From a job (re-)entering PENDING to its placement on nodes",
            m.placement_latency.clone(),
        );
        r.register(
            "gantry_scheduler_pass_duration_seconds",
            "Duration of scheduler passes (every pass, placing or not)",
            m.scheduler_pass.clone(),
        );
        r.register(
            "gantry_leader_fenced_writes",
            "Leader-loop writes refused because the lease they ran under was lost",
            m.fenced_writes.clone(),
        );
        r.register("gantry_job_runs_finished", "Job runs that ended, by outcome", m.runs_finished.clone());
        r.register_with_unit(
            "gantry_billing_charged",
            "Run charges posted to the ledger",
            Unit::Other("usd".into()),
            m.billing_charged_usd.clone(),
        );
        r.register("gantry_events", "Events appended to the event log, by type", m.events.clone());
        r.register("gantry_webhook_deliveries", "Webhook delivery attempts, by outcome", m.webhook_deliveries.clone());
        r.register("gantry_nonce_cache_entries", "Nonces remembered for replay protection", m.nonce_entries.clone());
        r.register_collector(Box::new(store::StoreCollector(store)));
        // Every status and outcome is present from the start, so rate() and alerts see
        // zeros rather than absent series.
        for status in gantry_types::job::JobStatus::ALL {
            m.jobs.get_or_create(&StatusLabel { status: status.as_str() }).set(0);
        }
        for status in gantry_types::job_run::JobRunStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
            m.job_runs.get_or_create(&StatusLabel { status: status.as_str() }).set(0);
        }
        for status in [gantry_types::node::NodeStatus::Online, gantry_types::node::NodeStatus::Lost] {
            m.nodes.get_or_create(&StatusLabel { status: status.as_str() }).set(0);
        }
        for state in ["free", "used"] {
            m.node_gpus.get_or_create(&StateLabel { state }).set(0);
        }
        for outcome in RUN_OUTCOMES {
            let _ = m.runs_finished.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in WEBHOOK_OUTCOMES {
            let _ = m.webhook_deliveries.get_or_create(&OutcomeLabel { outcome });
        }
        for event_type in EVENT_TYPES {
            let _ = m.events.get_or_create(&TypeLabel { event_type });
        }
        Self { registry, ..m }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts a run that just ended (`after` is the run as stored after its final
    /// transition). Control-plane failures are told apart by their reason, which
    /// `app::runs::fail_run`'s callers word ("node lost: ...", "start timeout: ...",
    /// "run timeout: ...").
    pub fn run_finished(&self, after: &gantry_store::RunRecord) {
        use gantry_types::job_run::JobRunStatus;
        let reason = after.run.status_reason.as_deref().unwrap_or("");
        let outcome = match after.run.status {
            JobRunStatus::Completed => "completed",
            JobRunStatus::Cancelled => "cancelled",
            JobRunStatus::Failed if reason.starts_with("node lost") => "node_lost",
            JobRunStatus::Failed if reason.starts_with("start timeout") || reason.starts_with("run timeout") => {
                "timed_out"
            }
            JobRunStatus::Failed => "failed",
            _ => return,
        };
        self.runs_finished.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts a run charge posted to the ledger.
    pub fn charged(&self, micros: i64) {
        if micros > 0 {
            self.billing_charged_usd.inc_by(micros as f64 / 1_000_000.0);
        }
    }
}
