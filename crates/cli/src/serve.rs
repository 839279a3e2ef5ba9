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
}

impl ServerArgs {
    /// The server configuration these arguments describe.
    pub fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::new(&self.data_dir, self.listen);
        config.database_url = self.database_url.clone();
        config.server_key = std::env::var("GANTRY_SERVER_KEY").ok().filter(|k| !k.is_empty());
        config.max_body_bytes = self.max_body_bytes;
        config
    }
}

/// Runs the server in the foreground.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let server = gantry_server::start(args.config()).await?;
    // Tools and tests read this line to learn the port when listening on port 0.
    println!("gantry server listening on http://{}", server.local_addr);
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
