//! The job lifecycle with simulated nodes: placement, completion, failures and
//! retries, every timeout, cancel, node loss and fencing, drain, gang jobs, fairness
//! and a server restart mid-flight. Timeouts below the API minimums are set by
//! inserting jobs through the store (`TestContext::insert_job`).

use std::time::Duration;

use gantry_client::{Client, query};
use gantry_test_harness::{TestContext, wait_for};
use gantry_types::JobId;
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::permissions::Preset;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn job(title: &str, env: Value) -> Value {
    json!({"title": title, "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1, "gpu_count": 1,
           "parameters": {"type": "docker", "parameters": {"image": "busybox", "env": env}}})
}

async fn wait_status(client: &Client, id: JobId, want: JobStatus) -> Job {
    wait_for(&format!("job {id} to be {}", want.as_str()), WAIT, || async {
        client.get_job(id).await.ok().filter(|j| j.status == want)
    })
    .await
}

async fn runs(client: &Client, id: JobId) -> Vec<JobRun> {
    let mut runs: Vec<JobRun> = client
        .send(reqwest::Method::GET, "/v1/job-runs", &query(&[("filter[job_uuid]", &id.to_string())]), None)
        .await
        .map(|l: gantry_types::list::ListResponse<JobRun>| l.data)
        .unwrap();
    runs.sort_by_key(|r| (r.attempt, r.rank));
    runs
}

async fn get_run(client: &Client, run: &JobRun) -> JobRun {
    client.send(reqwest::Method::GET, &format!("/v1/job-runs/{}", run.uuid), &[], None).await.unwrap()
}

#[tokio::test]
async fn a_job_runs_to_completion_with_logs() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA GeForce RTX 4090:24,region=eu-west-1").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut body = job("hello", json!({"GANTRY_SIM_DURATION_MS": "400"}));
    body["gpu_name"] = json!("RTX 4090");
    body["allowed_region_codes"] = json!(["eu-west-1"]);
    let created = user.create_job(&body).await.unwrap();
    let done = wait_status(&user, created.uuid, JobStatus::Completed).await;
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    let runs = runs(&user, created.uuid).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!((run.status, run.exit_code, run.gpu_indices.clone()), (JobRunStatus::Completed, Some(0), vec![0]));
    assert!(run.logs.is_none(), "the list omits logs");
    // Billable time is RUNNING to the end as the control plane saw them: the 400 ms
    // the container ran, less whatever delayed the RUNNING report on a loaded machine.
    assert!(run.duration_ms.unwrap() >= 200, "{run:?}");
    assert_eq!(run.container_access_tokens.len(), 1);
    assert_eq!(run.job_snapshot["uuid"], created.uuid.to_string());
    let full = get_run(&user, run).await;
    assert!(full.logs.unwrap().contains("simulated run of busybox:latest started"));
    nodes.stop().await;
}

#[tokio::test]
async fn failures_consume_retries_then_fail_the_job() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(2, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut body = job("flaky", json!({"GANTRY_SIM_DURATION_MS": "20", "GANTRY_SIM_EXIT_CODE": "3"}));
    body["max_retry_count"] = json!(2);
    let created = user.create_job(&body).await.unwrap();
    let failed = wait_status(&user, created.uuid, JobStatus::Failed).await;
    assert!(failed.status_reason.as_deref().unwrap().contains("exited with code 3"), "{failed:?}");
    let runs = runs(&user, created.uuid).await;
    assert_eq!(runs.iter().map(|r| r.attempt).collect::<Vec<_>>(), [0, 1, 2], "one run per attempt");
    assert!(runs.iter().all(|r| r.status == JobRunStatus::Failed && r.exit_code == Some(3)));
    assert_ne!(runs[0].node_uuid, runs[1].node_uuid, "a retry prefers another node");
    nodes.stop().await;
}

#[tokio::test]
async fn a_job_that_fits_nowhere_says_why_and_fails_at_its_assign_timeout() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(2, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut body = job("big", json!({}));
    body["gpu_count"] = json!(2);
    let created = user.create_job(&body).await.unwrap();
    // The reason follows the cluster: once both nodes are online it counts both.
    let reason = wait_for("a pending reason counting both nodes", WAIT, || async {
        user.get_job(created.uuid).await.ok().and_then(|j| j.status_reason).filter(|r| r.contains("0 of 2"))
    })
    .await;
    assert!(reason.contains("under 2 free GPUs"), "{reason}");
    let account = user.me().await.unwrap().account_uuid;
    let mut short = job("short wait", json!({}));
    short["gpu_count"] = json!(4);
    short["max_timeout_assign_ms"] = json!(300);
    let inserted = ctx.insert_job(account, short).await;
    let failed = wait_status(&user, inserted.uuid, JobStatus::Failed).await;
    assert!(failed.status_reason.as_deref().unwrap().starts_with("no node satisfied the job within"), "{failed:?}");
    nodes.stop().await;
}

#[tokio::test]
async fn start_and_run_timeouts_fail_the_run() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "cpus=8").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let account = user.me().await.unwrap().account_uuid;
    let mut slow_start = job("slow start", json!({"GANTRY_SIM_PREPARE_MS": "60000"}));
    slow_start["gpu_count"] = json!(0);
    slow_start["max_timeout_start_ms"] = json!(300);
    let a = ctx.insert_job(account, slow_start).await;
    let mut slow_run = job("slow run", json!({"GANTRY_SIM_DURATION_MS": "60000"}));
    slow_run["gpu_count"] = json!(0);
    slow_run["max_timeout_run_ms"] = json!(300);
    let b = ctx.insert_job(account, slow_run).await;
    let a = wait_status(&user, a.uuid, JobStatus::Failed).await;
    assert!(a.status_reason.as_deref().unwrap().contains("start timeout"), "{a:?}");
    let b = wait_status(&user, b.uuid, JobStatus::Failed).await;
    assert!(b.status_reason.as_deref().unwrap().contains("run timeout"), "{b:?}");
    let run = &runs(&user, b.uuid).await[0];
    assert!(run.started_at_ms.is_some() && run.duration_ms.is_some());
    nodes.stop().await;
}

#[tokio::test]
async fn cancel_at_every_state() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    // RUNNING: CANCELLING until the node confirms the stop, then CANCELLED.
    let long = user.create_job(&job("long", json!({"GANTRY_SIM_DURATION_MS": "60000"}))).await.unwrap();
    wait_status(&user, long.uuid, JobStatus::Running).await;
    let cancelling = user.cancel_job(long.uuid, "demo over").await.unwrap();
    assert!(matches!(cancelling.status, JobStatus::Cancelling | JobStatus::Cancelled), "{cancelling:?}");
    let cancelled = wait_status(&user, long.uuid, JobStatus::Cancelled).await;
    assert_eq!(cancelled.status_reason.as_deref(), Some("demo over"));
    assert_eq!(runs(&user, long.uuid).await[0].status, JobRunStatus::Cancelled);
    // PREPARING (ASSIGNED on the way): same path.
    let prep = user.create_job(&job("prep", json!({"GANTRY_SIM_PREPARE_MS": "60000"}))).await.unwrap();
    wait_for("a preparing run", WAIT, || async {
        runs(&user, prep.uuid).await.first().filter(|r| r.status == JobRunStatus::Preparing).cloned()
    })
    .await;
    user.cancel_job(prep.uuid, "changed my mind").await.unwrap();
    wait_status(&user, prep.uuid, JobStatus::Cancelled).await;
    // PENDING: at once; the cancelled run is not retried.
    let mut never = job("never", json!({}));
    never["gpu_count"] = json!(8);
    let never = user.create_job(&never).await.unwrap();
    assert_eq!(user.cancel_job(never.uuid, "x").await.unwrap().status, JobStatus::Cancelled);
    assert!(runs(&user, never.uuid).await.is_empty());
    nodes.stop().await;
}

#[tokio::test]
async fn a_lost_node_fails_its_runs_which_retry_elsewhere() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(2, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut body = job("survivor", json!({"GANTRY_SIM_DURATION_MS": "60000"}));
    body["max_retry_count"] = json!(1);
    let created = user.create_job(&body).await.unwrap();
    wait_status(&user, created.uuid, JobStatus::Running).await;
    let first = runs(&user, created.uuid).await.remove(0);
    let node_list: gantry_types::list::ListResponse<gantry_types::node::Node> =
        nodes.client.send(reqwest::Method::GET, "/v1/nodes", &[], None).await.unwrap();
    let index = node_list.data.iter().position(|n| n.uuid == first.node_uuid).unwrap();
    // Node names are sim-0, sim-1: kill the agent that holds the run.
    let name = &node_list.data[index].name;
    nodes.kill(name.trim_start_matches("sim-").parse().unwrap());
    let retried = wait_for("a retry on the other node", WAIT, || async {
        let r = runs(&user, created.uuid).await;
        (r.len() == 2 && r[1].status == JobRunStatus::Running).then_some(r)
    })
    .await;
    assert_eq!(retried[0].status, JobRunStatus::Failed);
    assert!(retried[0].status_reason.as_deref().unwrap().starts_with("node lost"), "{:?}", retried[0]);
    assert_ne!(retried[1].node_uuid, first.node_uuid);
    let lost: gantry_types::node::Node =
        nodes.client.send(reqwest::Method::GET, &format!("/v1/nodes/{}", first.node_uuid), &[], None).await.unwrap();
    assert_eq!(lost.status, gantry_types::node::NodeStatus::Lost);
    nodes.stop().await;
}

/// Many nodes lost at once (a rack, a partition) are all declared lost, and all their
/// runs retried elsewhere: the lifecycle marks them and fails their runs concurrently.
#[tokio::test]
async fn many_nodes_lost_at_once_all_fail_their_runs_which_retry_elsewhere() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(12, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut jobs = Vec::new();
    for i in 0..6 {
        let mut body = job(&format!("survivor-{i}"), json!({"GANTRY_SIM_DURATION_MS": "60000"}));
        body["max_retry_count"] = json!(1);
        jobs.push(user.create_job(&body).await.unwrap().uuid);
    }
    let mut first = Vec::new();
    for id in &jobs {
        wait_status(&user, *id, JobStatus::Running).await;
        first.push(runs(&user, *id).await.remove(0));
    }
    let node_list: gantry_types::list::ListResponse<gantry_types::node::Node> =
        nodes.client.send(reqwest::Method::GET, "/v1/nodes", &query(&[("limit", "50")]), None).await.unwrap();
    let busy: std::collections::HashSet<_> = first.iter().map(|r| r.node_uuid).collect();
    assert_eq!(busy.len(), 6, "one run per node (one GPU each)");
    for n in node_list.data.iter().filter(|n| busy.contains(&n.uuid)) {
        nodes.kill(n.name.trim_start_matches("sim-").parse().unwrap());
    }
    for (id, before) in jobs.iter().zip(&first) {
        let retried = wait_for("a retry on a surviving node", WAIT, || async {
            let r = runs(&user, *id).await;
            (r.len() == 2 && r[1].status == JobRunStatus::Running).then_some(r)
        })
        .await;
        assert_eq!(retried[0].uuid, before.uuid);
        assert_eq!(retried[0].status, JobRunStatus::Failed);
        assert!(retried[0].status_reason.as_deref().unwrap().starts_with("node lost"), "{:?}", retried[0]);
        assert!(!busy.contains(&retried[1].node_uuid), "retried on a surviving node: {retried:?}");
        // The retries' histories (attempt number, nodes to avoid) come from the batch
        // that settled them all together: each job still gets its own.
        assert_eq!((retried[0].attempt, retried[1].attempt), (0, 1), "{retried:?}");
    }
    let lost: gantry_types::list::ListResponse<gantry_types::node::Node> = nodes
        .client
        .send(reqwest::Method::GET, "/v1/nodes", &query(&[("filter[status]", "LOST"), ("limit", "50")]), None)
        .await
        .unwrap();
    let lost: std::collections::HashSet<_> = lost.data.iter().map(|n| n.uuid).collect();
    assert_eq!(lost, busy, "exactly the killed nodes are lost");
    nodes.stop().await;
}

#[tokio::test]
async fn a_node_that_returns_after_being_declared_lost_is_fenced() {
    let ctx = TestContext::start_fast().await;
    let node_client = ctx.new_account(Preset::Node).await;
    let desc = gantry_agent::inventory::parse_fake_spec("1xNVIDIA RTX 4090:24").unwrap();
    let reg = node_client
        .register_node(&gantry_types::node::RegisterNodeRequest {
            name: Some("partitioned".into()),
            inventory: Some(desc.inventory.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let user = ctx.new_account(Preset::Consumer).await;
    let created = user.create_job(&job("fenced", json!({}))).await.unwrap();
    let sync = |epoch| gantry_types::protocol::SyncRequest { lease_epoch: epoch, ..Default::default() };
    let desired = wait_for("the run to be desired", WAIT, || async {
        let d = node_client.sync_node(reg.node.uuid, &sync(reg.lease_epoch)).await.unwrap();
        (!d.runs.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(desired.runs[0].job_uuid, created.uuid);
    // Silence: declared lost, its run fails.
    let failed = wait_status(&user, created.uuid, JobStatus::Failed).await;
    assert!(failed.status_reason.as_deref().unwrap().starts_with("node lost"));
    // It comes back with its old epoch: fenced, nothing desired.
    let back = node_client.sync_node(reg.node.uuid, &sync(reg.lease_epoch)).await.unwrap();
    assert!(back.fenced && back.runs.is_empty());
    let again = node_client
        .register_node(&gantry_types::node::RegisterNodeRequest {
            node_uuid: Some(reg.node.uuid),
            inventory: Some(desc.inventory),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.lease_epoch, reg.lease_epoch + 1);
    let fresh = node_client.sync_node(reg.node.uuid, &sync(again.lease_epoch)).await.unwrap();
    assert!(!fresh.fenced && fresh.runs.is_empty(), "the old run is not desired any more");
}

#[tokio::test]
async fn drained_nodes_get_no_new_runs() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let list = wait_for("the node to register", WAIT, || async {
        let l: gantry_types::list::ListResponse<gantry_types::node::Node> =
            nodes.client.send(reqwest::Method::GET, "/v1/nodes", &[], None).await.ok()?;
        // Registered, and a heartbeat has carried its first hardware sample.
        l.data.first().is_some_and(|n| n.latest_hardware_event.is_some()).then_some(l)
    })
    .await;
    let node = &list.data[0];
    // The node object in the upstream shape, with the agent's latest hardware event.
    let event = node.latest_hardware_event.as_ref().expect("a heartbeat carried a sample");
    assert_eq!(event.object, "node_hardware_event");
    assert_eq!(event.metadata["gpu"]["gpus"][0]["vram"]["total"], json!(24.0));
    assert_eq!(event.metadata["ram"]["total"], json!(64.0));
    assert_eq!((node.cpus[0].num_cores, node.gpus[0].vram_gb_max, node.ram_total), (16, 24.0, 64.0));
    let drained: gantry_types::node::Node =
        nodes.client.send(reqwest::Method::PUT, &format!("/v1/nodes/{}/drain", node.uuid), &[], None).await.unwrap();
    assert!(drained.is_draining);
    let created = user.create_job(&job("waits", json!({"GANTRY_SIM_DURATION_MS": "10"}))).await.unwrap();
    let reason = wait_for("a pending reason", WAIT, || async {
        user.get_job(created.uuid).await.ok().and_then(|j| j.status_reason)
    })
    .await;
    assert!(reason.contains("draining") || reason.contains("0 of"), "{reason}");
    let _: gantry_types::node::Node =
        nodes.client.send(reqwest::Method::PUT, &format!("/v1/nodes/{}/undrain", node.uuid), &[], None).await.unwrap();
    wait_status(&user, created.uuid, JobStatus::Completed).await;
    // Consumers cannot drain nodes (they lack nodes.update).
    let err = user
        .send::<Value>(reqwest::Method::PUT, &format!("/v1/nodes/{}/drain", node.uuid), &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::FORBIDDEN));
    nodes.stop().await;
}

#[tokio::test]
async fn gang_jobs_run_on_distinct_nodes_and_retry_as_one() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(3, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut gang = job("gang", json!({"GANTRY_SIM_DURATION_MS": "50"}));
    gang["max_node_count"] = json!(2);
    let ok = user.create_job(&gang).await.unwrap();
    wait_status(&user, ok.uuid, JobStatus::Completed).await;
    let r = runs(&user, ok.uuid).await;
    assert_eq!(r.len(), 2);
    assert_ne!(r[0].node_uuid, r[1].node_uuid);
    assert_eq!((r[0].rank, r[1].rank, r[0].gang_size), (0, 1, 2));

    // One member fails: the other is stopped and the gang is retried as one.
    let mut flaky = job("flaky gang", json!({"GANTRY_SIM_DURATION_MS": "60000", "GANTRY_SIM_FAIL_RANK": "1"}));
    flaky["max_node_count"] = json!(2);
    flaky["max_retry_count"] = json!(1);
    let f = user.create_job(&flaky).await.unwrap();
    let failed = wait_status(&user, f.uuid, JobStatus::Failed).await;
    let r = runs(&user, f.uuid).await;
    assert_eq!(r.len(), 4, "two attempts of two runs: {r:?}");
    for attempt in [0, 1] {
        let a: Vec<_> = r.iter().filter(|x| x.attempt == attempt).collect();
        assert_eq!(a.iter().filter(|x| x.status == JobRunStatus::Failed).count(), 1);
        assert_eq!(a.iter().filter(|x| x.status == JobRunStatus::Cancelled).count(), 1, "{a:?}");
    }
    assert!(failed.status_reason.unwrap().contains("exited with code 1"));

    // Too big a gang waits without holding capacity: a single job still runs.
    let mut huge = job("huge gang", json!({}));
    huge["max_node_count"] = json!(4);
    let h = user.create_job(&huge).await.unwrap();
    let single = user.create_job(&job("single", json!({"GANTRY_SIM_DURATION_MS": "10"}))).await.unwrap();
    wait_status(&user, single.uuid, JobStatus::Completed).await;
    assert_eq!(user.get_job(h.uuid).await.unwrap().status, JobStatus::Pending);
    nodes.stop().await;
}

#[tokio::test]
async fn one_accounts_burst_does_not_starve_another() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "cpus=1").await;
    let burst = ctx.new_account(Preset::Consumer).await;
    let single = ctx.new_account(Preset::Consumer).await;
    let cpu_job = |t: &str| {
        let mut j = job(t, json!({"GANTRY_SIM_DURATION_MS": "20"}));
        j["gpu_count"] = json!(0);
        j
    };
    let mut burst_ids = Vec::new();
    for i in 0..40 {
        burst_ids.push(burst.create_job(&cpu_job(&format!("burst-{i}"))).await.unwrap().uuid);
    }
    let mine = single.create_job(&cpu_job("mine")).await.unwrap();
    wait_status(&single, mine.uuid, JobStatus::Completed).await;
    let mut done = 0;
    for id in &burst_ids {
        if burst.get_job(*id).await.unwrap().status == JobStatus::Completed {
            done += 1;
        }
    }
    assert!(done < 10, "the single job waited behind {done} burst jobs");
    nodes.stop().await;
}

#[tokio::test]
async fn a_server_restart_neither_loses_nor_duplicates_runs() {
    let mut ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let created = user.create_job(&job("through a restart", json!({"GANTRY_SIM_DURATION_MS": "1500"}))).await.unwrap();
    wait_status(&user, created.uuid, JobStatus::Running).await;
    ctx.restart().await;
    wait_status(&user, created.uuid, JobStatus::Completed).await;
    let r = runs(&user, created.uuid).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].status, JobRunStatus::Completed);
    let node: gantry_types::node::Node =
        nodes.client.send(reqwest::Method::GET, &format!("/v1/nodes/{}", r[0].node_uuid), &[], None).await.unwrap();
    assert_eq!(node.status, gantry_types::node::NodeStatus::Online, "not declared lost by the restart");
    nodes.stop().await;
}

/// A node's RUNNING and terminal reports are each two writes (the run, then its job).
/// A sync cut between the two (the agent gave up on a slow answer) leaves only the
/// run's write; the report the agent then resends must finish the job's, or the job
/// stays ASSIGNED, then RUNNING, for ever. The cut is made here by writing the run
/// alone through the store, as the cut sync did.
#[tokio::test]
async fn a_resent_report_finishes_what_a_cut_sync_began() {
    use gantry_store::RunUpdate;
    use gantry_types::protocol::{ObservedRun, SyncRequest};
    let ctx = TestContext::start_fast().await;
    let node_client = ctx.new_account(Preset::Node).await;
    let desc = gantry_agent::inventory::parse_fake_spec("1xNVIDIA RTX 4090:24").unwrap();
    let reg = node_client
        .register_node(&gantry_types::node::RegisterNodeRequest {
            name: Some("cut".into()),
            inventory: Some(desc.inventory),
            ..Default::default()
        })
        .await
        .unwrap();
    let user = ctx.new_account(Preset::Consumer).await;
    let created = user.create_job(&job("cut", json!({}))).await.unwrap();
    let sync = |runs: Vec<ObservedRun>| SyncRequest { lease_epoch: reg.lease_epoch, runs, ..Default::default() };
    let desired = wait_for("the run to be desired", WAIT, || async {
        let d = node_client.sync_node(reg.node.uuid, &sync(vec![])).await.unwrap();
        (!d.runs.is_empty()).then_some(d)
    })
    .await;
    let run = desired.runs[0].run_uuid;
    let report = |status| ObservedRun {
        run_uuid: run,
        status,
        exit_code: (status == JobRunStatus::Completed).then_some(0),
        reason: None,
        node_urls: None,
        logs: None,
        image_size_bytes: None,
    };
    let cut = |from, to| RunUpdate {
        from: vec![from],
        to,
        reason: None,
        now_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
        exit_code: (to == JobRunStatus::Completed).then_some(0),
        node_urls: None,
        image_size_bytes: None,
    };

    ctx.store().run_update(run, &cut(JobRunStatus::Assigned, JobRunStatus::Running)).await.unwrap().unwrap();
    assert_eq!(user.get_job(created.uuid).await.unwrap().status, JobStatus::Assigned, "only the run was written");
    node_client.sync_node(reg.node.uuid, &sync(vec![report(JobRunStatus::Running)])).await.unwrap();
    assert_eq!(user.get_job(created.uuid).await.unwrap().status, JobStatus::Running, "the resent report");

    ctx.store().run_update(run, &cut(JobRunStatus::Running, JobRunStatus::Completed)).await.unwrap().unwrap();
    assert_eq!(user.get_job(created.uuid).await.unwrap().status, JobStatus::Running, "only the run was written");
    node_client.sync_node(reg.node.uuid, &sync(vec![report(JobRunStatus::Completed)])).await.unwrap();
    assert_eq!(user.get_job(created.uuid).await.unwrap().status, JobStatus::Completed, "the resent end settles it");
}
