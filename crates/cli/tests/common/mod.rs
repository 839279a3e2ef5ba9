//! Helpers shared by the tests that run the real `gantry` binary.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use gantry_client::{Client, Credentials};
use gantry_test_harness::wait_for;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

pub const GANTRY: &str = env!("CARGO_BIN_EXE_gantry");

/// Starts `gantry server` on a free port; returns the child and its base URL.
pub async fn start_server(data_dir: &Path) -> (Child, String) {
    let mut cmd = Command::new(GANTRY);
    cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).env("RUST_LOG", "warn");
    let (child, url) = serve(cmd).await;
    let health = format!("{url}/healthz");
    wait_for("healthz", Duration::from_secs(10), || async {
        reqwest::get(&health).await.ok().filter(|r| r.status().is_success())
    })
    .await;
    (child, url)
}

/// Spawns `cmd`, a `gantry server` listening on port 0, and returns the child and the
/// URL it printed once listening.
pub async fn serve(cmd: Command) -> (Child, String) {
    spawn_listening(cmd, "gantry server listening on ", Duration::from_secs(30)).await
}

/// Spawns a command that prints `prefix ADDR...` once listening (within `within`);
/// returns the child and the rest of that line. Its stdout is drained from then on, so
/// it never blocks on a full pipe.
pub async fn spawn_listening(mut cmd: Command, prefix: &str, within: Duration) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let rest = tokio::time::timeout(within, async {
        loop {
            let line = lines.next_line().await.unwrap().unwrap_or_else(|| panic!("exited before printing {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{prefix:?} within {within:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, rest)
}

/// `gantry relay` on `listen` for the control plane at `url`, publishing ports
/// `range` on 127.0.0.1 with the TLS certificate in `tls` (`gantry_tls::write_self_signed`),
/// plus `extra` arguments; returns the child and the tunnel address it listens on.
pub async fn start_relay(
    url: &str,
    key: &Value,
    listen: &str,
    range: (u16, u16),
    tls: &Path,
    extra: &[&str],
) -> (Child, String) {
    let mut cmd = Command::new(GANTRY);
    cmd.args(["relay", "--server", url, "--listen", listen, "--public-host", "127.0.0.1", "--bind", "127.0.0.1"])
        .args(["--port-range", &format!("{}-{}", range.0, range.1)])
        .args(extra)
        .arg("--tls-cert")
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"))
        .env("GANTRY_PUBLIC_KEY", key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn");
    let (child, rest) = spawn_listening(cmd, "gantry relay listening on ", Duration::from_secs(60)).await;
    (child, rest.split(';').next().unwrap().to_string())
}

/// `gantry admin create-key ... --json`, as tooling calls it.
pub async fn create_key(data_dir: &Path, preset: &str) -> Value {
    let out = Command::new(GANTRY)
        .args(["admin", "create-key", "--name", "tooling", "--preset", preset, "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "create-key failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("create-key prints one JSON object")
}

pub fn client(url: &str, key: &Value) -> Client {
    Client::new(Credentials {
        base_url: url.to_string(),
        public_key: key["public_key"].as_str().unwrap().into(),
        secret_key: key["secret_key"].as_str().unwrap().into(),
    })
}

/// The CLI as a user runs it: `family` is the credentials' variable prefix
/// (`GANTRY`, or `DISPERSED` as upstream clients set them).
pub fn cli_as<'a>(url: &'a str, key: &'a Value, family: &'a str) -> impl Fn(&[&str]) -> Command + 'a {
    move |args| {
        let mut cmd = Command::new(GANTRY);
        cmd.args(args)
            .env(format!("{family}_API_BASE_URL"), url)
            .env(format!("{family}_PUBLIC_KEY"), key["public_key"].as_str().unwrap())
            .env(format!("{family}_SECRET_KEY"), key["secret_key"].as_str().unwrap());
        cmd
    }
}

/// Removes, when dropped, every container and network of the agent whose state
/// directory is `.0` (its owner id is in `agent.json` there): a failed test leaves
/// nothing running on the Docker Engine.
pub struct DockerLeftovers(pub std::path::PathBuf);

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        let Ok(state) = std::fs::read(self.0.join("agent.json")) else { return };
        let Some(owner) =
            serde_json::from_slice::<Value>(&state).ok().and_then(|v| v["agent_id"].as_str().map(str::to_string))
        else {
            return;
        };
        let docker = |args: &[&str]| {
            let _ =
                std::process::Command::new("docker").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        for container in gantry_test_harness::docker::owned_containers(&owner) {
            docker(&["rm", "-f", &container]);
        }
        for network in gantry_test_harness::docker::owned_networks(&owner) {
            docker(&["network", "rm", &network]);
        }
    }
}
