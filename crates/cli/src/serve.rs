//! `gantry server`: serve the API until SIGTERM/SIGINT, then shut down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use gantry_server::ServerConfig;

/// Where the server keeps its state and how it listens.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Data directory: SQLite database and server key.
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = ".gantry")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, env = "GANTRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PostgreSQL URL (postgres://user@host:port/db) instead of the embedded SQLite.
    #[arg(long, env = "GANTRY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Enforce balances: refuse (402) jobs of billed consumers who cannot pay an hour,
    /// and stop their jobs when their balance reaches zero. Off: metering only.
    #[arg(long, env = "GANTRY_BILLING_ENFORCE")]
    pub billing_enforce: bool,
    /// Hourly USD price of one GPU of a model: `NAME=USD` (repeatable), e.g.
    /// `--price-gpu "NVIDIA H100=2.10"`. Replaces the built-in table when given.
    #[arg(long = "price-gpu", value_name = "NAME=USD")]
    pub price_gpu: Vec<String>,
    /// Hourly USD price of one GPU of a model not in the table.
    #[arg(long, value_name = "USD", default_value = "0.50")]
    pub price_gpu_default: String,
    /// Hourly USD price of one CPU core.
    #[arg(long, value_name = "USD", default_value = "0.01")]
    pub price_cpu_core: String,
    /// Hourly USD price of one GB of RAM.
    #[arg(long, value_name = "USD", default_value = "0.002")]
    pub price_ram_gb: String,
    /// The node owner's share of a run's charge (0 to 1); the platform keeps the rest.
    #[arg(long, value_name = "FRACTION", default_value = "0.8")]
    pub operator_share: String,
    /// Seconds a request's head (request line and headers) may take to arrive once it
    /// starts; slower connections are closed.
    #[arg(long, env = "GANTRY_HEADER_READ_TIMEOUT_SECS", value_name = "SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may sit idle (no request in flight, no traffic) before it
    /// is closed; also how long a response may wait for a client that stopped reading.
    #[arg(long, env = "GANTRY_IDLE_TIMEOUT_SECS", value_name = "SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Most connections served at once; further clients wait to be accepted. Default:
    /// the open-file limit less 256 (each long-polling agent holds one connection).
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most published ports one job may ask for.
    #[arg(long, env = "GANTRY_MAX_PORTS_PER_JOB", value_name = "N", default_value_t = 32)]
    pub max_ports_per_job: usize,
    /// Requests per second each account may make (token bucket; 0 = no limit).
    /// Operator keys and node agents are exempt. Over it: 429 with Retry-After.
    #[arg(long, env = "GANTRY_RATE_LIMIT_RPS", value_name = "N", default_value_t = 0.0)]
    pub rate_limit_rps: f64,
    /// Requests an idle account may make at once (default: twice the rate).
    #[arg(long, env = "GANTRY_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<f64>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first) instead of plain
    /// HTTP; needs --tls-key. Read at start: a renewed certificate takes a restart.
    #[arg(long, env = "GANTRY_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "GANTRY_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub relay: Box<crate::relay::ServerRelayArgs>,
    /// Most PENDING jobs each account may have (0 = no limit). A consumer profile's
    /// max_pending_jobs overrides it; operator keys are exempt. Over it: 429.
    #[arg(long, env = "GANTRY_MAX_PENDING_JOBS", value_name = "N", default_value_t = 0)]
    pub max_pending_jobs: u64,
    /// Most bytes of stored job JSON each account may have over all its jobs (0 = no
    /// limit). A consumer profile's max_stored_job_bytes overrides it; operator keys are
    /// exempt. Over it: 403.
    #[arg(long, env = "GANTRY_MAX_STORED_JOB_BYTES", value_name = "BYTES", default_value_t = 0)]
    pub max_stored_job_bytes: u64,
    /// Most pending jobs one scheduler pass reads, split fairly among the accounts with
    /// pending jobs (each gets at least its oldest job).
    #[arg(long, env = "GANTRY_SCHEDULER_PASS_LIMIT", value_name = "N", default_value_t = 20_000)]
    pub scheduler_pass_limit: u32,
    /// How long events are kept for `GET /v1/events` and webhooks, in hours
    /// (resuming from an older event id is refused with 410 Gone).
    #[arg(long, env = "GANTRY_EVENT_RETENTION_HOURS", value_name = "HOURS", default_value_t = 168)]
    pub event_retention_hours: u64,
    /// Deliver webhooks to loopback, private and link-local addresses too (refused by
    /// default, so tenants cannot make the server reach internal services). For
    /// self-hosted receivers on a private network.
    #[arg(long, env = "GANTRY_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    #[command(flatten)]
    pub service: ServerServiceArgs,
}

/// The flags of a server run as a service: its configuration file and where its key
/// comes from.
#[derive(clap::Args, Clone, Default)]
pub struct ServerServiceArgs {
    #[command(flatten)]
    pub config: crate::config_file::ConfigArgs,
    /// File holding the key that encrypts secrets at rest (64 hex chars or base64 of
    /// 32 bytes), instead of GANTRY_SERVER_KEY or DATA_DIR/server.key. Instances sharing
    /// one database must all be given the same file. Under systemd, a credential named
    /// `server.key` (LoadCredential=) is used when none is given. (Not read from
    /// GANTRY_SECRET_KEY_FILE: that names an API key's secret, for agents and clients.)
    #[arg(long, visible_alias = "secret-key-file", env = "GANTRY_SERVER_KEY_FILE", value_name = "FILE")]
    pub server_key_file: Option<PathBuf>,
}

impl ServerServiceArgs {
    /// The configured server key, if any (else the data dir's key file is used).
    pub fn server_key(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.server_key_file {
            return crate::config_file::read_secret_file(path).map(Some);
        }
        if let Some(key) = std::env::var("GANTRY_SERVER_KEY").ok().filter(|k| !k.is_empty()) {
            return Ok(Some(key));
        }
        match std::env::var_os("CREDENTIALS_DIRECTORY").map(|d| PathBuf::from(d).join("server.key")) {
            Some(path) if path.exists() => crate::config_file::read_secret_file(&path).map(Some),
            _ => Ok(None),
        }
    }
}

impl ServerArgs {
    /// The server configuration these arguments describe; a bad price or share is an
    /// error naming the flag.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::new(&self.data_dir, self.listen);
        config.database_url = self.database_url.clone();
        config.server_key = self.service.server_key()?;
        config.max_body_bytes = self.max_body_bytes;
        anyhow::ensure!(self.header_read_timeout_secs > 0, "--header-read-timeout-secs must be at least 1");
        anyhow::ensure!(self.idle_timeout_secs > 0, "--idle-timeout-secs must be at least 1");
        anyhow::ensure!(self.max_connections != Some(0), "--max-connections must be at least 1");
        config.connections.header_read_timeout = std::time::Duration::from_secs(self.header_read_timeout_secs);
        config.connections.idle_timeout = std::time::Duration::from_secs(self.idle_timeout_secs);
        if let Some(max) = self.max_connections {
            config.connections.max_connections = max;
        }
        config.max_ports_per_job = self.max_ports_per_job;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(gantry_tls::CertFiles { cert: cert.clone(), key: key.clone() });
        }
        anyhow::ensure!(self.event_retention_hours > 0, "--event-retention-hours must be at least 1");
        config.event_retention = std::time::Duration::from_secs(self.event_retention_hours.saturating_mul(3600));
        config.webhooks.allow_private = self.webhooks_allow_private;
        anyhow::ensure!(
            self.rate_limit_rps.is_finite() && self.rate_limit_rps >= 0.0,
            "--rate-limit-rps must be a number >= 0"
        );
        let burst = self.rate_limit_burst.unwrap_or(self.rate_limit_rps * 2.0);
        anyhow::ensure!(burst.is_finite() && burst >= 0.0, "--rate-limit-burst must be a number >= 0");
        config.rate_limits = gantry_server::RateLimits { requests_per_sec: self.rate_limit_rps, burst };
        anyhow::ensure!(
            self.max_pending_jobs <= gantry_types::billing::MAX_QUOTA
                && self.max_stored_job_bytes <= gantry_types::billing::MAX_QUOTA,
            "--max-pending-jobs and --max-stored-job-bytes must be at most {}",
            gantry_types::billing::MAX_QUOTA
        );
        config.quotas = gantry_server::Quotas {
            max_pending_jobs: self.max_pending_jobs,
            max_stored_job_bytes: self.max_stored_job_bytes,
        };
        anyhow::ensure!(self.scheduler_pass_limit > 0, "--scheduler-pass-limit must be at least 1");
        config.scheduler_pass_limit = self.scheduler_pass_limit;
        let usd =
            |flag: &str, v: &str| gantry_types::money::parse_usd(v, false).map_err(|e| anyhow::anyhow!("--{flag} {e}"));
        let b = &mut config.billing;
        b.enforce = self.billing_enforce;
        if !self.price_gpu.is_empty() {
            b.gpu_prices = self
                .price_gpu
                .iter()
                .map(|item| {
                    let (name, price) = item
                        .rsplit_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--price-gpu must be NAME=USD, got {item:?}"))?;
                    Ok((name.trim().to_string(), usd("price-gpu", price)?))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        b.default_gpu_price = usd("price-gpu-default", &self.price_gpu_default)?;
        b.cpu_core_price = usd("price-cpu-core", &self.price_cpu_core)?;
        b.ram_gb_price = usd("price-ram-gb", &self.price_ram_gb)?;
        b.operator_share_ppm = gantry_types::money::parse_share(&self.operator_share)
            .map_err(|e| anyhow::anyhow!("--operator-share {e}"))?;
        Ok(config)
    }
}

/// Runs the server in the foreground.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // Held until exit: `gantry admin restore` refuses a data dir a server is using.
    let _lock = crate::backup::DataDirLock::acquire(&args.data_dir)?;
    let mut config = args.config()?;
    let relay = args.relay.bind().await?;
    config.relay_offer = relay.as_ref().map(|(_, offer)| offer.clone());
    let tls = config.tls.clone();
    let server = gantry_server::start(config).await?;
    // Tools and tests read this line to learn the port when listening on port 0.
    outln!("gantry server listening on {}", server.base_url())?;
    let _relay = match (relay, tls) {
        (Some((listener, offer)), Some(tls)) => {
            let local = listener.local_addr()?;
            let settings = args.relay.settings(tls)?;
            let range = settings.range;
            let task =
                crate::relay::start(listener, settings, server.relay_token_verifier(), server.relay_ended_runs())?;
            outln!(
                "gantry relay listening on {local}; public ports {}-{}; offered to agents as {offer}",
                range.first,
                range.last
            )?;
            Some(AbortOnDrop(task))
        }
        (Some(_), None) => anyhow::bail!("--relay needs --tls-cert and --tls-key (the tunnel is always TLS)"),
        _ => None,
    };
    crate::sd_notify::notify(&format!("READY=1\nSTATUS=serving on {}", server.local_addr));
    shutdown_signal().await;
    tracing::info!("shutting down");
    crate::sd_notify::notify("STOPPING=1\nSTATUS=draining in-flight requests");
    server.shutdown().await
}

/// Ends a task when dropped (the in-process relay ends with the server).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
