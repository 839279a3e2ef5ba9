//! `gantry bench agent`: how much the agent adds to starting a container.
//!
//! Figure: time from the assignment reaching the agent (the runtime is asked to start
//! the run, right after the sync that carried it) to the container's process running
//! (the daemon's `State.StartedAt`), with the image cached. Reference, measured in
//! the same run on the same daemon and image: a bare `docker run -d` (from the
//! moment the command is launched to the same `StartedAt`), and the bare Engine API
//! calls (create + start) as the floor no client can beat. All start the same
//! container (one CPU, as the bench job asks for one core), and runs alternate
//! between them so machine noise hits them alike.
//!
//! **Two `docker run` references.** The agent isolates every job (its account's own
//! bridge network with inter-container traffic off, memory/PID limits, dropped
//! capabilities, `no-new-privileges`: see `gantry_agent::docker::network` and the
//! README's isolation model). Docker charges for that itself, mostly for the embedded
//! DNS resolver it sets up in each container on a user-defined network. So the
//! agent's own overhead is measured against `docker run` *with the same isolation*
//! (a network made exactly like the agent's, the same limits and flags); the plain
//! `docker run` on the default bridge is printed too, so the price of isolation is
//! visible rather than hidden in the reference.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use gantry_agent::docker::{DockerConfig, DockerRuntime, image};
use gantry_agent::inventory::parse_fake_spec;
use gantry_agent::runtime::ContainerState;
use gantry_agent::{Agent, AgentConfig};
use gantry_client::{Client, Credentials};
use gantry_types::permissions::Preset;

const IMAGE: &str = "gantry-bench/busybox";

/// `gantry bench agent`.
#[derive(Args)]
pub struct AgentBenchArgs {
    /// Measured starts per path.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub async fn agent(args: AgentBenchArgs) -> anyhow::Result<()> {
    let docker = bollard::Docker::connect_with_local_defaults()?;
    docker.version().await.context("the agent benchmark needs a Docker Engine")?;
    if docker.inspect_image(&format!("{IMAGE}:1")).await.is_err() {
        image::build_busybox_image(&docker, IMAGE, "1", "sleep 1").await.map_err(anyhow::Error::msg)?;
    }
    let target = crate::bench::start_server().await?;
    let data_dir = target.server.as_ref().map(|(_, d)| d.path().to_path_buf()).context("own server")?;
    let node_key = crate::admin::create_key_in(&data_dir, None, "bench-node", Preset::Node, None, None).await?;
    let consumer = Client::new(Credentials {
        base_url: target.url.clone(),
        public_key: target.public_key.clone(),
        secret_key: target.secret_key.clone(),
    });
    let node_client = Client::new(Credentials {
        base_url: target.url.clone(),
        public_key: node_key.public_key.clone(),
        secret_key: node_key.secret_key.clone().context("secret")?,
    });
    let owner = format!("bench-{}", std::process::id());
    let runtime = Arc::new(DockerRuntime::with_docker(docker.clone(), DockerConfig::new(owner.clone(), "127.0.0.1")));
    let config = AgentConfig {
        name: "bench-node".into(),
        description: parse_fake_spec("cpus=8,ram=16").map_err(anyhow::Error::msg)?,
        hostname: Some("127.0.0.1".into()),
        sync_wait_ms: 1000,
        state: None,
        probe: None,
    };
    let isolated_net = format!("{}bench-{}", gantry_agent::docker::network::NETWORK_PREFIX, std::process::id());
    // Another owner label: the agent's sweep removes unused networks of its own owner.
    gantry_agent::docker::network::create(&docker, &isolated_net, &format!("{owner}-reference"), &Default::default())
        .await
        .map_err(anyhow::Error::msg)?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let agent_task = tokio::spawn(Agent::new(node_client, runtime.clone(), config).run(stop_rx));

    let warmup = 3;
    let (mut agent_ms, mut cli_ms, mut iso_ms, mut api_ms) = (vec![], vec![], vec![], vec![]);
    for i in 0..args.runs + warmup {
        let a = through_agent(&consumer, &runtime, &docker).await?;
        let c = bare_docker_run(&docker, &[]).await?;
        let s = bare_docker_run(&docker, &isolation_flags(&isolated_net)).await?;
        let p = bare_api(&docker).await?;
        if i >= warmup {
            agent_ms.push(a);
            cli_ms.push(c);
            iso_ms.push(s);
            api_ms.push(p);
        }
        if !args.json {
            eprint!("\r{}/{} starts per path", (i + 1).saturating_sub(warmup), args.runs);
        }
    }
    let _ = stop.send(true);
    let _ = agent_task.await;
    for container in runtime.list_owned().await.unwrap_or_default() {
        if let Some(id) = container.id {
            remove(&docker, &id).await;
        }
    }
    let _ = gantry_agent::docker::network::sweep(&docker, &owner, |_| false).await;
    let _ = gantry_agent::docker::network::remove(&docker, &isolated_net).await;
    let (a50, c50, p50) = (percentile(&mut agent_ms, 0.5), percentile(&mut cli_ms, 0.5), percentile(&mut api_ms, 0.5));
    let (a90, c90, p90) = (percentile(&mut agent_ms, 0.9), percentile(&mut cli_ms, 0.9), percentile(&mut api_ms, 0.9));
    let (s50, s90) = (percentile(&mut iso_ms, 0.5), percentile(&mut iso_ms, 0.9));
    let figures = serde_json::json!({
        "runs": args.runs,
        "agent_ms": {"p50": a50, "p90": a90},
        "docker_run_isolated_ms": {"p50": s50, "p90": s90},
        "docker_run_ms": {"p50": c50, "p90": c90},
        "engine_api_ms": {"p50": p50, "p90": p90},
        "overhead_vs_isolated_docker_run_p50_ms": a50 - s50,
        "overhead_vs_docker_run_p50_ms": a50 - c50,
        "overhead_vs_engine_api_p50_ms": a50 - p50,
        "ratio_agent_to_isolated_docker_run_p50": a50 / s50,
        "ratio_agent_to_docker_run_p50": a50 / c50,
    });
    if args.json {
        outln!("{figures}")?;
    } else {
        eprintln!();
        outln!("container start, image cached, {} starts per path (assignment/command → process running):", args.runs)?;
        outln!("  gantry agent                 p50 {a50:7.1} ms   p90 {a90:7.1} ms")?;
        outln!("  `docker run`, same isolation p50 {s50:7.1} ms   p90 {s90:7.1} ms   (reference)")?;
        outln!("  plain `docker run`           p50 {c50:7.1} ms   p90 {c90:7.1} ms   (default bridge, no limits)")?;
        outln!("  Engine API floor             p50 {p50:7.1} ms   p90 {p90:7.1} ms   (create + start, no client)")?;
        outln!(
            "agent overhead p50: {:+.1} ms vs docker run with the same isolation (ratio {:.2}; target: at most 50 ms)",
            a50 - s50,
            a50 / s50,
        )?;
        outln!(
            "price of isolation p50: {:+.1} ms (isolated vs plain docker run); agent vs plain docker run {:+.1} ms, vs the API floor {:+.1} ms",
            s50 - c50,
            a50 - c50,
            a50 - p50
        )?;
    }
    Ok(())
}

/// One job through the control plane: accepted-by-runtime → process started.
async fn through_agent(consumer: &Client, runtime: &DockerRuntime, docker: &bollard::Docker) -> anyhow::Result<f64> {
    let body = serde_json::json!({
        "title": "agent bench", "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1, "gpu_count": 0,
        "parameters": {"type": "docker", "parameters": {"image": IMAGE, "tag": "1", "ports": [], "env": {"SCRIPT": "sleep 1"}}}
    });
    let job = consumer.create_job(&body).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the bench job did not start within 30 s");
        // Only the agent's memory is polled until the container runs, so the
        // measurement puts no load of its own on the daemon or the server.
        if let Some(run) = consumer.runs_of_job(job.uuid).await?.into_iter().next() {
            while runtime.state(run.uuid).is_none_or(|s| s == ContainerState::Preparing) {
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "the bench job did not start within 30 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let accepted = runtime.accepted_at(run.uuid).context("accepted")?;
            let started = started_at(docker, &format!("gantry-{}", run.uuid)).await.context("no start time")?;
            return Ok(ms_between(accepted, started));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `docker run` flags that give a container what the agent gives a job with the
/// bench's request (one core, no RAM asked: the node's floor), on `network`.
fn isolation_flags(network: &str) -> Vec<String> {
    let limits = gantry_agent::docker::spec::JobLimits::default();
    let memory = limits.memory_bytes(0.0).to_string();
    let mut flags: Vec<String> = [
        "--network",
        network,
        "--memory",
        &memory,
        "--memory-swap",
        &memory,
        "--pids-limit",
        &limits.pids.to_string(),
        "--security-opt",
        "no-new-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for cap in gantry_agent::docker::spec::DROPPED_CAPABILITIES {
        flags.extend(["--cap-drop".to_string(), cap.to_string()]);
    }
    flags
}

/// `docker run -d` with `extra` flags: command launched → process started.
async fn bare_docker_run(docker: &bollard::Docker, extra: &[String]) -> anyhow::Result<f64> {
    let name = format!("gantry-bench-cli-{}", uuid_suffix());
    let t0 = SystemTime::now();
    let out = tokio::process::Command::new("docker")
        .args(["run", "-d", "--cpus", "1", "--name", &name, "-e", "SCRIPT=sleep 1"])
        .args(extra)
        .arg(format!("{IMAGE}:1"))
        .output()
        .await
        .context("the docker CLI")?;
    anyhow::ensure!(out.status.success(), "docker run failed: {}", String::from_utf8_lossy(&out.stderr));
    let started = started_at(docker, &name).await.context("docker run's container has no start time")?;
    remove(docker, &name).await;
    Ok(ms_between(t0, started))
}

/// The Engine API floor: create + start, nothing else.
async fn bare_api(docker: &bollard::Docker) -> anyhow::Result<f64> {
    let name = format!("gantry-bench-api-{}", uuid_suffix());
    let body = bollard::models::ContainerCreateBody {
        image: Some(format!("{IMAGE}:1")),
        env: Some(vec!["SCRIPT=sleep 1".into()]),
        host_config: Some(bollard::models::HostConfig { nano_cpus: Some(1_000_000_000), ..Default::default() }),
        ..Default::default()
    };
    let t0 = SystemTime::now();
    let options = bollard::query_parameters::CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
    docker.create_container(Some(options), body).await?;
    docker.start_container(&name, None).await?;
    let started = started_at(docker, &name).await.context("no start time")?;
    remove(docker, &name).await;
    Ok(ms_between(t0, started))
}

async fn started_at(docker: &bollard::Docker, name: &str) -> Option<SystemTime> {
    let inspect = docker.inspect_container(name, None).await.ok()?;
    let at = inspect.state?.started_at?;
    let at = chrono::DateTime::parse_from_rfc3339(&at).ok()?;
    (at.timestamp() > 0).then(|| SystemTime::from(at.with_timezone(&chrono::Utc)))
}

async fn remove(docker: &bollard::Docker, name: &str) {
    let _ = gantry_agent::docker::force_remove(docker, name).await;
}

fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(((values.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

fn uuid_suffix() -> String {
    gantry_types::JobRunId::new().to_string()
}
