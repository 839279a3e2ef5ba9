//! Server configuration. Every knob has a default suited to one machine; the
//! command line (`gantry server`) and tests build this struct directly.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Events are kept a week by default.
pub const DEFAULT_EVENT_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How a server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Holds `gantry.db` (SQLite) and `server.key`.
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL instead of the embedded SQLite.
    pub database_url: Option<String>,
    /// The 32-byte key encrypting secrets at rest (64 hex chars or base64); when
    /// absent, `<data_dir>/server.key` is used, created on first start.
    pub server_key: Option<String>,
    /// Largest request body accepted, bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Most published ports one job may ask for (each is a proxy and a socket on its
    /// node).
    pub max_ports_per_job: usize,
    /// Most nonces remembered for replay protection (bounded memory).
    pub nonce_capacity: usize,
    /// Timing of the background reconcilers (scheduler, lifecycle).
    pub timing: crate::background::Timing,
    /// Prices, the operators' share and whether balances are enforced.
    pub billing: BillingConfig,
    /// Requests per second per account (token bucket; off by default).
    pub rate_limits: crate::rate_limit::RateLimits,
    /// Per-account quotas on pending jobs and stored job bytes (off by default);
    /// consumer profiles may override them.
    pub quotas: crate::app::quotas::Quotas,
    /// Most pending jobs one scheduler pass reads, split fairly among the accounts
    /// with pending jobs (each gets at least its oldest one).
    pub scheduler_pass_limit: u32,
    /// Connection timeouts and the most connections served at once.
    pub connections: crate::serve::ConnectionLimits,
    /// Serve HTTPS with this certificate and key instead of plain HTTP (read at start:
    /// a new certificate takes a restart).
    pub tls: Option<gantry_tls::CertFiles>,
    /// How often the stored-state metrics gauges are recomputed (`/metrics` itself
    /// never reads the store).
    pub metrics_refresh_every: std::time::Duration,
    /// How long events are kept (`GET /v1/events`, webhooks); resuming from an older
    /// id is a 410.
    pub event_retention: std::time::Duration,
    /// Webhook delivery.
    pub webhooks: WebhookConfig,
    /// The relay this control plane offers agents (`HOST:PORT` of its tunnel
    /// listener; `gantry server --relay`), named in sync answers.
    pub relay_offer: Option<String>,
}

/// Webhook delivery.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Deliver to loopback, private and link-local addresses too (self-hosted
    /// receivers, tests). Off by default.
    pub allow_private: bool,
    /// The wait after the first failed attempt; each further one doubles it (up to an
    /// hour), with jitter.
    pub retry_base: std::time::Duration,
    /// A delivery still failing this long after its event is given up (FAILED).
    pub give_up_after: std::time::Duration,
    /// One attempt's limit (connect, send, answer).
    pub attempt_timeout: std::time::Duration,
    /// How often the delivery worker looks for due retries without being woken.
    pub poll_every: std::time::Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_base: std::time::Duration::from_secs(1),
            give_up_after: std::time::Duration::from_secs(24 * 3600),
            attempt_timeout: std::time::Duration::from_secs(10),
            poll_every: std::time::Duration::from_millis(500),
        }
    }
}

/// Billing: what compute costs and who gets what. Amounts are micro-USD per hour.
///
/// Metering and ledger charges always happen; `enforce` only decides whether a
/// consumer without money is refused (402) and stopped at zero. It is off by
/// default because a lab running Gantry for itself does not bill itself.
#[derive(Clone, Debug)]
pub struct BillingConfig {
    /// Refuse and stop jobs of billed consumers whose balance cannot pay.
    pub enforce: bool,
    /// Price per GPU per hour, by GPU model name as the registry knows it (any name or
    /// alias the registry resolves).
    pub gpu_prices: Vec<(String, i64)>,
    /// Price per GPU per hour for a model not in `gpu_prices`.
    pub default_gpu_price: i64,
    /// Price per CPU core per hour.
    pub cpu_core_price: i64,
    /// Price per GB of RAM per hour.
    pub ram_gb_price: i64,
    /// The node owner's share of a run's charge, parts per million (800000 = 80%);
    /// the platform keeps the rest.
    pub operator_share_ppm: i64,
}

impl Default for BillingConfig {
    /// Prices observed upstream for the two GPUs it publishes (API.md §6.1), a middle
    /// price for other GPUs, and small CPU and RAM prices.
    fn default() -> Self {
        Self {
            enforce: false,
            gpu_prices: vec![("NVIDIA RTX 4090".into(), 350_000), ("NVIDIA RTX 5090".into(), 690_000)],
            default_gpu_price: 500_000,
            cpu_core_price: 10_000,
            ram_gb_price: 2_000,
            operator_share_ppm: 800_000,
        }
    }
}

impl ServerConfig {
    /// Defaults for a data dir, listening on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            listen,
            data_dir: data_dir.into(),
            database_url: None,
            server_key: None,
            max_body_bytes: 1024 * 1024,
            max_ports_per_job: 32,
            nonce_capacity: 4_000_000,
            timing: Default::default(),
            billing: Default::default(),
            connections: Default::default(),
            rate_limits: Default::default(),
            tls: None,
            quotas: Default::default(),
            scheduler_pass_limit: crate::background::scheduler::PASS_LIMIT,
            metrics_refresh_every: std::time::Duration::from_secs(1),
            event_retention: DEFAULT_EVENT_RETENTION,
            webhooks: WebhookConfig::default(),
            relay_offer: None,
        }
    }
}
