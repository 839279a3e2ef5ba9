//! `gantry relay`: carry the published ports of nodes behind NAT (issue 14).
//!
//! Agents started with `--relay HOST:PORT` dial this process's tunnel listener over TLS
//! (always TLS: `--tls-cert`/`--tls-key`) and keep one yamux session up, presenting a
//! relay token the control plane issued them; for each published port of their runs
//! it binds a public port from `--port-range` on `--bind`, admits only the run's
//! `allowed_ips` there, and the agents put `--public-host` and that port in the run's
//! `node_urls`.
//!
//! The relay authenticates to the control plane (`--server`) with its own API key of
//! preset `relay`, to fetch the public key relay tokens are verified with
//! (`GET /v1/relays/token-key`) and to ask every half second which of the runs it
//! carries ended (`POST /v1/relays/ended-runs`: their ports close even when their node
//! is down); it holds no other secret of the control plane.
//! `gantry server --relay` runs the same [`start`] in the control plane's process.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gantry_agent::docker::ports::PortRange;
use gantry_client::Credentials;
use gantry_relay::token::Verifier;

/// `gantry relay`.
#[derive(Args)]
pub struct RelayArgs {
    /// Address the agents' tunnels connect to (TLS).
    #[arg(long, env = "GANTRY_RELAY_LISTEN", default_value = "0.0.0.0:7443")]
    listen: SocketAddr,
    /// Host name or address users reach the public ports on (it goes into node_urls).
    #[arg(long, env = "GANTRY_RELAY_PUBLIC_HOST", value_name = "HOST")]
    public_host: String,
    /// Address the public ports listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Public ports to hand out, e.g. 40000-40999 (open exactly this range in the firewall).
    #[arg(long, value_name = "A-B", value_parser = PortRange::parse)]
    port_range: PortRange,
    /// Certificate chain (PEM) of the tunnel listener; agents verify it.
    #[arg(long, env = "GANTRY_TLS_CERT", value_name = "FILE")]
    tls_cert: PathBuf,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "GANTRY_TLS_KEY", value_name = "FILE")]
    tls_key: PathBuf,
    /// The control plane (base URL) whose nodes this relay serves.
    #[arg(long, env = "GANTRY_API_BASE_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Public key of a `relay` preset key.
    #[arg(long, env = "GANTRY_PUBLIC_KEY")]
    public_key: String,
    /// Secret key of that key (prefer --secret-key-file: a flag shows in `ps`).
    #[arg(long, env = "GANTRY_SECRET_KEY", required_unless_present = "secret_key_file")]
    secret_key: Option<String>,
    /// File holding the secret key.
    #[arg(long, env = "GANTRY_SECRET_KEY_FILE", value_name = "FILE", conflicts_with = "secret_key")]
    secret_key_file: Option<PathBuf>,
    #[command(flatten)]
    limits: RelayLimitArgs,
}

/// `gantry server --relay`: a relay in the control plane's process (small
/// deployments). Its tunnel listener serves the server's `--tls-cert`.
#[derive(Args, Clone, Default)]
pub struct ServerRelayArgs {
    /// Run a relay in this process; agents started with `--relay auto` are told to use it.
    #[arg(long = "relay", requires_all = ["relay_public_host", "relay_port_range", "tls_cert"])]
    pub enabled: bool,
    /// Address the relay's tunnel listener binds (agents dial it over TLS).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7443")]
    pub relay_listen: Option<SocketAddr>,
    /// Host name users reach the public ports on, and agents the tunnel listener (the
    /// server's certificate must name it).
    #[arg(long, value_name = "HOST")]
    pub relay_public_host: Option<String>,
    /// Public ports to hand out, e.g. 40000-40999.
    #[arg(long, value_name = "A-B", value_parser = PortRange::parse)]
    pub relay_port_range: Option<PortRange>,
    /// Address the public ports listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub relay_bind: Option<IpAddr>,
}

impl ServerRelayArgs {
    /// Binds the tunnel listener when `--relay` is on: the listener and the address
    /// agents are offered (`--relay-public-host` and the bound port).
    pub async fn bind(&self) -> anyhow::Result<Option<(tokio::net::TcpListener, String)>> {
        if !self.enabled {
            return Ok(None);
        }
        let listen = self.relay_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 7443)));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} for --relay-listen"))?;
        let host = self.relay_public_host.clone().context("--relay needs --relay-public-host")?;
        let port = listener.local_addr()?.port();
        let offer = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Some((listener, offer)))
    }

    /// The relay's settings, serving `tls`.
    pub fn settings(&self, tls: gantry_tls::CertFiles) -> anyhow::Result<Settings> {
        Ok(Settings {
            public_host: self.relay_public_host.clone().context("--relay needs --relay-public-host")?,
            bind: self.relay_bind.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            range: self.relay_port_range.context("--relay needs --relay-port-range")?,
            tls,
            limits: RelayLimitArgs::default(),
        })
    }
}

/// Limits of a relay (`gantry server --relay` takes the defaults).
#[derive(Args, Clone, Copy)]
pub struct RelayLimitArgs {
    /// Seconds an agent has to finish the TLS handshake and its hello.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// Seconds a relayed connection may move no byte before it is closed.
    #[arg(long, default_value_t = 3600)]
    idle_timeout_secs: u64,
    /// Most connections one public port carries at once (when full, the idlest makes room).
    #[arg(long, default_value_t = 256)]
    max_connections_per_port: usize,
}

impl Default for RelayLimitArgs {
    fn default() -> Self {
        Self { handshake_timeout_secs: 10, idle_timeout_secs: 3600, max_connections_per_port: 256 }
    }
}

/// What a relay needs besides its listener.
pub struct Settings {
    /// `--public-host`.
    pub public_host: String,
    /// `--bind`.
    pub bind: IpAddr,
    /// `--port-range`.
    pub range: PortRange,
    /// The tunnel listener's certificate.
    pub tls: gantry_tls::CertFiles,
    /// Limits.
    pub limits: RelayLimitArgs,
}

/// Serves a relay on `listener` until the returned task is aborted, admitting agents
/// whose tokens `verifier` accepts and closing the ports of runs `ended` says ended.
pub fn start(
    listener: tokio::net::TcpListener,
    settings: Settings,
    verifier: Verifier,
    ended: gantry_relay::reap::Ask,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let acceptor = gantry_tls::acceptor(&settings.tls)?;
    let tunnels = gantry_relay::edge::Tunnels::default();
    let limits = settings.limits;
    let ports = Arc::new(gantry_relay::public::PublicPorts::new(
        settings.public_host,
        settings.bind,
        (settings.range.first, settings.range.last),
        tunnels.clone(),
        gantry_relay::port::PortLimits {
            open_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(limits.idle_timeout_secs.max(1)),
            max_connections: limits.max_connections_per_port.max(1),
        },
    ));
    let reaper = gantry_relay::reap::reap(ports.clone(), ended, gantry_relay::reap::EVERY);
    // The verifier also ends each tunnel at its token's expiry unless the agent renews it.
    let tunnels = gantry_relay::edge::serve_tunnels(
        listener,
        acceptor,
        Arc::new(verifier),
        tunnels,
        ports,
        Duration::from_secs(limits.handshake_timeout_secs.max(1)),
    );
    // One task to abort for both: dropping the guards aborts them.
    Ok(tokio::spawn(async move {
        let _both = (crate::serve::AbortOnDrop(reaper), crate::serve::AbortOnDrop(tunnels));
        std::future::pending::<()>().await
    }))
}

/// Asks the control plane at `client` which runs ended (`POST /v1/relays/ended-runs`).
fn ask_server(client: gantry_client::Client) -> gantry_relay::reap::Ask {
    Arc::new(move |runs: Vec<uuid::Uuid>| {
        let client = client.clone();
        Box::pin(async move {
            let runs: Vec<gantry_types::JobRunId> = runs.into_iter().map(gantry_types::JobRunId).collect();
            let answer = client.relay_ended_runs(&runs).await.map_err(|e| gantry_relay::chain(&e))?;
            Ok(answer.ended.into_iter().map(|r| r.0).collect())
        })
    })
}

/// Fetches the token key from the control plane, retrying for about a minute while it
/// is unreachable (it may be starting too); a refused key fails at once.
async fn token_key(client: &gantry_client::Client, server: &str) -> anyhow::Result<Verifier> {
    let mut wait = Duration::from_millis(250);
    for attempt in 0.. {
        match client.relay_token_key().await {
            Ok(key) => return Verifier::from_hex(&key.public_key).map_err(anyhow::Error::msg),
            Err(e) if e.status().is_some_and(|s| s == 401 || s == 403) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("{server} refused this relay's key (a `relay` preset key is needed)"));
            }
            Err(e) if attempt >= 12 => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot reach the control plane at {server}"));
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?wait, "cannot fetch the relay token key yet"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    unreachable!("the loop returns")
}

/// Runs the relay until SIGTERM/SIGINT.
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let secret_key = match (&args.secret_key, &args.secret_key_file) {
        (Some(key), _) => key.clone(),
        (None, Some(file)) => crate::config_file::read_secret_file(file)?,
        (None, None) => anyhow::bail!("--secret-key or --secret-key-file is needed"),
    };
    let client = crate::tls::client(Credentials {
        base_url: args.server.clone(),
        public_key: args.public_key.clone(),
        secret_key,
    })?;
    let verifier = token_key(&client, &args.server).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for --listen", args.listen))?;
    let local = listener.local_addr()?;
    let range = args.port_range;
    let settings = Settings {
        public_host: args.public_host.clone(),
        bind: args.bind,
        range,
        tls: gantry_tls::CertFiles { cert: args.tls_cert.clone(), key: args.tls_key.clone() },
        limits: args.limits,
    };
    let task = start(listener, settings, verifier, ask_server(client))?;
    // Tools and tests read this line to learn the port when listening on port 0.
    outln!("gantry relay listening on {local}; public ports {}-{} on {}", range.first, range.last, args.public_host)?;
    crate::sd_notify::notify(&format!("READY=1\nSTATUS=relaying on {local}"));
    crate::serve::shutdown_signal().await;
    task.abort();
    Ok(())
}
