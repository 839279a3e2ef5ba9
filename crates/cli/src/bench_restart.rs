//! `gantry bench restart`: how fast the only instance is back after a kill -9 with a
//! large store (issue 11, point 8: accepting requests within 2 s and scheduling
//! within 5 s with 100k jobs in the store).
//!
//! The store is filled through the store crate (concurrent `job_create`s, which the
//! store's writer batches into few commits): half the jobs PENDING for a GPU no node
//! has (a backlog the scheduler's queue reads must step over), half CANCELLED (history),
//! all in a backlog account of their own. A server on a fixed port with one simulated
//! CPU node runs, is killed with SIGKILL, and is started again on the same port and
//! store (filled while it is down); the bench measures from the new process's spawn:
//! - **accepting**: the first 2xx to a signed `GET /v1/jobs?limit=1`;
//! - **scheduling**: the first run of a CPU job submitted (by another account) as soon
//!   as the server accepts, by the server's clock for the run's creation.
//!
//! The reference, in the same run: the same kill and restart with an empty store
//! first. Points of start-up that scale with the store (a full scan, the scheduler
//! model's rebuild) show up as the ratio between the two.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gantry_client::{Client, Credentials, query};
use gantry_types::job::JobStatus;
use gantry_types::permissions::Preset;
use serde::Serialize;

use crate::bench::spawn_server;
use crate::bench_cluster::{cpu_job, now_ms};

/// `gantry bench restart`.
#[derive(Args)]
pub struct RestartArgs {
    /// Jobs in the store at the measured restart.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Run on this (empty) PostgreSQL database instead of SQLite in a temp data dir.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

/// One restart's figures, ms from the new process's spawn.
#[derive(Serialize, Clone, Copy)]
struct Restart {
    accepting_ms: i64,
    scheduling_ms: i64,
}

#[derive(Serialize)]
struct Figures {
    jobs: usize,
    backend: &'static str,
    fill_jobs_per_s: f64,
    empty: Restart,
    full: Restart,
}

struct Setup {
    dir: tempfile::TempDir,
    database_url: Option<String>,
    listen: String,
    consumer: Client,
    backlog_account: gantry_types::AccountId,
    store: Arc<dyn gantry_store::Store>,
}

/// Runs the benchmark and prints its figures.
pub async fn restart(args: RestartArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (store, secrets) = crate::admin::open(&crate::admin::StoreArgs {
        data_dir: dir.path().to_path_buf(),
        database_url: args.database_url.clone(),
        server_key_file: None,
    })
    .await?;
    let consumer_key =
        crate::admin::create_key_with(store.as_ref(), &secrets, "bench", Preset::Consumer, None, None).await?;
    let backlog =
        crate::admin::create_key_with(store.as_ref(), &secrets, "backlog", Preset::Consumer, None, None).await?;
    let node_key = crate::admin::create_key_with(store.as_ref(), &secrets, "node", Preset::Node, None, None).await?;
    // A port of our own, kept across the restarts so the agent finds the server again.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let base_url = format!("http://{listen}");
    let creds = |key: &gantry_types::api_key::ApiKey| Credentials {
        base_url: base_url.clone(),
        public_key: key.public_key.clone(),
        secret_key: key.secret_key.clone().unwrap_or_default(),
    };
    let setup = Setup {
        dir,
        database_url: args.database_url.clone(),
        listen,
        consumer: Client::new(creds(&consumer_key)),
        backlog_account: backlog.account_uuid,
        store,
    };

    let mut server = setup.spawn().await?;
    let (stop, _) = tokio::sync::watch::channel(false);
    let description = gantry_agent::inventory::parse_fake_spec("cpus=64").map_err(anyhow::Error::msg)?;
    let config = gantry_agent::AgentConfig {
        name: "restart-0".into(),
        description,
        hostname: Some("127.0.0.1".into()),
        sync_wait_ms: 1000,
        state: None,
        probe: None,
    };
    let runtime = Arc::new(gantry_agent::fake::FakeRuntime::default());
    let agent =
        tokio::spawn(gantry_agent::Agent::new(Client::new(creds(&node_key)), runtime, config).run(stop.subscribe()));
    // The node is known and scheduling works before the first kill.
    setup.probe_placement(Instant::now()).await?;

    eprintln!("bench: reference: kill -9 and restart with an empty store ...");
    server.kill().await.context("kill -9 the server")?;
    let empty = setup.restart(&mut server).await?;
    // Filled while the server is down: one writer process at a time on SQLite.
    server.kill().await.context("kill -9 the server")?;
    eprintln!("bench: server killed; filling the store with {} jobs ...", args.jobs);
    let fill_rate = setup.fill(args.jobs).await?;
    eprintln!("bench: {fill_rate:.0} jobs/s; restarting with {} jobs ...", args.jobs);
    let full = setup.restart(&mut server).await?;

    let _ = stop.send(true);
    agent.abort();
    let _ = server.kill().await;
    let f = Figures {
        jobs: args.jobs,
        backend: if args.database_url.is_some() { "postgres" } else { "sqlite" },
        fill_jobs_per_s: fill_rate,
        empty,
        full,
    };
    if args.json {
        outln!("{}", serde_json::to_string(&f)?)?;
        return Ok(());
    }
    outln!(
        "restart with {} jobs ({}): accepting after {} ms (target <= 2000), scheduling after {} ms (target <= 5000)",
        f.jobs,
        f.backend,
        full.accepting_ms,
        full.scheduling_ms
    )?;
    outln!(
        "reference, empty store in this run: accepting after {} ms, scheduling after {} ms; ratios {:.2} and {:.2}",
        empty.accepting_ms,
        empty.scheduling_ms,
        full.accepting_ms as f64 / empty.accepting_ms.max(1) as f64,
        full.scheduling_ms as f64 / empty.scheduling_ms.max(1) as f64
    )?;
    let _ = setup.dir;
    Ok(())
}

impl Setup {
    async fn spawn(&self) -> anyhow::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.args(["server", "--listen", &self.listen, "--data-dir"]).arg(self.dir.path());
        if let Some(url) = &self.database_url {
            cmd.args(["--database-url", url]);
        }
        Ok(spawn_server(cmd).await?.0)
    }

    /// Starts the (killed) server again and measures the restart.
    async fn restart(&self, server: &mut tokio::process::Child) -> anyhow::Result<Restart> {
        let spawned = Instant::now();
        let spawned_ms = now_ms();
        *server = self.spawn().await?;
        let accepting = loop {
            if self.consumer.list_jobs(&query(&[("limit", "1")])).await.is_ok() {
                break spawned.elapsed();
            }
            anyhow::ensure!(spawned.elapsed() < Duration::from_secs(60), "not accepting 60 s after the restart");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let placed_at = self.probe_placement(spawned).await?;
        Ok(Restart { accepting_ms: accepting.as_millis() as i64, scheduling_ms: placed_at - spawned_ms })
    }

    /// Submits a CPU job and waits for its run; returns the run's creation time (ms
    /// since the epoch, by the server's clock).
    async fn probe_placement(&self, since: Instant) -> anyhow::Result<i64> {
        let job = self.consumer.create_job(&cpu_job("restart probe")).await?;
        loop {
            let runs = self.consumer.runs_of_job(job.uuid).await?;
            if let Some(run) = runs.first() {
                return Ok(run.created_at.0);
            }
            anyhow::ensure!(since.elapsed() < Duration::from_secs(60), "the probe job not placed after 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Adds `count` jobs to the store through the store crate, 64 at once; returns jobs/s.
    async fn fill(&self, count: usize) -> anyhow::Result<f64> {
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (store, next, account) = (self.store.clone(), next.clone(), self.backlog_account);
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let mut body = cpu_job(&format!("backlog-{i}"));
                    body["gpu_count"] = serde_json::json!(1);
                    let req = serde_json::from_value(body)?;
                    let spec = gantry_types::validate::validate_create_job(req)
                        .map_err(|e| anyhow::anyhow!("backlog job: {e:?}"))?;
                    let mut job = spec.into_job(gantry_types::JobId::new(), account, now_ms());
                    if i % 2 == 1 {
                        job.status = JobStatus::Cancelled;
                        job.completed_at = Some(job.created_at);
                        job.status_reason = Some("cancelled while pending".into());
                    }
                    store.job_create(&job).await?;
                }
            });
        }
        while let Some(t) = tasks.join_next().await {
            t??;
        }
        Ok(count as f64 / started.elapsed().as_secs_f64())
    }
}
