//! Issue 14 point 5: a node that really has no inbound path. The agent runs in a
//! network namespace of its own behind a veth pair, with a MASQUERADE rule for its
//! subnet as on a home router and a firewall in the namespace that drops every TCP
//! SYN coming in on its link (answers to its own outbound connections pass). A listener in
//! the namespace is then unreachable from outside, yet the run's port answers through
//! the relay the agent dialled out to. Two nodes: a simulated one, and a real Docker
//! agent whose run is reached through the relay and stays reachable across a restart
//! of the agent.
//!
//! The Docker agent in the namespace talks to the host's Docker Engine through its
//! socket (a file: namespaces of the network do not hide it); the containers live on
//! the host's bridges, so the agent reaches a container's port on its bridge address
//! through the host, which forwards the namespace's subnet to the agent's network pool
//! only (one `DOCKER-USER` rule the test adds and removes: Docker's `FORWARD` rules
//! admit nothing new into a bridge but published ports). Nothing else of the host is
//! reachable from the agent that the relay could be pointed at.
//!
//! Needs root, `ip` and `iptables` (and Docker for the second test): skipped with a
//! message where they are missing, unless `GANTRY_REQUIRE_NETNS=1` (which `.ci/run`
//! sets). The namespace, the veth pair and the rules carry this process's id and are
//! removed when the test ends, also when it fails.

use std::process::Stdio;
use std::time::Duration;

use gantry_test_harness::wait_for;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

mod common;

use common::GANTRY;

/// Runs a setup command, failing the test with its output when it fails.
fn sh(args: &[&str]) {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Whether this machine can build the namespace; `Err` says what is missing.
fn netns_available() -> Result<(), String> {
    let uid = std::process::Command::new("id").arg("-u").output().map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    for (tool, flag) in [("ip", "-V"), ("iptables", "--version")] {
        let found = std::process::Command::new(tool).arg(flag).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !found.is_ok_and(|s| s.success()) {
            return Err(format!("{tool} is not installed (apt-get install iproute2 iptables)"));
        }
    }
    Ok(())
}

/// The namespace and its links; dropping it removes them (and the host's rules).
struct Nat {
    ns: String,
    host_if: String,
    node_if: String,
    subnet: String,
    host_ip: String,
    node_ip: String,
    /// The agent's Docker network pool the host forwards the subnet to, if any.
    pool: Option<String>,
}

impl Nat {
    /// The namespace `tag` of this process (each test of the file makes its own).
    fn create(tag: u32) -> Self {
        let id = std::process::id();
        let octet = 16 + ((id * 2 + tag) % 200);
        let nat = Nat {
            ns: format!("gantry-nat-{id}-{tag}"),
            host_if: format!("gnh{}{tag}", id % 100_000),
            node_if: format!("gnn{}{tag}", id % 100_000),
            subnet: format!("10.231.{octet}.0/24"),
            host_ip: format!("10.231.{octet}.1"),
            node_ip: format!("10.231.{octet}.2"),
            pool: None,
        };
        // Leftovers of an earlier run with the same id.
        nat.remove();
        let node_if = nat.node_if.clone();
        sh(&["ip", "netns", "add", &nat.ns]);
        sh(&["ip", "link", "add", &nat.host_if, "type", "veth", "peer", "name", &node_if]);
        sh(&["ip", "link", "set", &node_if, "netns", &nat.ns]);
        sh(&["ip", "addr", "add", &format!("{}/24", nat.host_ip), "dev", &nat.host_if]);
        sh(&["ip", "link", "set", &nat.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", nat.ns.as_str()];
            all.extend_from_slice(args);
            sh(&all);
        };
        inside(&["ip", "link", "set", "lo", "up"]);
        inside(&["ip", "addr", "add", &format!("{}/24", nat.node_ip), "dev", &node_if]);
        inside(&["ip", "link", "set", &node_if, "up"]);
        inside(&["ip", "route", "add", "default", "via", &nat.host_ip]);
        sh(&["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", &nat.subnet, "-j", "MASQUERADE"]);
        nat
    }

    /// Drops every connection opened from outside into the namespace (what NAT does
    /// to a node): inbound TCP SYNs on its link. Stateless, so the answers to its own
    /// outbound connections (SYN+ACK and on) pass.
    fn block_inbound(&self) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "iptables",
            "-A",
            "INPUT",
            "-i",
            &self.node_if,
            "-p",
            "tcp",
            "--syn",
            "-j",
            "DROP",
        ]);
    }

    /// Lets the namespace reach containers on the agent's Docker network `pool` (and
    /// nothing else of the host's bridges).
    fn forward_to_containers(&mut self, pool: &str) {
        sh(&["iptables", "-I", "DOCKER-USER", "-s", &self.subnet, "-d", pool, "-j", "ACCEPT"]);
        self.pool = Some(pool.to_string());
    }

    fn remove(&self) {
        let quiet = |args: &[&str]| {
            let _ = std::process::Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if let Some(pool) = &self.pool {
            quiet(&["iptables", "-D", "DOCKER-USER", "-s", &self.subnet, "-d", pool, "-j", "ACCEPT"]);
        }
        quiet(&["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", &self.subnet, "-j", "MASQUERADE"]);
        quiet(&["ip", "netns", "del", &self.ns]);
        quiet(&["ip", "link", "del", &self.host_if]);
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Skips (with the reason) where the namespace cannot be built, unless required.
fn skip() -> bool {
    if let Err(why) = netns_available() {
        assert!(std::env::var("GANTRY_REQUIRE_NETNS").as_deref() != Ok("1"), "GANTRY_REQUIRE_NETNS=1 but {why}");
        eprintln!("skipping the NAT namespace test: {why} (GANTRY_REQUIRE_NETNS=1 makes this a failure)");
        return true;
    }
    false
}

/// The control plane and a relay outside the namespace, on the host's end of the
/// veth pair (the agent dials both out); the relay's public ports are on loopback.
struct Plane {
    dir: tempfile::TempDir,
    url: String,
    relay_addr: String,
    node_key: serde_json::Value,
    consumer: gantry_client::Client,
    /// The relay's public port range.
    first: u16,
    last: u16,
    _server: tokio::process::Child,
    _relay: tokio::process::Child,
}

impl Plane {
    async fn start(nat: &Nat) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let tls = dir.path().join("tls");
        gantry_tls::write_self_signed(&tls, &["127.0.0.1".into(), nat.host_ip.clone()], false).unwrap();
        let mut cmd = Command::new(GANTRY);
        cmd.args(["server", "--listen", &format!("{}:0", nat.host_ip), "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn");
        let (server, url) = common::serve(cmd).await;
        let relay_key = common::create_key(&data, "relay").await;
        let node_key = common::create_key(&data, "node").await;
        let consumer = common::client(&url, &common::create_key(&data, "consumer").await);

        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first = probe.local_addr().unwrap().port().min(65_000);
        drop(probe);
        let last = first + 9;
        let listen = format!("{}:0", nat.host_ip);
        let (relay, relay_addr) = common::start_relay(&url, &relay_key, &listen, (first, last), &tls, &[]).await;
        Plane { dir, url, relay_addr, node_key, consumer, first, last, _server: server, _relay: relay }
    }

    /// `gantry agent` inside the namespace, dialling out to the relay, with `args`.
    fn agent(&self, nat: &Nat, args: &[&str]) -> tokio::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &nat.ns, GANTRY, "agent", "--server", &self.url, "--relay", &self.relay_addr])
            .args(args)
            .arg("--ca-cert")
            .arg(self.dir.path().join("tls/ca.pem"))
            .env("GANTRY_PUBLIC_KEY", self.node_key["public_key"].as_str().unwrap())
            .env("GANTRY_SECRET_KEY", self.node_key["secret_key"].as_str().unwrap())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// The job's run once RUNNING with both its node_urls, each on the relay.
    async fn run_with_urls(&self, job: gantry_types::JobId) -> gantry_types::job_run::JobRun {
        let run = wait_for("the run RUNNING with both node_urls", Duration::from_secs(90), || async {
            let runs = self.consumer.list_job_runs(&[("filter[job_uuid]".into(), job.to_string())]).await.ok()?;
            runs.data.into_iter().find(|r| r.node_urls.len() == 2)
        })
        .await;
        for u in &run.node_urls {
            assert_eq!(u.hostname, "127.0.0.1", "the relay's public host, not the node's: {u:?}");
            assert!((self.first..=self.last).contains(&u.port), "{u:?}");
        }
        run
    }
}

/// Inbound connections to the agent's metrics listener at `metrics` work until the
/// namespace is closed to them, and fail afterwards.
async fn close_inbound(nat: &Nat, metrics: &str) {
    wait_for("the agent's metrics listener, from outside", Duration::from_secs(30), || async {
        TcpStream::connect(metrics).await.ok()
    })
    .await;
    nat.block_inbound();
    let direct = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(metrics)).await;
    assert!(!matches!(direct, Ok(Ok(_))), "a connection into the namespace must fail once it is behind NAT");
}

/// `GET /` on 127.0.0.1:`port` (a relay's public port): the body, once one comes.
async fn get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nhost: x\r\n\r\n").await.ok()?;
    let mut page = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut page)).await.ok()?.ok()?;
    let (_, body) = page.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

#[tokio::test]
async fn a_node_behind_nat_is_reached_only_through_the_relay() {
    if skip() {
        return;
    }
    // Declared first, so it is dropped last: after the processes in the namespace.
    let nat = Nat::create(0);
    let plane = Plane::start(&nat).await;
    // The agent, inside the namespace, with its metrics listener on every address
    // there: reachable from outside until inbound connections are blocked.
    let agent = plane.agent(&nat, &["--simulate", "1", "--metrics-listen", "0.0.0.0:9464"]);
    close_inbound(&nat, &format!("{}:9464", nat.node_ip)).await;

    let body = json!({"title": "behind nat", "task": "PERSISTENT", "max_timeout_run_ms": null, "gpu_count": 0,
        "cpu_count": 1, "parameters": {"type": "docker", "parameters": {
            "image": "busybox", "ports": [22, 8080], "allowed_ips": ["127.0.0.1/32"]}}});
    let created = plane.consumer.create_job(&body).await.unwrap();
    let run = plane.run_with_urls(created.uuid).await;
    let ssh = run.node_urls.iter().find(|u| u.description == "ssh").unwrap();
    let banner = wait_for("the ssh banner through the relay", Duration::from_secs(20), || async {
        let mut s = TcpStream::connect(("127.0.0.1", ssh.port)).await.ok()?;
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text)).await.ok()?.ok()?;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
    let http = run.node_urls.iter().find(|u| u.description == "8080").unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", http.port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut page = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut page)).await.unwrap().unwrap();
    assert!(page.contains(&format!("simulated run {}: port 8080 is up", run.uuid)), "{page}");
    drop(agent);
}

/// A real Docker agent in the namespace: its container's ports 22 and 8080 (two
/// busybox httpd, each with a page of its own) are reached through the relay only;
/// the agent killed and started again adopts the container, dials the relay again and
/// gets the same public ports back, and the run answers there again.
#[tokio::test]
async fn a_docker_node_behind_nat_keeps_its_run_reachable_across_an_agent_restart() {
    if skip() {
        return;
    }
    if let Err(e) = gantry_test_harness::docker::docker().ping().await {
        assert!(std::env::var("GANTRY_REQUIRE_NETNS").as_deref() != Ok("1"), "no Docker Engine: {e}");
        eprintln!("skipping the Docker NAT test: no Docker Engine ({e})");
        return;
    }
    let image = gantry_test_harness::docker::test_image().await;
    let (repo, tag) = image.rsplit_once(':').unwrap();
    let mut nat = Nat::create(1);
    // A network pool of this test's own (four /26 job networks).
    let pool = format!("10.214.{}.0/24", nat.node_ip.split('.').nth(2).unwrap());
    nat.forward_to_containers(&pool);
    let plane = Plane::start(&nat).await;
    let state = plane.dir.path().join("agent");
    // Dropped after the agent processes: their containers go even when this fails.
    let _leftovers = common::DockerLeftovers(state.clone());
    let state = state.to_str().unwrap();
    let flags = [
        ("--bind", "0.0.0.0"),
        ("--advertise-host", &nat.node_ip),
        ("--network-pool", &pool),
        ("--state-dir", state),
        ("--stop-grace-secs", "2"),
        ("--sync-wait-ms", "300"),
        ("--fake-gpus", "cpus=2,ram=4"),
        ("--metrics-listen", "0.0.0.0:9464"),
    ];
    let args: Vec<&str> = flags.into_iter().flat_map(|(flag, value)| [flag, value]).collect();
    let mut agent = plane.agent(&nat, &args);
    close_inbound(&nat, &format!("{}:9464", nat.node_ip)).await;

    let script = "mkdir -p /a /b && echo port-22 > /a/index.html && echo port-8080 > /b/index.html \
                  && httpd -p 22 -h /a && httpd -f -p 8080 -h /b";
    let body = json!({"title": "docker behind nat", "task": "PERSISTENT", "max_timeout_run_ms": null,
        "gpu_count": 0, "cpu_count": 1, "parameters": {"type": "docker", "parameters": {
            "image": repo, "tag": tag, "env": {"SCRIPT": script}, "ports": [22, 8080],
            "allowed_ips": ["127.0.0.1/32"]}}});
    let job = plane.consumer.create_job(&body).await.unwrap();
    let run = plane.run_with_urls(job.uuid).await;
    let port_of = |d: &str| run.node_urls.iter().find(|u| u.description == d).unwrap().port;
    let (ssh, http) = (port_of("ssh"), port_of("8080"));
    for (port, page) in [(ssh, "port-22\n"), (http, "port-8080\n")] {
        let got = wait_for("the container's page through the relay", Duration::from_secs(30), || get(port)).await;
        assert_eq!(got, page);
    }

    // The agent dies and comes back (same state directory): it adopts the container,
    // and the relay carries the same public ports to it again.
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    assert!(get(http).await.is_none(), "carried without an agent");
    let _agent = plane.agent(&nat, &args);
    let again = wait_for("the page through the relay after the restart", Duration::from_secs(60), || get(http)).await;
    assert_eq!(again, "port-8080\n");
    assert_eq!(get(ssh).await.as_deref(), Some("port-22\n"));
    let by_port = |run: gantry_types::job_run::JobRun| {
        let mut urls = run.node_urls;
        urls.sort_by_key(|u| u.port);
        urls
    };
    let now = plane.consumer.get_job_run(run.uuid).await.unwrap();
    assert_eq!(by_port(now), by_port(run.clone()), "the same node_urls after the agent's restart");

    // Leave nothing running: the run ends, its container goes, and its public ports close.
    plane.consumer.cancel_job(job.uuid, "test over").await.unwrap();
    wait_for("the container's ports to close at the relay", Duration::from_secs(60), || async {
        TcpStream::connect(("127.0.0.1", http)).await.is_err().then_some(())
    })
    .await;
}
