//! `gantry bench heartbeats`: the control plane's cost of a fleet at rest. N simulated
//! idle nodes each send one heartbeat sync a second (no long-poll wait, so each
//! round trip is the server's work plus transport; a fenced answer counts as an
//! error); the bench reports the sustained
//! syncs/s against what was offered, sync latency p50/p99, and the server process's
//! CPU (cores used, from `/proc`). The reference, measured in the same run at the same
//! rate, is an unsigned `GET /healthz` (transport, HTTP and one store round trip).
//! The bench's own CPU (the simulated nodes: signing, JSON, HTTP) is reported apart as
//! client CPU: on a small machine it competes with the server for the same cores, so a
//! latency figure is only the server's own when client + server stay below the cores
//! there are (the load average is printed with each step for that reason).
//!
//! Several fleet sizes may be given (`--nodes 1000,5000,10000`); the ceiling reported
//! is the largest that met the target (sync p99 ≤ 20 ms, at least 95% of offered
//! syncs done, at most one core).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gantry_client::{Client, Credentials};
use gantry_types::node::{HardwareSample, RegisterNodeRequest};
use gantry_types::permissions::Preset;
use gantry_types::protocol::SyncRequest;

use crate::bench::start_server;

/// `gantry bench heartbeats`.
#[derive(Args)]
pub struct HeartbeatArgs {
    /// Fleet sizes to measure, smallest first (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    nodes: Vec<usize>,
    /// Seconds measured per fleet size (after one second of warm-up).
    #[arg(long, default_value_t = 15)]
    seconds: u64,
}

/// Target: sync p99 at most this, ms.
const TARGET_P99_MS: f64 = 20.0;

struct Step {
    nodes: usize,
    offered: f64,
    done: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    cores: f64,
    client_cores: f64,
    reference_p99_ms: f64,
}

/// Runs the benchmark and prints its figures.
pub async fn heartbeats(args: HeartbeatArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.nodes.is_empty() && args.nodes.iter().all(|n| *n > 0), "--nodes needs sizes above 0");
    let target = start_server().await?;
    let (child, dir) = target.server.as_ref().context("own server")?;
    let pid = child.id().context("server pid")?;
    let key = crate::admin::create_key_in(dir.path(), None, "bench nodes", Preset::Node, None, None).await?;
    let client = Client::new(Credentials {
        base_url: target.url.clone(),
        public_key: key.public_key,
        secret_key: key.secret_key.context("secret")?,
    });
    let inventory =
        gantry_agent::inventory::parse_fake_spec("1xNVIDIA RTX 4090:24").map_err(anyhow::Error::msg)?.inventory;
    let mut known: Vec<Option<gantry_types::NodeId>> = Vec::new();
    let mut steps = Vec::new();
    for &size in &args.nodes {
        known.resize(size.max(known.len()), None);
        eprintln!("bench: {size} idle nodes syncing once a second for {} s ...", args.seconds);
        let (step, ids) =
            measure(&client, &target.url, pid, &known[..size], &inventory, Duration::from_secs(args.seconds)).await?;
        known[..size].copy_from_slice(&ids);
        print_step(&step)?;
        steps.push(step);
    }
    let ceiling = steps
        .iter()
        .filter(|s| s.p99_ms <= TARGET_P99_MS && s.done >= 0.95 * s.offered && s.cores <= 1.0)
        .map(|s| s.nodes)
        .max();
    match ceiling {
        Some(n) => outln!(
            "ceiling: {n} nodes met the target (sync p99 ≤ {TARGET_P99_MS} ms, ≥ 95% of offered syncs, ≤ 1 core)"
        )?,
        None => outln!(
            "ceiling: no measured size met the target (sync p99 ≤ {TARGET_P99_MS} ms, ≥ 95% of offered syncs, ≤ 1 core)"
        )?,
    }
    Ok(())
}

fn print_step(s: &Step) -> std::io::Result<()> {
    outln!(
        "{:>6} nodes: {:>7.0} syncs/s of {:>7.0} offered ({:.0}%), sync p50 {:.1} ms p99 {:.1} ms, \
         {} errors, server CPU {:.2} cores ({:.0} µs/sync), bench client CPU {:.2} cores; \
         reference GET /healthz p99 {:.1} ms (ratio {:.2}); load average {}",
        s.nodes,
        s.done,
        s.offered,
        100.0 * s.done / s.offered.max(1.0),
        s.p50_ms,
        s.p99_ms,
        s.errors,
        s.cores,
        1e6 * s.cores / s.done.max(1.0),
        s.client_cores,
        s.reference_p99_ms,
        s.p99_ms / s.reference_p99_ms.max(0.001),
        load_average()
    )
}

/// One fleet size: each node registers (or re-attaches, after sitting out a smaller
/// step), then syncs once a second, the fleet spread evenly over the second. Returns
/// the figures and the node ids.
async fn measure(
    client: &Client,
    url: &str,
    pid: u32,
    nodes: &[Option<gantry_types::NodeId>],
    inventory: &gantry_types::node::NodeInventory,
    length: Duration,
) -> anyhow::Result<(Step, Vec<Option<gantry_types::NodeId>>)> {
    let warmup = Duration::from_secs(1);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let registered = Arc::new(tokio::sync::Semaphore::new(0));
    // Registrations at once: enough to register thousands in seconds, few enough not
    // to starve the syncs of the nodes already registered.
    let registering = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::with_capacity(nodes.len());
    let spread = Duration::from_secs(1).as_nanos() as u64 / nodes.len() as u64;
    for (i, &known) in nodes.iter().enumerate() {
        let (client, measuring, stop) = (client.clone(), measuring.clone(), stop.clone());
        let (registered, registering) = (registered.clone(), registering.clone());
        let req = RegisterNodeRequest {
            node_uuid: known,
            name: Some(format!("hb-{i}")),
            region_code: None,
            labels: Default::default(),
            hostname: Some("127.0.0.1".into()),
            inventory: Some(inventory.clone()),
        };
        tasks.push(tokio::spawn(async move {
            let permit = registering.acquire().await.expect("open");
            let reg = client.register_node(&req).await;
            drop(permit);
            registered.add_permits(1);
            let (node, epoch) = match reg {
                Ok(reg) => (reg.node.uuid, reg.lease_epoch),
                Err(e) => return Err(anyhow::anyhow!("node {i} cannot register: {e}")),
            };
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let start = tokio::time::Instant::now() + Duration::from_nanos(spread * i as u64);
            let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let req = SyncRequest {
                    lease_epoch: epoch,
                    sample: Some(HardwareSample {
                        cpu_load: 1.0,
                        ram_free_gb: 60.0,
                        storage_free_gb: 100.0,
                        gpus: vec![],
                    }),
                    runs: vec![],
                    desired_version: None,
                    wait_ms: Some(0),
                    ..Default::default()
                };
                let sent = Instant::now();
                let result = client.sync_node(node, &req).await;
                if measuring.load(Ordering::Relaxed) {
                    match result {
                        Ok(d) if !d.fenced => latencies.push(sent.elapsed().as_micros() as u32),
                        _ => errors += 1,
                    }
                }
            }
            Ok((node, latencies, errors))
        }));
    }
    let all_registered = registered.acquire_many(nodes.len() as u32).await.expect("open");
    all_registered.forget();
    // The reference: unsigned /healthz, 100 a second, through the same period.
    let http = reqwest::Client::new();
    let health = format!("{url}/healthz");
    let (ref_measuring, ref_stop) = (measuring.clone(), stop.clone());
    let reference = tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !ref_stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let sent = Instant::now();
            let ok = http.get(&health).send().await.is_ok_and(|r| r.status().is_success());
            if ok && ref_measuring.load(Ordering::Relaxed) {
                latencies.push(sent.elapsed().as_micros() as u32);
            }
        }
        latencies
    });
    tokio::time::sleep(warmup).await;
    let cpu_before = cpu_ticks(pid)?;
    let client_before = cpu_ticks(std::process::id())?;
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(length).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks(pid)?;
    let client_after = cpu_ticks(std::process::id())?;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    let mut ids = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (node, lat, err) = t.await??;
        ids.push(Some(node));
        all.extend(lat);
        errors += err;
    }
    let mut reference = reference.await?;
    all.sort_unstable();
    reference.sort_unstable();
    let pct =
        |v: &[u32], p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |us| *us as f64 / 1000.0);
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let step = Step {
        nodes: nodes.len(),
        offered: nodes.len() as f64,
        done: all.len() as f64 / elapsed,
        p50_ms: pct(&all, 0.5),
        p99_ms: pct(&all, 0.99),
        errors,
        cores: (cpu_after - cpu_before) as f64 / ticks_per_second / elapsed,
        client_cores: (client_after - client_before) as f64 / ticks_per_second / elapsed,
        reference_p99_ms: pct(&reference, 0.99),
    };
    Ok((step, ids))
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), or "?".
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// The process's user + system CPU time so far, in clock ticks (`/proc/PID/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("cannot read the server's CPU time")?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("unexpected /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12th and 13th here.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}
