//! Issue 14, black-box through the binaries: a real `gantry server`, a `gantry relay`
//! authenticated with a `relay` preset key, and `gantry agent --simulate 1 --relay`
//! (a simulated node whose ports are real loopback listeners) admitted with the relay
//! token the server issues it. Through the relay: a run's ports answer at the
//! `node_urls` (relay host, public ports from the range, "ssh" for 22); a client outside
//! `allowed_ips` is closed at once; each public port reaches its own run only; the ports
//! of an ended run close within a second, also when the run is cancelled while its
//! node is down (the relay asks the control plane, `POST /v1/relays/ended-runs`); a
//! restarted relay hands out the same ports again; 1,000 connections are carried at
//! once. The namespace NAT test is in `relay_nat.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_client::Client;
use gantry_test_harness::wait_for;
use gantry_types::job_run::{JobRun, JobRunStatus, NodeUrl};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

mod common;

use common::GANTRY;

/// A free range of `n` ports on loopback (probed: nothing listens there now).
fn free_range(n: u16) -> (u16, u16) {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first = probe.local_addr().unwrap().port();
        drop(probe);
        if first < 65_000 - n && (first..first + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (first, first + n - 1);
        }
    }
}

/// `gantry relay` on `listen` for the control plane at `url`, up to 2,000
/// connections per port (the concurrency test holds 1,000).
async fn start_relay(url: &str, key: &Value, listen: &str, range: (u16, u16), tls: &Path) -> (Child, String) {
    common::start_relay(url, key, listen, range, tls, &["--max-connections-per-port", "2000"]).await
}

/// A PERSISTENT simulated job publishing `ports`, admitting `allowed`.
fn job(title: &str, ports: &[u16], allowed: &[&str]) -> Value {
    json!({"title": title, "task": "PERSISTENT", "max_timeout_run_ms": null, "gpu_count": 0, "cpu_count": 1,
           "parameters": {"type": "docker", "parameters": {"image": "busybox", "ports": ports, "allowed_ips": allowed}}})
}

async fn running(client: &Client, job: gantry_types::JobId, urls: usize) -> JobRun {
    wait_for("the run RUNNING with its node_urls", Duration::from_secs(60), || async {
        let runs = client.list_job_runs(&[("filter[job_uuid]".to_string(), job.to_string())]).await.ok()?;
        runs.data.into_iter().find(|r| r.status == JobRunStatus::Running && r.node_urls.len() == urls)
    })
    .await
}

/// Sends an HTTP GET to `url`; the whole answer, or `None` when closed without one.
async fn get(url: &NodeUrl) -> Option<String> {
    let mut stream = TcpStream::connect((url.hostname.as_str(), url.port)).await.ok()?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await.ok()?.ok()?;
    (!answer.is_empty()).then_some(answer)
}

fn by_description<'a>(run: &'a JobRun, description: &str) -> &'a NodeUrl {
    run.node_urls.iter().find(|u| u.description == description).unwrap_or_else(|| panic!("{description}: {run:?}"))
}

#[tokio::test]
async fn a_relay_carries_a_nat_nodes_ports_by_the_rules_of_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tls = dir.path().join("tls");
    gantry_tls::write_self_signed(&tls, &["127.0.0.1".into()], false).unwrap();
    let (_server, url) = common::start_server(&data).await;
    let relay_key = common::create_key(&data, "relay").await;
    let node_key = common::create_key(&data, "node").await;
    let consumer = common::client(&url, &common::create_key(&data, "consumer").await);

    // The relay key reads the token key and nothing else.
    let as_relay = common::client(&url, &relay_key);
    assert_eq!(as_relay.relay_token_key().await.unwrap().format, "v1");
    assert_eq!(as_relay.list_jobs(&[]).await.unwrap_err().status().map(|s| s.as_u16()), Some(403));
    assert_eq!(consumer.relay_token_key().await.unwrap_err().status().map(|s| s.as_u16()), Some(403));

    let range = free_range(40);
    let (mut relay, relay_addr) = start_relay(&url, &relay_key, "127.0.0.1:0", range, &tls).await;
    let (_agent, _) = common::spawn_listening(
        {
            let mut cmd = Command::new(GANTRY);
            cmd.args(["agent", "--server", &url, "--simulate", "1", "--relay", &relay_addr, "--ca-cert"])
                .arg(tls.join("ca.pem"))
                .env("GANTRY_PUBLIC_KEY", node_key["public_key"].as_str().unwrap())
                .env("GANTRY_SECRET_KEY", node_key["secret_key"].as_str().unwrap())
                .env("RUST_LOG", "warn");
            cmd
        },
        "gantry agent: 1 simulated node(s)",
        Duration::from_secs(60),
    )
    .await;

    // A run with [22, 8080] admitting loopback: both answer through the relay.
    let open = consumer.create_job(&job("open", &[22, 8080], &["127.0.0.1/32"])).await.unwrap();
    let run = running(&consumer, open.uuid, 2).await;
    let (ssh, http) = (by_description(&run, "ssh").clone(), by_description(&run, "8080").clone());
    for u in [&ssh, &http] {
        assert_eq!((u.hostname.as_str(), u.protocol.as_str(), u.tls), ("127.0.0.1", "tcp", false), "{u:?}");
        assert!((range.0..=range.1).contains(&u.port), "a public port of the relay: {u:?}");
    }
    let banner = wait_for("the ssh banner through the relay", Duration::from_secs(20), || async {
        let mut s = TcpStream::connect(("127.0.0.1", ssh.port)).await.ok()?;
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut line)).await.ok()?.ok()?;
        (!line.is_empty()).then_some(line)
    })
    .await;
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
    let page = get(&http).await.expect("the run's HTTP port answers through the relay");
    assert!(page.contains(&format!("simulated run {}: port 8080 is up", run.uuid)), "{page}");

    // A run admitting only other networks: loopback is closed at once, unanswered.
    let closed = consumer.create_job(&job("closed", &[8080], &["10.0.0.0/8", "2001:db8::/32"])).await.unwrap();
    let closed_run = running(&consumer, closed.uuid, 1).await;
    let started = Instant::now();
    assert_eq!(get(&closed_run.node_urls[0]).await, None, "a client outside allowed_ips got an answer");
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not after a timeout");

    // Another admitted run: its public port reaches its own run, never the first.
    let other = consumer.create_job(&job("other", &[8080], &["0.0.0.0/0"])).await.unwrap();
    let other_run = running(&consumer, other.uuid, 1).await;
    assert_ne!(other_run.node_urls[0].port, http.port);
    let page = get(&other_run.node_urls[0]).await.unwrap();
    assert!(page.contains(&format!("simulated run {}", other_run.uuid)) && !page.contains(&run.uuid.to_string()));

    // 1,000 connections at once through one public port: each sends half a request
    // (the simulated port waits for the whole head), then all finish and are answered.
    let mut held = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut s = TcpStream::connect(("127.0.0.1", other_run.node_urls[0].port)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let mut answers = tokio::task::JoinSet::new();
    for mut s in held {
        answers.spawn(async move {
            s.write_all(b"host: x\r\n\r\n").await.ok()?;
            let mut answer = String::new();
            tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut answer)).await.ok()?.ok()?;
            answer.starts_with("HTTP/1.1 200").then_some(())
        });
    }
    let answered = answers.join_all().await.iter().filter(|a| a.is_some()).count();
    assert_eq!(answered, 1000, "every held connection was answered");

    // The relay restarts on the same address: the agent reconnects, and the same
    // node_urls work again.
    relay.kill().await.unwrap();
    let (_relay, _) = start_relay(&url, &relay_key, &relay_addr, range, &tls).await;
    let again =
        wait_for("the same public port after the relay restarted", Duration::from_secs(40), || get(&http)).await;
    assert!(again.contains(&run.uuid.to_string()), "{again}");

    // The run ends: its ports close within a second of the end being recorded.
    consumer.cancel_job(open.uuid, "done").await.unwrap();
    wait_for("the run to end", Duration::from_secs(30), || async {
        let r = consumer.get_job_run(run.uuid).await.ok()?;
        r.status.is_terminal().then_some(())
    })
    .await;
    wait_for("its public ports to close", Duration::from_secs(1), || async {
        let (a, b) =
            (TcpStream::connect(("127.0.0.1", http.port)).await, TcpStream::connect(("127.0.0.1", ssh.port)).await);
        (a.is_err() && b.is_err()).then_some(())
    })
    .await;
    // The other run is untouched (republished on its own after the relay restarted:
    // waited for, since only the first run's port was waited for above).
    wait_for("the other run's port, untouched", Duration::from_secs(30), || get(&other_run.node_urls[0])).await;
}

/// The node's agent is killed (its tunnel goes with it), then the run is cancelled:
/// its job goes CANCELLING and the run stays RUNNING, since no agent confirms the
/// stop; the relay learns of the end from the control plane and closes the public
/// port within about a second, freeing it for reuse.
async fn cancelled_while_the_node_is_down(consumer: &Client, mut agent: Child, run: &JobRun) {
    let url = &run.node_urls[0];
    agent.kill().await.unwrap();
    // Bound, and refusing (no tunnel behind it), until the relay hears of the end.
    assert!(TcpStream::connect((url.hostname.as_str(), url.port)).await.is_ok(), "still bound before the cancel");
    consumer.cancel_job(run.job_uuid, "done").await.unwrap();
    let cancelled = Instant::now();
    wait_for("the public port to close after the cancel", Duration::from_millis(1500), || async {
        TcpStream::connect((url.hostname.as_str(), url.port)).await.is_err().then_some(())
    })
    .await;
    let took = cancelled.elapsed();
    assert_eq!(consumer.get_job_run(run.uuid).await.unwrap().status, JobRunStatus::Running, "nobody stopped it");
    std::net::TcpListener::bind((url.hostname.as_str(), url.port)).expect("the closed public port is free again");
    eprintln!("the public port closed {took:?} after the cancel");
}

#[tokio::test]
async fn a_relay_closes_the_port_of_a_run_cancelled_while_its_node_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tls = dir.path().join("tls");
    gantry_tls::write_self_signed(&tls, &["127.0.0.1".into()], false).unwrap();
    let (_server, url) = common::start_server(&data).await;
    let relay_key = common::create_key(&data, "relay").await;
    let node_key = common::create_key(&data, "node").await;
    let consumer = common::client(&url, &common::create_key(&data, "consumer").await);
    let as_relay = common::client(&url, &relay_key);
    let range = free_range(10);
    let (_relay, relay_addr) = start_relay(&url, &relay_key, "127.0.0.1:0", range, &tls).await;
    let agent = start_agent(&url, &node_key, &relay_addr, &tls).await;
    let created = consumer.create_job(&job("ends", &[8080], &["127.0.0.1"])).await.unwrap();
    let run = running(&consumer, created.uuid, 1).await;
    assert!(get(&run.node_urls[0]).await.is_some_and(|page| page.contains(&run.uuid.to_string())));

    // What the relay asks: a running run has not ended; an unknown one has.
    let unknown = gantry_types::JobRunId::new();
    let answer = as_relay.relay_ended_runs(&[run.uuid, unknown]).await.unwrap();
    assert_eq!(answer.ended, [unknown]);
    // Only a relay key may ask; the runs are uuids, at most 1,000.
    let status = |e: gantry_client::ClientError| e.status().map(|s| s.as_u16());
    assert_eq!(consumer.relay_ended_runs(&[run.uuid]).await.map_err(status).unwrap_err(), Some(403));
    let ask = |body: Value| {
        let as_relay = as_relay.clone();
        async move { as_relay.send::<Value>(reqwest::Method::POST, "/v1/relays/ended-runs", &[], Some(&body)).await }
    };
    for (body, field) in [
        (json!({"runs": [run.uuid.to_string(), "not-a-uuid"]}), "runs[1]"),
        (json!({"runs": "x"}), "runs"),
        (json!({"runs": vec![run.uuid.to_string(); 1001]}), "runs"),
        (json!({}), "body"),
    ] {
        let e = ask(body.clone()).await.unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{body}: {e}");
        assert!(e.to_string().contains(&format!("\n  {field}: ")), "{body}: names {field}: {e}");
    }

    cancelled_while_the_node_is_down(&consumer, agent, &run).await;
    let answer = as_relay.relay_ended_runs(&[run.uuid]).await.unwrap();
    assert_eq!(answer.ended, [run.uuid], "cancelling counts as ended");
}

/// `gantry agent --simulate 1` for the node key `key`, through the relay at `relay`.
async fn start_agent(url: &str, key: &Value, relay: &str, tls: &Path) -> Child {
    let mut cmd = Command::new(GANTRY);
    cmd.args(["agent", "--server", url, "--simulate", "1", "--relay", relay, "--ca-cert"])
        .arg(tls.join("ca.pem"))
        .env("GANTRY_PUBLIC_KEY", key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn");
    common::spawn_listening(cmd, "gantry agent: 1 simulated node(s)", Duration::from_secs(60)).await.0
}

#[tokio::test]
async fn a_relay_refuses_a_key_without_the_relay_preset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tls = dir.path().join("tls");
    gantry_tls::write_self_signed(&tls, &["127.0.0.1".into()], false).unwrap();
    let (_server, url) = common::start_server(&data).await;
    let consumer = common::create_key(&data, "consumer").await;
    let out = Command::new(GANTRY)
        .args([
            "relay",
            "--server",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--public-host",
            "x",
            "--port-range",
            "40000-40001",
        ])
        .arg("--tls-cert")
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"))
        .env("GANTRY_PUBLIC_KEY", consumer["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", consumer["secret_key"].as_str().unwrap())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("relay` preset key"), "{text}");
}

#[tokio::test]
async fn an_agent_relay_must_be_host_and_port_or_auto() {
    let out = Command::new(GANTRY)
        .args(["agent", "--public-key", "pk", "--secret-key", "sk", "--simulate", "1", "--relay", "relay.test"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("HOST:PORT"), "{text}");
}

/// `gantry bench relay` runs end to end and prints its figures (small sizes: the
/// figures themselves are for release builds).
#[tokio::test]
async fn bench_relay_prints_its_figures() {
    let out = Command::new(GANTRY)
        .args(["bench", "relay", "--mib", "1", "--rounds", "3", "--round-trips", "20", "--connections", "20", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(figures["connections_held"], 20, "{figures}");
    for key in ["ratio_relay_to_direct", "added_latency_p50_ms", "throughput_direct_mib_s"] {
        assert!(figures[key].as_f64().is_some_and(f64::is_finite), "{key}: {figures}");
    }
    // The ratio is the median of the rounds' own ratios.
    let rounds = figures["throughput_rounds"].as_array().expect("throughput_rounds");
    let mut ratios: Vec<f64> = rounds.iter().map(|r| r["ratio"].as_f64().unwrap()).collect();
    ratios.sort_by(f64::total_cmp);
    assert_eq!(ratios.len(), 3, "{figures}");
    assert_eq!(figures["ratio_relay_to_direct"].as_f64(), Some(ratios[1]), "{figures}");
    assert_eq!(figures["ratio_min"].as_f64(), Some(ratios[0]), "{figures}");
    assert_eq!(figures["ratio_max"].as_f64(), Some(ratios[2]), "{figures}");
}

/// `gantry server --relay`: the control plane runs a relay in its own process over its
/// TLS certificate and offers it in sync answers; `gantry agent --relay auto` uses it.
#[tokio::test]
async fn a_server_relay_is_offered_to_agents_with_relay_auto() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tls = dir.path().join("tls");
    gantry_tls::write_self_signed(&tls, &["127.0.0.1".into()], false).unwrap();
    let range = free_range(10);
    let mut cmd = Command::new(GANTRY);
    cmd.args(["server", "--listen", "127.0.0.1:0", "--relay", "--relay-listen", "127.0.0.1:0"])
        .args(["--relay-public-host", "127.0.0.1", "--relay-bind", "127.0.0.1"])
        .args(["--relay-port-range", &format!("{}-{}", range.0, range.1), "--tls-cert"])
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"))
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn");
    let (_server, url) = common::serve(cmd).await;
    let key = |k: &Value| gantry_client::Credentials {
        base_url: url.clone(),
        public_key: k["public_key"].as_str().unwrap().into(),
        secret_key: k["secret_key"].as_str().unwrap().into(),
    };
    let node_key = common::create_key(&data, "node").await;
    let consumer =
        Client::with_ca_cert(key(&common::create_key(&data, "consumer").await), Some(&tls.join("ca.pem"))).unwrap();
    let agent = start_agent(&url, &node_key, "auto", &tls).await;
    let created = consumer.create_job(&job("auto", &[8080], &["127.0.0.1"])).await.unwrap();
    let run = running(&consumer, created.uuid, 1).await;
    let u = &run.node_urls[0];
    assert!((range.0..=range.1).contains(&u.port), "the server's relay carries it: {u:?}");
    let page = wait_for("the run through the server's relay", Duration::from_secs(20), || get(u)).await;
    assert!(page.contains(&run.uuid.to_string()), "{page}");
    // The relay in the server's process learns of ended runs from the store.
    cancelled_while_the_node_is_down(&consumer, agent, &run).await;
}
