//! `--config FILE` for `gantry server` and `gantry agent`: precedence (flags >
//! environment > file > defaults), errors naming file, line and key, `--print-config`
//! with secrets redacted, secrets read from files, and a server started from a file.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

mod common;

use common::GANTRY;

fn gantry() -> Command {
    let mut cmd = Command::new(GANTRY);
    // The tests' own environment must not leak into what they check.
    for var in ["GANTRY_LISTEN", "GANTRY_DATA_DIR", "GANTRY_DATABASE_URL", "GANTRY_SERVER_KEY", "GANTRY_LOG_LEVEL"] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn output(out: std::process::Output) -> (bool, String) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The `key = value   # origin` line of a `--print-config` output.
fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key} in {printed}"))
}

#[tokio::test]
async fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        "# a comment\nlisten = \"127.0.0.1:7001\"\nmax_body_bytes = 2048\nprice_gpu = [\"NVIDIA H100=2.10\"]\n\
         billing_enforce = true\nlog_format = \"json\"\ndatabase_url = \"postgres://gantry:hunter2@db/gantry\"\n",
    )
    .unwrap();
    let out = gantry()
        .args(["server", "--config"])
        .arg(&file)
        .args(["--print-config", "--max-body-bytes", "4096"])
        .env("GANTRY_LISTEN", "127.0.0.1:7002")
        .output()
        .await
        .unwrap();
    let (ok, printed) = output(out);
    assert!(ok, "{printed}");
    assert!(line(&printed, "max_body_bytes").contains("4096") && line(&printed, "max_body_bytes").ends_with("# flag"));
    assert!(line(&printed, "listen").contains("7002") && line(&printed, "listen").ends_with("# environment"));
    assert!(line(&printed, "price_gpu").contains("H100=2.10") && line(&printed, "price_gpu").ends_with("# file"));
    assert!(line(&printed, "billing_enforce").contains("true"), "{printed}");
    assert!(line(&printed, "log_format").contains("json"), "{printed}");
    assert!(line(&printed, "operator_share").ends_with("# default"), "{printed}");
    assert!(!printed.contains("hunter2") && line(&printed, "database_url").contains("<redacted>"), "{printed}");

    // The agent: a secret in the file is redacted; a secret file given as a flag wins
    // over the file's inline secret.
    let agent_file = dir.path().join("agent.toml");
    std::fs::write(&agent_file, "server = \"http://cp:8080\"\npublic_key = \"pk_x\"\nsecret_key = \"sk_very_secret\"\nlabel = [\"tier=gold\", \"rack=3\"]\n").unwrap();
    let out = gantry().args(["agent", "--config"]).arg(&agent_file).arg("--print-config").output().await.unwrap();
    let (ok, printed) = output(out);
    assert!(ok && !printed.contains("sk_very_secret") && printed.contains("tier=gold"), "{printed}");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "sk_from_file\n").unwrap();
    let out = gantry()
        .args(["agent", "--config"])
        .arg(&agent_file)
        .arg("--secret-key-file")
        .arg(&secret_file)
        .arg("--print-config")
        .output()
        .await
        .unwrap();
    let (ok, printed) = output(out);
    assert!(ok && line(&printed, "secret_key_file").ends_with("# flag"), "{printed}");
}

#[tokio::test]
async fn a_bad_file_is_an_error_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("listen = \"127.0.0.1:1\"\n\nlisten_port = 8080\n", ":3: unknown key `listen_port`"),
        ("max_body_bytes = \"lots\"\n", ":1: bad value for `max_body_bytes`"),
        ("listen = \"nowhere\"\n", ":1: bad value for `listen`"),
        ("billing_enforce = \"yes\"\n", "expected true or false"),
        ("price_gpu_default = [\"1\", \"2\"]\n", "got a list"),
        ("listen = \n", "TOML parse error at line 1"),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let (ok, printed) = output(gantry().args(["server", "--config"]).arg(&file).output().await.unwrap());
        assert!(!ok, "{text:?} accepted");
        assert!(printed.contains(&file.display().to_string()) && printed.contains(expected), "{text:?}: {printed}");
    }
    let (ok, printed) =
        output(gantry().args(["server", "--config", "/nonexistent/gantry.toml"]).output().await.unwrap());
    assert!(!ok && printed.contains("/nonexistent/gantry.toml"), "{printed}");
}

#[tokio::test]
async fn a_server_runs_from_its_file_with_the_key_from_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("server.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\nserver_key_file = {:?}\nlog_format = \"json\"\nlog_level = \"info\"\n",
            data.display().to_string(),
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let mut child = gantry()
        .args(["server", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let l = stdout.next_line().await.unwrap().expect("server exited");
            if let Some(url) = l.strip_prefix("gantry server listening on ") {
                return url.to_string();
            }
        }
    })
    .await
    .unwrap();
    assert!(data.join("gantry.db").exists(), "the data dir came from the file");
    assert!(!data.join("server.key").exists(), "the key came from the key file, none was generated");
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    // log_format = "json" from the file: stderr carries JSON lines, one with the
    // request logged at the end (method, route, status, request id).
    let rid = "test-request-0001";
    let _ = reqwest::Client::new().get(format!("{url}/healthz")).header("x-request-id", rid).send().await.unwrap();
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!events.is_empty(), "no JSON log lines: {stderr}");
    let request = events
        .iter()
        .find(|e| e["target"] == "gantry::request" && e["fields"]["request_id"] == rid)
        .unwrap_or_else(|| panic!("no request line with id {rid}: {stderr}"));
    assert_eq!(request["fields"]["method"], "GET");
    assert_eq!(request["fields"]["route"], "/healthz");
    assert_eq!(request["fields"]["status"], 200);
    assert!(request["fields"]["duration_ms"].is_number(), "{request}");
}
