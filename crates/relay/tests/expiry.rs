//! Issue 14 point 2, tokens end tunnels: a tunnel lives no longer than the relay
//! token that opened it. An agent that stops renewing loses its open tunnel, and the
//! connections through it, when the token expires (and cannot come back with it); an
//! agent that renews (as every healthy agent does from its syncs) keeps the same tunnel
//! and its connections well past the first token's expiry. Tokens here live 2 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_relay::edge::{Tunnels, serve_tunnels};
use gantry_relay::node::{Grant, Publisher, RelayAddr};
use gantry_relay::port::PortLimits;
use gantry_relay::public::PublicPorts;
use gantry_relay::token::{Issuer, now_ms};
use gantry_relay::{Hello, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const LIFETIME_MS: i64 = 2_000;

struct Setup {
    _dir: tempfile::TempDir,
    tunnels: Tunnels,
    relay: RelayAddr,
    issuer: Issuer,
    echo: SocketAddr,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A relay admitting the issuer's tokens (the verifier `gantry relay` uses), and an
/// echo server standing in for a run's port.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tls = gantry_tls::write_self_signed(dir.path(), &["127.0.0.1".into()], false).unwrap();
    let acceptor = gantry_tls::acceptor(&gantry_tls::CertFiles { cert: tls.cert, key: tls.key }).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = RelayAddr {
        addr: listener.local_addr().unwrap().to_string(),
        server_name: "127.0.0.1".into(),
        tls: gantry_tls::client_config(&tls.ca_cert).unwrap(),
    };
    let first = loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 65_000 {
            break port;
        }
    };
    let tunnels = Tunnels::default();
    let ports = Arc::new(PublicPorts::new(
        "127.0.0.1",
        [127, 0, 0, 1].into(),
        (first, first + 9),
        tunnels.clone(),
        PortLimits::default(),
    ));
    let issuer = Issuer::from_seed(&[5; 32]);
    let check = Arc::new(issuer.verifier());
    let relay_task = serve_tunnels(listener, acceptor, check, tunnels.clone(), ports, Duration::from_secs(5));
    let echo_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = echo_listener.local_addr().unwrap();
    let echo_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = echo_listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Setup { _dir: dir, tunnels, relay, issuer, echo, _tasks: vec![relay_task, echo_task] }
}

impl Setup {
    fn grant(&self) -> Grant {
        let token = self.issuer.issue_until("node-1", now_ms() + LIFETIME_MS);
        Grant { relay: self.relay.clone(), hello: Hello { version: PROTOCOL_VERSION, node: "node-1".into(), token } }
    }
}

/// One byte there and back on `s`.
async fn echoes(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    s.write_all(b"x").await.is_ok()
        && matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await, Ok(Ok(1)))
}

/// Starts the node's tunnel task on `grants`; publishes run-1's port 8080; returns the
/// public port and a connection through it, checked with a round trip.
async fn node(
    setup: &Setup,
    grants: watch::Receiver<Option<Grant>>,
    stop: watch::Receiver<bool>,
) -> (Arc<Publisher>, SocketAddr, TcpStream) {
    let publisher = Arc::new(Publisher::default());
    tokio::spawn(gantry_relay::node::run(grants, publisher.clone(), stop));
    let carried = publisher.publish("run-1", 8080, setup.echo, &[]).await.unwrap();
    let public = SocketAddr::from(([127, 0, 0, 1], carried.port));
    let mut user = TcpStream::connect(public).await.unwrap();
    assert!(echoes(&mut user).await, "a round trip through the fresh tunnel");
    (publisher, public, user)
}

#[tokio::test]
async fn an_unrenewed_token_closes_its_open_tunnel_at_expiry() {
    let setup = setup().await;
    let grant = setup.grant();
    let expires = gantry_relay::token::expires_ms(&grant.hello.token).unwrap();
    let (_keep, grants) = watch::channel(Some(grant));
    let (_stop, stop) = watch::channel(false);
    let (_publisher, public, mut user) = node(&setup, grants, stop).await;
    assert!(setup.tunnels.connected("node-1"));

    // Nobody renews: the relay closes the tunnel, and the user's connection with it,
    // at the expiry (within a second), not before.
    let deadline = Instant::now() + Duration::from_millis(u64::try_from(LIFETIME_MS).unwrap() + 5_000);
    while setup.tunnels.connected("node-1") {
        assert!(Instant::now() < deadline, "the tunnel outlived its token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed_at = now_ms();
    assert!(closed_at >= expires, "closed {} ms before the token expired", expires - closed_at);
    assert!(closed_at - expires < 1_000, "closed {} ms after the token expired", closed_at - expires);
    assert!(!echoes(&mut user).await, "a connection through the expired tunnel still carried bytes");
    // The agent reconnects with the same (expired) token and is refused: nothing is
    // carried any more.
    let mut late = TcpStream::connect(public).await.unwrap();
    assert!(!echoes(&mut late).await, "carried after the token expired");
    assert!(!setup.tunnels.connected("node-1"));
}

#[tokio::test]
async fn a_renewing_agent_keeps_its_tunnel_and_connections_past_the_first_expiry() {
    let setup = setup().await;
    let first = setup.grant();
    let expires = gantry_relay::token::expires_ms(&first.hello.token).unwrap();
    let (grants_tx, grants) = watch::channel(Some(first));
    let (_stop, stop) = watch::channel(false);
    let (_publisher, _public, mut user) = node(&setup, grants, stop).await;
    // Syncs every 200 ms, each with a fresh token (as the control plane hands out).
    let syncing = {
        let (relay, tx) = (setup.relay.clone(), grants_tx.clone());
        let issuer = Issuer::from_seed(&[5; 32]);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let token = issuer.issue_until("node-1", now_ms() + LIFETIME_MS);
                let hello = Hello { version: PROTOCOL_VERSION, node: "node-1".into(), token };
                let _ = tx.send(Some(Grant { relay: relay.clone(), hello }));
            }
        })
    };
    // Two lifetimes past the first token's expiry, the same connection still carries:
    // the tunnel was never replaced.
    while now_ms() < expires + 2 * LIFETIME_MS {
        assert!(echoes(&mut user).await, "the renewed tunnel dropped a connection");
        assert!(setup.tunnels.connected("node-1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    syncing.abort();
}
