//! `GET /v1/events` through the signed client: SSE and JSON long-poll, resuming after
//! a disconnect with nothing lost or repeated, tenancy, waking, retention (410) and
//! parameter errors.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use gantry_client::{Client, ClientError, EventsQuery};
use gantry_test_harness::{TestContext, batch_job, wait_for};
use gantry_types::event::{Event, EventType};
use gantry_types::job::JobStatus;
use gantry_types::permissions::Preset;
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Creates `count` jobs, 8 requests at a time; their uuids.
async fn create_jobs(client: &Client, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(8) {
        let made = futures_util::future::join_all(
            chunk.iter().map(|i| async move { client.create_job(&batch_job(&format!("job {i}"))).await.unwrap() }),
        )
        .await;
        ids.extend(made.into_iter().map(|j| j.uuid.to_string()));
    }
    ids
}

/// Every event after `after` (JSON pages).
async fn all_after(client: &Client, after: i64, types: &[EventType]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut q = EventsQuery { after: Some(after), types: types.to_vec() };
    loop {
        let page = client.events(&q, Duration::ZERO, 500).await.unwrap();
        if page.data.is_empty() {
            return out;
        }
        q.after = page.data.last().map(|e| e.id);
        out.extend(page.data);
    }
}

fn api_status(e: &ClientError) -> (StatusCode, String) {
    match e {
        ClientError::Api { status, body } => (*status, body.error.code.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_resume_after_disconnect_loses_and_repeats_nothing() {
    const N: usize = 1000;
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let created = [EventType::JobCreated];
    let start = EventsQuery { after: None, types: created.to_vec() };
    let mut stream = user.event_stream(&start, None).await.unwrap();
    let writer = {
        let user = user.clone();
        tokio::spawn(async move { create_jobs(&user, N).await })
    };

    // Read part of the stream, then drop the connection mid-way.
    let mut seen: Vec<Event> = Vec::new();
    while seen.len() < N / 2 - 17 {
        let event = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().expect("stream open");
        seen.push(event);
    }
    let resume_at = stream.last_id().unwrap();
    drop(stream);

    // Reconnect the way EventSource does: Last-Event-ID.
    let resume = EventsQuery { after: None, types: created.to_vec() };
    let mut stream = user.event_stream(&resume, Some(resume_at)).await.unwrap();
    while seen.len() < N {
        let event = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().expect("stream open");
        seen.push(event);
    }
    let jobs = writer.await.unwrap();

    let ids: Vec<i64> = seen.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase across the reconnect");
    let uuids: Vec<String> = seen.iter().map(|e| e.data["uuid"].as_str().unwrap().to_owned()).collect();
    let unique: HashSet<&String> = uuids.iter().collect();
    assert_eq!(unique.len(), N, "no event repeated");
    assert_eq!(unique, jobs.iter().collect::<HashSet<_>>(), "every created job was told, once");
    assert!(seen.iter().all(|e| e.event_type == EventType::JobCreated && e.data["status"] == "PENDING"));

    // The JSON long-poll pages through the same log to the same result.
    let first = seen[0].id - 1;
    let paged = all_after(&user, first, &created).await;
    assert_eq!(paged, seen);
    // Resuming with `after` in the middle gives exactly the rest.
    let mid = seen[N / 3].id;
    let rest = all_after(&user, mid, &created).await;
    assert_eq!(rest, seen[N / 3 + 1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_see_only_their_own_events_and_operators_their_nodes() {
    let ctx = TestContext::start_fast().await;
    let (alice, bob) = (ctx.new_account(Preset::Consumer).await, ctx.new_account(Preset::Consumer).await);
    let admin = ctx.new_account(Preset::Admin).await;
    let now = ctx.store().event_horizon().await.unwrap().last_id;
    let from_now = EventsQuery { after: Some(now), types: vec![] };
    let mut bob_sse = bob.event_stream(&from_now, None).await.unwrap();

    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let job = json!({"title": "short", "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1,
        "gpu_count": 1, "gpu_name": "RTX 4090", "min_ram_gb": 2,
        "parameters": {"type": "docker", "parameters": {"image": "busybox",
            "secret": "hunter2-registry", "env": {"GANTRY_SIM_DURATION_MS": "100", "TOKEN": "s3cret-env"}}}});
    let job = alice.create_job(&job).await.unwrap();
    wait_for("the job to complete", WAIT, || async {
        alice.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Completed)
    })
    .await;
    let bob_job = bob.create_job(&batch_job("bob's")).await.unwrap();

    let alice_events = all_after(&alice, now, &[]).await;
    let types: Vec<EventType> = alice_events.iter().map(|e| e.event_type).collect();
    for t in
        [EventType::JobCreated, EventType::JobStatusChanged, EventType::JobRunCreated, EventType::JobRunStatusChanged]
    {
        assert!(types.contains(&t), "alice sees {t:?}: {types:?}");
    }
    assert!(!types.contains(&EventType::NodeRegistered), "a tenant does not see the operator's node");
    let last = alice_events.iter().rev().find(|e| e.event_type == EventType::JobStatusChanged).unwrap();
    assert_eq!(last.data["status"], "COMPLETED");
    let text = serde_json::to_string(&alice_events).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("s3cret-env"), "secrets never appear in events");

    let operator = all_after(&nodes.client, now, &[]).await;
    assert!(operator.iter().any(|e| e.event_type == EventType::NodeRegistered));
    // Their nodes, and their earnings; never the tenant's jobs or runs.
    assert!(
        operator.iter().all(|e| matches!(
            e.event_type,
            EventType::NodeRegistered | EventType::NodeStatusChanged | EventType::BalanceChanged
        )),
        "{operator:?}"
    );

    // Bob's stream and long-poll carry only Bob's job.
    let first = tokio::time::timeout(WAIT, bob_sse.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.data["uuid"], bob_job.uuid.to_string());
    // (Bob's job may be placed on the node too: his runs are his, still not alice's.)
    let bobs = all_after(&bob, now, &[]).await;
    assert_eq!(bobs[0], first);
    assert!(bobs.iter().all(|e| e.account_uuid == first.account_uuid && e.data.to_string().contains("bob's")));
    let json_only = bob.events(&from_now, Duration::from_millis(50), 100).await.unwrap();
    assert!(json_only.data.iter().all(|e| e.account_uuid == bobs[0].account_uuid));

    // An operator key with jobs.read.all sees everyone's.
    let everything = all_after(&admin, now, &[]).await;
    let accounts: HashSet<_> = everything.iter().map(|e| e.account_uuid).collect();
    assert!(accounts.len() >= 3, "admin sees alice, bob and the node operator: {accounts:?}");
    nodes.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_on_the_next_event() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let now = ctx.store().event_horizon().await.unwrap().last_id;
    let q = EventsQuery { after: Some(now), types: vec![EventType::JobCreated] };
    let poll = {
        let user = user.clone();
        let q = q.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let page = user.events(&q, Duration::from_secs(20), 10).await.unwrap();
            (page, started.elapsed())
        })
    };
    // The poll is parked before the job exists; the job's commit wakes it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = user.create_job(&batch_job("wake")).await.unwrap();
    let (page, took) = poll.await.unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.data[0].data["uuid"], job.uuid.to_string());
    assert!(took < Duration::from_secs(5), "woken by the commit, not the timeout: {took:?}");
    // Nothing new: an empty page after the wait.
    let q = EventsQuery { after: Some(page.data[0].id), ..q };
    let started = Instant::now();
    assert!(user.events(&q, Duration::from_millis(300), 10).await.unwrap().data.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn resuming_before_the_retention_horizon_is_gone() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    create_jobs(&user, 3).await;
    let events = all_after(&user, 0, &[]).await;
    assert_eq!(events.len(), 3);
    let far_future = i64::MAX / 2;
    // Retention deletes all but the newest event.
    ctx.store().event_prune(far_future).await.unwrap();
    for after in [0, events[0].id] {
        let q = EventsQuery { after: Some(after), types: vec![] };
        let e = user.events(&q, Duration::ZERO, 10).await.unwrap_err();
        assert_eq!(api_status(&e), (StatusCode::GONE, "gone".to_string()));
        assert!(e.to_string().contains("retention"), "{e}");
        let Err(e) = user.event_stream(&q, None).await else { panic!("SSE resumed inside the deleted prefix") };
        assert_eq!(api_status(&e).0, StatusCode::GONE);
    }
    // From the horizon on is fine.
    let q = EventsQuery { after: Some(events[1].id), types: vec![] };
    assert_eq!(user.events(&q, Duration::ZERO, 10).await.unwrap().data, events[2..]);
}

#[tokio::test]
async fn bad_parameters_are_400s_naming_the_field() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    for (key, value) in [
        ("format", "xml"),
        ("after", "-1"),
        ("after", "abc"),
        ("wait_ms", "600001"),
        ("limit", "0"),
        ("filter[type]", "job.exploded"),
        ("filter[status]", "RUNNING"),
    ] {
        let q = vec![(key.to_string(), value.to_string()), ("format".to_string(), "json".to_string())];
        let q = if key == "format" { q[..1].to_vec() } else { q };
        let raw = user.send_raw(reqwest::Method::GET, "/v1/events", &q, None).await.unwrap();
        assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{key}={value}: {}", raw.body);
        assert_eq!(raw.body["error"]["details"][0]["field"], key, "{}", raw.body);
    }
    let (status, _, body) =
        user.send_raw_with(reqwest::Method::GET, "/v1/events", None, &[("Last-Event-ID", "x")], false).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
}
