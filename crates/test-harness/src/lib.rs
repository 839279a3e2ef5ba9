//! The integration-test harness: boots the real server in process on an ephemeral
//! port with its own temp data dir, hands out signed clients for fresh accounts, and
//! waits with deadlines instead of sleeps.
//!
//! Tests talk to the server only through `gantry-client`, the crate users run, so
//! what passes here is what users get.

pub mod docker;
pub mod prom;
pub mod webdriver;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_client::{Client, Credentials};
use gantry_server::admin::{KeySpec, create_account, create_in};
use gantry_server::{RunningServer, ServerConfig};
use gantry_types::AccountId;
use gantry_types::permissions::Preset;

/// A running server and its data dir (kept until the context drops).
pub struct TestContext {
    server: Option<RunningServer>,
    /// The data dir.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` (`https://` for [`TestContext::start_tls_with`]).
    pub base_url: String,
    database_url: Option<String>,
    /// The server's certificate and key, when it serves HTTPS.
    tls: Option<gantry_tls::CertFiles>,
    /// The CA that signed it: what [`TestContext::client`] trusts.
    pub ca_cert: Option<std::path::PathBuf>,
}

/// Test timing for the reconcilers.
pub fn fast(config: &mut ServerConfig) {
    config.timing = gantry_server::Timing {
        schedule_every: Duration::from_millis(50),
        lifecycle_every: Duration::from_millis(20),
        node_lost_after: Duration::from_millis(1500),
        assign_sweep_min_age: Duration::ZERO,
        billing_every: Duration::from_millis(50),
    };
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Simulated nodes running in this process.
pub struct SimNodes {
    /// The node-preset client they use.
    pub client: Client,
    stop: tokio::sync::watch::Sender<bool>,
    agents: Vec<tokio::task::JoinHandle<()>>,
}

impl SimNodes {
    /// Starts `count` agents with the fake runtime.
    pub async fn start(client: Client, count: usize, spec: &str) -> Self {
        let description = gantry_agent::inventory::parse_fake_spec(spec).expect("node spec");
        let (stop, rx) = tokio::sync::watch::channel(false);
        let agents = (0..count)
            .map(|i| {
                let config = gantry_agent::AgentConfig {
                    name: format!("sim-{i}"),
                    description: description.clone(),
                    hostname: Some(format!("sim-{i}.test")),
                    sync_wait_ms: 300,
                    state: None,
                    probe: None,
                };
                let runtime = std::sync::Arc::new(gantry_agent::fake::FakeRuntime::default());
                tokio::spawn(gantry_agent::Agent::new(client.clone(), runtime, config).run(rx.clone()))
            })
            .collect();
        Self { client, stop, agents }
    }

    /// Kills agent `i` abruptly (as kill -9 would): it stops syncing mid-flight.
    pub fn kill(&self, i: usize) {
        self.agents[i].abort();
    }

    /// Stops every agent cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for a in self.agents {
            let _ = a.await;
        }
    }
}

impl TestContext {
    /// Starts a server on SQLite in a fresh temp dir.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh PostgreSQL database (from `GANTRY_TEST_DATABASE_URL`);
    /// `None` when PostgreSQL tests are skipped here (never under CI).
    pub async fn start_postgres() -> Option<Self> {
        Self::start_postgres_with(|_| {}).await
    }

    /// [`Self::start_postgres`] after letting `tweak` adjust the configuration.
    pub async fn start_postgres_with(tweak: impl FnOnce(&mut ServerConfig)) -> Option<Self> {
        let admin_url = gantry_store::testsuite::scratch_pg::admin_url()?;
        let (_, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
        Some(
            Self::start_with(|c| {
                c.database_url = Some(url);
                tweak(c);
            })
            .await,
        )
    }

    /// Starts a server with its reconcilers on test timing: passes every 20-50 ms and
    /// nodes declared lost after 1.5 s of silence.
    pub async fn start_fast() -> Self {
        Self::start_with(fast).await
    }

    /// Starts a server after letting `tweak` adjust its configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_inner(false, tweak).await
    }

    /// Starts a server serving HTTPS, after `tweak`, with a CA and a certificate for
    /// `127.0.0.1` and `localhost` made by `gantry_tls::write_self_signed` (what `gantry
    /// admin tls-selfsigned` writes) in the data dir's `tls/`; [`TestContext::client`]
    /// trusts that CA only.
    pub async fn start_tls_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_inner(true, tweak).await
    }

    async fn start_inner(tls: bool, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        let mut ca_cert = None;
        if tls {
            let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
            let written = gantry_tls::write_self_signed(&dir.path().join("tls"), &hosts, false).expect("certificates");
            config.tls = Some(gantry_tls::CertFiles { cert: written.cert, key: written.key });
            ca_cert = Some(written.ca_cert);
        }
        tweak(&mut config);
        let (database_url, tls) = (config.database_url.clone(), config.tls.clone());
        let server = gantry_server::start(config).await.expect("server starts");
        let base_url = server.base_url();
        Self { server: Some(server), dir, base_url, database_url, tls, ca_cert }
    }

    /// The running server (its store, secret box, and the few hooks tests need).
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }

    /// The server's store.
    pub fn store(&self) -> &Arc<dyn gantry_store::Store> {
        self.server().store()
    }

    /// The server's secret box (what is stored encrypted decrypts with it).
    pub fn secrets(&self) -> &gantry_auth::SecretBox {
        self.server().secrets()
    }

    /// A client with a fresh account and a key of `preset`.
    pub async fn new_account(&self, preset: Preset) -> Client {
        let account = create_account(self.store().as_ref(), "test account", Some("test@example.com".into()))
            .await
            .expect("account");
        self.key_in(account.uuid, preset.permissions(), vec![]).await
    }

    /// A client with a new key in `account`.
    pub async fn key_in(&self, account: AccountId, permissions: Vec<String>, allowed_ips: Vec<String>) -> Client {
        let spec = KeySpec { name: "test key".into(), permissions, allowed_ips, expires_at_ms: None };
        let key = create_in(self.store().as_ref(), self.secrets(), account, spec).await.expect("key");
        self.client(key.public_key, key.secret_key.expect("secret"))
    }

    /// A client for given credentials against this server (trusting its CA over TLS).
    pub fn client(&self, public_key: String, secret_key: String) -> Client {
        let creds = Credentials { base_url: self.base_url.clone(), public_key, secret_key };
        Client::with_ca_cert(creds, self.ca_cert.as_deref()).expect("the test CA loads")
    }

    /// Starts a node agent on the local Docker Engine, owned by a fresh node-preset
    /// account, offering what `spec` says (see `gantry_agent::inventory`).
    pub async fn docker_node(&self, spec: &str) -> docker::DockerNode {
        let client = self.new_account(Preset::Node).await;
        docker::DockerNode::start(client, spec).await
    }

    /// Like [`TestContext::docker_node`], with the runtime's configuration changed by `tweak`.
    pub async fn docker_node_with(
        &self,
        spec: &str,
        tweak: impl Fn(&mut gantry_agent::docker::DockerConfig) + Send + Sync + 'static,
    ) -> docker::DockerNode {
        let client = self.new_account(Preset::Node).await;
        docker::DockerNode::start_with(client, spec, std::sync::Arc::new(tweak)).await
    }

    /// Starts `count` simulated nodes (the fake runtime) owned by a fresh node-preset
    /// account, each offering what `spec` says (see `gantry_agent::inventory`).
    pub async fn sim_nodes(&self, count: usize, spec: &str) -> SimNodes {
        let client = self.new_account(Preset::Node).await;
        SimNodes::start(client, count, spec).await
    }

    /// Inserts a job straight into the store, bypassing API validation: lifecycle tests
    /// use timeouts far below the API's minimums (which are minutes) to run in seconds.
    pub async fn insert_job(&self, account: AccountId, body: serde_json::Value) -> gantry_types::job::Job {
        let mut req: gantry_types::job::CreateJobRequest = serde_json::from_value(body).expect("job body");
        let (assign, start) = (req.max_timeout_assign_ms.take(), req.max_timeout_start_ms.take());
        let run = req.max_timeout_run_ms;
        if run.is_some() {
            req.max_timeout_run_ms = Some(gantry_types::validate::MIN_TIMEOUT_RUN_MS);
        }
        let mut spec = gantry_types::validate::validate_create_job(req).expect("valid apart from timeouts");
        if let Some(ms) = assign {
            spec.max_timeout_assign_ms = ms;
        }
        if let Some(ms) = start {
            spec.max_timeout_start_ms = ms;
        }
        spec.max_timeout_run_ms = run;
        let job = spec.into_job(gantry_types::JobId::new(), account, chrono_now());
        self.store().job_create(&job).await.expect("insert job");
        self.server().wake_scheduler();
        job
    }

    /// Takes the server away for `outage` (agents cannot reach it meanwhile), then
    /// brings it back on the same data dir and port. The sleep is the outage itself,
    /// not a wait for a condition.
    pub async fn outage(&mut self, outage: Duration) {
        let server = self.server.take().expect("running");
        let addr = server.local_addr;
        let database_url = server.store().backend().eq("postgres").then(|| self.database_url.clone()).flatten();
        let timing = server.timing();
        server.shutdown().await.expect("clean shutdown");
        tokio::time::sleep(outage).await;
        let mut config = ServerConfig::new(self.dir.path(), addr);
        config.timing = timing;
        config.database_url = database_url;
        config.tls = self.tls.clone();
        self.server = Some(gantry_server::start(config).await.expect("server restarts"));
    }

    /// Restarts the server on the same data dir and port with the same timing (a
    /// crash-free restart; agents reconnect by themselves).
    pub async fn restart(&mut self) {
        self.outage(Duration::ZERO).await;
    }

    /// Stops the server gracefully.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `deadline` naming `what`.
/// Tests wait with this, never with a bare sleep.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut interval = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// A valid BATCH create-job body in the upstream shape.
pub fn batch_job(title: &str) -> serde_json::Value {
    serde_json::json!({
        "title": title,
        "task": "BATCH",
        "max_timeout_run_ms": 900000,
        "cpu_count": 2,
        "gpu_count": 1,
        "min_vram_gb": 13,
        "min_storage_gb": 20,
        "parameters": {"type": "docker", "parameters": {
            "image": "registry.example.com/team/trainer", "tag": "v3",
            "host": "", "user": "", "secret": "",
            "env": {"EPOCHS": "3"}, "ports": [22, 8080], "allowed_ips": ["0.0.0.0/0"], "volumes": []
        }}
    })
}
