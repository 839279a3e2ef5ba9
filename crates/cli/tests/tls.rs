//! Issue 14 point 4, black-box through the binary: `gantry admin tls-selfsigned`
//! writes a CA and a server certificate, `gantry server --tls-cert --tls-key` serves
//! HTTPS with them, the CLI and the agent (`--ca-cert` / `GANTRY_CA_CERT`) verify it,
//! and a CLI without the CA is refused with a message saying what to pass.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use gantry_test_harness::wait_for;
use serde_json::Value;
use tokio::process::{Child, Command};

mod common;

use common::{GANTRY, create_key};

fn gantry() -> Command {
    let mut cmd = Command::new(GANTRY);
    for var in ["GANTRY_CA_CERT", "GANTRY_TLS_CERT", "GANTRY_TLS_KEY", "GANTRY_API_BASE_URL", "GANTRY_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `gantry server` over TLS on a free port; the child and the URL it printed.
async fn start_tls_server(data_dir: &Path, tls: &Path) -> (Child, String) {
    let mut cmd = gantry();
    cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--tls-cert")
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"));
    common::serve(cmd).await
}

#[tokio::test]
async fn a_selfsigned_tls_server_is_used_by_the_cli_and_an_agent_that_trust_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let out = gantry()
        .args(["admin", "tls-selfsigned", "--host", "127.0.0.1", "--host", "localhost", "--out"])
        .arg(&tls)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ca.pem"), "{}", text(&out));
    let ca = tls.join("ca.pem");

    let data = dir.path().join("data");
    let consumer = create_key(&data, "consumer").await;
    let node = create_key(&data, "node").await;
    let (_server, url) = start_tls_server(&data, &tls).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let as_consumer = |args: &[&str]| {
        let mut cmd = gantry();
        cmd.args(args)
            .env("GANTRY_API_BASE_URL", &url)
            .env("GANTRY_PUBLIC_KEY", consumer["public_key"].as_str().unwrap())
            .env("GANTRY_SECRET_KEY", consumer["secret_key"].as_str().unwrap());
        cmd
    };

    // Without the CA: refused, and told what to pass.
    let out = as_consumer(&["me"]).output().await.unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--ca-cert"), "{}", text(&out));
    // With it, as a flag or from the environment.
    let out = as_consumer(&["me", "--json", "--ca-cert"]).arg(&ca).output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["object"], "user");
    let out = as_consumer(&["admin", "healthcheck", "--url", &url]).env("GANTRY_CA_CERT", &ca).output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // A simulated node syncing over TLS runs a job submitted through the CLI.
    let _agent = gantry()
        .args(["agent", "--simulate", "1", "--sync-wait-ms", "200", "--server", &url])
        .env("GANTRY_PUBLIC_KEY", node["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", node["secret_key"].as_str().unwrap())
        .env("GANTRY_CA_CERT", &ca)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let job = tls.join("job.json");
    std::fs::write(
        &job,
        r#"{"title": "over tls", "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1,
            "parameters": {"type": "docker", "parameters": {"image": "busybox",
            "env": {"GANTRY_SIM_DURATION_MS": "200"}}}}"#,
    )
    .unwrap();
    let out = as_consumer(&["jobs", "create", "--json", "--file"])
        .arg(&job)
        .env("GANTRY_CA_CERT", &ca)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let uuid = created["uuid"].as_str().unwrap().to_string();
    wait_for("the job to complete on the agent syncing over TLS", Duration::from_secs(60), || async {
        let out = as_consumer(&["jobs", "get", &uuid, "--json"]).env("GANTRY_CA_CERT", &ca).output().await.ok()?;
        let job: Value = serde_json::from_slice(&out.stdout).ok()?;
        (job["status"] == "COMPLETED").then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_server_refuses_to_start_with_a_bad_certificate_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("server.pem"), "not a certificate\n").unwrap();
    std::fs::write(tls.join("server.key"), "not a key\n").unwrap();
    let out = gantry()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("server.pem holds no PEM certificate"), "{}", text(&out));
    // --tls-cert without --tls-key is a usage error.
    let out = gantry().args(["server", "--tls-cert", "x.pem"]).output().await.unwrap();
    assert!(!out.status.success() && text(&out).contains("--tls-key"), "{}", text(&out));
}
