//! The Docker runtime: runs each desired run as one container on the local Docker
//! Engine (bollard over the Unix socket).
//!
//! ```text
//! start(run) ─▶ driver task: pull (shared, with progress) ─▶ bind ports ─▶ create
//!               ─▶ copy volumes ─▶ start ─▶ proxies ─▶ follow logs + wait ─▶ final state
//! ```
//!
//! Each run has one driver task; the reconcile loop only ever asks (`start`, `stop`,
//! `remove`, `list`) and never waits on Docker, so a slow pull or a 10-second stop
//! grace does not hold up heartbeats or other runs.
//!
//! The daemon is the memory that survives the agent: containers carry labels (run,
//! owning node, lease epoch, published ports), so a restarted agent lists them,
//! adopts the live ones (logs resume from the acknowledged cursor, ports are
//! published again on the same external ports) and reports the ones that ended
//! meanwhile; it never creates a second container for a run, because container
//! names are per run and the daemon refuses duplicates. Runs the control plane no
//! longer wants (including containers of an old lease epoch) are stopped and removed
//! by the agent's reconcile loop, which is the orphan sweep.
//!
//! Bollard sends no API version (crates.md), so the daemon answers in its own
//! version: only fields of API 1.41 are used and every response field is optional.

pub mod firewall;
pub mod image;
pub mod logs;
pub mod network;
pub mod ports;
pub mod private;
pub mod pull;
mod puller;
pub mod registry;
pub mod spec;
pub mod volumes;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;
use gantry_types::JobRunId;
use gantry_types::job_run::NodeUrl;
use gantry_types::protocol::RunSpec;
use tokio::sync::{Notify, watch};

use self::logs::LogBuffer;
use self::network::{NetworkPool, Networks};
use self::private::PrivateImages;
use self::pull::{PullHub, RegistryAuth};
use self::spec::{CreateContext, GpuMode, JobLimits, LABEL_OWNER, LABEL_PORT_PREFIX, LABEL_RUN};
use crate::proxy::ProxyLimits;
use crate::runtime::{ContainerRuntime, ContainerState, Observed, RuntimeError};

/// Label marking the throw-away source container of a volume copy.
const LABEL_VOLUME_SOURCE: &str = "gantry.volume-source";
/// Label holding the run's allow-list, so adopted ports keep admitting the same peers.
const LABEL_ALLOWED_IPS: &str = "gantry.allowed-ips";

/// How the Docker runtime behaves on this node.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// Owner label value: the node's uuid (or any string unique per agent on a daemon).
    pub owner: String,
    /// Host name or address put in `node_urls`.
    pub advertise_host: String,
    /// Address the port proxies listen on.
    pub bind_ip: IpAddr,
    /// SIGTERM-to-SIGKILL grace when stopping a container.
    pub stop_grace: Duration,
    /// Whether GPUs are real (device requests) or pretended.
    pub gpus: GpuMode,
    /// Most undelivered output kept per run, bytes.
    pub max_pending_log_bytes: usize,
    /// Log cursors the control plane acknowledged before a restart, per run.
    pub log_cursors: HashMap<JobRunId, String>,
    /// How often the daemon is searched for containers of this owner the runtime
    /// does not track (left by an earlier agent process, or made by hand), which are
    /// then adopted and, when no run wants them, swept.
    pub rescan_every: Duration,
    /// External ports published ports may use (`--port-range`); `None`: any free one.
    pub port_range: Option<ports::PortRange>,
    /// The bounds every container gets (memory and CPU floors, PIDs, writable layer).
    pub limits: JobLimits,
    /// Where the accounts' networks take their subnets from.
    pub network_pool: NetworkPool,
    /// How long an account's network is kept after its last run on the node ended.
    pub network_idle: Duration,
    /// Idle timeout and connection cap of each port proxy.
    pub proxy: ProxyLimits,
    /// Most ports one run may publish.
    pub max_ports: usize,
    /// Whether jobs may pull from registries on loopback, link-local or private
    /// addresses (off: a job could make the node's daemon probe the operator's own
    /// network, or a cloud metadata service).
    pub allow_private_registries: bool,
    /// Where the images ever pulled with credentials are remembered across restarts
    /// (none: in memory only).
    pub private_images_file: Option<std::path::PathBuf>,
    /// The relay carrying published ports for a node behind NAT (`--relay`): each
    /// published port is also published there, and `node_urls` name the relay's host
    /// and public port instead of `advertise_host`.
    pub relay: Option<std::sync::Arc<gantry_relay::node::Publisher>>,
}

impl DockerConfig {
    /// Defaults for `owner`: proxies on every address, 10 s grace, 4 MiB pending logs.
    pub fn new(owner: impl Into<String>, advertise_host: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            advertise_host: advertise_host.into(),
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            stop_grace: Duration::from_secs(10),
            gpus: GpuMode::Fake,
            max_pending_log_bytes: 4 * 1024 * 1024,
            log_cursors: HashMap::new(),
            rescan_every: Duration::from_secs(30),
            port_range: None,
            limits: JobLimits::default(),
            network_pool: NetworkPool::default(),
            network_idle: network::DEFAULT_IDLE,
            proxy: ProxyLimits::default(),
            max_ports: 32,
            allow_private_registries: false,
            private_images_file: None,
            relay: None,
        }
    }
}

/// Why a run is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopCause {
    /// The control plane no longer wants it (cancel, run timeout, orphan).
    Requested,
}

struct Entry {
    state: ContainerState,
    /// Preparation progress, for the run's `status_reason`.
    progress: Option<String>,
    node_urls: Vec<NodeUrl>,
    image_size: Option<i64>,
    logs: LogBuffer,
    stop: watch::Sender<Option<StopCause>>,
    proxies: Vec<crate::proxy::PortProxy>,
    /// When the runtime was asked to start the run (benchmarks read it).
    accepted_at: std::time::SystemTime,
    /// The network of the run's account, once the run holds it.
    network: Option<String>,
}

impl Entry {
    fn new(state: ContainerState) -> Self {
        Self {
            state,
            progress: None,
            node_urls: vec![],
            image_size: None,
            logs: LogBuffer::default(),
            stop: watch::channel(None).0,
            proxies: vec![],
            accepted_at: std::time::SystemTime::now(),
            network: None,
        }
    }
}

struct Inner {
    docker: Docker,
    config: DockerConfig,
    runs: Mutex<HashMap<JobRunId, Entry>>,
    pulls: PullHub<puller::DockerPuller>,
    changed: Notify,
    adopted: AtomicBool,
    adopting: tokio::sync::Mutex<()>,
    last_scan: Mutex<Instant>,
    /// Whether the storage driver may still support a writable-layer size (cleared
    /// the first time the daemon says it does not).
    layer_limit: AtomicBool,
    /// Images ever pulled with credentials.
    private: PrivateImages,
    /// The accounts' networks and the spare.
    networks: Arc<Networks>,
    /// Where container starts and pulls are counted, once set.
    metrics: std::sync::OnceLock<Arc<crate::metrics::AgentMetrics>>,
}

/// Runs containers on the local Docker Engine.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

/// A failure of one step, said for people.
type StepResult<T> = Result<T, String>;

fn unavailable(e: DockerError) -> RuntimeError {
    RuntimeError::Unavailable(e.to_string())
}

impl DockerRuntime {
    /// Connects to the local daemon (`DOCKER_HOST` or the default socket). Fails only
    /// when no client can be built; a daemon that is down is retried on use.
    pub fn connect(config: DockerConfig) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(unavailable)?;
        Ok(Self::with_docker(docker, config))
    }

    /// A runtime over an existing client.
    pub fn with_docker(docker: Docker, config: DockerConfig) -> Self {
        let pulls = PullHub::new(Arc::new(puller::DockerPuller { docker: docker.clone() }));
        let private = PrivateImages::load(config.private_images_file.clone());
        let networks =
            Networks::with_idle(docker.clone(), config.owner.clone(), config.network_pool.clone(), config.network_idle);
        Self {
            inner: Arc::new(Inner {
                docker,
                config,
                runs: Mutex::new(HashMap::new()),
                pulls,
                changed: Notify::new(),
                adopted: AtomicBool::new(false),
                adopting: tokio::sync::Mutex::new(()),
                last_scan: Mutex::new(Instant::now()),
                layer_limit: AtomicBool::new(true),
                private,
                networks,
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Counts container starts and times image pulls in `metrics` (set once).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::AgentMetrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    fn count_start(&self, outcome: &'static str) {
        if let Some(m) = self.inner.metrics.get() {
            m.container_starts.get_or_create(&crate::metrics::OutcomeLabel { outcome }).inc();
        }
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// What the run's container is doing, if the runtime holds the run.
    pub fn state(&self, run: JobRunId) -> Option<ContainerState> {
        self.inner.runs.lock().expect("runs poisoned").get(&run).map(|e| e.state.clone())
    }

    /// When the runtime was asked to start `run`, i.e. when the assignment reached
    /// the agent (the agent benchmark reads it).
    pub fn accepted_at(&self, run: JobRunId) -> Option<std::time::SystemTime> {
        self.inner.runs.lock().expect("runs poisoned").get(&run).map(|e| e.accepted_at)
    }

    /// Adopts this agent's containers left by a previous process, once. Until it
    /// succeeded nothing is started, so a run is never started twice.
    async fn ensure_adopted(&self) -> Result<(), RuntimeError> {
        if self.inner.adopted.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.inner.adopting.lock().await;
        if self.inner.adopted.load(Ordering::Acquire) {
            return Ok(());
        }
        self.adopt().await?;
        if let Err(e) = firewall::isolate_pool(self.inner.config.network_pool.base()).await {
            tracing::warn!(
                reason = %e,
                "cannot add the agent's own drop rule between job networks to DOCKER-USER; isolation between accounts relies on Docker's rules alone (run the agent as root for both)"
            );
        }
        self.inner.adopted.store(true, Ordering::Release);
        Ok(())
    }

    /// Every container carrying this agent's owner label, running or not.
    pub async fn list_owned(&self) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
        let filters =
            HashMap::from([("label".to_string(), vec![format!("{LABEL_OWNER}={}", self.inner.config.owner)])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        self.inner.docker.list_containers(Some(options)).await
    }

    async fn adopt(&self) -> Result<(), RuntimeError> {
        let docker = &self.inner.docker;
        for summary in self.list_owned().await.map_err(unavailable)? {
            let Some(id) = summary.id.clone() else { continue };
            let labels = summary.labels.clone().unwrap_or_default();
            let run = labels.get(LABEL_RUN).and_then(|r| r.parse::<JobRunId>().ok());
            if run.is_some_and(|r| self.inner.runs.lock().expect("runs poisoned").contains_key(&r)) {
                continue; // tracked already (its volume sources included)
            }
            let Some(run) = run.filter(|_| !labels.contains_key(LABEL_VOLUME_SOURCE)) else {
                // An untracked volume source, or unreadable: of no use to anyone.
                let _ = force_remove(docker, &id).await;
                continue;
            };
            let inspect = docker.inspect_container(&id, None::<InspectContainerOptions>).await.map_err(unavailable)?;
            let state = inspect.state.unwrap_or_default();
            let running = state.running.unwrap_or(false);
            let started = state.started_at.as_deref().is_some_and(|s| !s.starts_with("0001-"));
            if !running && !started {
                // Created but never started: the run will be created afresh.
                let _ = force_remove(docker, &id).await;
                continue;
            }
            tracing::info!(%run, container = %id, running, "adopting a container from before the restart");
            let mut entry = Entry::new(ContainerState::Running);
            // Containers from before run networks sit on the default bridge, which stays;
            // those from before account networks (no account label) keep theirs alone.
            if let Some(network) = inspect.host_config.as_ref().and_then(|h| h.network_mode.clone())
                && network.starts_with(network::NETWORK_PREFIX)
            {
                let account = labels.get(spec::LABEL_ACCOUNT).and_then(|a| a.parse().ok());
                self.inner.networks.adopt(network::Tenant::of(account, run), run, &network);
                entry.network = Some(network);
            }
            if let Some(cursor) = self.inner.config.log_cursors.get(&run) {
                entry.logs.push(Some(cursor), "", usize::MAX);
            }
            self.inner.runs.lock().expect("runs poisoned").insert(run, entry);
            let published: Vec<(u16, Option<u16>)> = labels
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_PORT_PREFIX)?.parse().ok()?, v.parse().ok())))
                .collect();
            let allowed: Vec<String> = labels
                .get(LABEL_ALLOWED_IPS)
                .map(|s| s.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            let me = self.clone();
            tokio::spawn(async move {
                let listeners = match ports::bind(me.inner.config.bind_ip, &published, me.inner.config.port_range) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(%run, error = %e, "cannot publish the ports of an adopted container");
                        vec![]
                    }
                };
                if let Err(e) = me.publish(run, &id, listeners, &allowed).await {
                    tracing::warn!(%run, error = %e, "cannot publish the ports of an adopted container");
                }
                me.supervise(run, id).await;
            });
        }
        self.inner.networks.sweep().await.map_err(unavailable)?;
        Ok(())
    }

    /// The run no longer holds its account's network (its container must be gone);
    /// the network stays for the account's next run until it has been idle a while.
    fn release_network(&self, run: JobRunId) {
        let network = self.inner.runs.lock().expect("runs poisoned").get_mut(&run).and_then(|e| e.network.take());
        if network.is_some() {
            self.inner.networks.release(run);
        }
    }

    fn update(&self, run: JobRunId, f: impl FnOnce(&mut Entry)) {
        self.update_quietly(run, f);
        self.inner.changed.notify_one();
    }

    /// Changes the run's entry without waking the agent (new output: the agent
    /// collects it on its next pass, at least once a heartbeat).
    fn update_quietly(&self, run: JobRunId, f: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.inner.runs.lock().expect("runs poisoned").get_mut(&run) {
            f(entry);
        }
    }

    fn finish(&self, run: JobRunId, state: ContainerState) {
        tracing::debug!(%run, ?state, "run finished");
        self.update(run, |e| {
            e.state = state;
            e.progress = None;
            e.proxies.clear();
        });
        self.unpublish_at_relay(run);
    }

    /// Closes the run's public ports at the relay, if any (in the background: the
    /// relay closes them and their connections as soon as it hears).
    fn unpublish_at_relay(&self, run: JobRunId) {
        if let Some(relay) = self.inner.config.relay.clone() {
            tokio::spawn(async move { relay.unpublish(&run.to_string()).await });
        }
    }

    fn stop_requested(&self, run: JobRunId) -> watch::Receiver<Option<StopCause>> {
        let runs = self.inner.runs.lock().expect("runs poisoned");
        runs.get(&run).map(|e| e.stop.subscribe()).unwrap_or_else(|| watch::channel(Some(StopCause::Requested)).1)
    }

    /// Drives a new run from nothing to its end.
    async fn drive(self, run: JobRunId, spec: RunSpec, epoch: i64) {
        let mut stop = self.stop_requested(run);
        let start_timeout = spec.max_timeout_start_ms.filter(|ms| *ms > 0).map(|ms| Duration::from_millis(ms as u64));
        let prepare = self.prepare(run, &spec, epoch);
        let prepared = tokio::select! {
            r = async {
                match start_timeout {
                    Some(limit) => tokio::time::timeout(limit, prepare).await.unwrap_or_else(|_| Err(format!(
                        "preparing did not finish within the start timeout of {} s (image pull too slow or registry not answering)",
                        limit.as_secs()
                    ))),
                    None => prepare.await,
                }
            } => r,
            _ = until_stopped(&mut stop) => Err(String::new()),
        };
        match prepared {
            Ok(container) => {
                self.count_start("started");
                self.supervise(run, container).await
            }
            Err(reason) => {
                // The container may exist half-made; it is of no use now.
                let name = spec::container_name(run);
                let _ = force_remove(&self.inner.docker, &name).await;
                self.release_network(run);
                let stopped = stop.borrow().is_some();
                if !stopped {
                    self.count_start("failed");
                }
                self.finish(run, if stopped { ContainerState::Stopped } else { ContainerState::Failed { reason } });
            }
        }
    }

    /// Pulls, creates, fills and starts the container; returns its id.
    async fn prepare(&self, run: JobRunId, spec: &RunSpec, epoch: i64) -> StepResult<String> {
        let docker = &self.inner.docker;
        let config = &self.inner.config;
        if spec.ports.len() > config.max_ports {
            return Err(format!(
                "the job publishes {} ports; this node publishes at most {} per job",
                spec.ports.len(),
                config.max_ports
            ));
        }
        let image = spec::image_reference(&spec.image, &spec.tag, spec.registry_host.as_deref());
        if !config.allow_private_registries {
            registry::check_public(&pull::registry_of(&image)).await?;
            for v in &spec.volumes {
                let reference =
                    spec::image_reference(&v.image, v.tag.as_deref().unwrap_or("latest"), v.registry.as_deref());
                registry::check_public(&pull::registry_of(&reference)).await?;
            }
        }
        let auth = registry_auth(
            spec.registry_host.as_deref(),
            spec.registry_user.as_deref(),
            spec.registry_secret.as_deref(),
        );
        let size = self.ensure_image(run, &image, auth.as_ref(), spec.registry_host.as_deref()).await?;
        self.update(run, |e| e.image_size = size);
        let mut volume_images = Vec::with_capacity(spec.volumes.len());
        for v in &spec.volumes {
            let reference =
                spec::image_reference(&v.image, v.tag.as_deref().unwrap_or("latest"), v.registry.as_deref());
            let auth = registry_auth(v.registry.as_deref(), v.user.as_deref(), v.secret.as_deref());
            self.ensure_image(run, &reference, auth.as_ref(), v.registry.as_deref()).await?;
            volume_images.push((reference, v.mount.clone()));
        }
        let wanted: Vec<(u16, Option<u16>)> = spec.ports.iter().map(|p| (*p, None)).collect();
        let listeners = ports::bind(self.inner.config.bind_ip, &wanted, self.inner.config.port_range)
            .map_err(|e| format!("cannot publish ports: {e}"))?;
        let published: Vec<(u16, u16)> = listeners.iter().map(|l| (l.container_port, l.external_port)).collect();
        let network = self.inner.networks.take(network::Tenant::of(spec.account_uuid, run), run).await?;
        let taken = network.clone();
        self.update_quietly(run, |e| e.network = Some(taken));
        let name = spec::container_name(run);
        let id = loop {
            let layer_limit = self.inner.layer_limit.load(Ordering::Relaxed);
            let ctx = CreateContext {
                run,
                owner: &config.owner,
                epoch,
                image: &image,
                published: &published,
                gpus: config.gpus,
                network: &network,
                limits: &config.limits,
                writable_layer_limit: layer_limit && config.limits.writable_layer_bytes.is_some(),
            };
            let mut body = spec::create_body(spec, &ctx);
            if !spec.allowed_ips.is_empty()
                && let Some(labels) = body.labels.as_mut()
            {
                labels.insert(LABEL_ALLOWED_IPS.into(), spec.allowed_ips.join(","));
            }
            let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
            match docker.create_container(Some(options), body).await {
                Ok(created) => break created.id,
                Err(DockerError::DockerResponseServerError { status_code: 409, .. }) => {
                    return Err(format!("a container named {name} already exists; refusing to start the run twice"));
                }
                // Only some storage drivers can bound the writable layer (overlay2 on
                // xfs with pquota, btrfs, zfs, devicemapper); on the others the limit
                // is left out from now on.
                Err(DockerError::DockerResponseServerError { message, .. })
                    if ctx.writable_layer_limit && message.contains("storage-opt") =>
                {
                    tracing::info!(reason = %message, "the storage driver cannot limit a container's writable layer; running without that limit");
                    self.inner.layer_limit.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(format!("cannot create the container: {e}")),
            }
        };
        for (i, (reference, mount)) in volume_images.iter().enumerate() {
            let labels = HashMap::from([
                (LABEL_OWNER.to_string(), self.inner.config.owner.clone()),
                (LABEL_RUN.to_string(), run.to_string()),
                (LABEL_VOLUME_SOURCE.to_string(), "true".to_string()),
            ]);
            volumes::copy_image_tree(docker, &id, &format!("{name}-volume-{i}"), reference, mount, labels).await?;
        }
        docker.start_container(&id, None).await.map_err(|e| format!("cannot start the container: {e}"))?;
        // RUNNING is reported with the ports already reachable.
        self.publish(run, &id, listeners, &spec.allowed_ips).await?;
        self.update(run, |e| {
            e.state = ContainerState::Running;
            e.progress = None;
        });
        Ok(id)
    }

    /// Makes `image` present: pulled when credentials are given (so the registry
    /// checks them every time: a private image cached on the node is never handed
    /// to someone without the right secret) or when it is absent.
    async fn ensure_image(
        &self,
        run: JobRunId,
        image: &str,
        auth: Option<&RegistryAuth>,
        host: Option<&str>,
    ) -> StepResult<Option<i64>> {
        // The common case (cached, public) costs one inspect, which also gives the size.
        if auth.is_none()
            && let Ok(found) = self.inner.docker.inspect_image(image).await
        {
            if !found.id.as_deref().is_some_and(|id| self.inner.private.contains(id)) {
                return Ok(found.size);
            }
            // Its content came with someone's credentials: this job, which has none,
            // gets it only if the registry serves it to anyone (a manifest request
            // without credentials). An alias (digest, image id, another tag) resolves
            // to the same image id, so it is asked about too.
            return match self.inner.docker.inspect_registry_image(image, None).await {
                Ok(_) => Ok(found.size),
                Err(e) => {
                    tracing::debug!(%run, %image, error = %e, "a private image was asked for without credentials");
                    Err(format!(
                        "image {image} is private: the registry {} does not serve it without credentials; give the job the registry user and secret",
                        host.map(str::to_string).unwrap_or_else(|| pull::registry_of(image))
                    ))
                }
            };
        }
        let rx = self.inner.pulls.pull(image, auth);
        let mut last_report = Instant::now() - Duration::from_secs(1);
        let pull_started = Instant::now();
        let pulled = pull::finish(rx, |done, total| {
            // Progress reaches the control plane at most twice a second.
            if last_report.elapsed() >= Duration::from_millis(500) {
                last_report = Instant::now();
                let line = format!("pulling {image}: {} of {}", pull::human_bytes(done), pull::human_bytes(total));
                self.update(run, |e| e.progress = Some(line));
            }
        })
        .await;
        if let Some(m) = self.inner.metrics.get() {
            let outcome = if pulled.is_ok() { "ok" } else { "error" };
            m.image_pulls
                .get_or_create(&crate::metrics::OutcomeLabel { outcome })
                .observe(pull_started.elapsed().as_secs_f64());
        }
        pulled.map_err(|message| pull::explain_pull_error(image, host, &message))?;
        let found = self.inner.docker.inspect_image(image).await.ok();
        if auth.is_some()
            && let Some(id) = found.as_ref().and_then(|i| i.id.as_deref())
        {
            self.inner.private.insert(id);
        }
        Ok(found.and_then(|i| i.size))
    }

    /// Starts the proxies for the pre-bound `listeners` towards the container.
    async fn publish(
        &self,
        run: JobRunId,
        container: &str,
        listeners: Vec<ports::Listener>,
        allowed_ips: &[String],
    ) -> StepResult<()> {
        if listeners.is_empty() {
            return Ok(());
        }
        let inspect = self
            .inner
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| format!("cannot inspect the container: {e}"))?;
        let running = inspect.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let ip = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.values().find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty())))
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let ip = match ip {
            Some(ip) => ip,
            // Ended already (a short BATCH job): nothing to publish, its exit is reported.
            None if !running => return Ok(()),
            None => return Err("the container has no address on its network".into()),
        };
        let config = &self.inner.config;
        let container_ports: Vec<u16> = listeners.iter().map(|l| l.container_port).collect();
        let (proxies, mut urls) = ports::serve(listeners, ip, allowed_ips, &config.advertise_host, config.proxy)?;
        if let Some(relay) = &config.relay {
            for (url, port) in urls.iter_mut().zip(container_ports) {
                let carried = relay
                    .publish(&run.to_string(), port, std::net::SocketAddr::new(ip, port), allowed_ips)
                    .await
                    .map_err(|e| format!("cannot publish port {port} at the relay: {}", gantry_relay::chain(&e)))?;
                url.hostname = carried.host;
                url.port = carried.port;
            }
        }
        self.update(run, |e| {
            e.proxies = proxies;
            e.node_urls = urls;
        });
        Ok(())
    }

    /// Follows a started container until it ends, stopping it when asked.
    async fn supervise(&self, run: JobRunId, container: String) {
        let mut stop = self.stop_requested(run);
        let follower = tokio::spawn(self.clone().follow_logs(run, container.clone()));
        let mut stopping = false;
        let exit = loop {
            tokio::select! {
                code = self.wait_exit(&container) => break code,
                _ = until_stopped(&mut stop), if !stopping => {
                    stopping = true;
                    let grace = self.inner.config.stop_grace.as_secs().max(1) as i32;
                    let options = StopContainerOptions { t: Some(grace), ..Default::default() };
                    if let Err(e) = self.inner.docker.stop_container(&container, Some(options)).await {
                        tracing::warn!(%run, error = %e, "stop failed; waiting for the container anyway");
                    }
                }
            }
        };
        // Every line is shipped before the exit is: wait for the follower to drain.
        let _ = tokio::time::timeout(Duration::from_secs(10), follower).await;
        let state = match exit {
            Err(reason) => ContainerState::Failed { reason },
            Ok(_) if stopping => ContainerState::Stopped,
            Ok(code) => ContainerState::Exited { code },
        };
        self.finish(run, state);
    }

    /// The container's exit code once it is not running; survives the daemon going
    /// away meanwhile (it asks again until the daemon answers).
    async fn wait_exit(&self, container: &str) -> StepResult<i32> {
        let docker = &self.inner.docker;
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut wait = docker.wait_container(container, None);
            // The stream's outcome is not trusted (bollard turns a non-zero exit into
            // an error); inspect says what happened.
            let _ = wait.next().await;
            match docker.inspect_container(container, None::<InspectContainerOptions>).await {
                Ok(inspect) => {
                    let state = inspect.state.unwrap_or_default();
                    if !state.running.unwrap_or(false) {
                        if state.oom_killed == Some(true) {
                            return Err("the container ran out of memory (its RAM limit) and was killed".into());
                        }
                        return Ok(state.exit_code.unwrap_or(-1) as i32);
                    }
                }
                Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {
                    return Err("the container disappeared (removed outside Gantry)".into());
                }
                Err(e) => tracing::warn!(error = %e, "Docker unavailable; the container keeps running, retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Ships the container's output into the run's buffer until it ends.
    async fn follow_logs(self, run: JobRunId, container: String) {
        let docker = &self.inner.docker;
        let max = self.inner.config.max_pending_log_bytes;
        let mut backoff = Duration::from_millis(100);
        let mut last_wake = Instant::now() - Duration::from_secs(1);
        loop {
            let cursor = self
                .inner
                .runs
                .lock()
                .expect("runs poisoned")
                .get(&run)
                .and_then(|e| e.logs.cursor().map(str::to_string));
            let options = LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                timestamps: true,
                since: cursor.as_deref().and_then(logs::epoch_seconds).unwrap_or(0) as i32,
                tail: "all".into(),
                ..Default::default()
            };
            let mut stream = docker.logs(&container, Some(options));
            let mut broken = false;
            let mut partial = String::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(out) => {
                        partial.push_str(&String::from_utf8_lossy(&out.into_bytes()));
                        let mut lines: Vec<(Option<String>, String)> = Vec::new();
                        while let Some(end) = partial.find('\n') {
                            let line: String = partial.drain(..=end).collect();
                            let (ts, text) = logs::split_timestamp(&line);
                            lines.push((ts.map(str::to_string), text.to_string()));
                        }
                        self.update_quietly(run, |e| {
                            for (ts, text) in lines {
                                // Only a replay (after a restart or a broken stream)
                                // repeats lines: within one stream every line is new,
                                // even one stamped earlier than the line before it
                                // (stdout and stderr are stamped separately).
                                let fresh = match (ts.as_deref(), cursor.as_deref()) {
                                    (Some(ts), Some(replayed_up_to)) => logs::is_after(ts, replayed_up_to),
                                    _ => true,
                                };
                                if fresh {
                                    e.logs.push(ts.as_deref(), &text, max);
                                }
                            }
                        });
                        if last_wake.elapsed() >= Duration::from_millis(200) {
                            last_wake = Instant::now();
                            self.inner.changed.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%run, error = %e, "log stream broke");
                        broken = true;
                        break;
                    }
                }
            }
            if !partial.is_empty() {
                let (ts, text) = logs::split_timestamp(&partial);
                let (ts, text) = (ts.map(str::to_string), text.to_string());
                self.update(run, |e| e.logs.push(ts.as_deref(), &text, max));
            }
            // A stream ends when the container stops, or when the daemon went away.
            match docker.inspect_container(&container, None::<InspectContainerOptions>).await {
                Ok(i) if !i.state.as_ref().and_then(|s| s.running).unwrap_or(false) && !broken => return,
                Ok(_) => {}
                Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => return,
                Err(_) => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Removes a container whatever its state (running ones are killed); one that is
/// already gone counts as removed.
pub async fn force_remove(docker: &Docker, container: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptions { force: true, ..Default::default() };
    match docker.remove_container(container, Some(options)).await {
        Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Resolves once a stop was asked for (holding no borrow across awaits).
async fn until_stopped(rx: &mut watch::Receiver<Option<StopCause>>) {
    if rx.wait_for(Option::is_some).await.is_err() {
        // The run's entry is gone: nobody can ask any more.
        std::future::pending::<()>().await;
    }
}

/// Credentials when the job gave a user or a secret.
fn registry_auth(host: Option<&str>, user: Option<&str>, secret: Option<&str>) -> Option<RegistryAuth> {
    let user = user.filter(|u| !u.is_empty());
    let secret = secret.filter(|s| !s.is_empty());
    (user.is_some() || secret.is_some()).then(|| RegistryAuth {
        host: host.map(str::to_string),
        user: user.unwrap_or_default().to_string(),
        secret: secret.unwrap_or_default().to_string(),
    })
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn start(&self, run: JobRunId, spec: &RunSpec, epoch: i64) -> Result<(), RuntimeError> {
        self.ensure_adopted().await?;
        {
            let mut runs = self.inner.runs.lock().expect("runs poisoned");
            if runs.contains_key(&run) {
                return Ok(());
            }
            runs.insert(run, Entry::new(ContainerState::Preparing));
        }
        self.inner.changed.notify_one();
        tokio::spawn(self.clone().drive(run, spec.clone(), epoch));
        Ok(())
    }

    async fn stop(&self, run: JobRunId) -> Result<(), RuntimeError> {
        if let Some(e) = self.inner.runs.lock().expect("runs poisoned").get(&run) {
            e.stop.send_replace(Some(StopCause::Requested));
        }
        Ok(())
    }

    async fn remove(&self, run: JobRunId) -> Result<(), RuntimeError> {
        // The container goes first: while the entry exists a rescan cannot mistake
        // the container for an untracked one and adopt it again.
        force_remove(&self.inner.docker, &spec::container_name(run)).await.map_err(unavailable)?;
        self.release_network(run);
        let entry = self.inner.runs.lock().expect("runs poisoned").remove(&run);
        drop(entry); // closes its proxies
        self.unpublish_at_relay(run);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Observed>, RuntimeError> {
        if let Err(e) = self.ensure_adopted().await {
            tracing::debug!(error = %e, "cannot adopt containers yet");
        }
        let rescan = {
            let mut last = self.inner.last_scan.lock().expect("scan time poisoned");
            let due = last.elapsed() >= self.inner.config.rescan_every;
            if due {
                *last = Instant::now();
            }
            due
        };
        if rescan {
            let _guard = self.inner.adopting.lock().await;
            self.inner.networks.expire().await;
            if let Err(e) = self.adopt().await {
                tracing::debug!(error = %e, "cannot look for untracked containers");
            }
        }
        let mut runs = self.inner.runs.lock().expect("runs poisoned");
        Ok(runs
            .iter_mut()
            .map(|(run, e)| {
                let (new_logs, log_cursor) = e.logs.take();
                Observed {
                    run: *run,
                    state: e.state.clone(),
                    new_logs,
                    log_cursor,
                    progress: e.progress.clone(),
                    node_urls: e.node_urls.clone(),
                    image_size_bytes: e.image_size,
                }
            })
            .collect())
    }

    async fn changed(&self) {
        self.inner.changed.notified().await
    }
}
