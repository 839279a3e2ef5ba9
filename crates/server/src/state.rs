//! State shared by every request: the store, the secret box, replay protection,
//! the API key cache, usage tracking, and the wake-ups between reconcilers.

use std::sync::Arc;

use gantry_auth::{NonceCache, SecretBox};
use gantry_store::Store;

use crate::config::ServerConfig;
use crate::key_cache::KeyCache;
use crate::usage::UsageTracker;

/// Everything a handler may use.
pub struct AppState {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// Encrypts and decrypts secrets at rest.
    pub secrets: SecretBox,
    /// Nonces seen inside the signature window.
    pub nonces: NonceCache,
    /// Recently used API keys, secrets decrypted.
    pub keys: KeyCache,
    /// Last-used times waiting to be written.
    pub usage: UsageTracker,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// The GPU registry in memory (seeded at start, refreshed; see `app::gpu_registry`).
    pub gpus: crate::app::gpu_registry::GpuCatalogue,
    /// Wake-ups: node desired-state versions, scheduler passes.
    pub signals: crate::signals::Signals,
    /// Desired runs per node, valid for one version.
    pub desired_cache: crate::signals::DesiredCache,
    /// Why each (displayed) PENDING job is not placed yet, from the last scheduler pass.
    pub pending_reasons: std::sync::RwLock<std::collections::HashMap<gantry_types::JobId, String>>,
    /// Reconciler timing.
    pub timing: crate::background::Timing,
    /// Recent placements per account (fair share across scheduler passes).
    pub recent_placements: crate::background::scheduler::RecentPlacements,
    /// Consumer profiles recently used (job submission reads them).
    pub profiles: crate::app::profiles::ProfileCache,
    /// Prices, shares, enforcement.
    pub billing: crate::config::BillingConfig,
    /// How credit purchases are paid.
    pub payments: std::sync::Arc<dyn crate::app::payments::PaymentProvider>,
    /// When this server started: nodes get one loss-detection period of grace after a
    /// restart to re-attach before silence counts against them.
    pub started: std::time::Instant,
    /// Prometheus metrics (`/metrics`; see `crate::metrics`).
    pub metrics: crate::metrics::Metrics,
}

impl AppState {
    /// Builds the state for a configured server.
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox, config: &ServerConfig) -> Self {
        let store_for_metrics = store.clone();
        Self {
            store,
            secrets,
            nonces: NonceCache::new(config.nonce_capacity),
            keys: KeyCache::default(),
            usage: UsageTracker::default(),
            max_body_bytes: config.max_body_bytes,
            gpus: Default::default(),
            signals: crate::signals::Signals::new(now_ms() as u64),
            desired_cache: Default::default(),
            pending_reasons: Default::default(),
            timing: config.timing,
            recent_placements: Default::default(),
            profiles: Default::default(),
            billing: config.billing.clone(),
            payments: std::sync::Arc::new(crate::app::payments::ManualProvider),
            started: std::time::Instant::now(),
            metrics: crate::metrics::Metrics::new(store_for_metrics, config.metrics_refresh_every),
        }
    }
}

/// Wall-clock time, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
