//! `gantry bench submit`: the create-job load generator.
//!
//! N clients on loopback each send requests back to back for a fixed time, first
//! to the unauthenticated no-op `/healthz` (the ceiling of this server, this client
//! and this machine in this run), then signed `POST /v1/jobs` with a fresh nonce and
//! timestamp per request. Prints accepted jobs/s, p50/p99 latency, jobs per fsync
//! (from the server's `/metrics`) and the ratio to the no-op ceiling. The machines
//! are shared and noisy, so the ratio is the figure to compare across runs.
//!
//! Without `--url` it starts its own `gantry server` (this binary) on a temp data dir
//! and creates a key for itself; the server runs as a separate process, as in
//! production.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_types::permissions::Preset;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable create-job throughput and latency against a same-run no-op ceiling.
    Submit(SubmitArgs),
}

/// `gantry bench submit`.
#[derive(Args)]
pub struct SubmitArgs {
    /// Server base URL; omitted: start a fresh server for the run.
    #[arg(long)]
    url: Option<String>,
    /// Public key (with --url).
    #[arg(long, env = "GANTRY_PUBLIC_KEY")]
    public_key: Option<String>,
    /// Secret key (with --url).
    #[arg(long, env = "GANTRY_SECRET_KEY")]
    secret_key: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Submit(args) => submit(args).await,
    }
}

struct Target {
    url: String,
    public_key: String,
    secret_key: String,
    _server: Option<(tokio::process::Child, tempfile::TempDir)>,
}

async fn start_server() -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let key = crate::admin::create_key_in(dir.path(), None, "bench", Preset::Consumer, None, None).await?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start gantry server")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("server stdout")?).lines();
    let url = loop {
        let line = lines.next_line().await?.context("server exited before listening")?;
        if let Some(url) = line.strip_prefix("gantry server listening on ") {
            break url.to_string();
        }
    };
    Ok(Target {
        url,
        public_key: key.public_key,
        secret_key: key.secret_key.context("secret")?,
        _server: Some((child, dir)),
    })
}

/// Results of one phase.
struct Phase {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Runs `clients` loops of `one` for `seconds`, collecting latencies.
async fn phase<F, Fut>(clients: usize, seconds: u64, one: F) -> Phase
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (one, stop) = (one.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(64 * 1024));
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if one().await {
                        ok += 1;
                        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    } else {
                        errors += 1;
                    }
                }
                (ok, errors, lat)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Phase { ok: 0, errors: 0, latencies_us: Vec::new(), elapsed: Duration::ZERO };
    for t in tasks {
        if let Ok((ok, errors, lat)) = t.await {
            out.ok += ok;
            out.errors += errors;
            out.latencies_us.extend(lat);
        }
    }
    out.elapsed = started.elapsed();
    out
}

async fn store_counters(http: &reqwest::Client, url: &str) -> anyhow::Result<(u64, u64)> {
    let text = http.get(format!("{url}/metrics")).send().await?.text().await?;
    let read = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0);
    Ok((read("gantry_store_commits_total "), read("gantry_store_writes_total ")))
}

async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let target = match args.url.clone() {
        Some(url) => Target {
            url,
            public_key: args
                .public_key
                .clone()
                .context("--public-key (or GANTRY_PUBLIC_KEY) is required with --url")?,
            secret_key: args
                .secret_key
                .clone()
                .context("--secret-key (or GANTRY_SECRET_KEY) is required with --url")?,
            _server: None,
        },
        None => start_server().await?,
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients * 2).build()?;
    eprintln!("bench: {} clients, {} s per phase, against {}", args.clients, args.seconds, target.url);

    // Warm up connections and the server's key cache.
    phase(args.clients, 1, noop(http.clone(), target.url.clone())).await;
    eprintln!("bench: measuring the no-op ceiling (GET /healthz) ...");
    let mut noop_phase = phase(args.clients, args.seconds, noop(http.clone(), target.url.clone())).await;

    let body = json!({
        "title": "bench", "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 2, "gpu_count": 1,
        "min_vram_gb": 16, "gpu_name": "NVIDIA RTX 4090", "max_retry_count": 1,
        "parameters": {"type": "docker", "parameters": {
            "image": "ghcr.io/example/trainer", "tag": "v1", "env": {"EPOCHS": "3", "LR": "0.001"},
            "ports": [22, 8080], "allowed_ips": ["0.0.0.0/0"], "sshkey": "ssh-ed25519 AAAAC3Nza bench@gantry"}}
    });
    // The body is the same for every request, so its canonical bytes and hash are
    // computed once; every request still gets its own timestamp, nonce and HMAC.
    let body_text = gantry_auth::canonical_json(&body, gantry_auth::JsonStyle { ascii: true, js_numbers: true });
    let body_hash = gantry_auth::body_hash_candidates(Some(&body)).remove(0);
    let create = {
        let (http, url) = (http.clone(), format!("{}/v1/jobs", target.url));
        let (pk, sk) = (target.public_key.clone(), target.secret_key.clone());
        let (body_text, body_hash) = (Arc::new(body_text), Arc::new(body_hash));
        move || {
            let (http, url, pk, sk) = (http.clone(), url.clone(), pk.clone(), sk.clone());
            let (body_text, body_hash) = (body_text.clone(), body_hash.clone());
            async move {
                let time = now_ms().to_string();
                let nonce = gantry_auth::new_nonce();
                let canonical = gantry_auth::canonical_string(&pk, &time, &nonce, "POST", "/v1/jobs", "", &body_hash);
                let signature = gantry_auth::sign(&sk, &canonical);
                let resp = http
                    .post(&url)
                    .header("X-API-Key", pk.as_str())
                    .header("X-Time", time)
                    .header("X-Nonce", nonce)
                    .header("X-Signature", signature)
                    .header("Content-Type", "application/json")
                    .body(body_text.as_str().to_owned())
                    .send()
                    .await;
                match resp {
                    Ok(r) => r.status() == reqwest::StatusCode::CREATED && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        }
    };
    let (commits0, writes0) = store_counters(&http, &target.url).await?;
    eprintln!("bench: measuring signed, durable POST /v1/jobs ...");
    let mut create_phase = phase(args.clients, args.seconds, create).await;
    let (commits1, writes1) = store_counters(&http, &target.url).await?;
    let commits = commits1.saturating_sub(commits0);
    let per_fsync = if commits == 0 { 0.0 } else { writes1.saturating_sub(writes0) as f64 / commits as f64 };

    let figures = json!({
        "clients": args.clients,
        "seconds": args.seconds,
        "jobs_accepted": create_phase.ok,
        "errors": create_phase.errors,
        "jobs_per_s": create_phase.rate().round(),
        "p50_ms": create_phase.percentile_ms(0.50),
        "p99_ms": create_phase.percentile_ms(0.99),
        "jobs_per_fsync": (per_fsync * 10.0).round() / 10.0,
        "noop_per_s": noop_phase.rate().round(),
        "noop_p50_ms": noop_phase.percentile_ms(0.50),
        "noop_p99_ms": noop_phase.percentile_ms(0.99),
        "ratio_to_noop": ((create_phase.rate() / noop_phase.rate().max(1.0)) * 1000.0).round() / 1000.0,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!(
            "create-job (signed, durable): {:>8.0} jobs/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
            create_phase.rate(),
            figures["p50_ms"].as_f64().unwrap_or(0.0),
            figures["p99_ms"].as_f64().unwrap_or(0.0),
            create_phase.errors
        );
        println!(
            "no-op GET /healthz (ceiling):  {:>8.0} req/s   p50 {:.2} ms  p99 {:.2} ms",
            noop_phase.rate(),
            figures["noop_p50_ms"].as_f64().unwrap_or(0.0),
            figures["noop_p99_ms"].as_f64().unwrap_or(0.0)
        );
        println!(
            "jobs per fsync: {:.1}   ratio to no-op: {:.3}",
            per_fsync,
            figures["ratio_to_noop"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

fn noop(
    http: reqwest::Client,
    url: String,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync + 'static {
    let url = format!("{url}/healthz");
    move || {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            match http.get(&url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
