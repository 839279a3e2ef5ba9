//! `gantry relay` black-box: it serves its tunnel listener over TLS with the given
//! certificate, admits an agent presenting the token of `--agent-token-file` and
//! refuses another one, and hands out public ports from `--port-range` naming
//! `--public-host`. (The agent side, `gantry agent --relay`, runs the same library the
//! Docker relay test drives.)

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gantry_relay::node::{Publisher, RelayAddr, connect};
use gantry_relay::{Hello, PROTOCOL_VERSION, TunnelError};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

mod common;

use common::GANTRY;

#[tokio::test]
async fn the_relay_admits_agents_with_its_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let tls = gantry_tls::write_self_signed(dir.path(), &["127.0.0.1".into()], false).unwrap();
    let token_file = dir.path().join("agent-token");
    std::fs::write(&token_file, "lab-token\n").unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first = probe.local_addr().unwrap().port().min(65_000);
    drop(probe);
    let range = format!("{first}-{}", first + 9);
    let mut relay = Command::new(GANTRY)
        .args(["relay", "--listen", "127.0.0.1:0", "--public-host", "relay.test", "--bind", "127.0.0.1"])
        .args(["--port-range", &range, "--tls-cert"])
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .arg("--agent-token-file")
        .arg(&token_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(relay.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("relay exited before listening");
            if let Some(rest) = line.strip_prefix("gantry relay listening on ") {
                return rest.split(';').next().unwrap().to_string();
            }
        }
    })
    .await
    .expect("the relay listens within 30 s");
    let relay_addr = RelayAddr {
        addr: addr.clone(),
        server_name: "127.0.0.1".into(),
        tls: gantry_tls::client_config(&tls.ca_cert).unwrap(),
    };
    let hello = |token: &str| Hello { version: PROTOCOL_VERSION, node: "n".into(), token: token.into() };
    let publisher = Arc::new(Publisher::default());

    let err = connect(&relay_addr, &hello("guess"), publisher.clone()).await.err().unwrap();
    assert!(matches!(&err, TunnelError::Refused(why) if why.contains("token")), "{err:?}");

    let mut tunnel = connect(&relay_addr, &hello("lab-token"), publisher).await.unwrap();
    let reply = tunnel
        .request(&gantry_relay::Request::Publish {
            run: "r".into(),
            port: 22,
            allowed: vec!["0.0.0.0/0".into()],
            want: None,
        })
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.public_host.as_deref(), Some("relay.test"));
    assert!((first..=first + 9).contains(&reply.public_port.unwrap()), "{reply:?}");
}

#[tokio::test]
async fn an_agent_relay_needs_its_token_file() {
    let out = Command::new(GANTRY)
        .args(["agent", "--public-key", "pk", "--secret-key", "sk", "--relay", "relay.test:7443"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("--relay-token-file"), "{text}");
}

/// `gantry bench relay` runs end to end and prints its figures (small sizes: the
/// figures themselves are for release builds).
#[tokio::test]
async fn bench_relay_prints_its_figures() {
    let out = Command::new(GANTRY)
        .args(["bench", "relay", "--mib", "1", "--round-trips", "20", "--connections", "20", "--json"])
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
}
