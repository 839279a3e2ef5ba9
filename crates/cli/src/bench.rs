//! `gantry bench submit`: the create-job load generator.
//!
//! N clients on loopback each send requests back to back for a fixed time, first
//! to the unauthenticated no-op `GET /version` (no IO at all: the ceiling of this
//! server, this client and this machine in this run), then signed `POST /v1/jobs`
//! with a fresh nonce and timestamp per request. Prints accepted jobs/s, p50/p99
//! latency, jobs per commit (from the server's `gantry_store_commits_total` and
//! `gantry_store_writes_total`) and the ratio to the no-op ceiling. The machines are
//! shared and noisy, so the ratio is the figure to compare across runs.
//!
//! The reference used to be `/healthz`; since `/healthz` pings the database (a
//! load balancer must not send clients to an instance whose database is gone) it is
//! no longer a no-op, so ratios printed before that change are against a different
//! ceiling. `/version` is what `/healthz` was.
//!
//! Without `--url` it starts its own `gantry server` (this binary) on a temp data dir
//! (or on `--database-url`, a PostgreSQL database) and creates a key for itself; the
//! server runs as a separate process, as in production.

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
    /// End to end: submit → assigned through simulated nodes; placements/s and latency.
    Schedule(crate::bench_cluster::ScheduleArgs),
    /// Node loss: kill a share of simulated nodes; time to detection and re-placement.
    NodeLoss(crate::bench_cluster::NodeLossArgs),
    /// Docker agent overhead: assignment → container process running, vs a bare `docker run`.
    Agent(crate::bench_agent::AgentBenchArgs),
    /// The relay tunnel: one stream's throughput and the added round-trip latency vs
    /// direct loopback, and N concurrent connections with their memory.
    Relay(crate::bench_relay::RelayBenchArgs),
    /// Idle fleet: N nodes syncing once a second; syncs/s, sync p99, server CPU.
    Heartbeats(crate::bench_heartbeats::HeartbeatArgs),
    /// Status change → SSE client latency (p50/p99) and webhook delivery throughput.
    Events(crate::bench_events::EventsBenchArgs),
    /// Three instances on PostgreSQL, the leader killed under load: takeover time,
    /// and nothing lost, doubled or over-committed.
    Failover(crate::bench_failover::FailoverArgs),
    /// The only instance killed and restarted with a large store: time to accepting
    /// requests and to the first placement.
    Restart(crate::bench_restart::RestartArgs),
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
    /// Run the server the bench starts on this PostgreSQL database instead of SQLite:
    /// an empty database of its own (its jobs stay there, and each run's server has a
    /// fresh key, which a database used by another key refuses).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// An argument for the server the run starts (repeatable), e.g.
    /// `--server-arg=--max-pending-jobs=1000000000` to measure with quotas checked.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Submit(args) => submit(args).await,
        BenchCommand::Schedule(args) => crate::bench_cluster::schedule(args).await,
        BenchCommand::NodeLoss(args) => crate::bench_cluster::node_loss(args).await,
        BenchCommand::Agent(args) => crate::bench_agent::agent(args).await,
        BenchCommand::Relay(args) => crate::bench_relay::relay(args).await,
        BenchCommand::Heartbeats(args) => crate::bench_heartbeats::heartbeats(args).await,
        BenchCommand::Events(args) => crate::bench_events::events(args).await,
        BenchCommand::Failover(args) => crate::bench_failover::failover(args).await,
        BenchCommand::Restart(args) => crate::bench_restart::restart(args).await,
    }
}

/// The server a benchmark runs against, and a consumer key for it.
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) public_key: String,
    pub(crate) secret_key: String,
    /// The server process and its data dir, when the benchmark started its own.
    pub(crate) server: Option<(tokio::process::Child, tempfile::TempDir)>,
}

/// Starts a fresh `gantry server` (this binary) on a temp data dir, as a separate
/// process, with a consumer key.
pub(crate) async fn start_server() -> anyhow::Result<Target> {
    start_server_with(&[]).await
}

/// [`start_server`] with extra `gantry server` arguments.
pub(crate) async fn start_server_with(extra: &[String]) -> anyhow::Result<Target> {
    start_server_on(None, extra).await
}

/// [`start_server_with`] on a PostgreSQL database (`None`: SQLite in the data dir).
pub(crate) async fn start_server_on(database_url: Option<&str>, extra: &[String]) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let key = crate::admin::create_key_in(dir.path(), database_url, "bench", Preset::Consumer, None, None).await?;
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.args(["server", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    command.args(extra);
    let (child, url) = spawn_server(command).await?;
    Ok(Target {
        url,
        public_key: key.public_key,
        secret_key: key.secret_key.context("secret")?,
        server: Some((child, dir)),
    })
}

/// Spawns `command`, a `gantry server` listening on port 0 (with `RUST_LOG=warn`,
/// killed when dropped), and returns it with the URL it printed once listening; its
/// stdout is drained from then on, so the server never writes to a closed pipe.
pub(crate) async fn spawn_server(
    mut command: tokio::process::Command,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = command
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
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

/// A request body that every request of a phase shares.
type Body = http_body_util::Full<bytes::Bytes>;

/// Builds the next request of a phase.
type MakeRequest = Arc<dyn Fn() -> hyper::Request<Body> + Send + Sync>;

/// One keep-alive HTTP/1.1 connection driven by hyper directly. A load generator
/// should spend as little of the shared CPU as it can, so there is no pool and no
/// per-request client machinery; both phases use it, so the no-op ceiling and the
/// create-job figures carry the same client cost.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender })
    }

    /// Sends one request; `Some(status)` once the whole response arrived.
    async fn send(&mut self, req: hyper::Request<Body>) -> Option<u16> {
        use http_body_util::BodyExt;
        self.sender.ready().await.ok()?;
        let resp = self.sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    }
}

/// Runs `clients` connections sending `make()` back to back for `seconds`; a request
/// counts as ok when it answers `expect`.
async fn phase(addr: &str, clients: usize, seconds: u64, expect: u16, make: MakeRequest) -> anyhow::Result<Phase> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(Conn::open(addr).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (make, stop) = (make.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(64 * 1024));
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match conn.send(make()).await {
                        Some(status) if status == expect => {
                            ok += 1;
                            lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        }
                        Some(_) => errors += 1,
                        None => {
                            errors += 1;
                            break; // the connection is gone
                        }
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
        let (ok, errors, lat) = t.await?;
        out.ok += ok;
        out.errors += errors;
        out.latencies_us.extend(lat);
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

async fn store_counters(http: &reqwest::Client, url: &str) -> anyhow::Result<(u64, u64)> {
    let text = http.get(format!("{url}/metrics")).send().await?.text().await?;
    let read = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0);
    Ok((read("gantry_store_commits_total "), read("gantry_store_writes_total ")))
}

/// The create-job body every request sends: a realistic GPU job in the upstream shape.
fn job_body() -> serde_json::Value {
    json!({
        "title": "bench", "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 2, "gpu_count": 1,
        "min_vram_gb": 16, "gpu_name": "NVIDIA RTX 4090", "max_retry_count": 1,
        "parameters": {"type": "docker", "parameters": {
            "image": "ghcr.io/example/trainer", "tag": "v1", "env": {"EPOCHS": "3", "LR": "0.001"},
            "ports": [22, 8080], "allowed_ips": ["0.0.0.0/0"], "sshkey": "ssh-ed25519 AAAAC3Nza bench@gantry"}}
    })
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
            server: None,
        },
        None => start_server_on(args.database_url.as_deref(), &args.server_args).await?,
    };
    let addr = target.url.trim_start_matches("http://").trim_end_matches('/').to_string();
    eprintln!("bench: {} clients, {} s per phase, against {}", args.clients, args.seconds, target.url);

    let noop: MakeRequest = {
        let host = addr.clone();
        Arc::new(move || {
            hyper::Request::get("/version").header("host", host.as_str()).body(Body::default()).expect("request")
        })
    };
    phase(&addr, args.clients, 1, 200, noop.clone()).await?; // warm-up
    eprintln!("bench: measuring the no-op ceiling (GET /version: no IO; /healthz pings the database) ...");
    let mut noop_phase = phase(&addr, args.clients, args.seconds, 200, noop).await?;

    // The body is the same for every request, so its canonical bytes and hash are
    // computed once; every request still gets its own timestamp, nonce and HMAC.
    let body = job_body();
    let body_text = bytes::Bytes::from(gantry_auth::canonical_json(
        &body,
        gantry_auth::JsonStyle { ascii: true, js_numbers: true },
    ));
    let body_hash = gantry_auth::sha256_hex(&body_text);
    let create: MakeRequest = {
        let (host, pk, sk) = (addr.clone(), target.public_key.clone(), target.secret_key.clone());
        Arc::new(move || {
            let time = now_ms().to_string();
            let nonce = gantry_auth::new_nonce();
            let canonical = gantry_auth::canonical_string(&pk, &time, &nonce, "POST", "/v1/jobs", "", &body_hash);
            hyper::Request::post("/v1/jobs")
                .header("host", host.as_str())
                .header("x-api-key", pk.as_str())
                .header("x-time", time)
                .header("x-nonce", nonce)
                .header("x-signature", gantry_auth::sign(&sk, &canonical))
                .header("content-type", "application/json")
                .body(Body::new(body_text.clone()))
                .expect("request")
        })
    };
    let http = reqwest::Client::new();
    let (commits0, writes0) = store_counters(&http, &target.url).await?;
    // The server's own CPU per job, when this run started it: a figure that the
    // other tenants of a shared machine disturb less than the rate.
    let pid = target.server.as_ref().and_then(|(child, _)| child.id());
    let cpu0 = pid.map(crate::bench_heartbeats::cpu_ticks).transpose()?;
    eprintln!("bench: measuring signed, durable POST /v1/jobs ...");
    let mut create_phase = phase(&addr, args.clients, args.seconds, 201, create).await?;
    let cpu1 = pid.map(crate::bench_heartbeats::cpu_ticks).transpose()?;
    let (commits1, writes1) = store_counters(&http, &target.url).await?;
    // Clock ticks are 10 ms (USER_HZ 100).
    let cpu_us_per_job =
        cpu0.zip(cpu1).map(|(a, b)| (b.saturating_sub(a) as f64 * 10_000.0 / create_phase.ok.max(1) as f64).round());
    let commits = commits1.saturating_sub(commits0);
    let per_commit = if commits == 0 { 0.0 } else { writes1.saturating_sub(writes0) as f64 / commits as f64 };

    // Every acknowledged job must be readable back: the figure is of durable jobs.
    let client = gantry_client::Client::new(gantry_client::Credentials {
        base_url: target.url.clone(),
        public_key: target.public_key.clone(),
        secret_key: target.secret_key.clone(),
    });
    let stored = client.list_jobs(&[("limit".into(), "1".into())]).await?.total;
    anyhow::ensure!(stored >= create_phase.ok, "only {stored} jobs stored but {} acknowledged", create_phase.ok);

    let (p50, p99) = (create_phase.percentile_ms(0.50), create_phase.percentile_ms(0.99));
    let (noop_p50, noop_p99) = (noop_phase.percentile_ms(0.50), noop_phase.percentile_ms(0.99));
    let ratio = create_phase.rate() / noop_phase.rate().max(1.0);
    if args.json {
        let figures = json!({
            "clients": args.clients, "seconds": args.seconds,
            "jobs_accepted": create_phase.ok, "jobs_stored": stored, "errors": create_phase.errors,
            "jobs_per_s": create_phase.rate().round(), "p50_ms": p50, "p99_ms": p99,
            "backend": if args.database_url.is_some() { "postgres" } else { "sqlite" },
            "jobs_per_commit": (per_commit * 10.0).round() / 10.0,
            "noop_per_s": noop_phase.rate().round(), "noop_p50_ms": noop_p50, "noop_p99_ms": noop_p99,
            "ratio_to_noop": (ratio * 1000.0).round() / 1000.0,
            "server_cpu_us_per_job": cpu_us_per_job,
        });
        outln!("{}", serde_json::to_string_pretty(&figures)?)?;
    } else {
        outln!(
            "create-job (signed, durable): {:>8.0} jobs/s  p50 {p50:.2} ms  p99 {p99:.2} ms  errors {}",
            create_phase.rate(),
            create_phase.errors
        )?;
        outln!(
            "no-op GET /version (ceiling):  {:>8.0} req/s   p50 {noop_p50:.2} ms  p99 {noop_p99:.2} ms",
            noop_phase.rate()
        )?;
        let backend = if args.database_url.is_some() { "postgres" } else { "sqlite" };
        outln!(
            "backend {backend}   jobs per commit: {per_commit:.1}   ratio to no-op: {ratio:.3}   jobs read back: {stored}"
        )?;
        if let Some(us) = cpu_us_per_job {
            outln!("server CPU per job: {us:.0} us (the gantry server process only, not PostgreSQL)")?;
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
