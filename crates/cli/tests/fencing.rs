//! Fencing with real processes: two `gantry server`s on one PostgreSQL database; the
//! leader is frozen with SIGSTOP past its lease, the other takes over, and when the
//! old leader resumes (SIGCONT) its loops write nothing and it steps down.
//!
//! The old leader is set up to want a write on resuming: while it is frozen, a node
//! fills up under the new leader with a job the old one never heard of placed, and a
//! second job waits for room. The old leader's model still sees the node free, so
//! its scheduler, if it runs before its lease check, plans the second job onto it;
//! only the fence stops that placement (it would over-commit the node).

mod common;

use std::time::Duration;

use gantry_test_harness::{SimNodes, wait_for};
use gantry_types::job::JobStatus;
use serde_json::{Value, json};
use tokio::process::Command;

use common::{GANTRY, client, serve};

/// The lease's TTL (`background::leader::LEASE_TTL`) is 3 s; frozen this long, the
/// leader has surely lost it.
const FROZEN: Duration = Duration::from_secs(8);

/// Starts an instance; `key_file`: the first instance's key (the first one creates
/// it in its data dir).
async fn start(
    dir: &std::path::Path,
    url: &str,
    key_file: Option<&std::path::Path>,
) -> (tokio::process::Child, String) {
    let mut cmd = Command::new(GANTRY);
    cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir).args(["--database-url", url]);
    if let Some(key_file) = key_file {
        cmd.arg("--secret-key-file").arg(key_file);
    }
    cmd.env("RUST_LOG", "warn");
    let (child, base) = serve(cmd).await;
    wait_for("healthz", Duration::from_secs(20), || async { role(&base).await }).await;
    (child, base)
}

async fn role(base: &str) -> Option<String> {
    let health: Value = reqwest::get(format!("{base}/healthz")).await.ok()?.json().await.ok()?;
    health["role"].as_str().map(str::to_string)
}

async fn create_key(dir: &std::path::Path, url: &str, preset: &str) -> Value {
    let out = Command::new(GANTRY)
        .args(["admin", "create-key", "--name", "fencing", "--preset", preset, "--json", "--data-dir"])
        .arg(dir)
        .args(["--database-url", url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "create-key failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn gpu_job(title: &str) -> Value {
    json!({"title": title, "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1, "gpu_count": 1,
        "parameters": {"type": "docker", "parameters": {"image": "busybox", "env": {"GANTRY_SIM_DURATION_MS": "600000"}}}})
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_resumes() {
    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (database, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, url_a) = start(dir_a.path(), &url, None).await;
    assert_eq!(role(&url_a).await.as_deref(), Some("leader"));
    let (mut b, url_b) = start(dir_b.path(), &url, Some(&dir_a.path().join("server.key"))).await;
    assert_eq!(role(&url_b).await.as_deref(), Some("follower"));

    let user = client(&url_b, &create_key(dir_a.path(), &url, "consumer").await);
    let nodes =
        SimNodes::start(client(&url_b, &create_key(dir_a.path(), &url, "node").await), 1, "1xNVIDIA RTX 4090:24").await;
    wait_for("the node to register", Duration::from_secs(20), || async {
        let page: gantry_types::list::ListResponse<gantry_types::node::Node> =
            nodes.client.send(reqwest::Method::GET, "/v1/nodes", &[], None).await.ok()?;
        (page.total == 1).then_some(())
    })
    .await;

    signal(&a, "-STOP");
    let frozen = std::time::Instant::now();
    // Submitted while the leader is frozen: placed by the second instance once it
    // takes over; the second job waits (the node has one GPU).
    let first = user.create_job(&gpu_job("placed by the new leader")).await.unwrap();
    wait_for("the second instance to take over", Duration::from_secs(20), || async {
        (role(&url_b).await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    let took_over = frozen.elapsed();
    wait_for("the new leader to place the first job", Duration::from_secs(20), || async {
        user.get_job(first.uuid).await.ok().filter(|j| j.status != JobStatus::Pending)
    })
    .await;
    let second = user.create_job(&gpu_job("no room")).await.unwrap();
    tokio::time::sleep(FROZEN.saturating_sub(frozen.elapsed())).await;

    signal(&a, "-CONT");
    wait_for("the old leader to step down", Duration::from_secs(10), || async {
        (role(&url_a).await.as_deref() == Some("follower")).then_some(())
    })
    .await;
    // Room for anything the old leader's loops were about to do on resuming.
    let settled = std::time::Instant::now();
    wait_for("a few passes of every loop", Duration::from_secs(10), || async {
        (settled.elapsed() > Duration::from_secs(3)).then_some(())
    })
    .await;

    assert_eq!(role(&url_b).await.as_deref(), Some("leader"), "the new leader keeps leading");
    let second_now = user.get_job(second.uuid).await.unwrap();
    assert_eq!(second_now.status, JobStatus::Pending, "nobody placed the job that does not fit: {second_now:?}");
    assert!(user.runs_of_job(second.uuid).await.unwrap().is_empty(), "no run for the second job");
    let runs = user.runs_of_job(first.uuid).await.unwrap();
    assert_eq!(runs.len(), 1, "one run for the first job: {runs:?}");
    let metrics = reqwest::get(format!("{url_a}/metrics")).await.unwrap().text().await.unwrap();
    let fenced: Vec<&str> = metrics.lines().filter(|l| l.starts_with("gantry_leader_fenced_writes_total")).collect();
    eprintln!("took over after {took_over:?}; old leader's fenced writes: {fenced:?}");

    nodes.stop().await;
    let _ = a.kill().await;
    let _ = b.kill().await;
    gantry_store::testsuite::scratch_pg::drop_database(&admin_url, &database).await;
}
