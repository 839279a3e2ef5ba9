//! The agent's own Prometheus metrics, served by `gantry agent --metrics-listen ADDR`
//! on `GET /metrics` (Prometheus text format 0.0.4; unauthenticated, like the
//! control plane's: nothing in it names an account, a job or a secret).
//!
//! | Metric | Type | Labels | Meaning |
//! |---|---|---|---|
//! | `gantry_agent_container_starts_total` | counter | `outcome` = `started`, `failed` | Docker runs that reached RUNNING, or failed before (pull, create, start) |
//! | `gantry_agent_image_pull_duration_seconds` | histogram | `outcome` = `ok`, `error` | Image pulls from a registry (cache hits are not pulls) |
//! | `gantry_agent_sync_duration_seconds` | histogram | `outcome` = `ok`, `error`; `mode` = `report`, `long_poll` | Sync round trips with the control plane; `report` syncs answer at once (their latency), `long_poll` ones include the wait for news |
//! | `gantry_agent_gpu_utilization_ratio` | gauge | `gpu` (index) | Share of time a kernel ran (NVML), 0-1 |
//! | `gantry_agent_gpu_memory_used_bytes` | gauge | `gpu` | Device memory in use |
//! | `gantry_agent_gpu_memory_total_bytes` | gauge | `gpu` | Device memory |
//! | `gantry_agent_gpu_temperature_celsius` | gauge | `gpu` | Core temperature (NVML only) |
//!
//! GPU gauges are updated from the heartbeat sample the agent takes for every sync
//! anyway (NVML on real nodes). **Fake GPUs** (`--fake-gpus`, `--simulate`) cannot be
//! measured: a GPU that a held run was assigned reports utilisation 1 and all of its
//! memory used, an unassigned one 0 and 0, its total memory is the spec's VRAM, and
//! no temperature series is exported (a made-up temperature could fire real alerts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `{outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// e.g. `started`.
    pub outcome: &'static str,
}

/// `{outcome,mode}` of a sync.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `ok` or `error`.
    pub outcome: &'static str,
    /// `report` (answered at once) or `long_poll`.
    pub mode: &'static str,
}

/// `{gpu}`: the device index.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabel {
    /// NVML index.
    pub gpu: u32,
}

type Gauge64 = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn pull_histogram() -> Histogram {
    Histogram::new([0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
}

fn sync_histogram() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

/// Every metric of one agent process (shared by its nodes when simulating several).
pub struct AgentMetrics {
    registry: Registry,
    /// `gantry_agent_container_starts_total{outcome}`.
    pub container_starts: Family<OutcomeLabel, Counter>,
    /// `gantry_agent_image_pull_duration_seconds{outcome}`.
    pub image_pulls: HistogramFamily<OutcomeLabel>,
    /// `gantry_agent_sync_duration_seconds{outcome,mode}`.
    pub syncs: HistogramFamily<SyncLabels>,
    /// `gantry_agent_gpu_utilization_ratio{gpu}`.
    pub gpu_utilization: Family<GpuLabel, Gauge64>,
    /// `gantry_agent_gpu_memory_used_bytes{gpu}`.
    pub gpu_memory_used: Family<GpuLabel, Gauge64>,
    /// `gantry_agent_gpu_memory_total_bytes{gpu}`.
    pub gpu_memory_total: Family<GpuLabel, Gauge64>,
    /// `gantry_agent_gpu_temperature_celsius{gpu}`.
    pub gpu_temperature: Family<GpuLabel, Gauge64>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            registry: Registry::default(),
            container_starts: Family::default(),
            image_pulls: Family::new_with_constructor(pull_histogram as fn() -> Histogram),
            syncs: Family::new_with_constructor(sync_histogram as fn() -> Histogram),
            gpu_utilization: Family::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
            gpu_temperature: Family::default(),
        };
        let r = &mut registry;
        r.register(
            "gantry_agent_container_starts",
            "Runs whose container started, or failed to (pull, create, start)",
            m.container_starts.clone(),
        );
        r.register_with_unit(
            "gantry_agent_image_pull_duration",
            "Image pulls from registries",
            Unit::Seconds,
            m.image_pulls.clone(),
        );
        r.register_with_unit(
            "gantry_agent_sync_duration",
            "Sync round trips with the control plane (long_poll includes the wait)",
            Unit::Seconds,
            m.syncs.clone(),
        );
        r.register(
            "gantry_agent_gpu_utilization_ratio",
            "Share of time a kernel ran on the GPU (fake GPUs: 1 when assigned to a run)",
            m.gpu_utilization.clone(),
        );
        r.register_with_unit(
            "gantry_agent_gpu_memory_used",
            "GPU memory in use (fake GPUs: all of it when assigned to a run)",
            Unit::Bytes,
            m.gpu_memory_used.clone(),
        );
        r.register_with_unit("gantry_agent_gpu_memory_total", "GPU memory", Unit::Bytes, m.gpu_memory_total.clone());
        r.register_with_unit(
            "gantry_agent_gpu_temperature",
            "GPU core temperature (NVML only; fake GPUs export none)",
            Unit::Celsius,
            m.gpu_temperature.clone(),
        );
        for outcome in ["started", "failed"] {
            let _ = m.container_starts.get_or_create(&OutcomeLabel { outcome });
        }
        Self { registry, ..m }
    }
}

impl AgentMetrics {
    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Records the GPUs of a heartbeat sample; `inventory` gives their total memory,
    /// `temperatures` what NVML read (empty for fake GPUs).
    pub fn observe_gpus(
        &self,
        sample: &gantry_types::node::HardwareSample,
        inventory: &[gantry_types::node::InventoryGpu],
        temperatures: &[(u32, f64)],
    ) {
        const GB: f64 = 1_000_000_000.0;
        for s in &sample.gpus {
            let gpu = GpuLabel { gpu: s.index };
            let total_gb = inventory.iter().find(|g| g.index == s.index).map_or(0.0, |g| g.vram_gb);
            self.gpu_utilization.get_or_create(&gpu).set((s.load / 100.0).clamp(0.0, 1.0));
            self.gpu_memory_total.get_or_create(&gpu).set(total_gb * GB);
            self.gpu_memory_used.get_or_create(&gpu).set(((total_gb - s.vram_free_gb) * GB).max(0.0));
        }
        for (index, celsius) in temperatures {
            self.gpu_temperature.get_or_create(&GpuLabel { gpu: *index }).set(*celsius);
        }
    }
}

/// Serves `GET /metrics` (and `GET /healthz`) on `listen` until the task is aborted.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<AgentMetrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::header;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the agent's metrics listener stopped");
        }
    });
    Ok((local, task))
}
