//! The tunnel on loopback: a relay's tunnel listener and one public port, an agent
//! side dialled over TLS with a CA from `gantry_tls`, and a TCP echo server standing
//! in for a run's published port. Bytes cross both ways; a wrong token, a client
//! outside `allowed_ips`, a port the node does not publish and a stalled handshake
//! are all refused; a lost tunnel comes back by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_relay::edge::{Route, Tunnels, serve_port, serve_tunnels};
use gantry_relay::node::{RelayAddr, connect, run};
use gantry_relay::{Hello, Open, PROTOCOL_VERSION, TunnelError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Relay {
    _dir: tempfile::TempDir,
    tunnels: Tunnels,
    tunnel_addr: SocketAddr,
    ca: std::path::PathBuf,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn relay() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let written = gantry_tls::write_self_signed(dir.path(), &["127.0.0.1".into()], false).unwrap();
    let acceptor =
        gantry_tls::acceptor(&gantry_tls::CertFiles { cert: written.cert.clone(), key: written.key.clone() }).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel_addr = listener.local_addr().unwrap();
    let tunnels = Tunnels::default();
    let check = |hello: &Hello| if hello.token == "good" { Ok(()) } else { Err("unknown token".to_string()) };
    let task = serve_tunnels(listener, acceptor, Arc::new(check), tunnels.clone(), Duration::from_secs(1));
    Relay { _dir: dir, tunnels, tunnel_addr, ca: written.ca_cert, _tasks: vec![task] }
}

impl Relay {
    fn addr(&self) -> RelayAddr {
        RelayAddr {
            addr: self.tunnel_addr.to_string(),
            server_name: "127.0.0.1".into(),
            tls: gantry_tls::client_config(&self.ca).unwrap(),
        }
    }

    async fn public_port(&mut self, run: &str, port: u16, allowed: &[&str]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let route = Route {
            node: "node-1".into(),
            run: run.into(),
            port,
            allowed: allowed.iter().map(|a| a.parse().unwrap()).collect(),
        };
        self._tasks.push(serve_port(listener, Arc::new(route), self.tunnels.clone(), Duration::from_secs(5)));
        addr
    }
}

/// A TCP echo server: the run's published port.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn hello(token: &str) -> Hello {
    Hello { version: PROTOCOL_VERSION, node: "node-1".into(), token: token.into() }
}

/// Only run-1's port 8080 exists on the node.
fn targets(echo: SocketAddr) -> Arc<dyn gantry_relay::node::Targets> {
    Arc::new(move |open: &Open| (open.run == "run-1" && open.port == 8080).then_some(echo))
}

async fn round_trip(public: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(public).await?;
    s.write_all(payload).await?;
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back)).await??;
    Ok(back)
}

/// Whether the other side closed `s` within 5 s.
async fn closed(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_port_is_carried_both_ways_and_only_for_allowed_clients() {
    let mut relay = relay().await;
    let echo = echo().await;
    let tunnel = connect(&relay.addr(), &hello("good"), targets(echo)).await.unwrap();
    assert!(relay.tunnels.connected("node-1"));
    let public = relay.public_port("run-1", 8080, &["127.0.0.0/8", "::1/128"]).await;

    assert_eq!(round_trip(public, b"ping").await.unwrap(), b"ping");
    // A megabyte, and several connections at once, each its own stream.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let many: Vec<_> = (0..20).map(|_| tokio::spawn(round_trip(public, b"concurrent"))).collect();
    assert_eq!(round_trip(public, &big).await.unwrap(), big);
    for c in many {
        assert_eq!(c.await.unwrap().unwrap(), b"concurrent");
    }

    // A client outside allowed_ips is closed at once, before anything reaches the node.
    let fenced = relay.public_port("run-1", 8080, &["10.0.0.0/8"]).await;
    assert!(closed(TcpStream::connect(fenced).await.unwrap()).await);
    // A port the node does not publish (another run's, or another port of this one).
    for (run, port) in [("run-2", 8080), ("run-1", 22)] {
        let other = relay.public_port(run, port, &["127.0.0.0/8"]).await;
        let mut s = TcpStream::connect(other).await.unwrap();
        s.write_all(b"hello?").await.unwrap();
        assert!(closed(s).await, "{run}:{port} was carried");
    }
    drop(tunnel);
    wait_until("the tunnel to be gone", || !relay.tunnels.connected("node-1")).await;
    assert!(round_trip(public, b"x").await.is_err(), "carried without a tunnel");
}

#[tokio::test]
async fn a_wrong_token_or_an_untrusted_relay_is_refused() {
    let relay = relay().await;
    let echo = echo().await;
    let err = connect(&relay.addr(), &hello("bad"), targets(echo)).await.err().unwrap();
    assert!(matches!(&err, TunnelError::Refused(why) if why.contains("unknown token")), "{err:?}");
    assert!(!relay.tunnels.connected("node-1"));
    // An agent that does not trust the relay's CA does not talk to it.
    let other = tempfile::tempdir().unwrap();
    let other_ca = gantry_tls::write_self_signed(other.path(), &["127.0.0.1".into()], false).unwrap().ca_cert;
    let untrusted = RelayAddr { tls: gantry_tls::client_config(&other_ca).unwrap(), ..relay.addr() };
    assert!(matches!(connect(&untrusted, &hello("good"), targets(echo)).await, Err(TunnelError::Io(_))));
}

#[tokio::test]
async fn a_stalled_tunnel_handshake_is_closed() {
    let relay = relay().await;
    let idle = TcpStream::connect(relay.tunnel_addr).await.unwrap();
    let mut half = TcpStream::connect(relay.tunnel_addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    assert!(closed(idle).await, "a silent socket was kept");
    assert!(closed(half).await, "a half handshake was kept");
}

#[tokio::test]
async fn the_agent_reconnects_after_the_tunnel_is_lost() {
    let mut relay = relay().await;
    let echo = echo().await;
    let public = relay.public_port("run-1", 8080, &["127.0.0.0/8"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(run(relay.addr(), hello("good"), targets(echo), stop_rx));
    wait_until("the tunnel", || relay.tunnels.connected("node-1")).await;
    assert_eq!(round_trip(public, b"one").await.unwrap(), b"one");
    // The relay drops every tunnel (as a restart would); the agent dials again.
    let replacement = relay.tunnels.clone();
    replacement.disconnect_all();
    wait_until("the tunnel to drop", || !relay.tunnels.connected("node-1")).await;
    wait_until("the tunnel to come back", || relay.tunnels.connected("node-1")).await;
    assert_eq!(round_trip(public, b"two").await.unwrap(), b"two");
    stop_tx.send(true).unwrap();
    agent.await.unwrap();
}
