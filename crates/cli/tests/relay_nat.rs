//! Issue 14 point 5: a node that really has no inbound path. The agent runs in a
//! network namespace of its own behind a veth pair, with a MASQUERADE rule for its
//! subnet as on a home router and a firewall in the namespace that drops every TCP
//! SYN coming in on its link (answers to its own outbound connections pass). A listener in
//! the namespace is then unreachable from outside, yet the run's port answers through
//! the relay the agent dialled out to.
//!
//! Needs root, `ip` and `iptables`: skipped with a message where they are missing,
//! unless `GANTRY_REQUIRE_NETNS=1` (which `.ci/run` sets). The namespace, the veth
//! pair and the NAT rule carry this process's id and are removed when the test ends,
//! also when it fails.

use std::process::Stdio;
use std::time::Duration;

use gantry_test_harness::wait_for;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
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

/// The namespace and its links; dropping it removes them (and the NAT rule).
struct Nat {
    ns: String,
    host_if: String,
    node_if: String,
    subnet: String,
    host_ip: String,
    node_ip: String,
}

impl Nat {
    fn create() -> Self {
        let id = std::process::id();
        let octet = 16 + (id % 200);
        let nat = Nat {
            ns: format!("gantry-nat-{id}"),
            host_if: format!("gnh{}", id % 100_000),
            node_if: format!("gnn{}", id % 100_000),
            subnet: format!("10.231.{octet}.0/24"),
            host_ip: format!("10.231.{octet}.1"),
            node_ip: format!("10.231.{octet}.2"),
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

    fn remove(&self) {
        let quiet = |args: &[&str]| {
            let _ = std::process::Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
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

#[tokio::test]
async fn a_node_behind_nat_is_reached_only_through_the_relay() {
    if let Err(why) = netns_available() {
        assert!(std::env::var("GANTRY_REQUIRE_NETNS").as_deref() != Ok("1"), "GANTRY_REQUIRE_NETNS=1 but {why}");
        eprintln!("skipping the NAT namespace test: {why} (GANTRY_REQUIRE_NETNS=1 makes this a failure)");
        return;
    }
    // Declared first, so it is dropped last: after the processes in the namespace.
    let nat = Nat::create();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tls = dir.path().join("tls");
    gantry_tls::write_self_signed(&tls, &["127.0.0.1".into(), nat.host_ip.clone()], false).unwrap();
    let mut cmd = Command::new(GANTRY);
    cmd.args(["server", "--listen", &format!("{}:0", nat.host_ip), "--data-dir"]).arg(&data).env("RUST_LOG", "warn");
    let (_server, url) = common::serve(cmd).await;
    let relay_key = common::create_key(&data, "relay").await;
    let node_key = common::create_key(&data, "node").await;
    let consumer = common::client(&url, &common::create_key(&data, "consumer").await);

    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first = probe.local_addr().unwrap().port().min(65_000);
    drop(probe);
    let mut cmd = Command::new(GANTRY);
    cmd.args(["relay", "--server", &url, "--listen", &format!("{}:0", nat.host_ip), "--public-host", "127.0.0.1"])
        .args(["--bind", "127.0.0.1", "--port-range", &format!("{first}-{}", first + 9), "--tls-cert"])
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"))
        .env("GANTRY_PUBLIC_KEY", relay_key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", relay_key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn");
    let mut relay = cmd.stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(relay.stdout.take().unwrap()).lines();
    let relay_addr = loop {
        let line = lines.next_line().await.unwrap().expect("the relay exited before listening");
        if let Some(rest) = line.strip_prefix("gantry relay listening on ") {
            break rest.split(';').next().unwrap().to_string();
        }
    };

    // The agent, inside the namespace, with its metrics listener on every address
    // there: reachable from outside until inbound connections are blocked.
    let metrics = format!("{}:9464", nat.node_ip);
    let agent = Command::new("ip")
        .args(["netns", "exec", &nat.ns, GANTRY, "agent", "--server", &url, "--simulate", "1"])
        .args(["--relay", &relay_addr, "--metrics-listen", "0.0.0.0:9464", "--ca-cert"])
        .arg(tls.join("ca.pem"))
        .env("GANTRY_PUBLIC_KEY", node_key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", node_key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for("the agent's metrics listener, from outside", Duration::from_secs(30), || async {
        TcpStream::connect(&metrics).await.ok()
    })
    .await;
    nat.block_inbound();
    let direct = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&metrics)).await;
    assert!(!matches!(direct, Ok(Ok(_))), "a connection into the namespace must fail once it is behind NAT");

    let body = json!({"title": "behind nat", "task": "PERSISTENT", "max_timeout_run_ms": null, "gpu_count": 0,
        "cpu_count": 1, "parameters": {"type": "docker", "parameters": {
            "image": "busybox", "ports": [22, 8080], "allowed_ips": ["127.0.0.1/32"]}}});
    let created = consumer.create_job(&body).await.unwrap();
    let run = wait_for("the run RUNNING with both node_urls", Duration::from_secs(60), || async {
        let runs = consumer.list_job_runs(&[("filter[job_uuid]".into(), created.uuid.to_string())]).await.ok()?;
        runs.data.into_iter().find(|r| r.node_urls.len() == 2)
    })
    .await;
    for u in &run.node_urls {
        assert_eq!(u.hostname, "127.0.0.1", "the relay's public host, not the node's: {u:?}");
        assert!((first..=first + 9).contains(&u.port), "{u:?}");
    }
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
    drop(relay);
}
