//! Hostile tenants and hostile input (issue 15, the API's half): absurd capacities and
//! requirements refused with the field named, money that cannot overflow, and a
//! server that keeps answering everyone else.

use gantry_test_harness::{TestContext, batch_job};
use gantry_types::permissions::Preset;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn fields(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map_or(vec![], |d| d.iter().map(|e| e["field"].as_str().unwrap().into()).collect())
}

/// Point 8: a node registered with `ram_gb: 1e308` and 4,294,967,295 cores, and jobs
/// asking for 9e15 GB, once overflowed prices and turned balance and node reads into
/// 500s. Every declared capacity and requirement is now bounded by a physical maximum.
#[tokio::test]
async fn absurd_capacities_and_requirements_are_400s_naming_the_field() {
    let ctx = TestContext::start().await;
    let node = ctx.new_account(Preset::Node).await;
    let inventory = |ram: Value, cores: u64, vram: Value| {
        json!({"name": "rogue", "inventory": {
            "cpus": [{"name": "x", "num_cores": cores}], "ram_gb": ram, "storage_gb": 100,
            "gpus": [{"index": 0, "uuid": "GPU-0", "name": "NVIDIA RTX 4090", "vram_gb": vram}]}})
    };
    for (body, field) in [
        (inventory(json!(1e308), 16, json!(24)), "inventory.ram_gb"),
        (inventory(json!(64), 4_294_967_295, json!(24)), "inventory.cpus"),
        (inventory(json!(64), 16, json!(1e18)), "inventory.gpus[0].vram_gb"),
        (inventory(json!(-1), 16, json!(24)), "inventory.ram_gb"),
    ] {
        let raw = node.send_raw(Method::POST, "/v1/nodes/register", &[], Some(&body)).await.unwrap();
        assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{body}: {}", raw.body);
        assert_eq!(fields(&raw.body), [field], "{body}");
    }
    // Two packages whose cores overflow a u32 when summed.
    let two =
        json!({"inventory": {"cpus": [{"name": "a", "num_cores": 4_294_967_295_u64}, {"name": "b", "num_cores": 2}]}});
    let raw = node.send_raw(Method::POST, "/v1/nodes/register", &[], Some(&two)).await.unwrap();
    assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{}", raw.body);
    assert_eq!(fields(&raw.body), ["inventory.cpus"]);

    // A real node registers; its heartbeat samples are checked too.
    let ok = node
        .send_raw(Method::POST, "/v1/nodes/register", &[], Some(&inventory(json!(64), 16, json!(24))))
        .await
        .unwrap();
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let uuid = ok.body["node"]["uuid"].as_str().unwrap().to_owned();
    let epoch = ok.body["lease_epoch"].clone();
    let sync = json!({"lease_epoch": epoch, "sample": {"cpu_load": -3, "ram_free_gb": -1, "storage_free_gb": 5,
        "gpus": [{"index": 0, "load": 50, "vram_free_gb": -2}]}});
    let raw = node.send_raw(Method::POST, &format!("/v1/nodes/{uuid}/sync"), &[], Some(&sync)).await.unwrap();
    assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{}", raw.body);
    assert_eq!(fields(&raw.body), ["sample.cpu_load", "sample.ram_free_gb", "sample.gpus[0].vram_free_gb"]);

    // Jobs asking for more than any machine has.
    let user = ctx.new_account(Preset::Consumer).await;
    for (key, value) in [
        ("min_ram_gb", json!(9e15)),
        ("min_storage_gb", json!(1e300)),
        ("min_vram_gb", json!(1e6)),
        ("cpu_count", json!(4_294_967_295_u64)),
        ("gpu_count", json!(1_000_000)),
        ("max_node_count", json!(1_000_000)),
        ("max_retry_count", json!(9_007_199_254_740_991_u64)),
    ] {
        let mut body = batch_job("absurd");
        body[key] = value;
        let raw = user.send_raw(Method::POST, "/v1/jobs", &[], Some(&body)).await.unwrap();
        assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{key}: {}", raw.body);
        assert_eq!(fields(&raw.body), [key]);
    }
    assert_eq!(user.list_jobs(&[]).await.unwrap().total, 0, "nothing half-written");

    // Everything still reads.
    let account = user.me().await.unwrap().account_uuid;
    let balance = user.balance(account).await.unwrap();
    assert_eq!(balance.available_balance_micros, 0);
    let raw = node.send_raw(Method::GET, &format!("/v1/nodes/{uuid}"), &[], None).await.unwrap();
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
}

/// Point 8: credits cannot push a balance past what 64-bit sums and every client hold.
#[tokio::test]
async fn credits_cannot_overflow_a_balance() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let account = user.me().await.unwrap().account_uuid;
    let store = ctx.store().as_ref();
    let max = gantry_types::num::MAX_SAFE_INTEGER;
    assert!(gantry_server::admin::credit(store, account, max - 1, None, None).await.unwrap());
    let err = gantry_server::admin::credit(store, account, 2, None, None).await.unwrap_err();
    assert!(format!("{err:?}").contains("amount"), "{err:?}");
    for _ in 0..3 {
        assert!(gantry_server::admin::credit(store, account, max, None, None).await.is_err());
    }
    let balance = user.balance(account).await.unwrap();
    assert_eq!(balance.posted_balance_micros, max - 1);
}

/// Point 3: idle sockets and slow-header connections were never closed, so enough of
/// them starved everyone else. With the limits lowered (1 s timeouts, 20 connections),
/// 30 idle and 30 slowloris connections are closed by the server and a normal client
/// still gets its answers.
#[tokio::test]
async fn idle_and_slow_connections_are_closed_and_normal_clients_still_get_answers() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ctx = TestContext::start_with(|c| {
        c.connections.header_read_timeout = Duration::from_secs(1);
        c.connections.idle_timeout = Duration::from_secs(1);
        c.connections.max_connections = 20;
    })
    .await;
    let user = ctx.new_account(Preset::Consumer).await;
    let addr = ctx.base_url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    for _ in 0..30 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    // Slowloris: keep trickling header bytes, never finishing the head.
    let trickle = tokio::spawn(async move {
        for _ in 0..16 {
            for s in &mut slow {
                let _ = s.write_all(b"X-Slow: 1\r\n").await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        slow
    });
    // More connections than the limit are open or waiting: a signed client still gets
    // answers, well before the attackers would give up.
    let started = Instant::now();
    for _ in 0..3 {
        user.me().await.unwrap();
        user.list_jobs(&[]).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(8), "answers took {:?}", started.elapsed());
    // The server closed every idle socket (reads end) instead of keeping them.
    for mut s in idle {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "an idle socket was kept open: {read:?}");
    }
    let slow = trickle.await.unwrap();
    for mut s in slow {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a slow-header socket was kept open: {read:?}");
    }
    user.me().await.unwrap();
}

/// Point 3: a request in flight is not idle; a long-polling sync that outlasts the idle
/// timeout still gets its answer.
#[tokio::test]
async fn a_long_poll_outlasting_the_idle_timeout_is_answered() {
    use std::time::Duration;
    let ctx = TestContext::start_with(|c| {
        c.connections.header_read_timeout = Duration::from_millis(500);
        c.connections.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let node = ctx.new_account(Preset::Node).await;
    let reg = node
        .register_node(&gantry_types::node::RegisterNodeRequest { name: Some("n".into()), ..Default::default() })
        .await
        .unwrap();
    let first = node
        .sync_node(
            reg.node.uuid,
            &gantry_types::protocol::SyncRequest { lease_epoch: reg.lease_epoch, ..Default::default() },
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let req = gantry_types::protocol::SyncRequest {
        lease_epoch: reg.lease_epoch,
        desired_version: Some(first.version),
        wait_ms: Some(1_500),
        ..Default::default()
    };
    node.sync_node(reg.node.uuid, &req).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1_400), "the long poll waited");
}

/// Point 11: 414 and 431 come with the JSON error body, like every other error.
#[tokio::test]
async fn oversized_targets_and_headers_get_the_json_error_body() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let long = "x".repeat(10_000);
    let raw = user.send_raw(Method::GET, "/v1/jobs", &[("filter[title]".into(), long)], None).await.unwrap();
    assert_eq!(raw.status, StatusCode::URI_TOO_LONG);
    assert_eq!(raw.body["error"]["code"], "uri_too_long", "{}", raw.body);
    let http = reqwest::Client::new();
    let big = "y".repeat(40_000);
    let resp = http.get(format!("{}/healthz", ctx.base_url)).header("x-big", big).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
}

/// Point 11: published ports per job are capped (32 by default, configurable).
#[tokio::test]
async fn published_ports_per_job_are_capped() {
    let ctx = TestContext::start_with(|c| c.max_ports_per_job = 4).await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut body = batch_job("ports");
    body["parameters"]["parameters"]["ports"] = json!([1, 2, 3, 4, 5]);
    let raw = user.send_raw(Method::POST, "/v1/jobs", &[], Some(&body)).await.unwrap();
    assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{}", raw.body);
    assert_eq!(fields(&raw.body), ["parameters.parameters.ports"]);
    body["parameters"]["parameters"]["ports"] = json!([1, 2, 3, 4]);
    let raw = user.send_raw(Method::POST, "/v1/jobs", &[], Some(&body)).await.unwrap();
    assert_eq!(raw.status, StatusCode::CREATED, "{}", raw.body);
}

/// Point 11: the SQLite database (with its WAL) and the server key are readable by
/// their owner only.
#[tokio::test]
async fn the_database_and_key_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    user.create_job(&batch_job("a write, so the WAL exists")).await.unwrap();
    for name in ["gantry.db", "gantry.db-wal", "gantry.db-shm", "server.key"] {
        let path = ctx.dir.path().join(name);
        let mode = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{name}: {e}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
}

/// Point 11: job `env` values (cloud credentials in practice) are encrypted at rest and
/// shown in clear to the job's owner only.
#[tokio::test]
async fn job_env_is_encrypted_at_rest_and_shown_to_the_owner_only() {
    let ctx = TestContext::start().await;
    let owner = ctx.new_account(Preset::Consumer).await;
    let mut body = batch_job("env");
    body["parameters"]["parameters"]["env"] = json!({"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "EPOCHS": "3"});
    let job = owner.create_job(&body).await.unwrap();
    let env = |j: &gantry_types::job::Job| j.parameters.parameters.env.clone().unwrap();
    assert_eq!(env(&job)["AWS_SECRET_ACCESS_KEY"], "wJalrXUtnFEMI", "the create response is the owner's");
    assert_eq!(env(&owner.get_job(job.uuid).await.unwrap())["AWS_SECRET_ACCESS_KEY"], "wJalrXUtnFEMI");
    assert_eq!(env(&owner.list_jobs(&[]).await.unwrap().data[0])["EPOCHS"], "3");
    let stored = ctx.store().job_fetch(None, job.uuid).await.unwrap().unwrap();
    for value in env(&stored).values() {
        assert!(!value.contains("wJalrXUtnFEMI") && value != "3", "stored in clear: {value}");
    }
    let admin = ctx.new_account(Preset::Admin).await;
    let seen = admin.get_job(job.uuid).await.unwrap();
    assert_eq!(env(&seen)["AWS_SECRET_ACCESS_KEY"], "********", "an operator does not see it");
    let other = ctx.new_account(Preset::Consumer).await;
    assert_eq!(other.get_job(job.uuid).await.unwrap_err().status(), Some(StatusCode::NOT_FOUND));
}

/// Point 10 (the request rate): one account over its rate gets 429 with Retry-After,
/// another account and operators are unaffected.
#[tokio::test]
async fn an_account_over_its_request_rate_gets_429_with_retry_after() {
    let ctx = TestContext::start_with(|c| {
        c.rate_limits = gantry_server::RateLimits { requests_per_sec: 2.0, burst: 5.0 };
    })
    .await;
    let greedy = ctx.new_account(Preset::Consumer).await;
    let mut limited = None;
    for _ in 0..20 {
        let raw = greedy.send_raw(Method::GET, "/v1/jobs", &[], None).await.unwrap();
        if raw.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(raw);
            break;
        }
        assert_eq!(raw.status, StatusCode::OK);
    }
    let limited = limited.expect("20 requests at once stay under a 2/s rate with a burst of 5");
    assert_eq!(limited.body["error"]["code"], "rate_limited", "{}", limited.body);
    let resp = greedy.signed(Method::GET, "/v1/jobs", &[], None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let other = ctx.new_account(Preset::Consumer).await;
    assert!(other.list_jobs(&[]).await.is_ok(), "another account has its own bucket");
    let admin = ctx.new_account(Preset::Admin).await;
    for _ in 0..20 {
        admin.list_jobs(&[]).await.unwrap();
    }
    // The bucket refills: the greedy account is answered again about Retry-After later.
    gantry_test_harness::wait_for("the bucket to refill", std::time::Duration::from_secs(retry + 3), || async {
        greedy.list_jobs(&[]).await.ok()
    })
    .await;
}
