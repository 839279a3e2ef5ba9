//! Real sockets on loopback: an echo server stands in for the container.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::*;

/// The longest any step may take; every wait below is bounded by it (no bare sleeps).
const DEADLINE: Duration = Duration::from_secs(10);

fn list(entries: &[&str]) -> AllowList {
    AllowList::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
}

/// A container stand-in that echoes every connection and counts the connections it saw.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _task: JoinHandle<()>,
}

async fn echo_server(ip: IpAddr) -> io::Result<Echo> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let addr = listener.local_addr()?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(Echo { addr, accepted, _task: task })
}

/// Connects to `to` from the source address `from` (bind before connect).
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = if from.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    tokio::time::timeout(DEADLINE, socket.connect(to)).await.expect("connect in time").expect("connect")
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0; message.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut back)).await.expect("echo in time").unwrap();
    assert_eq!(back, message);
}

/// Asserts the peer closed the connection: EOF or a reset, within the deadline.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await.expect("closed in time") {
        Ok(0) => {}
        Ok(n) => panic!("expected the connection closed, read {n} bytes"),
        Err(e) => assert!(
            matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted),
            "unexpected error: {e}"
        ),
    }
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER_LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test]
async fn allowed_peer_reaches_the_container() {
    let echo = echo_server(LOCAL).await.unwrap();
    let proxy = PortProxy::start(LOCAL, echo.addr, list(&["127.0.0.1/32"])).await.unwrap();
    assert_ne!(proxy.local_port(), 0);
    assert_ne!(proxy.local_port(), echo.addr.port());
    let mut client = connect_from(LOCAL, proxy.local_addr()).await;
    round_trip(&mut client, b"hello through the proxy").await;
    round_trip(&mut client, b"and again").await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_peer_is_closed_at_once_and_never_reaches_the_container() {
    let echo = echo_server(LOCAL).await.unwrap();
    let proxy = PortProxy::start(LOCAL, echo.addr, list(&["127.0.0.1/32"])).await.unwrap();
    let mut refused = connect_from(OTHER_LOCAL, proxy.local_addr()).await;
    assert_closed(&mut refused).await;
    // An admitted connection afterwards still works, and is the only one the container saw.
    let mut admitted = connect_from(LOCAL, proxy.local_addr()).await;
    round_trip(&mut admitted, b"ping").await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn empty_list_admits_anyone() {
    let echo = echo_server(LOCAL).await.unwrap();
    let proxy = PortProxy::start(LOCAL, echo.addr, AllowList::parse(&[]).unwrap()).await.unwrap();
    for from in [LOCAL, OTHER_LOCAL] {
        let mut client = connect_from(from, proxy.local_addr()).await;
        round_trip(&mut client, from.to_string().as_bytes()).await;
    }
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn ipv6_loopback_is_matched_against_ipv6_entries() {
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let Ok(echo) = echo_server(v6).await else {
        println!("note: no IPv6 loopback on this machine; skipping the IPv6 proxy test");
        return;
    };
    let proxy = PortProxy::start(v6, echo.addr, list(&["::1/128"])).await.unwrap();
    let mut client = connect_from(v6, proxy.local_addr()).await;
    round_trip(&mut client, b"over ipv6").await;
    // 0.0.0.0/0 means every IPv4 peer, not an IPv6 one.
    let v4_only = PortProxy::start(v6, echo.addr, list(&["0.0.0.0/0", "127.0.0.1"])).await.unwrap();
    let mut refused = connect_from(v6, v4_only.local_addr()).await;
    assert_closed(&mut refused).await;
    let everyone_v6 = PortProxy::start(v6, echo.addr, list(&["::/0"])).await.unwrap();
    let mut client = connect_from(v6, everyone_v6.local_addr()).await;
    round_trip(&mut client, b"any ipv6").await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn large_transfer_is_intact_both_ways() {
    let echo = echo_server(LOCAL).await.unwrap();
    let proxy = PortProxy::start(LOCAL, echo.addr, list(&["127.0.0.0/8"])).await.unwrap();
    let client = connect_from(LOCAL, proxy.local_addr()).await;
    // 4 MiB of a pattern that does not repeat with any short period, so a dropped or
    // reordered chunk cannot go unnoticed.
    let data: Arc<Vec<u8>> = Arc::new((0u32..4 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect());
    let (mut r, mut w) = client.into_split();
    let sent = data.clone();
    // Write and read concurrently: the echo pushes back while we still send.
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(data.len());
    tokio::time::timeout(DEADLINE, r.read_to_end(&mut back)).await.expect("transfer in time").unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == *data, "the echoed bytes differ from the sent ones");
}

#[tokio::test]
async fn half_close_is_forwarded() {
    // A server that answers only after the client finished sending (reads to EOF first).
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        stream.write_all(format!("got {} bytes", got.len()).as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    let proxy = PortProxy::start(LOCAL, target, AllowList::any()).await.unwrap();
    let mut client = connect_from(LOCAL, proxy.local_addr()).await;
    client.write_all(&[7u8; 100_000]).await.unwrap();
    client.shutdown().await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(DEADLINE, client.read_to_string(&mut reply)).await.expect("reply in time").unwrap();
    assert_eq!(reply, "got 100000 bytes");
}

#[tokio::test]
async fn stop_closes_live_connections_and_the_listener() {
    let echo = echo_server(LOCAL).await.unwrap();
    let proxy = PortProxy::start(LOCAL, echo.addr, AllowList::any()).await.unwrap();
    let addr = proxy.local_addr();
    let mut client = connect_from(LOCAL, addr).await;
    round_trip(&mut client, b"before stop").await;
    proxy.stop().await;
    assert_closed(&mut client).await;
    let socket = TcpSocket::new_v4().unwrap();
    let refused = tokio::time::timeout(DEADLINE, socket.connect(addr)).await.expect("answer in time");
    assert!(refused.is_err(), "the listener should be closed after stop");
}

#[tokio::test]
async fn dropping_the_proxy_closes_live_connections() {
    let echo = echo_server(LOCAL).await.unwrap();
    let proxy = PortProxy::start(LOCAL, echo.addr, AllowList::any()).await.unwrap();
    let mut client = connect_from(LOCAL, proxy.local_addr()).await;
    round_trip(&mut client, b"before drop").await;
    drop(proxy);
    assert_closed(&mut client).await;
}

#[tokio::test]
async fn unreachable_container_closes_the_client() {
    // A port that was just free: nothing listens there.
    let dead = TcpListener::bind((LOCAL, 0)).await.unwrap().local_addr().unwrap();
    let proxy = PortProxy::start(LOCAL, dead, AllowList::any()).await.unwrap();
    let mut client = connect_from(LOCAL, proxy.local_addr()).await;
    assert_closed(&mut client).await;
}

#[test]
fn allow_list_parsing_and_matching() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let bare = list(&["192.0.2.7", "2001:db8::5"]);
    assert!(bare.allows(ip("192.0.2.7")) && !bare.allows(ip("192.0.2.8")));
    assert!(bare.allows(ip("2001:db8::5")) && !bare.allows(ip("2001:db8::6")));
    let v4_all = list(&["0.0.0.0/0"]);
    assert!(v4_all.allows(ip("203.0.113.1")) && !v4_all.allows(ip("2001:db8::1")));
    let v6_all = list(&["::/0"]);
    assert!(v6_all.allows(ip("2001:db8::1")) && !v6_all.allows(ip("203.0.113.1")));
    // Dual-stack listeners see IPv4 peers as ::ffff:a.b.c.d.
    assert!(list(&["127.0.0.1/32"]).allows(ip("::ffff:127.0.0.1")));
    assert!(AllowList::any().is_any() && AllowList::any().allows(ip("::1")));
    assert!(!list(&["10.0.0.0/8"]).is_any());
    let err = AllowList::parse(&["10.0.0.0/8".to_owned(), "nope".to_owned()]).unwrap_err();
    assert_eq!(err, "allowed_ips[1]: not an IP address or CIDR: \"nope\"");
    assert!(AllowList::parse(&["10.0.0.0/33".to_owned()]).unwrap_err().starts_with("allowed_ips[0]:"));
}

#[tokio::test]
async fn idle_connections_past_the_limit_do_not_lock_out_a_talking_client() {
    let echo = echo_server(LOCAL).await.unwrap();
    let limits = ProxyLimits { idle_timeout: Duration::from_secs(600), max_connections: 8 };
    let listener = TcpListener::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let proxy = PortProxy::serve_with(listener, echo.addr, AllowList::any(), limits).unwrap();
    // A peer opens five times the limit and never sends a byte.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(connect_from(LOCAL, proxy.local_addr()).await);
    }
    // A normal client still gets answers, and keeps them while more idle sockets arrive.
    let mut client = connect_from(LOCAL, proxy.local_addr()).await;
    round_trip(&mut client, b"still served").await;
    for _ in 0..20 {
        idle.push(connect_from(LOCAL, proxy.local_addr()).await);
        round_trip(&mut client, b"still talking").await;
    }
    // The oldest idle sockets were closed to make room: the proxy never carried more than its limit.
    for stream in idle.iter_mut().take(30) {
        assert_closed(stream).await;
    }
}

#[tokio::test]
async fn a_connection_idle_past_the_timeout_is_closed_and_a_busy_one_is_not() {
    let echo = echo_server(LOCAL).await.unwrap();
    let limits = ProxyLimits { idle_timeout: Duration::from_millis(400), max_connections: 16 };
    let listener = TcpListener::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let proxy = PortProxy::serve_with(listener, echo.addr, AllowList::any(), limits).unwrap();
    let mut quiet = connect_from(LOCAL, proxy.local_addr()).await;
    let mut busy = connect_from(LOCAL, proxy.local_addr()).await;
    round_trip(&mut quiet, b"one exchange, then silence").await;
    // The busy client talks every 100 ms for over twice the timeout.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1000) {
        round_trip(&mut busy, b"tick").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_closed(&mut quiet).await;
    round_trip(&mut busy, b"still open").await;
}
