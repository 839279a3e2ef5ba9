//! Loopback listeners behind a simulated run's published ports, so `node_urls` point
//! at something that answers: a client's "is it up" probe (a TCP connect, an SSH
//! banner read, an HTTP GET) succeeds against a simulated node as against a real one.
//!
//! Port 22 greets with an SSH identification line (`SSH-2.0-GantrySim`), like sshd;
//! any other port answers each connection's first request with a small HTTP/1.1 200
//! naming the run and port (nothing secret), then closes. The listeners bind
//! 127.0.0.1 and close when the run stops or exits.
//!
//! **Which ports:** explicit ones, handed out by a process-wide cursor that walks the
//! kernel's ephemeral range (`ip_local_port_range`) from a random start, skipping
//! ports in use. Letting the kernel choose (binding port 0) makes it search the range
//! for a free port under the bind-hash locks, and that search grows with the ports
//! already bound: with the thousands of simulated runs of `gantry bench schedule` in
//! one process, half of the benchmark process's time went into `bind(0)`, taken from
//! the server it shares the machine with. An explicit port is one hash lookup.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use gantry_types::JobRunId;
use gantry_types::job_run::NodeUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where simulated ports are reachable.
pub const SIM_HOST: &str = "127.0.0.1";

/// The listeners of one run; dropping them closes the ports.
#[derive(Default)]
pub struct SimPorts {
    tasks: Vec<JoinHandle<()>>,
    /// What the run reports as `node_urls`.
    pub urls: Vec<NodeUrl>,
    /// Each published container port and where its listener is (what a relay carries).
    pub targets: Vec<(u16, std::net::SocketAddr)>,
}

impl Drop for SimPorts {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SimPorts {
    /// Binds one listener per container port in `ports` (a port that cannot be bound is
    /// left out of `node_urls`, as a real node reports only what it published).
    pub async fn open(run: JobRunId, ports: &[u16]) -> Self {
        let mut out = Self::default();
        for &container_port in ports {
            let Ok(listener) = bind() else { continue };
            let Ok(addr) = listener.local_addr() else { continue };
            out.tasks.push(tokio::spawn(serve(listener, run, container_port)));
            out.targets.push((container_port, addr));
            out.urls.push(NodeUrl {
                description: if container_port == 22 { "ssh".into() } else { container_port.to_string() },
                hostname: SIM_HOST.into(),
                port: addr.port(),
                protocol: "tcp".into(),
                tls: false,
            });
        }
        out
    }
}

/// Ports tried before letting the kernel choose one.
const ATTEMPTS: u32 = 64;

/// A listener on the next free port of the ephemeral range (see the module doc).
fn bind() -> std::io::Result<TcpListener> {
    static CURSOR: OnceLock<AtomicU32> = OnceLock::new();
    let (first, last) = ephemeral_range();
    let size = u32::from(last - first) + 1;
    let cursor = CURSOR.get_or_init(|| {
        use rand::Rng;
        AtomicU32::new(rand::rng().next_u32() % size)
    });
    let socket = (0..ATTEMPTS)
        .find_map(|_| {
            let port = first + (cursor.fetch_add(1, Ordering::Relaxed) % size) as u16;
            std::net::TcpListener::bind((SIM_HOST, port)).ok()
        })
        .map_or_else(|| std::net::TcpListener::bind((SIM_HOST, 0)), Ok)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}

/// The kernel's ephemeral port range (Linux), else IANA's dynamic ports.
fn ephemeral_range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .filter(|(a, b)| *a > 0 && a <= b)
            .unwrap_or((49152, 65535))
    })
}

async fn serve(listener: TcpListener, run: JobRunId, container_port: u16) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        tokio::spawn(answer(stream, run, container_port));
    }
}

async fn answer(mut stream: TcpStream, run: JobRunId, container_port: u16) {
    if container_port == 22 {
        let _ = stream.write_all(b"SSH-2.0-GantrySim\r\n").await;
        return;
    }
    // Read the request head (or whatever arrives first), bounded in size and time.
    let mut buf = vec![0u8; 8192];
    let mut read = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while read < buf.len() && !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[read..])).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
    let body = format!("simulated run {run}: port {container_port} is up\n");
    let head = if buf[..read].starts_with(b"HEAD ") { String::new() } else { body.clone() };
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
