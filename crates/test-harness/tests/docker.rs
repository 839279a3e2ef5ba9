//! The Docker agent end to end: real containers on the local Docker Engine, private
//! images from a loopback registry behind htpasswd, jobs submitted through the
//! client crate in the upstream shape.

use std::time::Duration;

use gantry_client::Client;
use gantry_test_harness::docker::{Registry, test_image};
use gantry_test_harness::{TestContext, wait_for};
use gantry_types::JobId;
use gantry_types::job::JobStatus;
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::permissions::Preset;
use serde_json::{Value, json};

const NODE: &str = "cpus=4,ram=8,disk=50";

/// A BATCH job running `script` in the test image (or `image`/`tag` in `params`).
fn job(script: &str, params: Value) -> Value {
    let mut p = json!({"image": "gantry-test/busybox", "tag": "1", "env": {"SCRIPT": script}, "ports": []});
    for (k, v) in params.as_object().cloned().unwrap_or_default() {
        p[k] = v;
    }
    json!({
        "title": "docker test", "task": "BATCH", "max_timeout_run_ms": 900000,
        "cpu_count": 1, "gpu_count": 0, "min_ram_gb": 1,
        "parameters": {"type": "docker", "parameters": p}
    })
}

async fn only_run(client: &Client, job: JobId) -> JobRun {
    wait_for("the job's run", Duration::from_secs(20), || async {
        client.runs_of_job(job).await.unwrap().into_iter().next()
    })
    .await
}

async fn run_until(client: &Client, job: JobId, what: &str, done: impl Fn(&JobRun) -> bool) -> JobRun {
    let run = only_run(client, job).await;
    wait_for(what, Duration::from_secs(60), || async {
        let r = client.get_job_run(run.uuid).await.unwrap();
        done(&r).then_some(r)
    })
    .await
}

async fn final_run(client: &Client, job: JobId) -> JobRun {
    run_until(client, job, "the run to end", |r| r.status.is_terminal()).await
}

async fn job_until(client: &Client, job: JobId, status: JobStatus) -> gantry_types::job::Job {
    wait_for(&format!("the job to be {status:?}"), Duration::from_secs(30), || async {
        let j = client.get_job(job).await.unwrap();
        (j.status == status).then_some(j)
    })
    .await
}

#[tokio::test]
async fn env_token_and_exit_code_reach_the_container_and_come_back() {
    test_image().await;
    let ctx = TestContext::start_fast().await;
    let _node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let script = r#"echo "token=$CONTAINER_ACCESS_TOKEN"; echo "ssh=$SSH_PUBKEY"; echo "job=$GANTRY_JOB_UUID";
                    echo "mine=$MY_VAR"; echo oops >&2; exit 3"#;
    let body = job(script, json!({"env": {"SCRIPT": script, "MY_VAR": "forty two"}, "sshkey": "ssh-ed25519 AAAAtest"}));
    let created = client.create_job(&body).await.unwrap();
    let run = final_run(&client, created.uuid).await;
    assert_eq!(run.status, JobRunStatus::Failed, "{run:?}");
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.status_reason.as_deref(), Some("container exited with code 3"));
    let logs = run.logs.clone().unwrap_or_default();
    let token = &run.container_access_tokens[0].token;
    assert!(token.len() >= 32, "a real token: {token:?}");
    assert!(logs.contains(&format!("token={token}")), "{logs}");
    assert!(logs.contains("ssh=ssh-ed25519 AAAAtest"), "{logs}");
    assert!(logs.contains(&format!("job={}", created.uuid)), "{logs}");
    assert!(logs.contains("mine=forty two"), "{logs}");
    assert!(logs.contains("oops"), "stderr is kept too: {logs}");
    job_until(&client, created.uuid, JobStatus::Failed).await;
}

#[tokio::test]
async fn a_clean_exit_completes_and_logs_stay_after_the_container_is_gone() {
    let image = test_image().await;
    let ctx = TestContext::start_fast().await;
    let node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let created = client.create_job(&job("for i in 1 2 3; do echo line $i; done", json!({}))).await.unwrap();
    let run = final_run(&client, created.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.logs.as_deref(), Some("line 1\nline 2\nline 3\n"));
    assert!(run.started_at_ms.is_some() && run.ended_at_ms.is_some());
    // The container is removed once its outcome is recorded; the logs stay.
    wait_for("the container to be removed", Duration::from_secs(20), || async { node.containers().is_empty().then_some(()) })
        .await;
    let mut resp = client.run_logs(run.uuid, false).await.unwrap();
    let mut text = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(text).unwrap(), "line 1\nline 2\nline 3\n");
    let job = job_until(&client, created.uuid, JobStatus::Completed).await;
    assert!(job.image_size_bytes.unwrap_or(0) > 0, "image size recorded: {:?} ({image})", job.image_size_bytes);
}
