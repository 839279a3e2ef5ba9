//! The API end to end with the server on PostgreSQL instead of SQLite: the same
//! client calls, the same answers. (The store suite checks each backend in depth;
//! this checks the server wiring: `--database-url`, migrations, secrets, scoping.)

use gantry_client::query;
use gantry_test_harness::{TestContext, batch_job};
use gantry_types::job::JobStatus;
use gantry_types::permissions::Preset;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn jobs_and_keys_round_trip_on_postgres() {
    let Some(ctx) = TestContext::start_postgres().await else { return };
    assert_eq!(ctx.store().backend(), "postgres");
    let alice = ctx.new_account(Preset::Consumer).await;
    let bob = ctx.new_account(Preset::Consumer).await;

    let mut body = batch_job("on postgres");
    body["parameters"]["parameters"]["secret"] = json!("pg-registry-secret");
    let job = alice.create_job(&body).await.unwrap();
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.parameters.parameters.secret.as_deref(), Some("********"));
    let stored = ctx.store().job_fetch(None, job.uuid).await.unwrap().unwrap();
    assert_ne!(stored.parameters.parameters.secret.as_deref(), Some("pg-registry-secret"));

    for i in 0..3 {
        alice.create_job(&batch_job(&format!("more-{i}"))).await.unwrap();
    }
    let page = alice.list_jobs(&query(&[("limit", "2"), ("sort", "created_at")])).await.unwrap();
    assert_eq!((page.total, page.data.len(), page.data[0].uuid), (4, 2, job.uuid));
    assert_eq!(bob.get_job(job.uuid).await.unwrap_err().status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(bob.list_jobs(&[]).await.unwrap().total, 0);

    let cancelled = alice.cancel_job(job.uuid, "done").await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let p = alice.list_jobs(&query(&[("filter[status]", "CANCELLED")])).await.unwrap();
    assert_eq!(p.total, 1);

    let keys = alice.list_api_keys(&[]).await.unwrap();
    assert_eq!(keys.total, 1);
    alice.revoke_api_key(keys.data[0].uuid).await.unwrap();
    assert_eq!(alice.list_jobs(&[]).await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));
    ctx.shutdown().await;
}

#[tokio::test]
async fn recipes_seed_cook_and_stay_private_on_postgres() {
    let Some(ctx) = TestContext::start_postgres().await else { return };
    let (alice, bob) = (ctx.new_account(Preset::Consumer).await, ctx.new_account(Preset::Consumer).await);
    let official = alice.list_recipes(&query(&[("filter[is_official]", "true")])).await.unwrap();
    assert_eq!(official.total, gantry_types::recipe::catalogue::seeded_recipes().len() as u64);
    let hello: gantry_types::RecipeId = gantry_types::recipe::catalogue::HELLO_GPU_UUID.parse().unwrap();
    let job = alice.cook_recipe(hello, &json!({"title": "on postgres"})).await.unwrap();
    assert_eq!(
        (job.title.as_str(), job.source_recipe_uuid.as_deref()),
        ("on postgres", Some(gantry_types::recipe::catalogue::HELLO_GPU_UUID))
    );

    let mut body = batch_job("template");
    body["parameters"]["parameters"]["secret"] = json!("pg-recipe-secret");
    let mine = alice.create_recipe(&json!({"name": "mine", "payload": body})).await.unwrap();
    assert_eq!(mine.payload.parameters.parameters.secret.as_deref(), Some("********"));
    assert_eq!(bob.get_recipe(mine.uuid).await.unwrap_err().status(), Some(StatusCode::NOT_FOUND));
    alice.update_recipe(mine.uuid, &json!({"visibility": "PUBLIC"})).await.unwrap();
    assert!(!bob.get_recipe(mine.uuid).await.unwrap().is_owner);
    let cooked = bob.cook_recipe(mine.uuid, &json!({})).await.unwrap();
    let stored = ctx.store().job_fetch(None, cooked.uuid).await.unwrap().unwrap();
    let sealed = stored.parameters.parameters.secret.unwrap();
    assert_eq!(ctx.secrets().decrypt(&sealed).unwrap(), "pg-recipe-secret");
    ctx.shutdown().await;
}

/// An instance whose database goes away says so on `/healthz` (503, for load
/// balancers) and stops leading; when the database is back it is healthy and leads
/// again.
#[tokio::test]
async fn losing_the_database_makes_healthz_503_and_the_leader_step_down() {
    use std::time::Duration;

    use gantry_test_harness::wait_for;
    use sqlx::{Connection, PgConnection};

    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (database, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    let ctx = TestContext::start_with(|c| c.database_url = Some(url.clone())).await;
    let health = || async {
        let resp = reqwest::get(format!("{}/healthz", ctx.base_url)).await.unwrap();
        (resp.status(), resp.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = health().await;
    assert_eq!((status, body["role"].as_str()), (StatusCode::OK, Some("leader")), "{body}");

    // The database refuses new connections and drops the server's.
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    let cut = |allow: bool| format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {allow}");
    sqlx::query(sqlx::AssertSqlSafe(cut(false))).execute(&mut admin).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database)
    .execute(&mut admin)
    .await
    .unwrap();
    let body = wait_for("healthz to report the database gone", Duration::from_secs(20), || async {
        let (status, body) = health().await;
        (status == StatusCode::SERVICE_UNAVAILABLE && body["role"] == "follower").then_some(body)
    })
    .await;
    assert_eq!(body["status"], "unavailable");
    assert!(body["reason"].as_str().unwrap().contains("database"), "{body}");

    sqlx::query(sqlx::AssertSqlSafe(cut(true))).execute(&mut admin).await.unwrap();
    wait_for("the instance to be healthy and lead again", Duration::from_secs(20), || async {
        let (status, body) = health().await;
        (status == StatusCode::OK && body["role"] == "leader").then_some(())
    })
    .await;
    admin.close().await.unwrap();
    ctx.shutdown().await;
    gantry_store::testsuite::scratch_pg::drop_database(&admin_url, &database).await;
}

/// A server whose database cannot be reached at start keeps trying, answering 503
/// meanwhile (`/healthz` says why, the API asks to retry), and serves once the
/// database answers. The database appears behind a loopback forwarder started late.
#[tokio::test]
async fn a_server_started_before_its_database_answers_503_until_it_connects() {
    use std::time::Duration;

    use gantry_test_harness::wait_for;

    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (database, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    let real: reqwest::Url = url.parse().unwrap();
    let real_addr = format!("{}:{}", real.host_str().unwrap(), real.port().unwrap_or(5432));
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (db_port, api_port) = (free_port(), free_port());
    let mut through_forwarder = real.clone();
    through_forwarder.set_host(Some("127.0.0.1")).unwrap();
    through_forwarder.set_port(Some(db_port)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut config = gantry_server::ServerConfig::new(dir.path(), format!("127.0.0.1:{api_port}").parse().unwrap());
    config.database_url = Some(through_forwarder.to_string());
    let starting = tokio::spawn(gantry_server::start(config));
    let health = || async {
        let resp = reqwest::get(format!("http://127.0.0.1:{api_port}/healthz")).await.ok()?;
        Some((resp.status(), resp.json::<serde_json::Value>().await.ok()?))
    };
    let body = wait_for("healthz to answer 503", Duration::from_secs(20), || async {
        health().await.filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).map(|(_, b)| b)
    })
    .await;
    assert_eq!(body["status"], "unavailable");
    assert!(body["reason"].as_str().unwrap().contains("waiting for the database"), "{body}");
    let api = reqwest::get(format!("http://127.0.0.1:{api_port}/v1/jobs")).await.unwrap();
    assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.headers()["retry-after"], "5");
    assert_eq!(api.json::<serde_json::Value>().await.unwrap()["error"]["code"], "unavailable");
    assert!(!starting.is_finished(), "start waits for the database rather than failing");

    // The database becomes reachable.
    let forwarder = tokio::net::TcpListener::bind(("127.0.0.1", db_port)).await.unwrap();
    let forwarding = tokio::spawn(async move {
        while let Ok((mut client, _)) = forwarder.accept().await {
            let real_addr = real_addr.clone();
            tokio::spawn(async move {
                if let Ok(mut db) = tokio::net::TcpStream::connect(real_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut db).await;
                }
            });
        }
    });
    let server = tokio::time::timeout(Duration::from_secs(30), starting).await.expect("connects").unwrap().unwrap();
    assert_eq!(server.local_addr.port(), api_port, "the same address");
    let (status, body) = health().await.unwrap();
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")), "{body}");
    server.shutdown().await.unwrap();
    forwarding.abort();
    gantry_store::testsuite::scratch_pg::drop_database(&admin_url, &database).await;
}
