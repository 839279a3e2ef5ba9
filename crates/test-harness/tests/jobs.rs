//! The Jobs API through the signed client: create, validation, list, get, cancel,
//! account isolation, secrets at rest.

use gantry_client::{ClientError, query};
use gantry_test_harness::{TestContext, batch_job};
use gantry_types::job::JobStatus;
use gantry_types::permissions::Preset;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn fields(e: &ClientError) -> Vec<String> {
    match e {
        ClientError::Api { body, .. } => body.error.details.iter().map(|d| d.field.clone()).collect(),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn create_returns_a_pending_job_in_the_upstream_shape() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let mut body = batch_job("train");
    body["surprise_field"] = json!("ignored");
    body["parameters"]["parameters"]["secret"] = json!("registry-password-123");
    let raw = client.send_raw(Method::POST, "/v1/jobs", &[], Some(&body)).await.unwrap();
    assert_eq!(raw.status, StatusCode::CREATED);
    let job = raw.body;
    for field in [
        "object",
        "created_at",
        "updated_at",
        "status",
        "task",
        "title",
        "cpu_count",
        "gpu_count",
        "min_ram_gb",
        "min_vram_gb",
        "min_storage_gb",
        "parameters",
        "timeout_assign_at_ms",
        "uuid",
        "started_at",
        "completed_at",
        "description",
        "gpu_name",
        "gpu_registry_uuid",
        "max_timeout_assign_ms",
        "max_timeout_run_ms",
        "max_timeout_start_ms",
        "max_retry_count",
        "max_node_count",
        "image_size_bytes",
        "container_access_tokens",
        "status_reason",
        "source_recipe_uuid",
    ] {
        assert!(job.get(field).is_some(), "job lacks {field}: {job}");
    }
    assert_eq!(job["object"], "job");
    assert_eq!(job["status"], "PENDING");
    assert_eq!(job["min_vram_gb"], json!(13));
    assert_eq!(job["max_timeout_assign_ms"], json!(300000));
    assert_eq!(job["max_timeout_start_ms"], json!(300000));
    assert!(job.get("surprise_field").is_none());
    let created = chrono::DateTime::parse_from_rfc3339(job["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(job["timeout_assign_at_ms"].as_i64().unwrap(), created.timestamp_millis() + 300_000);
    let params = &job["parameters"]["parameters"];
    assert_eq!(params["secret"], "********", "registry secret must be redacted");
    assert!(params.get("host").is_none(), "empty credential fields mean unset");
    assert_eq!(params["ports"], json!([22, 8080]));

    // Fetching it shows the same job (its status_reason may meanwhile say why the
    // scheduler cannot place it: there are no nodes in this test).
    let id = job["uuid"].as_str().unwrap().parse().unwrap();
    let mut fetched = serde_json::to_value(client.get_job(id).await.unwrap()).unwrap();
    let mut created = job.clone();
    fetched["status_reason"] = Value::Null;
    created["status_reason"] = Value::Null;
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn the_seed_example_is_refused_naming_both_gpu_fields() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    // The body of create-job.txt's own example, verbatim but for its placeholders.
    let body = json!({
        "parameters": {"parameters": {"allowed_ips": ["203.0.113.0/24"], "env": {}, "host": "", "image": "busybox",
            "imagesrc": "", "ports": [123], "secret": "", "sshkey": "", "tag": "", "user": "",
            "volumes": [{"image": "data", "mount": "/data", "registry": "", "secret": "", "tag": "", "user": ""}]},
            "type": "docker"},
        "title": "example", "max_timeout_run_ms": 900000, "task": "BATCH", "cpu_count": 4, "description": "d",
        "gpu_count": 1, "gpu_name": "NVIDIA RTX 4090", "gpu_registry_uuid": "01234567-89ab-cdef-0123-456789abcdef",
        "max_node_count": 1, "max_retry_count": 0, "max_timeout_assign_ms": 300000, "max_timeout_start_ms": 300000,
        "min_ram_gb": 0, "min_storage_gb": 0, "min_vram_gb": 0
    });
    let err = client.create_job(&body).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(fields(&err), ["gpu_name", "gpu_registry_uuid"]);
    let mut fixed = body.clone();
    fixed.as_object_mut().unwrap().remove("gpu_registry_uuid");
    assert_eq!(client.create_job(&fixed).await.unwrap().status, JobStatus::Pending);
    assert_eq!(client.list_jobs(&[]).await.unwrap().total, 1, "the refused body left nothing behind");
}

#[tokio::test]
async fn every_violation_is_a_400_naming_its_field() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["title", "task", "parameters"]),
        (
            json!({"title": "t", "task": "PERSISTENT", "max_timeout_run_ms": 60000,
                "parameters": {"parameters": {"image": "x"}}}),
            vec!["max_timeout_run_ms"],
        ),
        (
            json!({"title": "t", "task": "BATCH", "max_timeout_run_ms": 1000,
                "parameters": {"parameters": {"image": "x"}}}),
            vec!["max_timeout_run_ms"],
        ),
        (
            {
                let mut b = batch_job("t");
                b["max_timeout_assign_ms"] = json!(1);
                b["max_timeout_start_ms"] = json!(1);
                b
            },
            vec!["max_timeout_assign_ms", "max_timeout_start_ms"],
        ),
        (
            {
                let mut b = batch_job("t");
                b["gpu_count"] = json!(-1);
                b["min_storage_gb"] = json!(-3);
                b["max_node_count"] = json!(0);
                b
            },
            vec!["gpu_count", "max_node_count", "min_storage_gb"],
        ),
        (
            {
                let mut b = batch_job("t");
                b["parameters"]["type"] = json!("vm");
                b
            },
            vec!["parameters.type"],
        ),
        (
            {
                let mut b = batch_job("t");
                b["parameters"]["parameters"]["ports"] = json!([0, 65536]);
                b
            },
            vec!["parameters.parameters.ports[0]", "parameters.parameters.ports[1]"],
        ),
        (
            {
                let mut b = batch_job("t");
                b["parameters"]["parameters"]["allowed_ips"] = json!(["1.2.3.4/40", "::1/64", "x"]);
                b
            },
            vec!["parameters.parameters.allowed_ips[0]", "parameters.parameters.allowed_ips[2]"],
        ),
        (
            {
                let mut b = batch_job("t");
                b["cpu_count"] = json!("four");
                b
            },
            vec!["cpu_count"],
        ),
    ];
    for (body, expected) in cases {
        let err = client.create_job(&body).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{body}");
        assert_eq!(fields(&err), expected, "{body}");
    }
    assert_eq!(client.list_jobs(&[]).await.unwrap().total, 0, "no half-written jobs");
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversized_bodies_are_4xx() {
    let ctx = TestContext::start_with(|c| c.max_body_bytes = 4096).await;
    let client = ctx.new_account(Preset::Consumer).await;
    let creds = client.credentials().clone();
    let send = |body: &'static str, content_type: &'static str| {
        let creds = creds.clone();
        async move {
            // Sign as a client would for an empty JSON body; the server must reject
            // the body itself before any signature question arises.
            let signed = gantry_auth::sign_request(
                &creds.public_key,
                &creds.secret_key,
                "POST",
                "/v1/jobs",
                &[],
                None,
                now_ms(),
            );
            let resp = reqwest::Client::new()
                .post(format!("{}/v1/jobs", creds.base_url))
                .header("X-API-Key", signed.api_key)
                .header("X-Time", signed.time)
                .header("X-Nonce", signed.nonce)
                .header("X-Signature", signed.signature)
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body: Value = resp.json().await.unwrap();
            (status, body["error"]["code"].as_str().unwrap().to_string())
        }
    };
    assert_eq!(send("{\"title\": ", "application/json").await, (StatusCode::BAD_REQUEST, "malformed_json".into()));
    assert_eq!(
        send("title=x", "application/x-www-form-urlencoded").await,
        (StatusCode::BAD_REQUEST, "unsupported_media_type".into())
    );
    let big: &'static str = Box::leak("x".repeat(10_000).into_boxed_str());
    assert_eq!(send(big, "application/json").await, (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into()));
    // A signed request with no body at all.
    let raw = client.send_raw(Method::POST, "/v1/jobs", &[], None).await.unwrap();
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    assert_eq!(raw.body["error"]["details"][0]["field"], "body");
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test]
async fn list_pages_sorts_and_filters() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut body = batch_job(&format!("job-{i}"));
        body["cpu_count"] = json!(i);
        body["min_ram_gb"] = json!(i * 4);
        if i % 2 == 1 {
            body["task"] = json!("PERSISTENT");
            body["max_timeout_run_ms"] = Value::Null;
        }
        ids.push(client.create_job(&body).await.unwrap().uuid);
    }
    client.cancel_job(ids[0], "not needed").await.unwrap();

    let page = client.list_jobs(&[]).await.unwrap();
    assert_eq!((page.page, page.limit, page.total, page.data.len()), (1, 20, 7, 7));
    assert_eq!(page.data[0].uuid, ids[6], "newest first by default");
    let page = client.list_jobs(&query(&[("limit", "3"), ("page", "2"), ("sort", "created_at")])).await.unwrap();
    assert_eq!(page.data.iter().map(|j| j.uuid).collect::<Vec<_>>(), ids[3..6]);
    assert_eq!(page.total, 7);
    let titles = |p: &gantry_types::list::ListResponse<gantry_types::job::Job>| {
        let mut t: Vec<_> = p.data.iter().map(|j| j.title.clone()).collect();
        t.sort();
        t
    };
    let p = client.list_jobs(&query(&[("filter[status]", "CANCELLED,FAILED")])).await.unwrap();
    assert_eq!(titles(&p), ["job-0"]);
    let p = client.list_jobs(&query(&[("filter[task]", "PERSISTENT")])).await.unwrap();
    assert_eq!(titles(&p), ["job-1", "job-3", "job-5"]);
    let p = client.list_jobs(&query(&[("filter[cpu_count]", "2,4"), ("filter[min_ram_gb]", "12,")])).await.unwrap();
    assert_eq!(titles(&p), ["job-3", "job-4"]);
    let p = client.list_jobs(&query(&[("filter[uuid]", &format!("{},{}", ids[1], ids[2]))])).await.unwrap();
    assert_eq!(titles(&p), ["job-1", "job-2"]);
    let p = client.list_jobs(&query(&[("filter[created_at]", "2020-01-01,2999-01-01")])).await.unwrap();
    assert_eq!(p.total, 7);

    for (k, v, field) in [
        ("limit", "51", "limit"),
        ("page", "0", "page"),
        ("sort", "title", "sort"),
        ("filter[colour]", "red", "filter[colour]"),
        ("filter[status]", "SLEEPING", "filter[status]"),
    ] {
        let err = client.list_jobs(&query(&[(k, v)])).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(fields(&err), [field]);
    }
}

#[tokio::test]
async fn accounts_never_see_each_others_jobs() {
    let ctx = TestContext::start().await;
    let alice = ctx.new_account(Preset::Consumer).await;
    let bob = ctx.new_account(Preset::Consumer).await;
    let job = alice.create_job(&batch_job("alice's")).await.unwrap();
    for err in [bob.get_job(job.uuid).await.unwrap_err(), bob.cancel_job(job.uuid, "mine now").await.unwrap_err()] {
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND), "another account gets 404, never 403");
    }
    assert_eq!(bob.list_jobs(&[]).await.unwrap().total, 0);
    assert_eq!(alice.get_job(job.uuid).await.unwrap().status, JobStatus::Pending);
    let err = alice.get_job(gantry_types::JobId::new()).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    let raw = alice.send_raw(Method::GET, "/v1/jobs/not-a-uuid", &[], None).await.unwrap();
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    assert_eq!(raw.body["error"]["details"][0]["field"], "uuid");
    // An operator key sees every account's jobs.
    let admin = ctx.new_account(Preset::Admin).await;
    assert_eq!(admin.get_job(job.uuid).await.unwrap().uuid, job.uuid);
}

#[tokio::test]
async fn cancel_is_immediate_for_pending_jobs_and_idempotent() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let job = client.create_job(&batch_job("short-lived")).await.unwrap();
    let cancelled = client.cancel_job(job.uuid, "Cancelled by user").await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(cancelled.status_reason.as_deref(), Some("Cancelled by user"));
    assert!(cancelled.completed_at.is_some());
    let again = client.cancel_job(job.uuid, "different reason").await.unwrap();
    assert_eq!(again, cancelled, "a terminal job is returned unchanged");
    // No body at all: the default reason.
    let job = client.create_job(&batch_job("no reason")).await.unwrap();
    let raw = client.send_raw(Method::PUT, &format!("/v1/jobs/{}/cancel", job.uuid), &[], None).await.unwrap();
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body["status"], "CANCELLED");
    assert_eq!(raw.body["status_reason"], "Cancelled by user");
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let mut body = batch_job("private image");
    body["parameters"]["parameters"]["secret"] = json!("glpat-SUPERSECRET-registry-token");
    body["parameters"]["parameters"]["volumes"] =
        json!([{"image": "weights", "mount": "/weights", "secret": "VOLUME-SECRET-xyz", "user": "u"}]);
    let job = client.create_job(&body).await.unwrap();
    assert_eq!(job.parameters.parameters.volumes.as_ref().unwrap()[0].secret.as_deref(), Some("********"));
    // The store holds ciphertext that decrypts to the secret (the agent will need it)...
    let stored = ctx.store().job_fetch(None, job.uuid).await.unwrap().unwrap();
    let enc = stored.parameters.parameters.secret.clone().unwrap();
    assert_ne!(enc, "glpat-SUPERSECRET-registry-token");
    assert_eq!(ctx.secrets().decrypt(&enc).unwrap(), "glpat-SUPERSECRET-registry-token");
    // ...and no secret appears in clear anywhere in the database files.
    let secret_key = client.credentials().secret_key.clone();
    let mut haystack = Vec::new();
    for entry in std::fs::read_dir(ctx.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("gantry.db") {
            haystack.extend(std::fs::read(path).unwrap());
        }
    }
    assert!(!haystack.is_empty());
    for needle in ["glpat-SUPERSECRET-registry-token", "VOLUME-SECRET-xyz", secret_key.as_str()] {
        assert!(!haystack.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} found in clear");
    }
}
