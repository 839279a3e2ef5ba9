//! `gantry bench relay`: what the relay tunnel costs (issue 14 point 6).
//!
//! Everything runs in this process on loopback, as one deployment would across
//! machines: a relay (TLS tunnel listener, public ports), a node's tunnel to it (the
//! agent's side, `gantry_relay::node`), and an echo server standing in for a run's
//! published port. Each figure is measured through the relay and, as the reference in
//! the same run, directly against the echo server:
//!
//! * throughput of one TCP stream (bytes sent and echoed back), ratio relay / direct
//!   (target at least 0.5);
//! * added latency per round trip (1 byte each way), p50 relay minus p50 direct
//!   (target at most 0.5 ms);
//! * N concurrent connections (default 1,000) held open through one relay, each
//!   checked with a round trip while all are open, and the process's resident memory
//!   growth per connection (relay, node side and echo server together: an upper bound
//!   for the relay's own share).
//!
//! The throughput figure is taken in interleaved rounds (`--rounds`, default 5): each
//! round moves `--mib` through one direct stream and one relayed stream back to back,
//! relayed first in every other round, and the reported ratio is the median of the
//! rounds' own ratios (each round's ratio, the lowest and the highest are printed too).
//! Why: on a shared machine the load swings within seconds, and with one direct stream
//! followed by one relayed stream, a burst of other work during either one alone moved
//! the ratio by a third (0.40 to 0.68 on the same build). Pairing adjacent streams puts
//! both sides of each ratio under nearly the same load, alternating the order stops a
//! trend in the load from always favouring the side measured first, and the median
//! drops a round hit by a burst. What is measured (one stream of `--mib` each way,
//! relay versus direct) is unchanged; only how often and in what order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `gantry bench relay`.
#[derive(Args)]
pub struct RelayBenchArgs {
    /// MiB sent (and echoed back) through one stream for the throughput figure, per
    /// stream: each round measures one direct and one relayed stream.
    #[arg(long, default_value_t = 128)]
    mib: usize,
    /// Rounds of the throughput figure (direct and relayed, alternating which goes
    /// first); the ratio reported is the median of the rounds' ratios.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Round trips for the latency figure.
    #[arg(long, default_value_t = 5000)]
    round_trips: usize,
    /// Concurrent connections held through the relay.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub async fn relay(args: RelayBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tls = gantry_tls::write_self_signed(dir.path(), &["127.0.0.1".into()], false)?;
    let echo = echo_server().await?;

    // The relay.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let tunnel_addr = listener.local_addr()?;
    let tunnels = gantry_relay::edge::Tunnels::default();
    let first = free_port()?;
    let limits = gantry_relay::port::PortLimits {
        max_connections: args.connections.max(1) + 16,
        ..gantry_relay::port::PortLimits::default()
    };
    let ports = Arc::new(gantry_relay::public::PublicPorts::new(
        "127.0.0.1",
        [127, 0, 0, 1].into(),
        (first, first.saturating_add(63)),
        tunnels.clone(),
        limits,
    ));
    let acceptor = gantry_tls::acceptor(&gantry_tls::CertFiles { cert: tls.cert.clone(), key: tls.key.clone() })?;
    let check = |_: &gantry_relay::Hello| Ok(());
    let relay_task =
        gantry_relay::edge::serve_tunnels(listener, acceptor, Arc::new(check), tunnels, ports, Duration::from_secs(10));

    // The node's side.
    let publisher = Arc::new(gantry_relay::node::Publisher::default());
    let addr = gantry_relay::node::RelayAddr {
        addr: tunnel_addr.to_string(),
        server_name: "127.0.0.1".into(),
        tls: gantry_tls::client_config(&tls.ca_cert)?,
    };
    let hello =
        gantry_relay::Hello { version: gantry_relay::PROTOCOL_VERSION, node: "bench".into(), token: "-".into() };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let node_task = tokio::spawn(gantry_relay::node::run_fixed(addr, hello, publisher.clone(), stop_rx));
    let carried = publisher.publish("bench-run", 8080, echo, &[]).await.context("publishing the bench port")?;
    let public: SocketAddr = ([127, 0, 0, 1], carried.port).into();

    let bytes = args.mib.max(1) * 1024 * 1024;
    let mut rounds = Vec::with_capacity(args.rounds.max(1));
    for round in 0..args.rounds.max(1) {
        let (direct_bps, relay_bps) = if round % 2 == 0 {
            let direct = throughput(echo, bytes).await?;
            (direct, throughput(public, bytes).await?)
        } else {
            let relay = throughput(public, bytes).await?;
            (throughput(echo, bytes).await?, relay)
        };
        rounds.push(Round { direct_bps, relay_bps });
    }
    let direct_p50 = round_trip_p50(echo, args.round_trips.max(1)).await?;
    let relay_p50 = round_trip_p50(public, args.round_trips.max(1)).await?;
    let (held, per_conn_kib) = concurrent(public, args.connections).await?;

    let _ = stop_tx.send(true);
    let _ = node_task.await;
    relay_task.abort();

    let ratio = median(rounds.iter().map(Round::ratio).collect());
    let (ratio_min, ratio_max) =
        rounds.iter().map(Round::ratio).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let relay_bps = median(rounds.iter().map(|r| r.relay_bps).collect());
    let direct_bps = median(rounds.iter().map(|r| r.direct_bps).collect());
    // Can be slightly negative on a noisy machine: not a Duration.
    let added_ms = (relay_p50.as_secs_f64() - direct_p50.as_secs_f64()) * 1000.0;
    if args.json {
        let figures = serde_json::json!({
            "throughput_relay_mib_s": relay_bps / 1048576.0,
            "throughput_direct_mib_s": direct_bps / 1048576.0,
            "ratio_relay_to_direct": ratio,
            "ratio_min": ratio_min,
            "ratio_max": ratio_max,
            "throughput_rounds": rounds.iter().map(|r| serde_json::json!({
                "relay_mib_s": r.relay_bps / 1048576.0,
                "direct_mib_s": r.direct_bps / 1048576.0,
                "ratio": r.ratio(),
            })).collect::<Vec<_>>(),
            "round_trip_p50_relay_ms": relay_p50.as_secs_f64() * 1000.0,
            "round_trip_p50_direct_ms": direct_p50.as_secs_f64() * 1000.0,
            "added_latency_p50_ms": added_ms,
            "connections_held": held,
            "memory_per_connection_kib": per_conn_kib,
        });
        outln!("{figures}")?;
        return Ok(());
    }
    outln!("one TCP stream, {} MiB each way, {} rounds (medians):", args.mib.max(1), rounds.len())?;
    outln!("  through the relay  {:8.1} MiB/s", relay_bps / 1048576.0)?;
    outln!("  direct loopback    {:8.1} MiB/s   (reference)", direct_bps / 1048576.0)?;
    let each: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r.ratio())).collect();
    outln!("  ratio {ratio:.2} (target at least 0.5); rounds {}, lowest {ratio_min:.2}", each.join(" "))?;
    outln!("round trip, 1 byte each way, {} times:", args.round_trips.max(1))?;
    outln!("  through the relay  p50 {:.3} ms", relay_p50.as_secs_f64() * 1000.0)?;
    outln!("  direct loopback    p50 {:.3} ms   (reference)", direct_p50.as_secs_f64() * 1000.0)?;
    outln!("  added p50 {added_ms:.3} ms (target at most 0.5 ms)")?;
    outln!(
        "{held} of {} concurrent connections held through one relay; resident memory {per_conn_kib:.1} KiB per connection \
         (relay, node side and echo server together)",
        args.connections
    )?;
    Ok(())
}

/// One round of the throughput figure: a direct and a relayed stream, back to back.
struct Round {
    direct_bps: f64,
    relay_bps: f64,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.relay_bps / self.direct_bps
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?.port().min(65_400))
}

async fn echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// Bytes per second of `bytes` sent and echoed back on one connection.
async fn throughput(to: SocketAddr, bytes: usize) -> anyhow::Result<f64> {
    let stream = TcpStream::connect(to).await?;
    stream.set_nodelay(true)?;
    let (mut r, mut w) = stream.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).await?;
            left -= n;
        }
        w.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = r.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the stream ended after {got} of {bytes} bytes");
        got += n;
    }
    writer.await??;
    Ok(bytes as f64 / started.elapsed().as_secs_f64())
}

/// The median of `n` one-byte round trips on one connection.
async fn round_trip_p50(to: SocketAddr, n: usize) -> anyhow::Result<Duration> {
    let mut s = TcpStream::connect(to).await?;
    s.set_nodelay(true)?;
    let mut byte = [0u8; 1];
    for _ in 0..100.min(n) {
        s.write_all(&[1]).await?;
        s.read_exact(&mut byte).await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        s.write_all(&[1]).await?;
        s.read_exact(&mut byte).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Opens `n` connections through the relay, each with a round trip, holds them all,
/// checks each again; returns how many held and the resident memory per connection.
async fn concurrent(to: SocketAddr, n: usize) -> anyhow::Result<(usize, f64)> {
    let before = resident_kib();
    let mut held = Vec::with_capacity(n);
    let mut byte = [0u8; 1];
    for _ in 0..n {
        let mut s = TcpStream::connect(to).await?;
        s.write_all(&[1]).await?;
        s.read_exact(&mut byte).await?;
        held.push(s);
    }
    let after = resident_kib();
    let mut alive = 0;
    for s in &mut held {
        if s.write_all(&[2]).await.is_ok() && s.read_exact(&mut byte).await.is_ok() {
            alive += 1;
        }
    }
    let per = match (before, after) {
        (Some(b), Some(a)) if n > 0 => a.saturating_sub(b) as f64 / n as f64,
        _ => f64::NAN,
    };
    Ok((alive, per))
}

/// This process's resident memory, KiB (`VmRSS` in /proc/self/status; Linux).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
