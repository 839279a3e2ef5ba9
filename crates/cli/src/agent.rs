//! `gantry agent`: run a node agent.
//!
//! By default it runs the node's jobs as containers on the local Docker Engine,
//! describing the machine from the host (NVML GPUs, CPUs, RAM, free disk) and
//! remembering its node and log cursors in `--state-dir`, so a restarted agent
//! re-attaches to the same node and adopts its running containers. Stopping the
//! agent leaves containers running for the next start to adopt.
//!
//! `--simulate N` runs N in-process simulated nodes on the fake runtime instead (see
//! `gantry_agent::fake` for their contract), and `--print-inventory` only prints
//! what the machine offers.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gantry_agent::docker::spec::GpuMode;
use gantry_agent::docker::{DockerConfig, DockerRuntime};
use gantry_agent::fake::FakeRuntime;
use gantry_agent::host::{HostOptions, HostProbe, parse_label};
use gantry_agent::inventory::parse_fake_spec;
use gantry_agent::metrics::AgentMetrics;
use gantry_agent::state::StateFile;
use gantry_agent::{Agent, AgentConfig};
use gantry_client::{Client, Credentials};

/// `gantry agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// Control plane base URL. Repeat it (or separate with commas) to name several
    /// instances of one control plane: the agent syncs with one and moves to the next
    /// when it fails, keeping its containers running. `https://` is verified against
    /// the system's roots, or only against --ca-cert FILE when given.
    #[arg(long, env = "GANTRY_API_BASE_URL", default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    server: Vec<String>,
    /// Public key of a `node` preset key.
    #[arg(long, env = "GANTRY_PUBLIC_KEY", required_unless_present = "print_inventory")]
    public_key: Option<String>,
    /// Secret key of that key (prefer --secret-key-file: a flag shows in `ps`).
    #[arg(long, env = "GANTRY_SECRET_KEY", required_unless_present_any = ["print_inventory", "secret_key_file"])]
    secret_key: Option<String>,
    /// File holding the secret key (e.g. a systemd credential: --secret-key-file
    /// ${CREDENTIALS_DIRECTORY}/secret-key).
    #[arg(long, env = "GANTRY_SECRET_KEY_FILE", value_name = "FILE", conflicts_with = "secret_key")]
    secret_key_file: Option<PathBuf>,
    #[command(flatten)]
    config: crate::config_file::ConfigArgs,
    /// Print what this machine offers (GPUs from NVML or --fake-gpus, CPUs, RAM, free disk) and exit.
    #[arg(long)]
    print_inventory: bool,
    /// With --print-inventory: print JSON instead of a table.
    #[arg(long, requires = "print_inventory")]
    json: bool,
    /// Run N simulated nodes in this process (fake runtime, no Docker).
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// Pretend the GPUs (and whatever else the spec sets), e.g. "2xNVIDIA RTX 4090:24,cpus=16,ram=64".
    #[arg(long, value_name = "SPEC")]
    fake_gpus: Option<String>,
    /// Region code of the node (e.g. eu-west-1).
    #[arg(long)]
    region: Option<String>,
    /// A label KEY=VALUE for placement (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Where free disk is measured (default: /var/lib/docker if it exists, else /).
    #[arg(long)]
    disk_path: Option<PathBuf>,
    /// Node name (default: the host name; simulated nodes add -0, -1, ...).
    #[arg(long)]
    name: Option<String>,
    /// Where the agent remembers its node, container label and log cursors.
    #[arg(long, env = "GANTRY_AGENT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Host name or address users reach published ports on (default: this machine's
    /// address on the route to the control plane).
    #[arg(long)]
    advertise_host: Option<String>,
    /// Address the port proxies listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// External ports published ports may use, e.g. 40000-40999 (open exactly this
    /// range in the firewall); default: any free port.
    #[arg(long, value_name = "A-B", value_parser = gantry_agent::docker::ports::PortRange::parse)]
    port_range: Option<gantry_agent::docker::ports::PortRange>,
    /// Seconds between SIGTERM and SIGKILL when a container is stopped.
    #[arg(long, default_value_t = 10)]
    stop_grace_secs: u64,
    /// Long-poll wait per sync (the idle heartbeat period), ms.
    #[arg(long, default_value_t = 1000)]
    sync_wait_ms: u64,
    /// Serve the agent's Prometheus metrics (container starts, pulls, syncs, GPUs) on
    /// GET http://ADDR/metrics, e.g. 0.0.0.0:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// A relay (HOST:PORT of its tunnel listener) to carry published ports for a node
    /// behind NAT, or `auto` for the relay the control plane offers: the agent keeps
    /// one TLS tunnel to it (verified like the server: the system's roots or
    /// --ca-cert), admitted with a token the control plane issues, and `node_urls`
    /// name the relay's host and ports.
    #[arg(long, env = "GANTRY_RELAY", value_name = "HOST:PORT|auto")]
    relay: Option<String>,
    #[command(flatten)]
    isolation: IsolationArgs,
}

/// How jobs are isolated and bounded on a Docker node (README: "Isolation on a node").
#[derive(Args, Clone, Debug)]
pub struct IsolationArgs {
    /// Where each account's Docker network on this node takes its /26 from (1,024
    /// networks in a /16, up to 56 runs each).
    #[arg(long, default_value = "10.213.0.0/16", value_name = "CIDR")]
    network_pool: String,
    /// Seconds an account's network is kept after its last run on this node ended
    /// (its next run then starts without making one).
    #[arg(long, default_value_t = 600)]
    network_idle_secs: u64,
    /// Memory a job gets at least, MiB (a job asking for 0 RAM gets this, never the whole node).
    #[arg(long, default_value_t = 1024)]
    min_job_memory_mb: u64,
    /// CPUs a job gets at least (a job asking for 0 CPUs gets this).
    #[arg(long, default_value_t = 1.0)]
    min_job_cpus: f64,
    /// Most processes (threads included) in one job's container.
    #[arg(long, default_value_t = 4096)]
    job_pids_limit: i64,
    /// Size of a job's writable layer, GB, where the storage driver can enforce it (0: none).
    #[arg(long, default_value_t = 100)]
    job_disk_gb: u64,
    /// Most ports one job may publish.
    #[arg(long, default_value_t = 32)]
    max_ports_per_job: usize,
    /// Seconds a published-port connection may move no byte before it is closed.
    #[arg(long, default_value_t = 3600)]
    proxy_idle_timeout_secs: u64,
    /// Most connections one published port carries at once (when full, the idlest makes room).
    #[arg(long, default_value_t = 256)]
    proxy_max_connections: usize,
    /// Let jobs pull from registries on loopback, link-local or private addresses.
    #[arg(long)]
    allow_private_registries: bool,
}

impl IsolationArgs {
    /// The defaults, with registries on internal addresses allowed (`gantry dev`: one
    /// machine, one user, often a registry on localhost).
    fn for_dev() -> Self {
        Self {
            network_pool: "10.213.0.0/16".into(),
            network_idle_secs: 600,
            min_job_memory_mb: 1024,
            min_job_cpus: 1.0,
            job_pids_limit: 4096,
            job_disk_gb: 100,
            max_ports_per_job: 32,
            proxy_idle_timeout_secs: 3600,
            proxy_max_connections: 256,
            allow_private_registries: true,
        }
    }

    /// Applies these settings to a Docker runtime configuration.
    fn apply(&self, config: &mut DockerConfig) -> anyhow::Result<()> {
        let pool = self
            .network_pool
            .parse()
            .map_err(|e| anyhow::anyhow!("--network-pool {:?}: not an IPv4 network ({e})", self.network_pool))?;
        config.network_pool = gantry_agent::docker::network::NetworkPool::new(pool).map_err(anyhow::Error::msg)?;
        config.network_idle = Duration::from_secs(self.network_idle_secs);
        anyhow::ensure!(
            self.min_job_cpus.is_finite() && self.min_job_cpus > 0.0,
            "--min-job-cpus must be a positive number of CPUs"
        );
        anyhow::ensure!(self.min_job_memory_mb >= 6, "--min-job-memory-mb must be at least 6 (Docker's minimum)");
        anyhow::ensure!(self.job_pids_limit > 0, "--job-pids-limit must be positive");
        config.limits = gantry_agent::docker::spec::JobLimits {
            min_memory_bytes: i64::try_from(self.min_job_memory_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX),
            min_cpus: self.min_job_cpus,
            pids: self.job_pids_limit,
            writable_layer_bytes: (self.job_disk_gb > 0).then(|| self.job_disk_gb.saturating_mul(1 << 30)),
        };
        config.max_ports = self.max_ports_per_job;
        config.proxy = gantry_agent::proxy::ProxyLimits {
            idle_timeout: Duration::from_secs(self.proxy_idle_timeout_secs.max(1)),
            max_connections: self.proxy_max_connections.max(1),
        };
        config.allow_private_registries = self.allow_private_registries;
        Ok(())
    }
}

impl AgentArgs {
    /// The agent `gantry dev` runs: Docker, state under the dev data directory,
    /// ports published on loopback.
    pub fn for_dev(
        server: String,
        public_key: String,
        secret_key: String,
        state_dir: PathBuf,
        fake_gpus: Option<String>,
    ) -> Self {
        Self {
            server: vec![server],
            public_key: Some(public_key),
            secret_key: Some(secret_key),
            secret_key_file: None,
            config: Default::default(),
            print_inventory: false,
            json: false,
            simulate: None,
            fake_gpus,
            region: None,
            labels: vec![],
            disk_path: None,
            name: Some("dev-node".into()),
            state_dir: Some(state_dir),
            advertise_host: Some("127.0.0.1".into()),
            bind: IpAddr::from([127, 0, 0, 1]),
            port_range: None,
            stop_grace_secs: 10,
            sync_wait_ms: 1000,
            metrics_listen: None,
            relay: None,
            isolation: IsolationArgs::for_dev(),
        }
    }

    pub(crate) fn host_options(&self) -> HostOptions {
        HostOptions {
            fake_gpus: self.fake_gpus.clone().filter(|s| !s.is_empty()),
            region: self.region.clone(),
            labels: self.labels.iter().cloned().collect(),
            disk_path: self.disk_path.clone(),
        }
    }

    /// The control-plane instances, comma-separated (the client's `base_url` form).
    fn servers(&self) -> String {
        self.server.join(",")
    }

    /// A client with the agent's key, trusting `--ca-cert` for an `https://` server.
    pub fn client(&self) -> anyhow::Result<Client> {
        crate::tls::client(Credentials {
            base_url: self.servers(),
            public_key: self.public_key.clone().unwrap_or_default(),
            secret_key: self.secret_key.clone().unwrap_or_default(),
        })
    }
}

/// Runs the agent(s) until Ctrl-C / SIGTERM.
pub async fn run(mut args: AgentArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.secret_key_file {
        args.secret_key = Some(crate::config_file::read_secret_file(path)?);
    }
    if let Some(relay) = args.relay.as_deref().filter(|r| *r != "auto") {
        gantry_agent::relay::relay_host(relay).map_err(|e| anyhow::anyhow!("--relay: {e}"))?;
    }
    if args.print_inventory {
        out!("{}", gantry_agent::host::inventory_report(&args.host_options(), args.json).map_err(anyhow::Error::msg)?)?;
        return Ok(());
    }
    let client = args.client()?;
    client.me().await.with_context(|| format!("cannot reach the control plane at {} with this key", args.servers()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(AgentMetrics::default());
    let mut listener = None;
    if let Some(addr) = args.metrics_listen {
        let (local, task) = gantry_agent::metrics::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("cannot listen on {addr} for --metrics-listen"))?;
        outln!("gantry agent: metrics on http://{local}/metrics")?;
        listener = Some(task);
    }
    let tasks = match args.simulate {
        Some(count) => simulated(&args, client, count, stop_rx, &metrics)?,
        None => vec![docker_agent_with_metrics(&args, client, stop_rx, Some(metrics)).await?],
    };
    if args.simulate.is_none() {
        wait_registered(&args).await;
    }
    crate::sd_notify::notify(&format!("READY=1\nSTATUS=syncing with {}", args.servers()));
    crate::serve::shutdown_signal().await;
    crate::sd_notify::notify("STOPPING=1");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    if let Some(listener) = listener {
        listener.abort();
    }
    Ok(())
}

fn simulated(
    args: &AgentArgs,
    client: Client,
    count: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    metrics: &Arc<AgentMetrics>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut description =
        parse_fake_spec(args.fake_gpus.as_deref().unwrap_or("")).map_err(|e| anyhow::anyhow!("--fake-gpus: {e}"))?;
    if args.region.is_some() {
        description.region = args.region.clone();
    }
    description.labels.extend(args.labels.iter().cloned());
    let name = args.name.clone().unwrap_or_else(|| "sim".into());
    let tasks = (0..count)
        .map(|i| {
            let config = AgentConfig {
                name: format!("{name}-{i}"),
                description: description.clone(),
                hostname: Some("127.0.0.1".into()),
                sync_wait_ms: args.sync_wait_ms,
                state: None,
                probe: None,
            };
            let relay = relay_link(args, &stop)?;
            let runtime = relay.as_ref().map_or_else(FakeRuntime::default, |r| FakeRuntime::with_relay(r.publisher()));
            let mut agent = Agent::new(client.clone(), Arc::new(runtime), config).with_metrics(metrics.clone());
            if let Some(relay) = relay {
                agent = agent.with_relay(relay);
            }
            Ok(tokio::spawn(agent.run(stop.clone())))
        })
        .collect::<anyhow::Result<_>>()?;
    outln!("gantry agent: {count} simulated node(s) syncing with {}", args.servers())?;
    Ok(tasks)
}

/// Starts the Docker agent; it runs until `stop` turns true.
pub async fn docker_agent(
    args: &AgentArgs,
    client: Client,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    docker_agent_with_metrics(args, client, stop, None).await
}

/// [`docker_agent`], recording in `metrics` when given.
async fn docker_agent_with_metrics(
    args: &AgentArgs,
    client: Client,
    stop: tokio::sync::watch::Receiver<bool>,
    metrics: Option<Arc<AgentMetrics>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let file = StateFile::in_dir(&state_dir);
    let mut state = file.load_or_create().with_context(|| format!("agent state in {}", state_dir.display()))?;
    if !same_control_plane(state.server_url.as_deref(), &args.server) {
        if state.node_uuid.is_some() {
            outln!("note: {} belonged to another control plane; registering as a new node", state_dir.display())?;
        }
        state.node_uuid = None;
        state.log_cursors.clear();
        state.server_url = Some(args.servers());
        file.save(&state).with_context(|| format!("cannot write {}", state_dir.display()))?;
    }
    let probe = HostProbe::discover(&args.host_options()).map_err(anyhow::Error::msg)?;
    for note in probe.notes() {
        outln!("note: {note}")?;
    }
    let real_gpus = args.fake_gpus.is_none() && !probe.description().inventory.gpus.is_empty();
    let advertise = match &args.advertise_host {
        Some(h) => h.clone(),
        None => args.server.first().and_then(|s| route_address(s)).unwrap_or_else(|| "127.0.0.1".into()),
    };
    let mut config = DockerConfig::new(state.agent_id.clone(), advertise.clone());
    config.bind_ip = args.bind;
    config.port_range = args.port_range;
    config.stop_grace = Duration::from_secs(args.stop_grace_secs);
    config.gpus = if real_gpus { GpuMode::Nvidia } else { GpuMode::Fake };
    config.log_cursors = state.log_cursors.clone();
    config.private_images_file = Some(state_dir.join("private-images.json"));
    args.isolation.apply(&mut config)?;
    let relay = relay_link(args, &stop)?;
    config.relay = relay.as_ref().map(|link| link.publisher());
    let runtime = DockerRuntime::connect(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let version = runtime.docker().version().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Docker Engine ({e}); is it running, and may this user use its socket \
             (the docker group)? Or use --simulate N for simulated nodes"
        )
    })?;
    let name = args.name.clone().unwrap_or_else(host_name);
    let gpus = probe.description().inventory.gpus.len();
    let description = probe.description().clone();
    let agent_config = AgentConfig {
        name: name.clone(),
        description,
        hostname: Some(advertise.clone()),
        sync_wait_ms: args.sync_wait_ms,
        state: Some((file, state)),
        probe: Some(Arc::new(probe)),
    };
    let mut agent = Agent::new(client, Arc::new(runtime.clone()), agent_config);
    if let Some(relay) = relay {
        outln!("gantry agent: published ports are carried by the relay {}", args.relay.as_deref().unwrap_or_default())?;
        agent = agent.with_relay(relay);
    }
    if let Some(metrics) = metrics {
        runtime.set_metrics(metrics.clone());
        agent = agent.with_metrics(metrics);
    }
    outln!(
        "gantry agent: node {name:?} ({gpus} GPU(s){}) on Docker {} syncing with {}; ports published on {advertise}",
        if real_gpus || gpus == 0 { "" } else { ", pretended" },
        version.version.unwrap_or_default(),
        args.servers()
    )?;
    Ok(tokio::spawn(agent.run(stop)))
}

/// The relay link of `--relay` (none without it); its tunnel runs until `stop`.
fn relay_link(
    args: &AgentArgs,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Arc<gantry_agent::relay::RelayLink>>> {
    let Some(relay) = &args.relay else { return Ok(None) };
    let fixed = (relay != "auto").then(|| relay.clone());
    let tls = gantry_tls::client_config_or_system(crate::tls::ca_cert()).context("--ca-cert for the relay")?;
    let link =
        gantry_agent::relay::RelayLink::start(fixed, tls, stop.clone()).map_err(|e| anyhow::anyhow!("--relay: {e}"))?;
    Ok(Some(link))
}

/// Waits until the node is registered (the agent records its node in the state
/// file), so systemd's READY=1 means "this node is known to the control plane".
/// Gives up waiting after a minute: the agent keeps retrying, and a unit stuck in
/// "activating" would hide that it runs.
async fn wait_registered(args: &AgentArgs) {
    let file = StateFile::in_dir(&args.state_dir.clone().unwrap_or_else(default_state_dir));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if file.load_or_create().is_ok_and(|s| s.node_uuid.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `$GANTRY_AGENT_STATE_DIR`, else `/var/lib/gantry-agent` for root, else
/// `~/.local/state/gantry-agent`.
fn default_state_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (std::env::var("USER").as_deref(), home) {
        (Ok("root"), _) | (_, None) => PathBuf::from("/var/lib/gantry-agent"),
        (_, Some(home)) => home.join(".local/state/gantry-agent"),
    }
}

/// Whether the control plane an agent state file was written for (`stored`, the
/// comma-separated instance list of then) is the one named now: any instance in
/// common. Adding or removing an instance must not make the node a new one, and
/// neither must turning TLS on (`http://host:8080` → `https://host:8080`: only the
/// scheme differs), which keeps the node, its log cursors and its running containers.
fn same_control_plane(stored: Option<&str>, now: &[String]) -> bool {
    let norm = |u: &str| {
        let u = u.trim();
        let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://")).unwrap_or(u);
        rest.trim_end_matches('/').to_ascii_lowercase()
    };
    stored.is_some_and(|stored| stored.split(',').map(norm).any(|s| now.iter().any(|n| norm(n) == s)))
}

/// `host:port` of a base URL, with the scheme's default port when it names none.
fn authority_with_port(server: &str) -> Option<String> {
    let (scheme, rest) = server.split_once("://").unwrap_or(("http", server));
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':'),
        None => false,
    };
    if has_port && !authority.ends_with(']') {
        return Some(authority.to_string());
    }
    let port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    Some(format!("{authority}:{port}"))
}

/// This machine's address on the route to the control plane (no packet is sent:
/// connecting a UDP socket only picks the route).
fn route_address(server: &str) -> Option<String> {
    let authority = authority_with_port(server)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&authority).ok()?.next()?;
    let bind: std::net::SocketAddr = if addr.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(addr).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

#[cfg(test)]
mod tests {
    use super::{authority_with_port, same_control_plane};

    #[test]
    fn adding_or_removing_an_instance_keeps_the_control_plane() {
        let now = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_control_plane(Some("http://a:1"), &now(&["http://a:1/", "http://b:2"])));
        assert!(same_control_plane(Some("http://a:1,http://b:2"), &now(&["http://b:2"])));
        assert!(!same_control_plane(Some("http://a:1"), &now(&["http://c:3"])));
        assert!(!same_control_plane(None, &now(&["http://a:1"])));
    }

    #[test]
    fn turning_tls_on_keeps_the_control_plane_and_other_hosts_do_not() {
        let now = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_control_plane(Some("http://cp.lab:8080"), &now(&["https://cp.lab:8080/"])));
        assert!(same_control_plane(Some("https://CP.lab:8080"), &now(&["https://cp.lab:8080"])));
        assert!(!same_control_plane(Some("http://cp.lab:8080"), &now(&["https://cp.lab:8443"])));
        assert!(!same_control_plane(Some("https://cp.lab:8080"), &now(&["https://other.lab:8080"])));
    }

    #[test]
    fn a_url_without_a_port_gets_its_schemes_default() {
        assert_eq!(authority_with_port("https://cp.lab").as_deref(), Some("cp.lab:443"));
        assert_eq!(authority_with_port("http://cp.lab/").as_deref(), Some("cp.lab:80"));
        assert_eq!(authority_with_port("https://cp.lab:8443/x").as_deref(), Some("cp.lab:8443"));
        assert_eq!(authority_with_port("http://[::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(authority_with_port("https://[::1]").as_deref(), Some("[::1]:443"));
        assert_eq!(authority_with_port("127.0.0.1:8080").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(authority_with_port("https://"), None);
    }
}
