//! `gantry relay`: carry the published ports of nodes behind NAT (issue 14).
//!
//! Agents started with `--relay HOST:PORT --relay-token-file FILE` dial this process's
//! tunnel listener over TLS (always TLS: `--tls-cert`/`--tls-key`) and keep one yamux
//! session up; for each published port of their runs it binds a public port from
//! `--port-range` on `--bind`, admits only the run's `allowed_ips` there, and the
//! agents put `--public-host` and that port in the run's `node_urls`.
//!
//! Interim, until the control plane issues per-node relay tokens (ARCHITECTURE.md,
//! "Nodes behind NAT"): every node of this relay presents one shared token, read
//! from `--agent-token-file` and compared in constant time.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gantry_agent::docker::ports::PortRange;

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
    /// File holding the token agents present (the same file as their --relay-token-file).
    #[arg(long, env = "GANTRY_RELAY_AGENT_TOKEN_FILE", value_name = "FILE")]
    agent_token_file: PathBuf,
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

/// Runs the relay until SIGTERM/SIGINT.
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let token = crate::config_file::read_secret_file(&args.agent_token_file)?;
    let files = gantry_tls::CertFiles { cert: args.tls_cert.clone(), key: args.tls_key.clone() };
    let acceptor = gantry_tls::acceptor(&files)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for --listen", args.listen))?;
    let local = listener.local_addr()?;
    let tunnels = gantry_relay::edge::Tunnels::default();
    let range = (args.port_range.first, args.port_range.last);
    let ports = Arc::new(gantry_relay::public::PublicPorts::new(
        args.public_host.clone(),
        args.bind,
        range,
        tunnels.clone(),
        gantry_relay::port::PortLimits {
            open_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
            max_connections: args.max_connections_per_port.max(1),
        },
    ));
    let expected = gantry_relay::token_digest(&token);
    let check = move |hello: &gantry_relay::Hello| {
        if gantry_relay::token_digest(&hello.token) == expected {
            Ok(())
        } else {
            Err("the relay does not know this token".to_string())
        }
    };
    let task = gantry_relay::edge::serve_tunnels(
        listener,
        acceptor,
        Arc::new(check),
        tunnels,
        ports,
        Duration::from_secs(args.handshake_timeout_secs.max(1)),
    );
    // Tools and tests read this line to learn the port when listening on port 0.
    outln!("gantry relay listening on {local}; public ports {}-{} on {}", range.0, range.1, args.public_host)?;
    crate::sd_notify::notify(&format!("READY=1\nSTATUS=relaying on {local}"));
    crate::serve::shutdown_signal().await;
    task.abort();
    Ok(())
}
