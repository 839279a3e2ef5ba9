//! The Docker agent end to end: real containers on the local Docker Engine, private
//! images from a loopback registry behind htpasswd, jobs submitted through the
//! client crate in the upstream shape.

use std::time::Duration;

use gantry_client::Client;
use gantry_test_harness::docker::{Registry, busybox_job, only_run, start_for_containers, test_image};
use gantry_test_harness::wait_for;
use gantry_types::JobId;
use gantry_types::job::JobStatus;
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::permissions::Preset;
use serde_json::{Value, json};

const NODE: &str = "cpus=4,ram=8,disk=50";

/// A BATCH job running `script` in the test image (or `image`/`tag` in `params`).
fn job(script: &str, params: Value) -> Value {
    busybox_job("docker test", script, params)
}

async fn run_until(client: &Client, job: JobId, what: &str, done: impl Fn(&JobRun) -> bool) -> JobRun {
    gantry_test_harness::docker::run_until(client, job, what, Duration::from_secs(60), done).await
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
    let ctx = start_for_containers().await;
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
    let ctx = start_for_containers().await;
    let node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let created = client.create_job(&job("for i in 1 2 3; do echo line $i; done", json!({}))).await.unwrap();
    let run = final_run(&client, created.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.logs.as_deref(), Some("line 1\nline 2\nline 3\n"));
    assert!(run.started_at_ms.is_some() && run.ended_at_ms.is_some());
    // The container is removed once its outcome is recorded; the logs stay.
    wait_for("the container to be removed", Duration::from_secs(20), || async {
        node.containers().is_empty().then_some(())
    })
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

/// Test-image params for a private copy pushed to `registry` as `repo`.
fn private(registry: &Registry, repo: &str, user: &str, secret: &str) -> Value {
    json!({"image": repo, "tag": "1", "host": registry.host, "user": user, "secret": secret})
}

#[tokio::test]
async fn private_images_pull_with_good_credentials_and_fail_clearly_otherwise() {
    let image = test_image().await;
    let registry = Registry::start().await;
    let repo = format!("t{}/busybox", uuid::Uuid::new_v4().simple());
    registry.push(&image, &repo, "1").await;
    let ctx = start_for_containers().await;
    let _node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;

    let good = client
        .create_job(&job("echo pulled privately", private(&registry, &repo, &registry.user, &registry.password)))
        .await
        .unwrap();
    let bad = client
        .create_job(&job("echo never", private(&registry, &repo, &registry.user, "wrong-password")))
        .await
        .unwrap();
    let missing = client
        .create_job(&job("echo never", private(&registry, "nobody/nothing", &registry.user, &registry.password)))
        .await
        .unwrap();
    let unreachable_host = format!("127.0.0.1:{}", gantry_test_harness::docker::free_port());
    let unreachable = client
        .create_job(&job("echo never", json!({"image": "t/busybox", "tag": "1", "host": unreachable_host})))
        .await
        .unwrap();

    let run = final_run(&client, good.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    assert_eq!(run.logs.as_deref(), Some("pulled privately\n"));
    let run = final_run(&client, bad.uuid).await;
    assert_eq!(run.status, JobRunStatus::Failed);
    let reason = run.status_reason.unwrap_or_default();
    assert!(reason.contains("rejected the credentials"), "{reason}");
    assert!(!reason.contains("wrong-password"), "the secret never shows: {reason}");
    let run = final_run(&client, missing.uuid).await;
    assert_eq!(run.status, JobRunStatus::Failed);
    let reason = run.status_reason.unwrap_or_default();
    assert!(reason.contains("not found"), "{reason}");
    let run = final_run(&client, unreachable.uuid).await;
    assert_eq!(run.status, JobRunStatus::Failed);
    let reason = run.status_reason.unwrap_or_default();
    assert!(reason.contains("unreachable"), "{reason}");
}

#[tokio::test]
async fn a_hanging_registry_fails_the_run_within_its_start_timeout_and_preparing_can_be_cancelled() {
    test_image().await;
    let (host, _server) = gantry_test_harness::docker::silent_server().await;
    let ctx = start_for_containers().await;
    let _node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let account = client.me().await.unwrap().uuid;
    // Below the API's minimum start timeout, so inserted directly.
    let mut body = job("echo never", json!({"image": "hang/img", "tag": "1", "host": host}));
    body["max_timeout_start_ms"] = json!(3000);
    let timed = ctx.insert_job(account, body).await;
    let run = final_run(&client, timed.uuid).await;
    assert_eq!(run.status, JobRunStatus::Failed);
    let reason = run.status_reason.unwrap_or_default();
    assert!(reason.contains("start timeout"), "{reason}");

    let cancelled =
        client.create_job(&job("echo never", json!({"image": "hang/img2", "tag": "1", "host": host}))).await.unwrap();
    run_until(&client, cancelled.uuid, "PREPARING", |r| r.status == JobRunStatus::Preparing).await;
    client.cancel_job(cancelled.uuid, "changed my mind").await.unwrap();
    let run = final_run(&client, cancelled.uuid).await;
    assert_eq!(run.status, JobRunStatus::Cancelled, "{run:?}");
    job_until(&client, cancelled.uuid, JobStatus::Cancelled).await;
}

#[tokio::test]
async fn cancel_stops_a_running_container_with_sigterm_then_sigkill() {
    test_image().await;
    let ctx = start_for_containers().await;
    let node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let polite = client
        .create_job(&job("trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.1; done", json!({})))
        .await
        .unwrap();
    let stubborn =
        client.create_job(&job("trap '' TERM; echo started; while true; do sleep 0.1; done", json!({}))).await.unwrap();
    for job in [polite.uuid, stubborn.uuid] {
        run_until(&client, job, "the container to print", |r| r.logs.as_deref().unwrap_or("").contains("started"))
            .await;
        client.cancel_job(job, "stop it").await.unwrap();
    }
    let cancelled_at = std::time::Instant::now();
    let run = final_run(&client, polite.uuid).await;
    assert_eq!(run.status, JobRunStatus::Cancelled, "{run:?}");
    assert!(run.logs.unwrap_or_default().contains("got TERM"), "SIGTERM reaches the process first");
    let run = final_run(&client, stubborn.uuid).await;
    assert_eq!(run.status, JobRunStatus::Cancelled, "{run:?}");
    // The node's grace period is 2 s: a process ignoring SIGTERM is killed after it.
    assert!(cancelled_at.elapsed() >= Duration::from_millis(1500), "killed only after the grace period");
    job_until(&client, stubborn.uuid, JobStatus::Cancelled).await;
    wait_for("the containers to be removed", Duration::from_secs(20), || async {
        node.containers().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_run_timeout_stops_the_container() {
    test_image().await;
    let ctx = start_for_containers().await;
    let node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let account = client.me().await.unwrap().uuid;
    let mut body = job("echo started; while true; do sleep 0.1; done", json!({}));
    body["max_timeout_run_ms"] = json!(2000);
    let created = ctx.insert_job(account, body).await;
    let run = final_run(&client, created.uuid).await;
    assert_eq!(run.status, JobRunStatus::Failed);
    assert!(run.status_reason.unwrap_or_default().contains("run timeout"));
    job_until(&client, created.uuid, JobStatus::Failed).await;
    wait_for("the container to be stopped and removed", Duration::from_secs(20), || async {
        node.containers().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn volumes_bring_the_file_tree_of_a_private_image() {
    test_image().await;
    let registry = Registry::start().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let local =
        gantry_test_harness::docker::file_image("gantry-test/model", &tag, &[("weights/w.txt", "w=42\n")]).await;
    registry.push(&local, "models/w", "1").await;
    let ctx = start_for_containers().await;
    let _node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let volume = json!([{"image": "models/w", "tag": "1", "registry": registry.host, "user": registry.user,
                          "secret": registry.password, "mount": "/mnt/model"}]);
    let created = client.create_job(&job("cat /mnt/model/weights/w.txt", json!({"volumes": volume}))).await.unwrap();
    let run = final_run(&client, created.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    assert_eq!(run.logs.as_deref(), Some("w=42\n"));
    let _ = gantry_test_harness::docker::docker()
        .remove_image(&local, None::<bollard::query_parameters::RemoveImageOptions>, None)
        .await;
}

#[tokio::test]
async fn ports_are_published_behind_the_allow_list() {
    test_image().await;
    let ctx = start_for_containers().await;
    let _node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let script = "mkdir -p /www && echo hello-port > /www/index.html && httpd -f -p 8080 -h /www";
    let params = json!({"ports": [22, 8080], "allowed_ips": ["127.0.0.1/32"]});
    let created = client.create_job(&job(script, params)).await.unwrap();
    let run = run_until(&client, created.uuid, "RUNNING with ports", |r| {
        r.status == JobRunStatus::Running && r.node_urls.len() == 2
    })
    .await;
    let ssh = run.node_urls.iter().find(|u| u.description == "ssh").expect("port 22 is ssh");
    let http = run.node_urls.iter().find(|u| u.description == "8080").expect("port 8080");
    assert_eq!((http.hostname.as_str(), http.protocol.as_str(), http.tls), ("127.0.0.1", "tcp", false));
    assert_ne!(ssh.port, http.port);
    // From an allowed source the container answers (httpd may need a moment to listen).
    let url = format!("http://127.0.0.1:{}/", http.port);
    let body = wait_for("the service behind the port", Duration::from_secs(20), || async {
        let resp = reqwest::get(&url).await.ok()?;
        resp.text().await.ok()
    })
    .await;
    assert_eq!(body, "hello-port\n");
    // From 127.0.0.2, outside 127.0.0.1/32, the connection is closed at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let refused = match socket.connect(format!("127.0.0.1:{}", http.port).parse().unwrap()).await {
        Err(_) => true,
        Ok(mut stream) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut buf = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
            matches!(read, Ok(Ok(0)) | Ok(Err(_))) && buf.is_empty()
        }
    };
    assert!(refused, "a source outside allowed_ips gets nothing");
    client.cancel_job(created.uuid, "done").await.unwrap();
    final_run(&client, created.uuid).await;
}

#[tokio::test]
async fn containers_no_run_claims_are_swept() {
    let image = test_image().await;
    let ctx = start_for_containers().await;
    let node = ctx.docker_node(NODE).await;
    let orphan_run = gantry_types::JobRunId::new();
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "--name", &format!("gantry-{orphan_run}"), "--label"])
        .arg(format!("gantry.owner={}", node.owner))
        .args(["--label", &format!("gantry.run={orphan_run}"), "-e", "SCRIPT=sleep 1000", &image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the orphan to be stopped and removed", Duration::from_secs(30), || async {
        node.containers().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn logs_follow_streams_output_until_the_run_ends() {
    test_image().await;
    let ctx = start_for_containers().await;
    let _node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let created =
        client.create_job(&job("for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done", json!({}))).await.unwrap();
    let run = only_run(&client, created.uuid).await;
    let mut resp = client.run_logs(run.uuid, true).await.unwrap();
    let mut text = String::new();
    let mut chunks = 0;
    while let Some(chunk) =
        tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await.expect("stream moves").unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
        chunks += 1;
    }
    assert_eq!(text, "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n");
    assert!(chunks > 1, "output arrived while the run went on, not all at the end");
    let other = ctx.new_account(Preset::Consumer).await;
    let err = other.run_logs(run.uuid, true).await.unwrap_err();
    assert_eq!(err.status(), Some(gantry_client::StatusCode::NOT_FOUND));
}

#[tokio::test]
async fn containers_keep_running_while_the_control_plane_is_away_and_report_when_it_is_back() {
    test_image().await;
    let mut ctx = start_for_containers().await;
    let _node = ctx.docker_node(NODE).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let created = client.create_job(&job("echo start; sleep 2; echo end", json!({}))).await.unwrap();
    run_until(&client, created.uuid, "RUNNING", |r| r.status == JobRunStatus::Running).await;
    // The container ends while nobody can hear about it (the outage is shorter than
    // the 5 s node-loss window, so the node is not declared lost).
    ctx.outage(Duration::from_secs(3)).await;
    let run = final_run(&client, created.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    assert_eq!(run.logs.as_deref(), Some("start\nend\n"), "output produced during the outage arrives, once");
    job_until(&client, created.uuid, JobStatus::Completed).await;
}
