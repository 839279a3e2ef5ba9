//! Black-box tests of the `gantry` binary: the operator commands tooling relies on,
//! the CLI against a live server, graceful SIGTERM, and durability under kill -9.

use std::sync::Arc;
use std::time::Duration;

use gantry_test_harness::{batch_job, wait_for};
use serde_json::Value;
use tokio::process::Command;

mod common;

use common::{GANTRY, cli_as, client, create_key, start_server};

#[tokio::test]
async fn admin_create_key_works_while_the_server_runs_and_the_cli_drives_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    for field in ["public_key", "secret_key", "account_uuid"] {
        assert!(key[field].is_string(), "create-key output lacks {field}: {key}");
    }
    let cli = cli_as(&url, &key, "DISPERSED");
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
async fn the_cli_lists_shows_and_cooks_recipes() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    let cli = cli_as(&url, &key, "GANTRY");
    let dev_box = gantry_types::recipe::catalogue::DEV_BOX_UUID;
    let hello = gantry_types::recipe::catalogue::HELLO_GPU_UUID;
    let out = cli(&["recipes", "list", "--official"]).output().await.unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains(dev_box) && table.contains("SSH dev box") && table.contains("sshkey*"), "{table}");
    let out = cli(&["recipes", "get", dev_box, "--json"]).output().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["uuid"], dev_box);
    let out = cli(&["recipes", "get", dev_box]).output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--input sshkey=..."), "{text}");

    // A missing required input: which one, and how to give it.
    let out = cli(&["recipes", "cook", dev_box]).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("inputs.sshkey") && err.contains("--input KEY=VALUE"), "{err}");

    let out = cli(&["recipes", "cook", hello, "--input", "message=hey", "--env", "X=1", "--title", "mine", "--json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((job["title"].as_str(), job["source_recipe_uuid"].as_str()), (Some("mine"), Some(hello)));
    assert_eq!(job["parameters"]["parameters"]["env"], serde_json::json!({"MESSAGE": "hey", "X": "1"}));
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

    let cli = cli_as(&url, &key, "GANTRY");
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

#[tokio::test]
async fn admin_commands_print_application_errors_as_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "019aaaaa-0000-7000-8000-000000000000";
    let run = |args: &[&str]| {
        let mut cmd = Command::new(GANTRY);
        cmd.args(["admin"]).args(args).arg("--data-dir").arg(dir.path());
        cmd
    };
    // An unknown account is the application layer's NotFound: before, the CLI printed
    // it as `NotFound { message: "..." }`.
    let out = run(&["credit", missing, "1"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().last(), Some(format!("error: no account with uuid {missing}").as_str()), "{stderr}");
    let out = run(&["create-key", "--name", "x", "--preset", "consumer", "--account", missing]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: no account ") && !last.contains('{'), "{stderr}");
}

#[tokio::test]
async fn a_command_piped_into_head_exits_quietly() {
    use tokio::io::AsyncReadExt;
    // The OpenAPI document (over 200 KB) fills the pipe; the reader then goes away, as
    // `gantry openapi | head -c 16` does. Before, println! panicked with "Broken pipe".
    let mut child = Command::new(GANTRY)
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).await.unwrap();
    drop(stdout);
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "nothing on stderr, got: {stderr}");
}

#[tokio::test]
async fn commands_whose_reader_is_gone_exit_quietly() {
    // `gantry version --json | grep -q schema_version` in the package test: grep quits at
    // the first match and the rest of the write meets a closed pipe. Here the reader is
    // gone before the command writes anything, so every write fails the same way.
    let commands: &[&[&str]] = &[&["version"], &["version", "--json"], &["server", "--print-config"]];
    for args in commands {
        let mut child = Command::new(GANTRY)
            .args(*args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "gantry {args:?}: exit {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "gantry {args:?}: nothing on stderr, got: {stderr}");
    }
}

#[tokio::test]
async fn server_logs_are_plain_text_when_stderr_is_not_a_terminal() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(GANTRY)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut logs = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = String::new();
        while let Some(line) = logs.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("gantry server ready") {
                break;
            }
        }
        seen
    })
    .await
    .expect("the server logs that it is ready within 30 s");
    child.kill().await.unwrap();
    assert!(ready.contains("gantry server ready"), "{ready}");
    assert!(!ready.contains('\u{1b}'), "ANSI escape codes in piped logs:\n{ready:?}");
}
