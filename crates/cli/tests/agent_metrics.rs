//! `gantry agent --metrics-listen`: the real binary on the local Docker Engine serves
//! its own metrics, which pass `promtool check metrics` and move with work: a run
//! that starts (container starts, the pretended GPU it holds at utilisation 1 with
//! all its memory used), a run whose image cannot be pulled (a failed start, a pull
//! timed as an error), syncs timed. Fake GPUs export no temperature.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{GANTRY, client, create_key, start_server};
use gantry_test_harness::docker::{free_port, test_image};
use gantry_test_harness::prom::{promtool, run_promtool, samples, value};
use gantry_test_harness::wait_for;
use serde_json::json;
use tokio::process::Command;

#[tokio::test]
async fn the_agent_serves_metrics_that_move_with_its_work() {
    test_image().await;
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(&dir.path().join("server")).await;
    let node_key = create_key(&dir.path().join("server"), "node").await;
    let consumer = client(&url, &create_key(&dir.path().join("server"), "consumer").await);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _agent = Command::new(GANTRY)
        .args([
            "agent",
            "--bind",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
            "--stop-grace-secs",
            "1",
            "--allow-private-registries",
        ])
        .args(["--sync-wait-ms", "300", "--fake-gpus", "1xNVIDIA RTX 4090:24,cpus=2,ram=4", "--state-dir"])
        .arg(dir.path().join("agent"))
        .args(["--metrics-listen", &metrics_addr])
        .env("GANTRY_API_BASE_URL", &url)
        .env("GANTRY_PUBLIC_KEY", node_key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", node_key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("gantry agent starts");
    let scrape = || async {
        let resp = reqwest::get(format!("http://{metrics_addr}/metrics")).await.ok()?;
        resp.status().is_success().then_some(())?;
        resp.text().await.ok()
    };
    let wait = Duration::from_secs(60);

    let script = "echo up; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done";
    let running = consumer
        .create_job(&json!({
            "title": "holds the GPU", "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 1, "gpu_count": 1,
            "parameters": {"type": "docker", "parameters": {"image": "gantry-test/busybox", "tag": "1",
                "env": {"SCRIPT": script}}}
        }))
        .await
        .unwrap();
    let busy = wait_for("the started container and its GPU in the agent's metrics", wait, || async {
        let text = scrape().await?;
        let s = samples(&text);
        (value(&s, "gantry_agent_container_starts_total", &[("outcome", "started")]) == 1.0
            && value(&s, "gantry_agent_gpu_utilization_ratio", &[("gpu", "0")]) == 1.0)
            .then_some(text)
    })
    .await;
    let s = samples(&busy);
    assert_eq!(value(&s, "gantry_agent_gpu_memory_total_bytes", &[("gpu", "0")]), 24e9);
    assert_eq!(value(&s, "gantry_agent_gpu_memory_used_bytes", &[("gpu", "0")]), 24e9);
    assert!(value(&s, "gantry_agent_sync_duration_seconds_count", &[("outcome", "ok")]) >= 1.0);
    assert!(!busy.contains("gantry_agent_gpu_temperature_celsius{"), "fake GPUs report no temperature");
    assert!(!busy.contains(&running.uuid.to_string()), "no job or run ids in metrics");

    // An image from a registry that does not answer: the pull fails, so does the start.
    consumer.cancel_job(running.uuid, "make room").await.unwrap();
    let unreachable = format!("127.0.0.1:{}", free_port());
    consumer
        .create_job(&json!({
            "title": "never pulls", "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 1, "gpu_count": 0,
            "parameters": {"type": "docker", "parameters": {"image": "t/busybox", "tag": "1", "host": unreachable}}
        }))
        .await
        .unwrap();
    let failed = wait_for("the failed pull and start", wait, || async {
        let text = scrape().await?;
        let s = samples(&text);
        (value(&s, "gantry_agent_container_starts_total", &[("outcome", "failed")]) == 1.0
            && value(&s, "gantry_agent_image_pull_duration_seconds_count", &[("outcome", "error")]) == 1.0)
            .then_some(text)
    })
    .await;
    if let Some(promtool) = promtool() {
        run_promtool(&promtool, &["check", "metrics"], &failed).await;
    }
}
