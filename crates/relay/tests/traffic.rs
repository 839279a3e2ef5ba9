//! Issue 14 point 3, what clients do through a relay (the library, in process, over a
//! real TLS tunnel on loopback, the node admitted with a control-plane-style token):
//! an HTTP/1.1 keep-alive exchange that upgrades to a WebSocket and then carries a
//! long-lived interactive session with pauses; and `allowed_ips` checked against the
//! real client address for IPv4 and IPv6 on a dual-stack public port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gantry_relay::edge::{Tunnels, serve_tunnels};
use gantry_relay::node::{Publisher, RelayAddr};
use gantry_relay::port::PortLimits;
use gantry_relay::public::PublicPorts;
use gantry_relay::token::{Issuer, now_ms};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Ten ports free on `bind` now.
fn free_range(bind: std::net::IpAddr) -> (u16, u16) {
    loop {
        let first = std::net::TcpListener::bind((bind, 0)).unwrap().local_addr().unwrap().port();
        if first < 65_000 && (first..first + 10).all(|p| std::net::TcpListener::bind((bind, p)).is_ok()) {
            return (first, first + 9);
        }
    }
}

/// A relay on loopback with public ports on `bind`, and a node tunnelled to it; the
/// publisher publishes the node's ports.
async fn relay_and_node(bind: std::net::IpAddr, dir: &std::path::Path) -> (Arc<PublicPorts>, Arc<Publisher>) {
    let tls = gantry_tls::write_self_signed(dir, &["127.0.0.1".into()], false).unwrap();
    let acceptor = gantry_tls::acceptor(&gantry_tls::CertFiles { cert: tls.cert, key: tls.key }).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel_addr = listener.local_addr().unwrap();
    let tunnels = Tunnels::default();
    let limits = PortLimits { idle_timeout: Duration::from_secs(5), ..PortLimits::default() };
    let ports = Arc::new(PublicPorts::new("127.0.0.1", bind, free_range(bind), tunnels.clone(), limits));
    let issuer = Issuer::from_seed(&[3; 32]);
    let verifier = issuer.verifier();
    let check = move |h: &gantry_relay::Hello| verifier.check(&h.node, &h.token, now_ms());
    let _task = serve_tunnels(listener, acceptor, Arc::new(check), tunnels, ports.clone(), Duration::from_secs(5));
    let publisher = Arc::new(Publisher::default());
    let relay = RelayAddr {
        addr: tunnel_addr.to_string(),
        server_name: "127.0.0.1".into(),
        tls: gantry_tls::client_config(&tls.ca_cert).unwrap(),
    };
    let hello = gantry_relay::Hello {
        version: gantry_relay::PROTOCOL_VERSION,
        node: "node-1".into(),
        token: issuer.issue("node-1", now_ms()),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(gantry_relay::node::run_fixed(relay, hello, publisher.clone(), stop_rx));
    std::mem::forget(stop); // the node runs as long as the test
    (ports, publisher)
}

/// An HTTP/1.1 server that answers requests on one connection until one asks to
/// upgrade to a WebSocket; from then on it echoes every byte.
async fn websocket_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line.to_ascii_lowercase());
                    }
                    if head.iter().any(|l| l.starts_with("upgrade: websocket")) {
                        let answer =
                            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
                        stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
                        let (mut r, mut w) = stream.into_inner().into_split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        return;
                    }
                    let body = format!("you asked {}", head[0].trim());
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
                }
            });
        }
    });
    addr
}

/// Reads one HTTP answer with a content-length body.
async fn read_answer(stream: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    stream.read_line(&mut status).await.unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (status.trim().to_string(), String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn http_keep_alive_then_a_websocket_carries_a_long_interactive_session() {
    let dir = tempfile::tempdir().unwrap();
    let (ports, publisher) = relay_and_node([127, 0, 0, 1].into(), dir.path()).await;
    let target = websocket_server().await;
    let carried = publisher.publish("run-ws", 8000, target, &["127.0.0.1/32".into()]).await.unwrap();
    assert_eq!(ports.public_port("node-1", "run-ws", 8000), Some(carried.port));

    let mut user = BufReader::new(TcpStream::connect(("127.0.0.1", carried.port)).await.unwrap());
    for path in ["/v1/models", "/health"] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: relay\r\n\r\n");
        user.get_mut().write_all(request.as_bytes()).await.unwrap();
        let (status, body) = read_answer(&mut user).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, format!("you asked get {path} http/1.1"));
    }
    let upgrade = "GET /ws HTTP/1.1\r\nhost: relay\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                   sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
    user.get_mut().write_all(upgrade.as_bytes()).await.unwrap();
    let mut status = String::new();
    user.read_line(&mut status).await.unwrap();
    assert_eq!(status.trim(), "HTTP/1.1 101 Switching Protocols");
    loop {
        let mut line = String::new();
        user.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    // Masked WebSocket text frames, typed one at a time with pauses (one of 2 s: the
    // session outlives quiet spells shorter than the idle timeout).
    for i in 0..30u8 {
        let payload = format!("keystroke {i}");
        let mut frame = vec![0x81, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        frame.extend(payload.bytes().enumerate().map(|(k, b)| b ^ [1, 2, 3, 4][k % 4]));
        user.get_mut().write_all(&frame).await.unwrap();
        let mut echoed = vec![0; frame.len()];
        tokio::time::timeout(Duration::from_secs(5), user.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(echoed, frame, "frame {i} came back unchanged");
        let pause = if i == 15 { Duration::from_secs(2) } else { Duration::from_millis(20) };
        tokio::time::sleep(pause).await;
    }
}

#[tokio::test]
async fn allowed_ips_are_checked_against_the_real_ipv4_or_ipv6_address() {
    let dir = tempfile::tempdir().unwrap();
    // Public ports on [::], dual stack: IPv4 clients arrive as IPv4-mapped addresses.
    let (_ports, publisher) = relay_and_node("::".parse().unwrap(), dir.path()).await;
    let target = websocket_server().await;
    let v6_only = publisher.publish("run-6", 80, target, &["::1/128".into()]).await.unwrap();
    let v4_only = publisher.publish("run-4", 80, target, &["127.0.0.0/8".into()]).await.unwrap();

    // Answered: the connection carries a request through; refused: closed unanswered.
    let answered = |addr: SocketAddr| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.ok()?;
        let mut buf = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.ok()?.ok()?;
        Some(String::from_utf8_lossy(&buf).to_string())
    };
    let v6 = |port| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let v4 = |port| SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(answered(v6(v6_only.port)).await.as_deref(), Some("HTTP/1.1 200"));
    assert_eq!(answered(v4(v6_only.port)).await, None, "an IPv4 client of an IPv6-only run");
    assert_eq!(answered(v4(v4_only.port)).await.as_deref(), Some("HTTP/1.1 200"), "IPv4-mapped counts as IPv4");
    assert_eq!(answered(v6(v4_only.port)).await, None, "an IPv6 client of an IPv4-only run");
}
