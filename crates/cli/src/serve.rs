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
}

impl ServerArgs {
    /// The server configuration these arguments describe; a bad price or share is an
    /// error naming the flag.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::new(&self.data_dir, self.listen);
        config.database_url = self.database_url.clone();
        config.server_key = std::env::var("GANTRY_SERVER_KEY").ok().filter(|k| !k.is_empty());
        config.max_body_bytes = self.max_body_bytes;
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
    let server = gantry_server::start(args.config()?).await?;
    // Tools and tests read this line to learn the port when listening on port 0.
    outln!("gantry server listening on http://{}", server.local_addr)?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
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
