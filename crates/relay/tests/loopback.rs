//! The tunnel on loopback: a relay's tunnel listener and one public port, an agent
//! side dialled over TLS with a CA from `gantry_tls`, and a TCP echo server standing
//! in for a run's published port. Bytes cross both ways; a wrong token, a client
//! outside `allowed_ips`, a port the node does not publish and a stalled handshake
//! are all refused; a lost tunnel comes back by itself with the same public port, also
//! from a restarted relay; an unpublished run's ports and connections close at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_relay::edge::{Tunnels, serve_tunnels};
use gantry_relay::node::{Publisher, RelayAddr, connect, run_fixed};
use gantry_relay::port::{PortLimits, Route, serve_port};
use gantry_relay::public::PublicPorts;
use gantry_relay::{Hello, Open, PROTOCOL_VERSION, TunnelError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Relay {
    dir: Arc<tempfile::TempDir>,
    tunnels: Tunnels,
    ports: Arc<PublicPorts>,
    tunnel_addr: SocketAddr,
    ca: std::path::PathBuf,
    range: (u16, u16),
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tunnels.disconnect_all();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A free range of 50 public ports on loopback (bound and released, so others are
/// unlikely to take it meanwhile; a taken port is skipped anyway).
fn free_range() -> (u16, u16) {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first = probe.local_addr().unwrap().port();
        if first < 65_000 {
            return (first, first + 49);
        }
    }
}

async fn relay() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    gantry_tls::write_self_signed(dir.path(), &["127.0.0.1".into()], false).unwrap();
    relay_on(Arc::new(dir), "127.0.0.1:0".parse().unwrap(), free_range()).await
}

/// A relay with the certificates in `dir`, its tunnel listener on `addr`.
async fn relay_on(dir: Arc<tempfile::TempDir>, addr: SocketAddr, (first, last): (u16, u16)) -> Relay {
    let files = gantry_tls::CertFiles { cert: dir.path().join("server.pem"), key: dir.path().join("server.key") };
    let acceptor = gantry_tls::acceptor(&files).unwrap();
    // The previous relay's listener goes when its aborted task is dropped.
    let deadline = Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    };
    let tunnel_addr = listener.local_addr().unwrap();
    let tunnels = Tunnels::default();
    let ports = Arc::new(PublicPorts::new(
        "relay.test",
        "127.0.0.1".parse().unwrap(),
        (first, last),
        tunnels.clone(),
        PortLimits { open_timeout: Duration::from_secs(5), ..PortLimits::default() },
    ));
    let check = |hello: &Hello| if hello.token == "good" { Ok(()) } else { Err("unknown token".to_string()) };
    let task =
        serve_tunnels(listener, acceptor, Arc::new(check), tunnels.clone(), ports.clone(), Duration::from_secs(1));
    let ca = dir.path().join("ca.pem");
    Relay { dir, tunnels, ports, tunnel_addr, ca, range: (first, last), tasks: vec![task] }
}

impl Relay {
    fn ports_first(&self) -> u16 {
        self.range.0
    }

    fn ports_last(&self) -> u16 {
        self.range.1
    }

    fn addr(&self) -> RelayAddr {
        RelayAddr {
            addr: self.tunnel_addr.to_string(),
            server_name: "127.0.0.1".into(),
            tls: gantry_tls::client_config(&self.ca).unwrap(),
        }
    }

    async fn public_port(&mut self, run: &str, port: u16, allowed: &[&str]) -> SocketAddr {
        self.public_port_with(run, port, allowed, PortLimits::default()).await
    }

    async fn public_port_with(&mut self, run: &str, port: u16, allowed: &[&str], limits: PortLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let route = Route {
            node: "node-1".into(),
            run: run.into(),
            port,
            allowed: allowed.iter().map(|a| a.parse().unwrap()).collect(),
        };
        self.tasks.push(serve_port(listener, Arc::new(route), self.tunnels.clone(), limits));
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

    // No allowed_ips admits anyone, as on the node's own ports.
    let open_to_all = relay.public_port("run-1", 8080, &[]).await;
    assert_eq!(round_trip(open_to_all, b"anyone").await.unwrap(), b"anyone");
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

/// Issue 15 point 3 at the relay: an idle connection is closed, and a full port makes
/// room for a new connection by closing its idlest one.
#[tokio::test]
async fn public_ports_close_idle_connections_and_make_room_when_full() {
    let mut relay = relay().await;
    let echo = echo().await;
    let _tunnel = connect(&relay.addr(), &hello("good"), targets(echo)).await.unwrap();
    let idle = PortLimits { idle_timeout: Duration::from_millis(300), ..PortLimits::default() };
    let public = relay.public_port_with("run-1", 8080, &[], idle).await;
    let mut s = TcpStream::connect(public).await.unwrap();
    s.write_all(b"once").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert!(closed(s).await, "an idle relayed connection was kept");

    let capped = PortLimits { max_connections: 2, ..PortLimits::default() };
    let public = relay.public_port_with("run-1", 8080, &[], capped).await;
    let mut conns = Vec::new();
    for word in [b"aaaa", b"bbbb"] {
        let mut s = TcpStream::connect(public).await.unwrap();
        s.write_all(word).await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        conns.push(s);
    }
    // The second talks again, so the first is the idlest when a third arrives.
    conns[1].write_all(b"cccc").await.unwrap();
    conns[1].read_exact(&mut buf).await.unwrap();
    assert_eq!(round_trip(public, b"third").await.unwrap(), b"third");
    let first = conns.remove(0);
    assert!(closed(first).await, "the idlest connection made room");
    conns[0].write_all(b"dddd").await.unwrap();
    conns[0].read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"dddd", "the talking connection was kept");
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
async fn published_ports_survive_a_lost_tunnel_and_a_restarted_relay() {
    let relay = relay().await;
    let echo = echo().await;
    let publisher = Arc::new(Publisher::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(run_fixed(relay.addr(), hello("good"), publisher.clone(), stop_rx));
    let all = vec!["127.0.0.0/8".to_string()];
    let carried = publisher.publish("run-1", 8080, echo, &all).await.unwrap();
    assert_eq!(carried.host, "relay.test");
    let public = carried.port;
    let public_addr: SocketAddr = ([127, 0, 0, 1], public).into();
    assert_eq!(round_trip(public_addr, b"one").await.unwrap(), b"one");
    // Publishing again is idempotent.
    assert_eq!(publisher.publish("run-1", 8080, echo, &all).await.unwrap().port, public);

    // The relay drops every tunnel; the agent dials again and the port still works.
    relay.tunnels.disconnect_all();
    wait_until("the tunnel to drop", || !relay.tunnels.connected("node-1")).await;
    wait_until("the tunnel to come back", || relay.tunnels.connected("node-1")).await;
    assert_eq!(round_trip(public_addr, b"two").await.unwrap(), b"two");

    // The relay restarts (a new one on the same address and range, nothing
    // remembered): the agent publishes again and gets the same public port.
    let (dir, addr, range) = (relay.dir.clone(), relay.tunnel_addr, (relay.ports_first(), relay.ports_last()));
    drop(relay);
    let relay = relay_on(dir, addr, range).await;
    wait_until("the port to be published on the new relay", || {
        relay.ports.public_port("node-1", "run-1", 8080).is_some()
    })
    .await;
    assert_eq!(relay.ports.public_port("node-1", "run-1", 8080), Some(public));
    assert_eq!(round_trip(public_addr, b"three").await.unwrap(), b"three");

    // Unpublishing closes the port and the connections through it at once.
    let mut live = TcpStream::connect(public_addr).await.unwrap();
    live.write_all(b"live").await.unwrap();
    let mut buf = [0u8; 4];
    live.read_exact(&mut buf).await.unwrap();
    let started = Instant::now();
    publisher.unpublish("run-1").await;
    assert!(closed(live).await, "a live connection outlived its run");
    assert!(started.elapsed() < Duration::from_secs(1), "closing took {:?}", started.elapsed());
    assert!(TcpStream::connect(public_addr).await.is_err(), "the port is still open");

    stop_tx.send(true).unwrap();
    agent.await.unwrap();
}

#[tokio::test]
async fn bad_publish_requests_are_refused_with_a_reason() {
    let relay = relay().await;
    let publisher = Arc::new(Publisher::default());
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let _agent = tokio::spawn(run_fixed(relay.addr(), hello("good"), publisher.clone(), stop_rx));
    let target: SocketAddr = ([127, 0, 0, 1], 9).into();
    let err = publisher.publish("run-1", 80, target, &["not-an-ip".into()]).await.unwrap_err();
    assert!(matches!(&err, TunnelError::Refused(why) if why.contains("allowed_ips")), "{err:?}");
    // A node without a tunnel cannot publish (it waits 10 s, then says so).
    let lonely = Publisher::default();
    let started = Instant::now();
    assert!(matches!(lonely.publish("run-1", 80, target, &[]).await, Err(TunnelError::NoTunnel(_))));
    assert!(started.elapsed() >= Duration::from_secs(9));
}
