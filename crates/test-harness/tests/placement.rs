//! A backlog larger than one placement write (the scheduler writes at most 256 jobs
//! per transaction, and plans the next pass while a write is in flight): every job is
//! placed exactly once, no node ever holds more runs than its cores, jobs cancelled
//! while being placed are not placed twice, and no node is declared lost while the
//! writes go on; on SQLite, and on PostgreSQL where `GANTRY_TEST_DATABASE_URL` is set.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gantry_client::query;
use gantry_test_harness::{TestContext, fast, wait_for};
use gantry_types::job::JobStatus;
use gantry_types::job_run::JobRun;
use gantry_types::list::ListResponse;
use gantry_types::node::{Node, NodeStatus};
use gantry_types::permissions::Preset;
use serde_json::json;

const JOBS: usize = 600;
const NODES: usize = 6;
const CORES: usize = JOBS / NODES;
const WAIT: Duration = Duration::from_secs(60);

/// Every item of a list endpoint, page by page.
macro_rules! all {
    ($client:expr, $path:expr, $t:ty) => {{
        let mut out: Vec<$t> = Vec::new();
        for page in 1.. {
            let q = query(&[("limit", "50"), ("page", &page.to_string())]);
            let l: ListResponse<$t> = $client.send(reqwest::Method::GET, $path, &q, None).await.unwrap();
            let n = l.data.len();
            out.extend(l.data);
            if n < 50 {
                break;
            }
        }
        out
    }};
}

async fn backlog_is_placed_once(ctx: TestContext) {
    let user = Arc::new(ctx.new_account(Preset::Consumer).await);
    let body = json!({"title": "backlog", "task": "PERSISTENT", "cpu_count": 1,
                      "parameters": {"type": "docker", "parameters": {"image": "busybox"}}});
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let (user, body) = (Arc::clone(&user), body.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in (w..JOBS).step_by(16) {
                    ids.push(user.create_job(&body).await.unwrap().uuid);
                }
                ids
            })
        })
        .collect();
    let mut jobs = Vec::new();
    for t in tasks {
        jobs.extend(t.await.unwrap());
    }
    // Exactly enough cores for every job: one run too many anywhere would leave a job
    // pending or a node over-committed.
    let nodes = ctx.sim_nodes(NODES, &format!("cpus={CORES}")).await;
    // Meanwhile cancel a few, racing the scheduler (a cancelled job planned before its
    // write is a compare-and-set conflict: the model is rebuilt, nothing placed twice).
    let cancelled: HashSet<_> = jobs.iter().step_by(40).copied().collect();
    for id in &cancelled {
        user.cancel_job(*id, "racing the scheduler").await.unwrap();
    }
    wait_for("every job placed or cancelled", WAIT, || async {
        let l = user.list_jobs(&query(&[("filter[status]", "PENDING"), ("limit", "1")])).await.ok()?;
        (l.total == 0).then_some(())
    })
    .await;
    let runs = all!(user, "/v1/job-runs", JobRun);
    let mut per_job: HashMap<_, u32> = HashMap::new();
    let mut per_node: HashMap<_, usize> = HashMap::new();
    for r in &runs {
        *per_job.entry(r.job_uuid).or_default() += 1;
        *per_node.entry(r.node_uuid).or_default() += 1;
    }
    for id in &jobs {
        let n = per_job.get(id).copied().unwrap_or(0);
        if cancelled.contains(id) {
            assert!(n <= 1, "cancelled job {id} has {n} runs");
        } else {
            assert_eq!(n, 1, "job {id} has {n} runs");
        }
    }
    assert!(per_node.values().all(|n| *n <= CORES), "over-committed: {per_node:?}");
    for id in jobs.iter().filter(|id| !cancelled.contains(id)) {
        assert_ne!(user.get_job(*id).await.unwrap().status, JobStatus::Cancelled);
    }
    // Nobody was declared lost while the writes went on (a node lost and back would
    // have a higher lease epoch).
    let registered = all!(nodes.client, "/v1/nodes", Node);
    assert_eq!(registered.len(), NODES);
    for n in &registered {
        assert_eq!((n.status, n.lease_epoch), (NodeStatus::Online, 1), "{}", n.name);
    }
    nodes.stop().await;
}

/// Test timing, but the production loss threshold (5 s): the simulated agents share
/// this process's CPU with the server, and the check is about the server's writes
/// delaying syncs, not about a starved test machine delaying the agents themselves.
fn timing(config: &mut gantry_server::ServerConfig) {
    fast(config);
    config.timing.node_lost_after = gantry_server::Timing::default().node_lost_after;
}

#[tokio::test]
async fn a_backlog_of_several_writes_is_placed_once_on_sqlite() {
    backlog_is_placed_once(TestContext::start_with(timing).await).await;
}

#[tokio::test]
async fn a_backlog_of_several_writes_is_placed_once_on_postgres() {
    let Some(ctx) = TestContext::start_postgres_with(timing).await else { return };
    backlog_is_placed_once(ctx).await;
}
