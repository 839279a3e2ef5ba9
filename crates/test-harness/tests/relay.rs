//! Issue 14 point 1, first piece: a Docker node's published port carried by a relay.
//! The relay (library, in process: tunnel listener over TLS with a CA from
//! `gantry_tls`, public ports on loopback) and the node's agent, whose runtime
//! publishes each run's ports there; the run's `node_urls` name the relay's host and
//! public port, the container answers through it, and the port closes when the run
//! ends. (The NAT namespace test is crates/cli/tests/relay_nat.rs; the control-plane
//! tokens and the binaries are tested in crates/cli/tests/relay.rs.)

use std::sync::Arc;
use std::time::Duration;

use gantry_relay::edge::{Tunnels, serve_tunnels};
use gantry_relay::node::{Publisher, RelayAddr};
use gantry_relay::public::PublicPorts;
use gantry_test_harness::docker::{busybox_job, run_until, start_for_containers, test_image};
use gantry_test_harness::wait_for;
use gantry_types::job_run::JobRunStatus;
use gantry_types::permissions::Preset;
use serde_json::json;

/// A free range of 20 ports on loopback.
fn free_range() -> (u16, u16) {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first = probe.local_addr().unwrap().port();
        if first < 65_000 {
            return (first, first + 19);
        }
    }
}

#[tokio::test]
async fn a_docker_runs_port_is_reached_through_the_relay_and_closed_when_it_ends() {
    test_image().await;
    // The relay.
    let certs = tempfile::tempdir().unwrap();
    let written = gantry_tls::write_self_signed(certs.path(), &["127.0.0.1".into()], false).unwrap();
    let acceptor = gantry_tls::acceptor(&gantry_tls::CertFiles { cert: written.cert, key: written.key }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel_addr = listener.local_addr().unwrap();
    let range = free_range();
    let tunnels = Tunnels::default();
    let limits = gantry_relay::port::PortLimits::default();
    let ports = Arc::new(PublicPorts::new("127.0.0.1", [127, 0, 0, 1].into(), range, tunnels.clone(), limits));
    let check = |h: &gantry_relay::Hello| if h.token == "lab-token" { Ok(()) } else { Err("no".to_string()) };
    let _relay = serve_tunnels(listener, acceptor, Arc::new(check), tunnels, ports.clone(), Duration::from_secs(5));

    // The node: its agent keeps a tunnel to the relay and publishes there.
    let publisher = Arc::new(Publisher::default());
    let relay = RelayAddr {
        addr: tunnel_addr.to_string(),
        server_name: "127.0.0.1".into(),
        tls: gantry_tls::client_config(&written.ca_cert).unwrap(),
    };
    let hello = gantry_relay::Hello {
        version: gantry_relay::PROTOCOL_VERSION,
        node: "nat-node".into(),
        token: "lab-token".into(),
    };
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(gantry_relay::node::run_fixed(relay, hello, publisher.clone(), stop_rx));
    let ctx = start_for_containers().await;
    let carrier = publisher.clone();
    let _node = ctx.docker_node_with("cpus=4,ram=8,disk=50", move |c| c.relay = Some(carrier.clone())).await;

    let client = ctx.new_account(Preset::Consumer).await;
    let script = "mkdir -p /www && echo through-the-relay > /www/index.html && httpd -f -p 8080 -h /www";
    let params = json!({"ports": [8080], "allowed_ips": ["127.0.0.1/32"]});
    let created = client.create_job(&busybox_job("relay", script, params)).await.unwrap();
    let run = run_until(&client, created.uuid, "RUNNING with its port", Duration::from_secs(60), |r| {
        r.status == JobRunStatus::Running && r.node_urls.len() == 1
    })
    .await;
    let url = &run.node_urls[0];
    assert_eq!((url.description.as_str(), url.hostname.as_str()), ("8080", "127.0.0.1"));
    assert!((range.0..=range.1).contains(&url.port), "node_urls name the relay's public port: {url:?}");
    assert_eq!(ports.public_port("nat-node", &run.uuid.to_string(), 8080), Some(url.port));
    let page = format!("http://127.0.0.1:{}/", url.port);
    let body = wait_for("the container through the relay", Duration::from_secs(20), || async {
        reqwest::get(&page).await.ok()?.text().await.ok()
    })
    .await;
    assert_eq!(body, "through-the-relay\n");

    // The run ends: its public port closes.
    client.cancel_job(created.uuid, "done").await.unwrap();
    run_until(&client, created.uuid, "the run to end", Duration::from_secs(60), |r| r.status.is_terminal()).await;
    wait_for("the relay port to close", Duration::from_secs(10), || async {
        ports.public_port("nat-node", &run.uuid.to_string(), 8080).is_none().then_some(())
    })
    .await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", url.port)).await.is_err(), "the port is still open");
}
