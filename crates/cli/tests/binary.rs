//! Black-box tests of the `gantry` binary: the operator commands tooling relies on,
//! the CLI against a live server, graceful SIGTERM, and durability under kill -9.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gantry_client::{Client, Credentials};
use gantry_test_harness::{batch_job, wait_for};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

const GANTRY: &str = env!("CARGO_BIN_EXE_gantry");

/// Starts `gantry server` on a free port; returns the child and its base URL.
async fn start_server(data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(GANTRY)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gantry server starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("server exited before listening");
            if let Some(url) = line.strip_prefix("gantry server listening on ") {
                return url.to_string();
            }
        }
    })
    .await
    .expect("server listens within 30 s");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let health = format!("{url}/healthz");
    wait_for("healthz", Duration::from_secs(10), || async {
        reqwest::get(&health).await.ok().filter(|r| r.status().is_success())
    })
    .await;
    (child, url)
}

/// `gantry admin create-key ... --json`, as tooling calls it.
async fn create_key(data_dir: &Path, preset: &str) -> Value {
    let out = Command::new(GANTRY)
        .args(["admin", "create-key", "--name", "tooling", "--preset", preset, "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "create-key failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("create-key prints one JSON object")
}

fn client(url: &str, key: &Value) -> Client {
    Client::new(Credentials {
        base_url: url.to_string(),
        public_key: key["public_key"].as_str().unwrap().into(),
        secret_key: key["secret_key"].as_str().unwrap().into(),
    })
}

#[tokio::test]
async fn admin_create_key_works_while_the_server_runs_and_the_cli_drives_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    for field in ["public_key", "secret_key", "account_uuid"] {
        assert!(key[field].is_string(), "create-key output lacks {field}: {key}");
    }
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(GANTRY);
        cmd.args(args)
            .env("DISPERSED_API_BASE_URL", &url)
            .env("DISPERSED_PUBLIC_KEY", key["public_key"].as_str().unwrap())
            .env("DISPERSED_SECRET_KEY", key["secret_key"].as_str().unwrap());
        cmd
    };
    let out =
        cli(&["jobs", "create", "--image", "busybox", "--title", "from the cli", "--json"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "PENDING");
    let uuid = job["uuid"].as_str().unwrap();

    let out = cli(&["jobs", "list"]).output().await.unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains(uuid) && table.contains("from the cli") && table.contains("1 of 1 job(s)"), "{table}");
    let out = cli(&["jobs", "get", uuid, "--json"]).output().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["uuid"], uuid);
    let out = cli(&["jobs", "cancel", uuid, "--reason", "demo over", "--json"]).output().await.unwrap();
    let cancelled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["status_reason"].as_str()),
        (Some("CANCELLED"), Some("demo over"))
    );

    // A bad request tells the user which field, and exits non-zero.
    let out = cli(&["jobs", "create", "--image", "busybox", "--cpus=-1"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cpu_count"), "{}", String::from_utf8_lossy(&out.stderr));
    // Missing credentials say what to do.
    let out = Command::new(GANTRY).args(["jobs", "list"]).env_clear().output().await.unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PUBLIC_KEY is not set"));

    // SIGTERM: graceful exit with status 0.
    let pid = server.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait()).await.unwrap().unwrap();
    assert!(status.success(), "server exited with {status} on SIGTERM");
}

#[tokio::test]
async fn kill_9_during_concurrent_submits_loses_no_acknowledged_job() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    let client = client(&url, &key);
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let submitters: Vec<_> = (0..32)
        .map(|i| {
            let (client, acknowledged, stop) = (client.clone(), acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client.create_job(&batch_job(&format!("c{i}-{n}"))).await {
                        Ok(job) => acknowledged.lock().unwrap().push(job.uuid),
                        Err(_) => break, // the server is gone
                    }
                    n += 1;
                }
            })
        })
        .collect();
    wait_for("a few hundred acknowledged jobs", Duration::from_secs(30), || {
        let n = acknowledged.lock().unwrap().len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    server.start_kill().unwrap(); // SIGKILL, mid-flight
    server.wait().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in submitters {
        s.await.unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();

    let (_server, url) = start_server(dir.path()).await;
    let client = self::client(&url, &key);
    let total = client.list_jobs(&[]).await.unwrap().total;
    assert!(total >= acked.len() as u64, "{total} jobs stored, {} acknowledged", acked.len());
    for id in &acked {
        client.get_job(*id).await.unwrap_or_else(|e| panic!("acknowledged job {id} lost: {e}"));
    }
}

#[tokio::test]
async fn admin_credit_works_while_the_server_runs_and_the_cli_shows_the_balance() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    let account = key["account_uuid"].as_str().unwrap();
    let admin = |args: &[&str]| {
        let mut cmd = Command::new(GANTRY);
        cmd.args(["admin", "credit", "--data-dir"]).arg(dir.path()).args(args);
        cmd
    };
    let out = admin(&[account, "12.5", "--json"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let granted: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(granted["posted_balance_micros"], 12_500_000);
    for bad in ["-3", "abc", "0"] {
        let out = admin(&[account, bad]).output().await.unwrap();
        assert!(!out.status.success(), "{bad} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("AMOUNT"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = admin(&["019aaaaa-0000-7000-8000-000000000000", "1"]).output().await.unwrap();
    assert!(!out.status.success(), "an unknown account cannot be credited");

    let cli = |args: &[&str]| {
        let mut cmd = Command::new(GANTRY);
        cmd.args(args)
            .env("GANTRY_API_BASE_URL", &url)
            .env("GANTRY_PUBLIC_KEY", key["public_key"].as_str().unwrap())
            .env("GANTRY_SECRET_KEY", key["secret_key"].as_str().unwrap());
        cmd
    };
    let out = cli(&["balance", "--json"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let balance: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((balance["available_balance"].as_f64(), balance["currency"].as_str()), (Some(12.5), Some("USD")));
    let out = cli(&["balance"]).output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("available 12.500000 USD") && text.contains("CREDIT"), "{text}");
    let out = cli(&["offers", "--json"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["total"], 0, "no nodes, no offers");
}
