//! The integration-test harness: boots the real server in process on an ephemeral
//! port with its own temp data dir, hands out signed clients for fresh accounts, and
//! waits with deadlines instead of sleeps.
//!
//! Tests talk to the server only through `gantry-client`, the crate users run, so
//! what passes here is what users get.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_client::{Client, Credentials};
use gantry_server::app::api_keys::{KeySpec, create_account, create_in};
use gantry_server::state::AppState;
use gantry_server::{RunningServer, ServerConfig};
use gantry_types::AccountId;
use gantry_types::permissions::Preset;

/// A running server and its data dir (kept until the context drops).
pub struct TestContext {
    server: Option<RunningServer>,
    /// The data dir.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
}

impl TestContext {
    /// Starts a server on SQLite in a fresh temp dir.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh PostgreSQL database (from `GANTRY_TEST_DATABASE_URL`);
    /// `None` when PostgreSQL tests are skipped here (never under CI).
    pub async fn start_postgres() -> Option<Self> {
        let admin_url = gantry_store::testsuite::scratch_pg::admin_url()?;
        let (_, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
        Some(Self::start_with(|c| c.database_url = Some(url)).await)
    }

    /// Starts a server after letting `tweak` adjust its configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        tweak(&mut config);
        let server = gantry_server::start(config).await.expect("server starts");
        let base_url = format!("http://{}", server.local_addr);
        Self { server: Some(server), dir, base_url }
    }

    /// The server's state (store, secret box).
    pub fn state(&self) -> &Arc<AppState> {
        &self.server.as_ref().expect("running").state
    }

    /// A client with a fresh account and a key of `preset`.
    pub async fn new_account(&self, preset: Preset) -> Client {
        let account = create_account(self.state().store.as_ref(), "test account", Some("test@example.com".into()))
            .await
            .expect("account");
        self.key_in(account.uuid, preset.permissions(), vec![]).await
    }

    /// A client with a new key in `account`.
    pub async fn key_in(&self, account: AccountId, permissions: Vec<String>, allowed_ips: Vec<String>) -> Client {
        let spec = KeySpec { name: "test key".into(), permissions, allowed_ips, expires_at_ms: None };
        let key = create_in(self.state().store.as_ref(), &self.state().secrets, account, spec).await.expect("key");
        self.client(key.public_key, key.secret_key.expect("secret"))
    }

    /// A client for given credentials against this server.
    pub fn client(&self, public_key: String, secret_key: String) -> Client {
        Client::new(Credentials { base_url: self.base_url.clone(), public_key, secret_key })
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
