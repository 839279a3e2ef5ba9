//! State shared by every request and background loop, grouped by concern: the store
//! and the secret box (everyone), the wake-ups between parts ([`Signals`]), request
//! authentication ([`AuthState`]), in-memory views of stored data ([`Caches`]), the
//! reconcilers' own memory ([`SchedulingState`]) and billing ([`Billing`]).
//!
//! Everything in memory here is derived or a cache: the store holds the truth, so a
//! restart loses nothing (see ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use gantry_auth::{NonceCache, SecretBox};
use gantry_store::Store;
use gantry_types::JobId;

use crate::app::gpu_registry::GpuCatalogue;
use crate::app::payments::{ManualProvider, PaymentProvider};
use crate::app::profiles::ProfileCache;
use crate::background::Timing;
use crate::background::scheduler::RecentPlacements;
use crate::config::{BillingConfig, ServerConfig};
use crate::key_cache::KeyCache;
use crate::signals::{DesiredCache, NodeStateCache, Signals};
use crate::usage::UsageTracker;

/// Everything a handler or a background loop may use.
pub struct AppState {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// Encrypts and decrypts secrets at rest.
    pub secrets: SecretBox,
    /// Wake-ups: node desired-state versions, scheduler passes, last contact per node.
    pub signals: Signals,
    /// Heartbeats noted by syncs, written in batches (`crate::heartbeats`).
    pub heartbeats: crate::heartbeats::Heartbeats,
    /// Checking signed requests.
    pub auth: AuthState,
    /// In-memory views of stored data.
    pub caches: Caches,
    /// What the reconcilers remember between passes, and their timing.
    pub scheduling: SchedulingState,
    /// Prices and how credit is paid.
    pub billing: Billing,
    /// Prometheus metrics (`/metrics`; see `crate::metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The event log's settings.
    pub events: EventSettings,
    /// Webhook delivery.
    pub webhooks: WebhookState,
    /// Relay tokens and the relay offered to agents (issue 14).
    pub relays: RelayState,
}

/// What the control plane knows of relays: how it signs nodes' relay tokens, and the
/// relay it offers (its own, with `gantry server --relay`).
pub struct RelayState {
    /// Signs relay tokens; its seed is derived from the server key, so every instance
    /// signs alike.
    pub issuer: gantry_relay::token::Issuer,
    /// `HOST:PORT` of the offered relay's tunnel listener.
    pub offer: Option<String>,
}

/// Webhook delivery: settings, the HTTP client and the wake-ups between its loops.
pub struct WebhookState {
    /// `--webhooks-allow-private`.
    pub allow_private: bool,
    /// First retry wait (doubling).
    pub retry_base: std::time::Duration,
    /// Give up after.
    pub give_up_after: std::time::Duration,
    /// Fallback period of the delivery worker.
    pub poll_every: std::time::Duration,
    /// No redirects, no proxy, internal addresses refused after DNS.
    pub client: reqwest::Client,
    /// An endpoint was created or deleted (the fan-out step rereads them).
    pub changed: tokio::sync::Notify,
    /// Deliveries were queued or an attempt ended (the worker looks again).
    pub outbox: tokio::sync::Notify,
}

impl WebhookState {
    fn new(config: &crate::config::WebhookConfig) -> Self {
        let resolver = crate::app::webhooks::destination::GuardedResolver { allow_private: config.allow_private };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(config.attempt_timeout)
            .timeout(config.attempt_timeout)
            .user_agent(concat!("Gantry-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the webhook HTTP client builds");
        Self {
            allow_private: config.allow_private,
            retry_base: config.retry_base,
            give_up_after: config.give_up_after,
            poll_every: config.poll_every,
            client,
            changed: tokio::sync::Notify::new(),
            outbox: tokio::sync::Notify::new(),
        }
    }
}

/// The event log's settings.
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// How long events are kept.
    pub retention: std::time::Duration,
}

/// Checking signed requests.
pub struct AuthState {
    /// Nonces seen inside the signature window.
    pub nonces: NonceCache,
    /// Recently used API keys, secrets decrypted.
    pub keys: KeyCache,
    /// Last-used times waiting to be written.
    pub usage: UsageTracker,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Most published ports one job may ask for.
    pub max_ports_per_job: usize,
    /// Per-account request rate buckets.
    pub rate_limiter: crate::rate_limit::RateLimiter,
    /// The deployment's per-account quotas (profiles may override them).
    pub quotas: crate::app::quotas::Quotas,
}

/// In-memory views of stored data, each refreshed or invalidated by its owner module.
#[derive(Default)]
pub struct Caches {
    /// The GPU registry (seeded at start, refreshed; see `app::gpu_registry`).
    pub gpus: GpuCatalogue,
    /// Consumer profiles recently used (job submission reads them).
    pub profiles: ProfileCache,
    /// Desired runs per node, valid for one version.
    pub desired: DesiredCache,
    /// Each node's owner, status and epoch, valid for one version (what fences a sync).
    pub node_states: NodeStateCache,
}

/// What the reconcilers remember between passes (all derived; a restart starts afresh).
pub struct SchedulingState {
    /// Reconciler timing.
    pub timing: Timing,
    /// Most pending jobs one pass reads (split among accounts).
    pub pass_limit: u32,
    /// Why each (displayed) PENDING job is not placed yet, from the last scheduler pass.
    pub pending_reasons: RwLock<HashMap<JobId, String>>,
    /// Recent placements per account (fair share across scheduler passes).
    pub recent_placements: RecentPlacements,
    /// When this instance last became the leader (at start on SQLite): nodes get one
    /// loss-detection period of grace after a restart or a change of leader to
    /// re-attach before silence counts against them.
    pub leading_since: std::sync::Mutex<std::time::Instant>,
    /// Whether this instance runs the leader's loops now (see `background::leader`).
    pub leading: std::sync::atomic::AtomicBool,
    /// The epoch of the lease this instance last led under (0: never led).
    pub lease_epoch: std::sync::atomic::AtomicI64,
}

/// Billing.
pub struct Billing {
    /// Prices, shares, enforcement.
    pub config: BillingConfig,
    /// How credit purchases are paid.
    pub payments: Arc<dyn PaymentProvider>,
}

impl AppState {
    /// Builds the state for a configured server.
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox, config: &ServerConfig) -> Self {
        let store_for_metrics = store.clone();
        let secrets_seed = secrets.derive(gantry_relay::token::SEED_PURPOSE);
        Self {
            store,
            secrets,
            signals: Signals::new(now_ms() as u64),
            heartbeats: Default::default(),
            auth: AuthState {
                nonces: NonceCache::new(config.nonce_capacity),
                keys: KeyCache::default(),
                usage: UsageTracker::default(),
                max_body_bytes: config.max_body_bytes,
                max_ports_per_job: config.max_ports_per_job,
                rate_limiter: crate::rate_limit::RateLimiter::new(config.rate_limits),
                quotas: config.quotas,
            },
            caches: Caches::default(),
            scheduling: SchedulingState {
                timing: config.timing,
                pass_limit: config.scheduler_pass_limit.max(1),
                pending_reasons: Default::default(),
                recent_placements: Default::default(),
                leading_since: std::sync::Mutex::new(std::time::Instant::now()),
                leading: std::sync::atomic::AtomicBool::new(false),
                lease_epoch: std::sync::atomic::AtomicI64::new(0),
            },
            billing: Billing { config: config.billing.clone(), payments: Arc::new(ManualProvider) },
            metrics: crate::metrics::Metrics::new(store_for_metrics, config.metrics_refresh_every),
            events: EventSettings { retention: config.event_retention },
            webhooks: WebhookState::new(&config.webhooks),
            relays: RelayState {
                issuer: gantry_relay::token::Issuer::from_seed(&secrets_seed),
                offer: config.relay_offer.clone(),
            },
        }
    }
}

/// Wall-clock time, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
