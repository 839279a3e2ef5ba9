//! The event and webhook commands of the real binary: `gantry jobs create --wait`
//! ends when the job ends (told by the event stream), `gantry events` lists and
//! follows, `gantry webhooks` creates, lists and deletes, and a loopback destination
//! is refused by a server without `--webhooks-allow-private`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

mod common;

use common::{cli_as, create_key, start_server};

#[tokio::test]
async fn wait_follow_list_and_webhooks_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    let cli = cli_as(&url, &key, "GANTRY");

    // `gantry events --follow --json` prints events as they come. From the start of the
    // log (`--after 0`), not from "now": on a loaded machine the process may connect
    // only after the cancel below, and would then wait for an event already past.
    let mut follow = cli(&["events", "--follow", "--json", "--after", "0", "--type", "job.status_changed"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut followed = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();

    // `--wait` blocks until the job ends; cancelling it ends the wait with status 1.
    let wait = cli(&["jobs", "create", "--image", "busybox", "--title", "waited", "--wait", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = common::client(&url, &key);
    let job = gantry_test_harness::wait_for("the waited job to exist", Duration::from_secs(30), || async {
        client.list_jobs(&[]).await.ok()?.data.into_iter().next()
    })
    .await;
    client.cancel_job(job.uuid, "stop waiting").await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), wait.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled job ends --wait with 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (ended["uuid"].as_str(), ended["status"].as_str()),
        (Some(job.uuid.to_string().as_str()), Some("CANCELLED"))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ended CANCELLED"));

    let line = tokio::time::timeout(Duration::from_secs(30), followed.next_line()).await.unwrap().unwrap().unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["data"]["status"].as_str()),
        (Some("job.status_changed"), Some("CANCELLED"))
    );

    // `gantry events` lists the log from the oldest kept.
    let out = cli(&["events", "--json"]).output().await.unwrap();
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<&str> = page["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["job.created", "job.status_changed"]);
    let out = cli(&["events"]).output().await.unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("job.created") && table.contains("CANCELLED"), "{table}");
    let out = cli(&["events", "--type", "job.exploded"]).output().await.unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown event type"));

    // Webhooks: a loopback destination is refused by this server (no flag) ...
    let out = cli(&["webhooks", "create", "--url", "http://127.0.0.1:9/hook"]).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--webhooks-allow-private"), "{err}");
    // ... and nothing was created.
    let out = cli(&["webhooks", "list", "--json"]).output().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["total"], 0);
}
