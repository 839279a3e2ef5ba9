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
    #[arg(long, env = "GANTRY_PUBLIC_KEY", required_unless_present = "print_inventory")]
    public_key: Option<String>,
    /// Secret key of that key.
    #[arg(long, env = "GANTRY_SECRET_KEY", required_unless_present = "print_inventory")]
    secret_key: Option<String>,
    /// Print what this machine offers (GPUs from NVML or --fake-gpus, CPUs, RAM, free disk) and exit.
    #[arg(long)]
    print_inventory: bool,
    /// With --print-inventory: print JSON instead of a table.
    #[arg(long, requires = "print_inventory")]
    json: bool,
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
}

/// Runs the agent(s) until Ctrl-C / SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.print_inventory {
        let options = gantry_agent::host::HostOptions {
            fake_gpus: (!args.fake_gpus.is_empty()).then(|| args.fake_gpus.clone()),
            ..Default::default()
        };
        print!("{}", gantry_agent::host::inventory_report(&options, args.json).map_err(anyhow::Error::msg)?);
        return Ok(());
    }
    let Some(count) = args.simulate else {
        anyhow::bail!(
            "running real containers needs the Docker runtime, which this build does not have yet; \
             use --simulate N to run simulated nodes"
        );
    };
    let description = parse_fake_spec(&args.fake_gpus).map_err(|e| anyhow::anyhow!("--fake-gpus: {e}"))?;
    let client = Client::new(Credentials {
        base_url: args.server.clone(),
        public_key: args.public_key.clone().unwrap_or_default(),
        secret_key: args.secret_key.clone().unwrap_or_default(),
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
