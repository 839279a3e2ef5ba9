//! Issue 15, points 4 and 10 end to end, on SQLite and on PostgreSQL: one account's
//! backlog does not hide another account's job from the scheduler, and per-account
//! quotas (pending jobs, stored job bytes, request rate), set per deployment and per
//! consumer profile, refuse with a clear 4xx, write nothing, hold exactly under
//! concurrent submissions, and leave operators alone.

use std::time::{Duration, Instant};

use gantry_client::{Client, ClientError};
use gantry_server::ServerConfig;
use gantry_test_harness::{TestContext, wait_for};
use gantry_types::job::JobStatus;
use gantry_types::permissions::Preset;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn job(title: &str, gpus: u32) -> Value {
    json!({"title": title, "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1, "gpu_count": gpus,
           "parameters": {"type": "docker", "parameters": {"image": "busybox",
               "env": {"GANTRY_SIM_DURATION_MS": "60000"}}}})
}

/// The status and error code of a refused request.
fn refused(e: ClientError) -> (StatusCode, String, String) {
    match e {
        ClientError::Api { status, body } => (status, body.error.code, body.error.message),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn sqlite(tweak: impl FnOnce(&mut ServerConfig)) -> Option<TestContext> {
    Some(TestContext::start_with(tweak).await)
}

async fn postgres(tweak: impl FnOnce(&mut ServerConfig)) -> Option<TestContext> {
    TestContext::start_postgres_with(tweak).await
}

// ---------------------------------------------------------------------------------
// Point 4: queue fairness

/// Account F has more unplaceable jobs (4 GPUs each, on a 1-GPU node) than one
/// scheduler pass reads; account V's placeable job is still placed within a second
/// while the node sits idle, and both accounts' heads of line get a pending reason.
async fn a_backlog_does_not_hide_another_accounts_job(ctx: Option<TestContext>) {
    let Some(ctx) = ctx else { return };
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let f = ctx.new_account(Preset::Consumer).await;
    let v = ctx.new_account(Preset::Consumer).await;
    let mut backlog = Vec::new();
    for i in 0..60 {
        backlog.push(f.create_job(&job(&format!("too big {i}"), 4)).await.unwrap().uuid);
    }
    // The backlog has been through the scheduler: its head has a reason.
    wait_for("F's head of line to be explained", Duration::from_secs(20), || async {
        f.get_job(backlog[0]).await.ok().filter(|j| j.status_reason.is_some())
    })
    .await;

    let submitted = Instant::now();
    let small = v.create_job(&job("fits", 1)).await.unwrap();
    let placed = wait_for("V's job to be placed within a second", Duration::from_secs(1), || async {
        v.get_job(small.uuid).await.ok().filter(|j| j.status != JobStatus::Pending)
    })
    .await;
    eprintln!("V's job was {} after {:?}", placed.status.as_str(), submitted.elapsed());
    for id in [backlog[0], backlog[59]] {
        assert_eq!(f.get_job(id).await.unwrap().status, JobStatus::Pending);
    }
    nodes.stop().await;
}

fn small_pass(c: &mut ServerConfig) {
    gantry_test_harness::fast(c);
    c.scheduler_pass_limit = 50;
}

#[tokio::test]
async fn a_backlog_past_the_pass_limit_does_not_hide_another_accounts_job() {
    a_backlog_does_not_hide_another_accounts_job(sqlite(small_pass).await).await;
}

#[tokio::test]
async fn a_backlog_past_the_pass_limit_does_not_hide_another_accounts_job_on_postgres() {
    a_backlog_does_not_hide_another_accounts_job(postgres(small_pass).await).await;
}

// ---------------------------------------------------------------------------------
// Point 10: quotas

fn three_pending(c: &mut ServerConfig) {
    c.quotas = gantry_server::Quotas { max_pending_jobs: 3, max_stored_job_bytes: 0 };
}

/// The deployment's pending-jobs quota: the 4th PENDING job is a 429 naming the limit
/// and the usage, with Retry-After, and nothing is written; a cancel makes room;
/// another account and operators are unaffected; an operator's profile override
/// raises it (0 lifts it); owners cannot set it; bad values are 400s naming the field.
async fn the_pending_jobs_quota(ctx: Option<TestContext>) {
    let Some(ctx) = ctx else { return };
    let user = ctx.new_account(Preset::Consumer).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(user.create_job(&job(&format!("ok {i}"), 1)).await.unwrap().uuid);
    }
    let (status, code, message) = refused(user.create_job(&job("one too many", 1)).await.unwrap_err());
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "pending_jobs_quota_exceeded"));
    assert!(message.contains("has 3 PENDING jobs and may have at most 3 (max_pending_jobs)"), "{message}");
    let raw = user.send_raw(Method::POST, "/v1/jobs", &[], Some(&job("again", 1))).await.unwrap();
    assert_eq!(raw.status, StatusCode::TOO_MANY_REQUESTS);
    let resp = user.signed(Method::POST, "/v1/jobs", &[], Some(&job("again", 1))).send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"), "{:?}", resp.headers());
    assert_eq!(user.list_jobs(&[]).await.unwrap().total, 3, "nothing written");

    user.cancel_job(ids[0], "make room").await.unwrap();
    user.create_job(&job("after a cancel", 1)).await.unwrap();
    ctx.new_account(Preset::Consumer).await.create_job(&job("someone else", 1)).await.unwrap();
    let admin = ctx.new_account(Preset::Admin).await;
    for i in 0..5 {
        admin.create_job(&job(&format!("operator {i}"), 1)).await.unwrap();
    }

    // Per profile: only operators set it; it overrides the deployment; 0 lifts it.
    let profile = user.list_consumer_profiles(&[]).await.unwrap().data.remove(0);
    let (status, code, _) =
        refused(user.update_consumer_profile(profile.uuid, &json!({"max_pending_jobs": 100})).await.unwrap_err());
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "operator_only_field"));
    for bad in [json!({"max_pending_jobs": -1}), json!({"rate_limit_rps": -2.5}), json!({"max_pending_jobs": "x"})] {
        let err = admin.update_consumer_profile(profile.uuid, &bad).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{bad}: {err}");
    }
    let raised = admin.update_consumer_profile(profile.uuid, &json!({"max_pending_jobs": 5})).await.unwrap();
    assert_eq!(raised.max_pending_jobs, Some(5));
    user.create_job(&job("4th", 1)).await.unwrap();
    user.create_job(&job("5th", 1)).await.unwrap();
    let (_, code, message) = refused(user.create_job(&job("6th", 1)).await.unwrap_err());
    assert_eq!(code, "pending_jobs_quota_exceeded");
    assert!(message.contains("at most 5"), "{message}");
    admin.update_consumer_profile(profile.uuid, &json!({"max_pending_jobs": 0})).await.unwrap();
    user.create_job(&job("no limit", 1)).await.unwrap();
    let back = admin.update_consumer_profile(profile.uuid, &json!({"max_pending_jobs": null})).await.unwrap();
    assert_eq!(back.max_pending_jobs, None, "null returns to the deployment's limit");
    assert_eq!(refused(user.create_job(&job("limited again", 1)).await.unwrap_err()).0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_pending_jobs_quota_is_enforced_and_overridden_per_profile() {
    the_pending_jobs_quota(sqlite(three_pending).await).await;
}

#[tokio::test]
async fn the_pending_jobs_quota_is_enforced_and_overridden_per_profile_on_postgres() {
    the_pending_jobs_quota(postgres(three_pending).await).await;
}

/// 40 submissions at once against a quota of 15: exactly 15 jobs exist afterwards.
async fn the_quota_holds_under_concurrent_submits(ctx: Option<TestContext>) {
    let Some(ctx) = ctx else { return };
    let user = ctx.new_account(Preset::Consumer).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let user: Client = user.clone();
            tokio::spawn(async move { user.create_job(&job(&format!("race {i}"), 1)).await })
        })
        .collect();
    let (mut created, mut limited) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(refused(e).1, "pending_jobs_quota_exceeded");
                limited += 1;
            }
        }
    }
    assert_eq!((created, limited), (15, 25));
    assert_eq!(user.list_jobs(&[]).await.unwrap().total, 15);
}

fn fifteen_pending(c: &mut ServerConfig) {
    c.quotas = gantry_server::Quotas { max_pending_jobs: 15, max_stored_job_bytes: 0 };
}

#[tokio::test]
async fn the_pending_jobs_quota_is_exact_under_concurrent_submits() {
    the_quota_holds_under_concurrent_submits(sqlite(fifteen_pending).await).await;
}

#[tokio::test]
async fn the_pending_jobs_quota_is_exact_under_concurrent_submits_on_postgres() {
    the_quota_holds_under_concurrent_submits(postgres(fifteen_pending).await).await;
}

/// The stored-bytes quota counts every job kept (a cancel frees nothing): over it, a
/// 403 naming the usage and the limit, nothing written; a profile override raises it;
/// a recipe cook is held to it like a submit.
#[tokio::test]
async fn the_stored_job_bytes_quota_is_enforced_and_overridden_per_profile() {
    let ctx = TestContext::start_with(|c| {
        c.quotas = gantry_server::Quotas { max_pending_jobs: 0, max_stored_job_bytes: 6_000 };
    })
    .await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut created = Vec::new();
    let err = loop {
        match user.create_job(&job(&format!("kept {}", created.len()), 1)).await {
            Ok(j) => created.push(j.uuid),
            Err(e) => break e,
        }
        assert!(created.len() < 20, "6,000 bytes hold a few jobs only");
    };
    let (status, code, message) = refused(err);
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "job_storage_quota_exceeded"));
    assert!(message.contains("over its limit of 6000 bytes (max_stored_job_bytes)"), "{message}");
    assert!(!created.is_empty());
    assert_eq!(user.list_jobs(&[]).await.unwrap().total, created.len() as u64, "nothing written");
    user.cancel_job(created[0], "does not free storage").await.unwrap();
    assert_eq!(refused(user.create_job(&job("still full", 1)).await.unwrap_err()).0, StatusCode::FORBIDDEN);

    let admin = ctx.new_account(Preset::Admin).await;
    admin.create_job(&job("operators are exempt", 1)).await.unwrap();
    let profile = user.list_consumer_profiles(&[]).await.unwrap().data.remove(0);
    admin.update_consumer_profile(profile.uuid, &json!({"max_stored_job_bytes": 1_000_000})).await.unwrap();
    user.create_job(&job("room again", 1)).await.unwrap();
    admin.update_consumer_profile(profile.uuid, &json!({"max_stored_job_bytes": 1})).await.unwrap();
    let recipe = user
        .create_recipe(&json!({"name": "mine", "visibility": "PRIVATE", "payload": job("cooked", 1)}))
        .await
        .unwrap();
    let (status, code, _) = refused(user.cook_recipe(recipe.uuid, &json!({})).await.unwrap_err());
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "job_storage_quota_exceeded"));
}

/// A profile's own request rate applies on top of (here: instead of no) deployment
/// rate; other accounts keep theirs.
#[tokio::test]
async fn a_profile_rate_limit_applies_to_its_consumer_only() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let profile = user.list_consumer_profiles(&[]).await.unwrap().data.remove(0);
    let admin = ctx.new_account(Preset::Admin).await;
    admin.update_consumer_profile(profile.uuid, &json!({"rate_limit_rps": 1.0})).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(user.send_raw(Method::GET, "/v1/jobs", &[], None).await.unwrap().status);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let other = ctx.new_account(Preset::Consumer).await;
    for _ in 0..10 {
        other.list_jobs(&[]).await.unwrap();
    }
    admin.update_consumer_profile(profile.uuid, &json!({"rate_limit_rps": null})).await.unwrap();
    wait_for("the deployment's (absent) limit to apply again", Duration::from_secs(5), || async {
        user.list_jobs(&[]).await.ok()
    })
    .await;
}
