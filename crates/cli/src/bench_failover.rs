//! `gantry bench failover`: the control plane losing its leader under load (issue 11,
//! point 8). Three `gantry server` processes of this binary share one PostgreSQL
//! database; simulated nodes are spread over them (each agent lists all three
//! instances, its own first); clients submit jobs at `--rate` round-robin across the
//! instances. After `--kill-after` seconds the leader (found by its `GET /healthz`
//! role) is killed with SIGKILL, and submitting goes on against the survivors.
//!
//! Then, from what the surviving instances answer:
//! - **takeover**: the time from the kill to the first run created afterwards (only
//!   the new leader can place once the old one is dead), against the lease TTL (what
//!   bounds it) and the placement latency of the same run before the kill;
//! - **acknowledged jobs lost**: jobs whose create was answered 2xx but that do not
//!   exist afterwards (must be 0);
//! - **double runs**: jobs with two runs of the same attempt and rank (must be 0);
//! - **over-committed nodes**: nodes that at some instant held more active runs than
//!   cores, from the runs' created/ended times (must be 0);
//! - **agents lost**: nodes not ONLINE at the end or registered again after being
//!   declared lost (a higher lease epoch than before the load), and runs that ended (the jobs run
//!   for an hour, so any ended run was failed by the control plane) (must be 0).
//!
//! Real processes and a real kill, because what is measured is what a kill -9 leaves
//! behind: a lease nobody renews, connections cut mid-request, a scheduler pass cut
//! mid-transaction. `--json` prints the figures as one object (the integration test
//! `crates/cli/tests/failover.rs` runs it small and asserts them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gantry_client::{Client, Credentials, query};
use gantry_types::job::Job;
use gantry_types::job_run::JobRun;
use gantry_types::list::ListResponse;
use gantry_types::node::{Node, NodeStatus};
use gantry_types::permissions::Preset;
use gantry_types::{JobId, NodeId};
use serde::Serialize;

use crate::bench::spawn_server;
use crate::bench_cluster::{all, cpu_job, now_ms, percentile};

/// `gantry bench failover`.
#[derive(Args)]
pub struct FailoverArgs {
    /// The PostgreSQL database the three instances share: an empty one of its own
    /// (the run's nodes and jobs stay there).
    #[arg(long, value_name = "URL")]
    database_url: String,
    /// Simulated nodes, spread over the instances.
    #[arg(long, default_value_t = 30)]
    nodes: usize,
    /// Cores per node (each job takes one; the jobs run for an hour, so every job
    /// submitted needs a core of its own).
    #[arg(long, default_value_t = 512)]
    cores: u32,
    /// Jobs submitted per second, round-robin across the instances.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of submitting in all.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Seconds after the submitting starts when the leader is killed.
    #[arg(long, default_value_t = 4)]
    kill_after: u64,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The figures of one run.
#[derive(Serialize)]
struct Figures {
    submitted: u64,
    acknowledged: u64,
    refused: u64,
    achieved_rate: f64,
    /// Kill → first run created by the new leader, ms.
    kill_to_first_placement_ms: i64,
    /// Kill → a survivor's `/healthz` says leader, ms (as polled, every 50 ms).
    kill_to_new_leader_ms: i64,
    lease_ttl_ms: u64,
    placement_p50_before_ms: i64,
    placement_p99_before_ms: i64,
    placement_p99_after_ms: i64,
    acknowledged_lost: u64,
    double_runs: u64,
    overcommitted_nodes: u64,
    agents_lost: u64,
    runs_ended: u64,
    runs_after_kill: u64,
}

struct Instance {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

/// Runs the benchmark and prints its figures.
pub async fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.kill_after < args.seconds, "--kill-after must be less than --seconds");
    anyhow::ensure!(args.rate > 0 && args.nodes > 0, "--rate and --nodes must be above 0");
    let capacity = args.nodes as u64 * u64::from(args.cores);
    anyhow::ensure!(
        u64::from(args.rate) * args.seconds <= capacity,
        "{} jobs need more cores than {capacity}: raise --nodes or --cores",
        u64::from(args.rate) * args.seconds
    );
    let url = args.database_url.as_str();
    let mut instances = Vec::new();
    let first_dir = tempfile::tempdir()?;
    let consumer_key =
        crate::admin::create_key_in(first_dir.path(), Some(url), "bench failover", Preset::Consumer, None, None)
            .await?;
    let node_key =
        crate::admin::create_key_in(first_dir.path(), Some(url), "bench nodes", Preset::Node, None, None).await?;
    let key_file = first_dir.path().join("server.key");
    for _ in 0..3 {
        let dir = tempfile::tempdir()?;
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path());
        cmd.args(["--database-url", url]).arg("--secret-key-file").arg(&key_file);
        let (child, base) = spawn_server(cmd).await?;
        instances.push(Instance { child, url: base, _dir: dir });
    }
    let urls: Vec<String> = instances.iter().map(|i| i.url.clone()).collect();
    // Instance `i` first, then the others: round-robin with failover.
    let rotated = |i: usize| (0..3).map(|k| urls[(i + k) % 3].clone()).collect::<Vec<_>>().join(",");
    let creds = |base_url: String, key: &gantry_types::api_key::ApiKey| Credentials {
        base_url,
        public_key: key.public_key.clone(),
        secret_key: key.secret_key.clone().unwrap_or_default(),
    };
    let consumers: Vec<Client> = (0..3).map(|i| Client::new(creds(rotated(i), &consumer_key))).collect();
    let (stop, _) = tokio::sync::watch::channel(false);
    let description =
        gantry_agent::inventory::parse_fake_spec(&format!("cpus={}", args.cores)).map_err(anyhow::Error::msg)?;
    let mut agents = Vec::new();
    for i in 0..args.nodes {
        let config = gantry_agent::AgentConfig {
            name: format!("failover-{i}"),
            description: description.clone(),
            hostname: Some("127.0.0.1".into()),
            sync_wait_ms: 1000,
            state: None,
            probe: None,
        };
        let client = Client::new(creds(rotated(i % 3), &node_key));
        let runtime = Arc::new(gantry_agent::fake::FakeRuntime::default());
        agents.push(tokio::spawn(gantry_agent::Agent::new(client, runtime, config).run(stop.subscribe())));
    }
    let observer = Client::new(creds(urls.join(","), &node_key));
    wait_online(&observer, args.nodes).await?;
    // A node declared lost registers again with a higher lease epoch, ONLINE by the
    // end: the epochs now tell such a node from one that was never lost.
    let epochs: HashMap<NodeId, i64> =
        all::<Node>(&observer, "/v1/nodes", &[]).await?.into_iter().map(|n| (n.uuid, n.lease_epoch)).collect();
    let leader = leader_of(&urls).await?;
    eprintln!(
        "bench: 3 instances, {} nodes online; leader {}; submitting {}/s for {} s ...",
        args.nodes, urls[leader], args.rate, args.seconds
    );

    let acknowledged = Arc::new(Mutex::new(Vec::<(JobId, i64)>::new()));
    let submitter =
        tokio::spawn(submit_at_rate(consumers, args.rate, Duration::from_secs(args.seconds), acknowledged.clone()));
    tokio::time::sleep(Duration::from_secs(args.kill_after)).await;
    let killed_at = now_ms();
    instances[leader].child.start_kill().context("kill -9 the leader")?;
    let killed = Instant::now();
    eprintln!("bench: killed the leader {} (SIGKILL)", urls[leader]);
    let survivors: Vec<String> =
        urls.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, u)| u.clone()).collect();
    let new_leader_after = loop {
        if leader_of(&survivors).await.is_ok() {
            break killed.elapsed();
        }
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "no new leader 60 s after the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (submitted, refused, elapsed) = submitter.await??;

    // Everything acknowledged placed (or given up on), then read it all back.
    let reader = Client::new(creds(survivors.join(","), &consumer_key));
    let node_reader = Client::new(creds(survivors.join(","), &node_key));
    let waited = Instant::now();
    loop {
        let l = reader.list_jobs(&query(&[("filter[status]", "PENDING"), ("limit", "1")])).await?;
        if l.total == 0 {
            break;
        }
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(120),
            "{} jobs still pending 120 s after submitting",
            l.total
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs: Vec<Job> = all(&reader, "/v1/jobs", &[]).await?;
    let runs: Vec<JobRun> = all(&reader, "/v1/job-runs", &[]).await?;
    let nodes: Vec<Node> = all(&node_reader, "/v1/nodes", &[]).await?;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("acknowledged poisoned"));

    let existing: HashSet<JobId> = jobs.iter().map(|j| j.uuid).collect();
    let acknowledged_lost = acknowledged.iter().filter(|(id, _)| !existing.contains(id)).count() as u64;
    let mut per_attempt: HashMap<(JobId, u32, u32), u32> = HashMap::new();
    for r in &runs {
        *per_attempt.entry((r.job_uuid, r.attempt, r.rank)).or_default() += 1;
    }
    let double_runs = per_attempt.values().filter(|n| **n > 1).count() as u64;
    let overcommitted_nodes = overcommitted(&runs, args.cores);
    let agents_lost = nodes
        .iter()
        .filter(|n| n.status != NodeStatus::Online || epochs.get(&n.uuid).is_none_or(|e| n.lease_epoch > *e))
        .count() as u64
        + args.nodes.saturating_sub(nodes.len()) as u64;
    let runs_ended = runs.iter().filter(|r| r.ended_at_ms.is_some()).count() as u64;
    let job_created: HashMap<JobId, i64> = jobs.iter().map(|j| (j.uuid, j.created_at.0)).collect();
    let latency = |r: &JobRun| job_created.get(&r.job_uuid).map(|c| r.created_at.0 - c);
    let mut before: Vec<i64> = runs.iter().filter(|r| r.created_at.0 < killed_at).filter_map(latency).collect();
    let after_runs: Vec<&JobRun> = runs.iter().filter(|r| r.created_at.0 >= killed_at).collect();
    let first_after = after_runs.iter().map(|r| r.created_at.0).min().context("no run was created after the kill")?;
    // After the takeover: jobs submitted once the new leader leads.
    let takeover = killed_at + new_leader_after.as_millis() as i64;
    let mut after: Vec<i64> = after_runs
        .iter()
        .filter(|r| job_created.get(&r.job_uuid).is_some_and(|c| *c >= takeover))
        .filter_map(|r| latency(r))
        .collect();
    before.sort_unstable();
    after.sort_unstable();

    let f = Figures {
        submitted,
        acknowledged: acknowledged.len() as u64,
        refused,
        achieved_rate: submitted as f64 / elapsed.as_secs_f64(),
        kill_to_first_placement_ms: first_after - killed_at,
        kill_to_new_leader_ms: new_leader_after.as_millis() as i64,
        lease_ttl_ms: gantry_server::LEASE_TTL.as_millis() as u64,
        placement_p50_before_ms: percentile(&before, 0.5),
        placement_p99_before_ms: percentile(&before, 0.99),
        placement_p99_after_ms: percentile(&after, 0.99),
        acknowledged_lost,
        double_runs,
        overcommitted_nodes,
        agents_lost,
        runs_ended,
        runs_after_kill: after_runs.len() as u64,
    };
    let _ = stop.send(true);
    for a in agents {
        a.abort();
    }
    for mut i in instances {
        let _ = i.child.kill().await;
    }
    print(&f, args.json)
}

fn print(f: &Figures, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string(f)?)?;
        return Ok(());
    }
    outln!(
        "load: {} submitted at {:.0}/s, {} acknowledged, {} refused (in flight to the killed instance or during takeover)",
        f.submitted,
        f.achieved_rate,
        f.acknowledged,
        f.refused
    )?;
    outln!(
        "takeover: kill -> first placement by the new leader {} ms (target <= 5000; lease TTL {} ms; new leader seen after {} ms)",
        f.kill_to_first_placement_ms,
        f.lease_ttl_ms,
        f.kill_to_new_leader_ms
    )?;
    outln!(
        "placement before the kill: p50 {} ms p99 {} ms; after the takeover p99 {} ms; ratio takeover / lease TTL {:.2}",
        f.placement_p50_before_ms,
        f.placement_p99_before_ms,
        f.placement_p99_after_ms,
        f.kill_to_first_placement_ms as f64 / f.lease_ttl_ms.max(1) as f64
    )?;
    outln!(
        "acknowledged jobs lost: {}   jobs with two runs of one attempt: {}   over-committed nodes: {}   agents lost: {}   runs ended: {}",
        f.acknowledged_lost,
        f.double_runs,
        f.overcommitted_nodes,
        f.agents_lost,
        f.runs_ended
    )?;
    Ok(())
}

/// Submits jobs at `rate` per second for `length`, request `k` to instance `k % 3`
/// first (each client fails over to the next instance on a refused connection).
/// Returns (submitted, refused, elapsed).
async fn submit_at_rate(
    clients: Vec<Client>,
    rate: u32,
    length: Duration,
    acknowledged: Arc<Mutex<Vec<(JobId, i64)>>>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut k = 0u64;
    while started.elapsed() < length {
        tick.tick().await;
        let permit = in_flight.clone().acquire_owned().await.expect("open");
        let client = clients[(k % 3) as usize].clone();
        let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
        let body = cpu_job(&format!("failover-{k}"));
        tasks.spawn(async move {
            match client.create_job(&body).await {
                Ok(job) => acknowledged.lock().expect("acknowledged poisoned").push((job.uuid, job.created_at.0)),
                Err(_) => {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            drop(permit);
        });
        k += 1;
        while tasks.try_join_next().is_some() {}
    }
    let elapsed = started.elapsed();
    while tasks.join_next().await.is_some() {}
    Ok((k, refused.load(std::sync::atomic::Ordering::Relaxed), elapsed))
}

/// Nodes that held more active runs than cores at some instant: a sweep over the
/// runs' [created, ended) intervals per node.
fn overcommitted(runs: &[JobRun], cores: u32) -> u64 {
    let mut per_node: HashMap<NodeId, Vec<(i64, i32)>> = HashMap::new();
    for r in runs {
        let events = per_node.entry(r.node_uuid).or_default();
        events.push((r.created_at.0, 1));
        if let Some(end) = r.ended_at_ms {
            events.push((end, -1));
        }
    }
    let mut over = 0;
    for events in per_node.values_mut() {
        // Ends before starts at the same instant: a core freed and retaken at once.
        events.sort_unstable();
        let mut active = 0i64;
        if events.iter().any(|(_, d)| {
            active += i64::from(*d);
            active > i64::from(cores)
        }) {
            over += 1;
        }
    }
    over
}

/// The index in `urls` of the instance whose `/healthz` says leader.
async fn leader_of(urls: &[String]) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    for (i, url) in urls.iter().enumerate() {
        let Ok(resp) = http.get(format!("{url}/healthz")).send().await else { continue };
        let Ok(health) = resp.json::<serde_json::Value>().await else { continue };
        if health["role"] == "leader" {
            return Ok(i);
        }
    }
    anyhow::bail!("no instance of {urls:?} leads")
}

async fn wait_online(client: &Client, nodes: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let q = query(&[("filter[status]", "ONLINE"), ("limit", "1")]);
        let l: ListResponse<Node> = client.send(reqwest::Method::GET, "/v1/nodes", &q, None).await?;
        if l.total >= nodes as u64 {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "only {} of {nodes} nodes registered", l.total);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
