//! Several control-plane instances: clients and agents that know several
//! (`base_url` / `gantry agent --server` listing them) skip a refused instance at
//! once, and an agent whose instance goes away carries on with another, keeping its
//! runs and never being declared lost; instances on one PostgreSQL tell each other of
//! placements (an agent long-polling on one sees a job placed by another at once) and
//! of revoked keys (refused everywhere within a second, not after the cache's 5 s),
//! and of new output (a log follower on one streams what a node delivered to
//! another); one of them leads the reconcilers, and another takes over when it stops.

use std::time::Duration;

use gantry_client::{Client, Credentials};
use gantry_server::ServerConfig;
use gantry_test_harness::{SimNodes, TestContext, fast, wait_for};
use gantry_types::job::JobStatus;
use gantry_types::node::NodeStatus;
use gantry_types::permissions::Preset;
use serde_json::json;

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The node of a one-node account, as the API shows it.
async fn the_node(client: &Client) -> Option<gantry_types::node::Node> {
    let page: gantry_types::list::ListResponse<gantry_types::node::Node> =
        client.send(reqwest::Method::GET, "/v1/nodes", &[], None).await.ok()?;
    page.data.into_iter().next()
}

fn with_base_url(client: &Client, base_url: String) -> Client {
    Client::new(Credentials { base_url, ..client.credentials().clone() })
}

#[tokio::test]
async fn a_client_skips_an_instance_that_refuses_connections() {
    let ctx = TestContext::start().await;
    let alice = ctx.new_account(Preset::Consumer).await;
    let live = alice.credentials().base_url.clone();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let client = with_base_url(&alice, format!("{dead}, {live}/"));
    assert_eq!(client.current_base_url(), dead);
    // The refused request is re-signed and sent to the next instance: it succeeds,
    // and the client stays there.
    let job = client.create_job(&gantry_test_harness::batch_job("failed over")).await.unwrap();
    assert_eq!(client.current_base_url(), live);
    assert_eq!(client.get_job(job.uuid).await.unwrap().uuid, job.uuid);
    assert_eq!(alice.list_jobs(&[]).await.unwrap().total, 1, "sent once");
    ctx.shutdown().await;
}

/// Two instances on a fresh PostgreSQL database with one key and test timing; the
/// second is returned bare, the first as a context (accounts, keys).
async fn two_instances() -> Option<(TestContext, gantry_server::RunningServer, tempfile::TempDir, String)> {
    let admin_url = gantry_store::testsuite::scratch_pg::admin_url()?;
    let (database, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    let key = hex::encode(gantry_auth::SecretBox::generate_key());
    let first = TestContext::start_with(|c| {
        fast(c);
        c.database_url = Some(url.clone());
        c.server_key = Some(key.clone());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    fast(&mut config);
    config.database_url = Some(url);
    config.server_key = Some(key);
    let second = gantry_server::start(config).await.unwrap();
    Some((first, second, dir, database))
}

async fn drop_database(database: &str) {
    let admin_url = gantry_store::testsuite::scratch_pg::admin_url().expect("set");
    gantry_store::testsuite::scratch_pg::drop_database(&admin_url, database).await;
}

#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_by_another_within_a_second() {
    let Some((first, second, _dir, database)) = two_instances().await else { return };
    let alice = first.new_account(Preset::Consumer).await;
    let on_second = with_base_url(&alice, format!("http://{}", second.local_addr));
    // Used (and so cached) on the second instance first.
    on_second.list_jobs(&[]).await.unwrap();
    let keys = alice.list_api_keys(&[]).await.unwrap();
    alice.revoke_api_key(keys.data[0].uuid).await.unwrap();
    let revoked = std::time::Instant::now();
    wait_for("the second instance to refuse the revoked key", Duration::from_secs(5), || async {
        (on_second.list_jobs(&[]).await.err()?.status() == Some(reqwest::StatusCode::UNAUTHORIZED)).then_some(())
    })
    .await;
    assert!(revoked.elapsed() < Duration::from_secs(1), "refused after {:?}", revoked.elapsed());
    second.shutdown().await.unwrap();
    first.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn an_agent_fails_over_to_another_instance_and_keeps_its_runs() {
    let Some((first, second, _dir, database)) = two_instances().await else { return };
    let (a, b) = (first.server().local_addr, second.local_addr);

    let node_key = first.new_account(Preset::Node).await;
    let nodes =
        SimNodes::start(with_base_url(&node_key, format!("http://{a},http://{b}")), 1, "1xNVIDIA RTX 4090:24").await;
    let user = with_base_url(&first.new_account(Preset::Consumer).await, format!("http://{b}"));
    let body = json!({"title": "long", "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1, "gpu_count": 1,
        "parameters": {"type": "docker", "parameters": {"image": "busybox", "env": {"GANTRY_SIM_DURATION_MS": "600000"}}}});
    // Submitted on the second instance, placed by either: the agent, long-polling on
    // the first, hears of it through the database's notifications.
    let job = user.create_job(&body).await.unwrap();
    wait_for("the job to run", Duration::from_secs(20), || async {
        user.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Running)
    })
    .await;
    assert_eq!(nodes.client.current_base_url(), format!("http://{a}"), "the agent starts on the first instance");

    // The first instance goes away; the agent's next sync goes to the second.
    first.shutdown().await;
    let node = wait_for("the agent to sync with the second instance", Duration::from_secs(10), || async {
        (nodes.client.current_base_url() == format!("http://{b}")).then_some(())?;
        the_node(&nodes.client).await
    })
    .await;
    // Three loss windows (1.5 s each) of heartbeats through the second instance.
    let since = node.last_seen_at.expect("seen").0;
    let node = wait_for("heartbeats past three loss windows", Duration::from_secs(20), || async {
        let n = the_node(&nodes.client).await?;
        (n.last_seen_at?.0 > since + 4_500).then_some(n)
    })
    .await;
    assert_eq!(node.status, NodeStatus::Online, "the node was never declared lost");
    assert_eq!(user.get_job(job.uuid).await.unwrap().status, JobStatus::Running, "its run kept running");
    let runs = user.runs_of_job(job.uuid).await.unwrap();
    assert_eq!(runs.len(), 1, "no second run: {runs:?}");

    nodes.stop().await;
    second.shutdown().await.unwrap();
    drop_database(&database).await;
}

#[tokio::test]
async fn a_follower_on_one_instance_streams_output_delivered_to_another() {
    let Some((first, second, _dir, database)) = two_instances().await else { return };
    let (a, b) = (first.server().local_addr, second.local_addr);
    // The node talks to the first instance only; the follower reads from the second.
    let node_key = first.new_account(Preset::Node).await;
    let nodes = SimNodes::start(with_base_url(&node_key, format!("http://{a}")), 1, "1xNVIDIA RTX 4090:24").await;
    let user = first.new_account(Preset::Consumer).await;
    let on_second = with_base_url(&user, format!("http://{b}"));
    let body = json!({"title": "chatty", "task": "PERSISTENT", "max_timeout_run_ms": null, "cpu_count": 1,
        "gpu_count": 1, "parameters": {"type": "docker", "parameters": {"image": "busybox",
        "env": {"GANTRY_SIM_OUTPUT_EVERY_MS": "200"}}}});
    let job = user.create_job(&body).await.unwrap();
    let run = wait_for("the run to be running", Duration::from_secs(20), || async {
        let runs = user.runs_of_job(job.uuid).await.ok()?;
        runs.into_iter().find(|r| r.status == gantry_types::job_run::JobRunStatus::Running)
    })
    .await;

    let mut resp = on_second.run_logs(run.uuid, true).await.unwrap();
    let opened = std::time::Instant::now();
    let mut text = String::new();
    let lines = |text: &str| text.lines().filter(|l| l.starts_with("simulated output ")).count();
    let mut at_open = None;
    // Three more lines than the follower found stored, well within the 5 s a follower
    // waits before rereading the store without being told: the notification did it.
    while at_open.is_none_or(|n| lines(&text) < n + 3) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.expect("output streams");
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the run is still going")));
        at_open.get_or_insert(lines(&text));
    }
    assert!(opened.elapsed() < Duration::from_secs(4), "new output took {:?}", opened.elapsed());
    user.cancel_job(job.uuid, "done watching").await.unwrap();
    while let Some(chunk) =
        tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.expect("the stream ends").unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Every line once, in order, nothing skipped: positions, not guesses.
    let mut expected = vec!["simulated run of busybox:latest started".to_string()];
    expected.extend((1..=lines(&text)).map(|i| format!("simulated output {i}")));
    expected.push("simulated run stopped".into());
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");

    nodes.stop().await;
    second.shutdown().await.unwrap();
    first.shutdown().await;
    drop_database(&database).await;
}

async fn health(addr: std::net::SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{addr}/healthz")).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn one_instance_leads_and_another_takes_over_when_it_stops() {
    let Some((first, second, _dir, database)) = two_instances().await else { return };
    let (a, b) = (first.server().local_addr, second.local_addr);
    let (ha, hb) = (health(a).await, health(b).await);
    assert_eq!((ha["role"].as_str(), hb["role"].as_str()), (Some("leader"), Some("follower")), "{ha} {hb}");
    assert_eq!((ha["backend"].as_str(), hb["backend"].as_str()), (Some("postgres"), Some("postgres")));
    assert_ne!(ha["instance"], hb["instance"]);

    let user = with_base_url(&first.new_account(Preset::Consumer).await, format!("http://{b}"));
    let node_key = first.new_account(Preset::Node).await;
    first.shutdown().await;
    let stopped = std::time::Instant::now();
    wait_for("the second instance to lead", Duration::from_secs(10), || async {
        (health(b).await["role"] == "leader").then_some(())
    })
    .await;
    let took_over = stopped.elapsed();
    // The new leader schedules: a node and a job arriving now meet.
    let nodes = SimNodes::start(with_base_url(&node_key, format!("http://{b}")), 1, "1xNVIDIA RTX 4090:24").await;
    let body = json!({"title": "after the change", "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1,
        "gpu_count": 1, "parameters": {"type": "docker", "parameters": {"image": "busybox",
        "env": {"GANTRY_SIM_DURATION_MS": "100"}}}});
    let job = user.create_job(&body).await.unwrap();
    wait_for("the job to complete under the new leader", Duration::from_secs(20), || async {
        user.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Completed)
    })
    .await;
    assert!(took_over < Duration::from_secs(5), "took over after {took_over:?}");
    nodes.stop().await;
    second.shutdown().await.unwrap();
    drop_database(&database).await;
}
