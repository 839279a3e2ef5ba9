//! `gantry agent`: run a node agent. Today that means simulated nodes (`--simulate N`):
//! N in-process nodes, each registering as its own node and speaking the real
//! protocol, running jobs in the fake runtime (see `gantry_agent::fake` for the
//! contract). Real containers on Docker arrive with the Docker runtime.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use gantry_agent::fake::FakeRuntime;
use gantry_agent::inventory::parse_fake_spec;
use gantry_agent::{Agent, AgentConfig};
use gantry_client::{Client, Credentials};

/// `gantry agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// Control plane base URL.
    #[arg(long, env = "GANTRY_API_BASE_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Public key of a `node` preset key.
    #[arg(long, env = "GANTRY_PUBLIC_KEY")]
    public_key: String,
    /// Secret key of that key.
    #[arg(long, env = "GANTRY_SECRET_KEY")]
    secret_key: String,
    /// Run N simulated nodes in this process (fake runtime, no Docker).
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// What each node offers, e.g. "2xNVIDIA RTX 4090:24,region=eu-west-1,cpus=16,ram=64".
    #[arg(long, value_name = "SPEC", default_value = "")]
    fake_gpus: String,
    /// Name prefix of the nodes.
    #[arg(long, default_value = "sim")]
    name: String,
    /// Long-poll wait per sync (the idle heartbeat period), ms.
    #[arg(long, default_value_t = 1000)]
    sync_wait_ms: u64,
    state: None,
}

/// Runs the agent(s) until Ctrl-C / SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let Some(count) = args.simulate else {
        anyhow::bail!(
            "running real containers needs the Docker runtime, which this build does not have yet; \
             use --simulate N to run simulated nodes"
        );
    };
    let description = parse_fake_spec(&args.fake_gpus).map_err(|e| anyhow::anyhow!("--fake-gpus: {e}"))?;
    let client = Client::new(Credentials {
        base_url: args.server.clone(),
        public_key: args.public_key.clone(),
        secret_key: args.secret_key.clone(),
    });
    client.me().await.context("cannot reach the control plane with this key")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let config = AgentConfig {
                name: format!("{}-{i}", args.name),
                description: description.clone(),
                hostname: Some("127.0.0.1".into()),
                sync_wait_ms: args.sync_wait_ms,
                state: None,
            };
            let agent = Agent::new(client.clone(), Arc::new(FakeRuntime::default()), config);
            tokio::spawn(agent.run(stop_rx.clone()))
        })
        .collect();
    println!("gantry agent: {count} simulated node(s) syncing with {}", args.server);
    crate::serve::shutdown_signal().await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
