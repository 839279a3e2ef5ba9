//! `gantry dev`: the whole platform on one machine, for trying Gantry out.
//!
//! One command brings up the control plane on the embedded SQLite default in
//! `./.gantry`, a consumer key for the CLI and a node key (kept in
//! `.gantry/dev-credentials.json`, mode 0600, so a restart prints the same exports),
//! a node agent on the local Docker Engine, and then proves the path end to end: it
//! builds a demo image from what the machine has (a static busybox; no registry is
//! needed), runs a hello-world job through the API, prints its logs, and keeps serving.
//!
//! Without Docker or without a static busybox the control plane still comes up, and
//! it says what is missing and what to do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gantry_client::{Client, Credentials};
use gantry_types::job_run::JobRunStatus;
use gantry_types::permissions::Preset;
use serde::{Deserialize, Serialize};

use crate::serve::{ServerArgs, shutdown_signal};

/// The demo image `gantry dev` builds and runs.
const DEMO_IMAGE: &str = "gantry/hello";
const DEMO_SCRIPT: &str = "echo \"Hello from Gantry! Job $GANTRY_JOB_UUID ran as run $GANTRY_RUN_UUID \
(rank $GANTRY_NODE_RANK of $GANTRY_NODE_COUNT) in a container on this machine.\"; \
echo \"GPUs visible to it: ${NVIDIA_VISIBLE_DEVICES:-none}\"";

/// `gantry dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Data directory.
    #[arg(long, default_value = ".gantry")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Start no node agent (the control plane alone).
    #[arg(long)]
    no_agent: bool,
    /// Skip the hello-world job.
    #[arg(long)]
    no_demo: bool,
    /// Pretend the dev node has GPUs (the agent's syntax, e.g. "1xNVIDIA RTX 4090:24"),
    /// so GPU jobs place on a machine without NVIDIA hardware; containers get the
    /// GPU variables but no device.
    #[arg(long, value_name = "SPEC")]
    fake_gpus: Option<String>,
}

/// The example spec `gantry dev` suggests when it finds no GPU.
const FAKE_GPUS_EXAMPLE: &str = "1xNVIDIA RTX 4090:24";

/// The dev key's account email, so `GET /v1/users/me` shows one (clients print it).
const DEV_EMAIL: &str = "dev@localhost";

#[derive(Serialize, Deserialize)]
struct DevCredentials {
    public_key: String,
    secret_key: String,
    account_uuid: String,
    /// The dev node's key (files from before nodes existed lack it).
    #[serde(default)]
    node_public_key: Option<String>,
    #[serde(default)]
    node_secret_key: Option<String>,
}

const CREDENTIALS_FILE: &str = "dev-credentials.json";

/// Runs the dev platform until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // One store for the keys and the server: opened (and logged) once.
    let store_args =
        crate::admin::StoreArgs { data_dir: args.data_dir.clone(), database_url: None, server_key_file: None };
    let (store, secrets) = crate::admin::open(&store_args).await?;
    let creds = credentials(&args.data_dir, store.as_ref(), &secrets).await?;
    let server_args = ServerArgs {
        relay: Default::default(),
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        database_url: None,
        max_body_bytes: 1024 * 1024,
        billing_enforce: false,
        price_gpu: vec![],
        price_gpu_default: "0.50".into(),
        price_cpu_core: "0.01".into(),
        price_ram_gb: "0.002".into(),
        operator_share: "0.8".into(),
        header_read_timeout_secs: 10,
        idle_timeout_secs: 60,
        max_connections: None,
        max_ports_per_job: 32,
        rate_limit_rps: 0.0,
        rate_limit_burst: None,
        // `gantry dev` is one machine on loopback: plain HTTP.
        tls_cert: None,
        tls_key: None,
        max_pending_jobs: 0,
        max_stored_job_bytes: 0,
        scheduler_pass_limit: 20_000,
        event_retention_hours: 168,
        webhooks_allow_private: true,
        service: Default::default(),
    };
    let server = gantry_server::start_with_store(server_args.config()?, store)
        .await
        .with_context(|| format!("cannot start the server on {} (is another one running?)", args.listen))?;
    let url = format!("http://{}", server.local_addr);
    // The console first: it is what most people opening `gantry dev` want to click.
    outln!("Web console: {url}/ (sign in with GANTRY_PUBLIC_KEY and GANTRY_SECRET_KEY printed below)")?;
    outln!("Gantry is up: control plane at {url}, data in {}", args.data_dir.display())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agent = None;
    if !args.no_agent {
        let node_args = crate::agent::AgentArgs::for_dev(
            url.clone(),
            creds.node_public_key.clone().unwrap_or_default(),
            creds.node_secret_key.clone().unwrap_or_default(),
            args.data_dir.join("agent"),
            args.fake_gpus.clone().filter(|s| !s.is_empty()),
        );
        if let Some(spec) = &args.fake_gpus {
            gantry_agent::inventory::parse_fake_spec(spec).map_err(|e| anyhow::anyhow!("--fake-gpus: {e}"))?;
        } else if gantry_agent::host::HostProbe::discover(&node_args.host_options())
            .is_ok_and(|p| p.description().inventory.gpus.is_empty())
        {
            outln!(
                "\nNo NVIDIA GPU found (NVML): GPU jobs will wait for a node with GPUs. To try GPU jobs on this \
                 machine, pretend some: gantry dev --fake-gpus \"{FAKE_GPUS_EXAMPLE}\" (the agent's syntax)."
            )?;
        }
        match crate::agent::docker_agent(&node_args, node_args.client()?, stop_rx).await {
            Ok(task) => agent = Some(task),
            Err(e) => outln!(
                "\nNo node agent: {e:#}\nThe control plane keeps serving; `gantry agent --simulate 1` adds a simulated node."
            )?,
        }
    }
    let consumer = Client::new(Credentials {
        base_url: url.clone(),
        public_key: creds.public_key.clone(),
        secret_key: creds.secret_key.clone(),
    });
    if agent.is_some()
        && !args.no_demo
        && let Err(e) = demo(&consumer).await
    {
        outln!("\nThe hello-world job did not run: {e:#}")?;
    }
    outln!("\nPaste these into another shell to use the CLI:\n")?;
    out!("{}", exports(&url, &creds))?;
    outln!("\nThen try: gantry jobs create --image {DEMO_IMAGE} --tag latest --cpus 1 --gpus 0 --follow")?;
    outln!(
        "Ctrl-C stops the platform (job containers keep running and are adopted on the next start); state stays in {}.",
        args.data_dir.display()
    )?;
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Some(task) = agent {
        let _ = task.await;
    }
    server.shutdown().await
}

/// The credentials as `export` lines: Gantry's variables, then the families clients
/// written for the upstream API read (`ZER_*` and `DISPERSED_*`, with `DISPERSED_API`
/// for those that take the base URL under that name).
fn exports(url: &str, creds: &DevCredentials) -> String {
    let mut out = String::new();
    for (family, note) in [
        ("GANTRY", ""),
        ("ZER", "# clients written for the upstream API read one of these families:\n"),
        ("DISPERSED", ""),
    ] {
        out.push_str(note);
        out.push_str(&format!(
            "export {family}_API_BASE_URL={url} {family}_PUBLIC_KEY={} {family}_SECRET_KEY={}\n",
            creds.public_key, creds.secret_key
        ));
    }
    out.push_str(&format!("export DISPERSED_API={url}\n"));
    out
}

/// Builds the demo image, runs it as a job through the API and prints its logs.
async fn demo(client: &Client) -> anyhow::Result<()> {
    let docker = bollard::Docker::connect_with_local_defaults()?;
    if docker.inspect_image(&format!("{DEMO_IMAGE}:latest")).await.is_err() {
        outln!(
            "\nBuilding the demo image {DEMO_IMAGE}:latest from this machine's static busybox (no registry needed)..."
        )?;
        gantry_agent::docker::image::build_busybox_image(&docker, DEMO_IMAGE, "latest", DEMO_SCRIPT)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let body = serde_json::json!({
        "title": "hello from gantry dev", "task": "BATCH", "max_timeout_run_ms": 600000,
        "cpu_count": 1, "gpu_count": 0,
        "parameters": {"type": "docker", "parameters": {"image": DEMO_IMAGE, "tag": "latest", "ports": []}}
    });
    let job = client.create_job(&body).await.context("submitting the hello-world job")?;
    outln!("\nSubmitted the hello-world job {}; its logs:", job.uuid)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let run = loop {
        if let Some(run) = client.runs_of_job(job.uuid).await?.into_iter().next() {
            break run;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the job was not placed within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stream = client.run_logs(run.uuid, true).await?;
    while let Some(chunk) = stream.chunk().await? {
        for line in String::from_utf8_lossy(&chunk).lines() {
            outln!("  | {line}")?;
        }
    }
    let run = client.get_job_run(run.uuid).await?;
    match run.status {
        JobRunStatus::Completed => outln!("It completed (exit code 0): the whole path works.")?,
        other => outln!("It ended {}: {}", other.as_str(), run.status_reason.unwrap_or_default())?,
    }
    Ok(())
}

/// Loads the dev keys, creating an account, a consumer key and a node key on first run.
async fn credentials(
    data_dir: &Path,
    store: &dyn gantry_store::Store,
    secrets: &gantry_auth::SecretBox,
) -> anyhow::Result<DevCredentials> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let mut creds = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is corrupt; delete it", path.display()))?,
        Err(_) => {
            let email = Some(DEV_EMAIL.to_string());
            let key = crate::admin::create_key_with(store, secrets, "dev", Preset::Consumer, None, email).await?;
            DevCredentials {
                public_key: key.public_key,
                secret_key: key.secret_key.context("new key has a secret")?,
                account_uuid: key.account_uuid.to_string(),
                node_public_key: None,
                node_secret_key: None,
            }
        }
    };
    if creds.node_public_key.is_none() {
        let account = creds.account_uuid.parse().context("dev account uuid")?;
        let key = crate::admin::create_key_with(store, secrets, "dev-node", Preset::Node, Some(account), None).await?;
        creds.node_public_key = Some(key.public_key);
        creds.node_secret_key = key.secret_key;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options.open(&path)?.write_all(serde_json::to_string_pretty(&creds)?.as_bytes())?;
    Ok(creds)
}
