//! The container image (deploy/docker): built from this test binary with the local
//! Docker Engine, the control plane runs from it (`docker run ... server`), turns
//! healthy through its HEALTHCHECK, hands out keys with `docker exec ... gantry
//! admin`, and an agent on the host completes a job through it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{GANTRY, client};
use gantry_test_harness::docker::{free_port, test_image};
use gantry_test_harness::wait_for;
use gantry_types::job_run::JobRunStatus;
use serde_json::{Value, json};
use tokio::process::Command;

/// Removes what the test made in the Docker Engine, also when it fails.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "-fv", &self.container]).output();
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &self.image]).output();
    }
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("the docker CLI runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_image_runs_the_control_plane_and_a_host_agent_completes_a_job_through_it() {
    test_image().await;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap();
    let id = format!("{}-{}", std::process::id(), free_port());
    let cleanup =
        Cleanup { container: format!("gantry-test-cp-{id}"), image: format!("gantry-test-image-{id}:latest") };
    let built = std::process::Command::new("bash")
        .arg(workspace.join("deploy/docker/build.sh"))
        .args(["--binary", GANTRY, "--tag", &cleanup.image])
        .output()
        .unwrap();
    assert!(built.status.success(), "image build failed: {}", String::from_utf8_lossy(&built.stderr));

    let labels: Value =
        serde_json::from_str(&docker(&["image", "inspect", "--format", "{{json .Config}}", &cleanup.image])).unwrap();
    assert_eq!(labels["Labels"]["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    assert!(labels["Labels"]["org.opencontainers.image.revision"].as_str().is_some_and(|r| r.len() >= 7));
    assert_eq!(labels["Entrypoint"], json!(["gantry"]));
    assert_eq!(labels["User"], "10001:10001", "the server does not run as root");
    assert!(labels["Volumes"]["/var/lib/gantry"].is_object(), "{labels}");
    assert!(labels["Healthcheck"]["Test"].to_string().contains("healthcheck"), "{labels}");

    // The host's network, so the agent on the host and the test reach it on loopback.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    docker(&[
        "run",
        "-d",
        "--name",
        &cleanup.container,
        "--network",
        "host",
        "-e",
        &format!("GANTRY_LISTEN={listen}"),
        "-e",
        &format!("GANTRY_HEALTHCHECK_URL=http://{listen}"),
        "--health-interval",
        "1s",
        "--health-start-period",
        "1s",
        &cleanup.image,
        "server",
    ]);
    let url = format!("http://{listen}");
    wait_for("the container to be healthy", Duration::from_secs(60), || async {
        let status = docker(&["inspect", "--format", "{{.State.Health.Status}}", &cleanup.container]);
        (status == "healthy").then_some(())
    })
    .await;
    let health: Value = reqwest::get(format!("{url}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    // Admin commands run inside the container, on its data volume.
    let key = |preset: &str| -> Value {
        serde_json::from_str(&docker(&[
            "exec",
            &cleanup.container,
            "gantry",
            "admin",
            "create-key",
            "--name",
            preset,
            "--preset",
            preset,
            "--json",
        ]))
        .unwrap()
    };
    let (node_key, consumer_key) = (key("node"), key("consumer"));
    let dir = tempfile::tempdir().unwrap();
    // The agent tells systemd it is ready once its node is registered.
    let notify_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let _agent = Command::new(GANTRY)
        .args(["agent", "--bind", "127.0.0.1", "--advertise-host", "127.0.0.1", "--sync-wait-ms", "300"])
        .args(["--fake-gpus", "cpus=2,ram=4", "--server", &url, "--state-dir"])
        .arg(dir.path().join("state"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("GANTRY_PUBLIC_KEY", node_key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", node_key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(60), notify.recv(&mut buf)).await.expect("READY=1").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1"));
    let state: Value = serde_json::from_slice(&std::fs::read(dir.path().join("state/agent.json")).unwrap()).unwrap();
    assert!(state["node_uuid"].is_string(), "READY=1 came after registration: {state}");
    let consumer = client(&url, &consumer_key);
    let job = consumer
        .create_job(&json!({
            "title": "through the image", "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 1, "gpu_count": 0,
            "parameters": {"type": "docker", "parameters": {"image": "gantry-test/busybox", "tag": "1",
                "env": {"SCRIPT": "echo served-from-the-image; sleep 1"}}}
        }))
        .await
        .unwrap();
    let run = wait_for("the job to finish", Duration::from_secs(90), || async {
        let run = consumer.runs_of_job(job.uuid).await.ok()?.into_iter().next()?;
        let run = consumer.get_job_run(run.uuid).await.ok()?;
        run.status.is_terminal().then_some(run)
    })
    .await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    assert_eq!(run.logs.as_deref(), Some("served-from-the-image\n"));
    drop(cleanup);
}
