//! The GPU registry through the signed client: the seeded catalogue, list envelope,
//! paging and filters, get by uuid, operators' additions, and jobs' `gpu_name` /
//! `gpu_registry_uuid` checked against it at submit time.

use std::time::Duration;

use gantry_client::{Client, ClientError, Credentials, query};
use gantry_test_harness::{TestContext, batch_job, wait_for};
use gantry_types::gpu::GpuModel;
use gantry_types::gpu::catalogue::{CATALOGUE, RTX_5090_UUID};
use gantry_types::job::{Job, JobStatus};
use gantry_types::list::ListResponse;
use gantry_types::permissions::Preset;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn list(client: &Client, pairs: &[(&str, &str)]) -> ListResponse<GpuModel> {
    client.send(Method::GET, "/v1/gpu-registry", &query(pairs), None).await.expect("list the registry")
}

async fn add(client: &Client, body: Value) -> Result<GpuModel, ClientError> {
    client.send(Method::POST, "/v1/gpu-registry", &[], Some(&body)).await
}

async fn submit(client: &Client, gpu: (&str, &str)) -> Result<Job, ClientError> {
    let mut body = batch_job("gpu job");
    body[gpu.0] = json!(gpu.1);
    client.create_job(&body).await
}

fn fields(e: &ClientError) -> Vec<String> {
    match e {
        ClientError::Api { body, .. } => body.error.details.iter().map(|d| d.field.clone()).collect(),
        other => panic!("expected an API error, got {other}"),
    }
}

fn names(page: &ListResponse<GpuModel>) -> Vec<&str> {
    page.data.iter().map(|m| m.name.as_str()).collect()
}

#[tokio::test]
async fn the_seeded_catalogue_is_listed_in_the_upstream_envelope() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let raw = client.send_raw(Method::GET, "/v1/gpu-registry", &[], None).await.unwrap();
    assert_eq!(raw.status, StatusCode::OK);
    let (body, n) = (raw.body, CATALOGUE.len());
    assert_eq!(
        (body["page"].as_u64(), body["limit"].as_u64(), body["total"].as_u64()),
        (Some(1), Some(20), Some(n as u64))
    );
    assert_eq!(body["data"].as_array().unwrap().len(), 20);
    let first = &body["data"][0];
    for field in ["object", "uuid", "name", "vendor", "vram_gb", "aliases", "is_official", "created_at", "updated_at"] {
        assert!(first.get(field).is_some(), "model lacks {field}: {first}");
    }
    assert_eq!(first["object"], "gpu_registry_model");
    // Newest first by default: the catalogue's last entry leads.
    assert_eq!(first["name"], "NVIDIA GeForce RTX 3060");
    assert_eq!(first["vram_gb"], json!(12), "integral GB are integers on the wire");

    // Oldest first, in pages of 50: every model once.
    let p1 = list(&client, &[("sort", "created_at"), ("limit", "50")]).await;
    let p2 = list(&client, &[("sort", "created_at"), ("limit", "50"), ("page", "2")]).await;
    assert_eq!(p1.data[0].name, "NVIDIA H200");
    let mut all: Vec<_> = p1.data.iter().chain(&p2.data).map(|m| m.uuid).collect();
    assert_eq!(all.len(), n);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no model repeated across pages");
    assert!(p1.data.iter().chain(&p2.data).all(|m| m.is_official && m.vendor == "NVIDIA"));
    let past = list(&client, &[("page", "9")]).await;
    assert_eq!((past.data.len(), past.total), (0, n as u64));

    // A node key may read it too (agents resolve their GPUs); paging errors are 400s.
    let node = ctx.new_account(Preset::Node).await;
    assert_eq!(list(&node, &[]).await.total, n as u64);
    let err =
        client.send::<Value>(Method::GET, "/v1/gpu-registry", &query(&[("limit", "51")]), None).await.unwrap_err();
    assert_eq!(fields(&err), ["limit"]);
}

#[tokio::test]
async fn filters_by_vram_name_alias_vendor_and_availability() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;

    let big = list(&client, &[("filter[min_vram_gb]", "80"), ("limit", "50")]).await;
    assert!(big.data.iter().all(|m| m.vram_gb >= 80.0), "{:?}", names(&big));
    assert!(names(&big).contains(&"NVIDIA H100 SXM") && names(&big).contains(&"NVIDIA H200"));
    assert!(!names(&big).contains(&"NVIDIA GeForce RTX 4090"));
    let exactly_24 = list(&client, &[("filter[min_vram_gb]", "24,24"), ("limit", "50")]).await;
    assert!(exactly_24.data.iter().all(|m| m.vram_gb == 24.0));
    assert!(names(&exactly_24).contains(&"NVIDIA GeForce RTX 4090"));

    for name in ["NVIDIA GeForce RTX 4090", "NVIDIA RTX 4090", "rtx 4090", "RTX  4090"] {
        let page = list(&client, &[("filter[name]", name)]).await;
        assert_eq!(names(&page), ["NVIDIA GeForce RTX 4090"], "filter[name]={name}");
        assert_eq!(page.total, 1);
    }
    let two = list(&client, &[("filter[name]", "Tesla T4,NVIDIA A100-SXM4-80GB"), ("sort", "created_at")]).await;
    assert_eq!(names(&two), ["NVIDIA A100 80GB", "NVIDIA T4"]);
    assert_eq!(list(&client, &[("filter[name]", "RTX 9999")]).await.total, 0);

    assert_eq!(list(&client, &[("filter[vendor]", "nvidia")]).await.total, CATALOGUE.len() as u64);
    assert_eq!(list(&client, &[("filter[vendor]", "AMD")]).await.total, 0);
    assert_eq!(list(&client, &[("filter[is_official]", "false")]).await.total, 0);

    // No node is online, so no model is available.
    let available = list(&client, &[("filter[only_available]", "true")]).await;
    assert_eq!((available.total, available.data.len()), (0, 0));
    assert_eq!(list(&client, &[("filter[only_available]", "false")]).await.total, CATALOGUE.len() as u64);
    // A node with RTX 4090s comes online: that model (and only it) is available.
    let nodes = ctx.sim_nodes(1, "2xNVIDIA GeForce RTX 4090:24").await;
    let available =
        gantry_test_harness::wait_for("the node's GPUs to count", std::time::Duration::from_secs(10), || async {
            let l = list(&client, &[("filter[only_available]", "true")]).await;
            (l.total > 0).then_some(l)
        })
        .await;
    assert_eq!(names(&available), ["NVIDIA GeForce RTX 4090"]);
    nodes.stop().await;

    let q = query(&[("filter[min_vram_gb]", "lots"), ("filter[only_available]", "maybe"), ("filter[colour]", "x")]);
    let err = client.send::<Value>(Method::GET, "/v1/gpu-registry", &q, None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(fields(&err), ["filter[colour]", "filter[min_vram_gb]", "filter[only_available]"]);
}

#[tokio::test]
async fn get_by_uuid_keeps_the_upstream_rtx_5090_uuid() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let path = format!("/v1/gpu-registry/{RTX_5090_UUID}");
    let m: GpuModel = client.send(Method::GET, &path, &[], None).await.unwrap();
    assert_eq!(
        (m.uuid.to_string().as_str(), m.name.as_str(), m.vram_gb),
        (RTX_5090_UUID, "NVIDIA GeForce RTX 5090", 32.0)
    );
    assert!(m.aliases.iter().any(|a| a == "NVIDIA RTX 5090"), "{:?}", m.aliases);

    let unknown = format!("/v1/gpu-registry/{}", uuid::Uuid::now_v7());
    let err = client.send::<Value>(Method::GET, &unknown, &[], None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    let err = client.send::<Value>(Method::GET, "/v1/gpu-registry/rtx-5090", &[], None).await.unwrap_err();
    assert_eq!((err.status(), fields(&err)), (Some(StatusCode::BAD_REQUEST), vec!["uuid".to_string()]));
}

#[tokio::test]
async fn admins_add_models_that_jobs_can_then_name() {
    let ctx = TestContext::start().await;
    let admin = ctx.new_account(Preset::Admin).await;
    let consumer = ctx.new_account(Preset::Consumer).await;
    assert_eq!(submit(&consumer, ("gpu_name", "B300")).await.unwrap_err().status(), Some(StatusCode::BAD_REQUEST));

    let body = json!({"name": "NVIDIA  B300", "vram_gb": 288, "aliases": ["B300", "NVIDIA B300 SXM6 AC"]});
    let raw = admin.send_raw(Method::POST, "/v1/gpu-registry", &[], Some(&body)).await.unwrap();
    assert_eq!(raw.status, StatusCode::CREATED, "{}", raw.body);
    let added: GpuModel = serde_json::from_value(raw.body).unwrap();
    assert_eq!((added.name.as_str(), added.vendor.as_str(), added.vram_gb), ("NVIDIA B300", "NVIDIA", 288.0));
    assert_eq!((added.object.as_str(), added.is_official), ("gpu_registry_model", false));

    // Visible at once to everyone, by uuid, by filter and by alias.
    let fetched: GpuModel =
        consumer.send(Method::GET, &format!("/v1/gpu-registry/{}", added.uuid), &[], None).await.unwrap();
    assert_eq!(fetched, added);
    let ours = list(&consumer, &[("filter[is_official]", "false")]).await;
    assert_eq!(ours.data, std::slice::from_ref(&added));
    assert_eq!(list(&consumer, &[]).await.data[0], added, "newest first");
    assert_eq!(names(&list(&consumer, &[("filter[name]", "nvidia b300 sxm6 ac")]).await), ["NVIDIA B300"]);

    // And usable in jobs, which keep the requirement as sent.
    let job = submit(&consumer, ("gpu_name", "b300")).await.unwrap();
    assert_eq!((job.status, job.gpu_name.as_deref()), (JobStatus::Pending, Some("b300")));
    let job = submit(&consumer, ("gpu_registry_uuid", &added.uuid.to_string())).await.unwrap();
    assert_eq!(job.gpu_registry_uuid, Some(added.uuid.to_string()));
}

#[tokio::test]
async fn only_admins_add_models() {
    let ctx = TestContext::start().await;
    let body = json!({"name": "NVIDIA B300", "vram_gb": 288});
    let consumer = ctx.new_account(Preset::Consumer).await;
    let account = gantry_server::admin::create_account(ctx.store().as_ref(), "own", None).await.unwrap();
    let own =
        ctx.key_in(account.uuid, vec!["gpu_registry.create.own".into(), "gpu_registry.read.own".into()], vec![]).await;
    for client in [&consumer, &own] {
        let err = add(client, body.clone()).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
        let ClientError::Api { body: e, .. } = &err else { panic!("{err}") };
        assert!(e.error.message.contains("only admins"), "{}", e.error.message);
    }
    let node = ctx.new_account(Preset::Node).await;
    assert_eq!(add(&node, body).await.unwrap_err().status(), Some(StatusCode::FORBIDDEN));
    assert_eq!(list(&consumer, &[("filter[is_official]", "false")]).await.total, 0);
}

#[tokio::test]
async fn bad_and_clashing_additions_are_refused() {
    let ctx = TestContext::start().await;
    let admin = ctx.new_account(Preset::Admin).await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["name", "vram_gb"]),
        (json!({"name": "  ", "vendor": "", "vram_gb": 0}), vec!["name", "vendor", "vram_gb"]),
        (json!({"name": "X", "vram_gb": -8}), vec!["vram_gb"]),
        (json!({"name": "X", "vram_gb": "lots"}), vec!["vram_gb"]),
        (json!({"name": "X", "vram_gb": 8, "aliases": ["ok", 5]}), vec!["aliases[1]"]),
        (json!({"name": "X", "vram_gb": 8, "aliases": "X1"}), vec!["aliases"]),
        (
            json!({"name": "X", "vram_gb": 8, "aliases": ["x", "Y", "", " y"]}),
            vec!["aliases[0]", "aliases[2]", "aliases[3]"],
        ),
        // Aliases that already name a model would make gpu_name ambiguous.
        (
            json!({"name": "X", "vram_gb": 8, "aliases": ["X2", "rtx 4090", "Tesla T4"]}),
            vec!["aliases[1]", "aliases[2]"],
        ),
    ];
    for (body, expected) in cases {
        let err = add(&admin, body.clone()).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{body}");
        assert_eq!(fields(&err), expected, "{body}");
    }
    // A name that is already a model's name or alias conflicts.
    for name in ["NVIDIA GeForce RTX 4090", "nvidia geforce rtx 4090", "RTX 4090"] {
        let err = add(&admin, json!({"name": name, "vram_gb": 24})).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::CONFLICT), "{name}");
    }
    add(&admin, json!({"name": "NVIDIA B300", "vram_gb": 288})).await.unwrap();
    let err = add(&admin, json!({"name": "NVIDIA B300", "vram_gb": 192})).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    let client = ctx.new_account(Preset::Consumer).await;
    assert_eq!(list(&client, &[("filter[is_official]", "false")]).await.total, 1, "nothing half-added");
}

#[tokio::test]
async fn jobs_naming_unknown_gpus_are_refused_at_submit() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;

    let err = submit(&client, ("gpu_name", "NVIDIA RTX 9999")).await.unwrap_err();
    assert_eq!((err.status(), fields(&err)), (Some(StatusCode::BAD_REQUEST), vec!["gpu_name".to_string()]));
    let ClientError::Api { body, .. } = &err else { panic!("{err}") };
    let message = &body.error.details[0].message;
    assert!(message.contains("\"NVIDIA RTX 9999\"") && message.contains("GET /v1/gpu-registry"), "{message}");

    let unknown = uuid::Uuid::now_v7().to_string();
    let err = submit(&client, ("gpu_registry_uuid", &unknown)).await.unwrap_err();
    assert_eq!((err.status(), fields(&err)), (Some(StatusCode::BAD_REQUEST), vec!["gpu_registry_uuid".to_string()]));

    // One 400 names every bad field, the registry's verdict included.
    let mut body = batch_job("");
    body["gpu_name"] = json!("Voodoo 5");
    body["cpu_count"] = json!(-1);
    let err = client.create_job(&body).await.unwrap_err();
    assert_eq!(fields(&err), ["title", "cpu_count", "gpu_name"]);

    // Names clients send resolve, whatever the case and spacing; so does the upstream uuid.
    for name in ["rtx 5090", "NVIDIA RTX 5090", "NVIDIA RTX 4090", "NVIDIA GeForce RTX 4090", " H100 ", "Tesla T4"] {
        let job = submit(&client, ("gpu_name", name)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(job.gpu_name.as_deref(), Some(name), "kept as sent");
    }
    let job = submit(&client, ("gpu_registry_uuid", RTX_5090_UUID)).await.unwrap();
    assert_eq!(job.gpu_registry_uuid.as_deref(), Some(RTX_5090_UUID));
    // Without a GPU requirement nothing is checked; an empty name means unset.
    client.create_job(&batch_job("any gpu")).await.unwrap();
    submit(&client, ("gpu_name", "")).await.unwrap();
    assert_eq!(client.list_jobs(&[]).await.unwrap().total, 9, "refused jobs left nothing behind");
}

#[tokio::test]
async fn another_server_finds_an_addition_on_a_miss() {
    // Two servers on one SQLite file, as two servers share one PostgreSQL.
    let ctx = TestContext::start().await;
    let admin = ctx.new_account(Preset::Admin).await;
    let consumer = ctx.new_account(Preset::Consumer).await;
    let other = gantry_server::start(gantry_server::ServerConfig::new(ctx.dir.path(), "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let creds = consumer.credentials();
    let on_other = Client::new(Credentials { base_url: format!("http://{}", other.local_addr), ..creds.clone() });
    assert_eq!(list(&on_other, &[]).await.total, CATALOGUE.len() as u64, "seeding twice adds nothing");

    let added = add(&admin, json!({"name": "NVIDIA B300", "vram_gb": 288})).await.unwrap();
    // Well within the 30 s periodic refresh: a miss reloads (at most once a second).
    let on_other_ref = &on_other;
    wait_for("the other server to accept the new GPU", Duration::from_secs(10), || async move {
        submit(on_other_ref, ("gpu_name", "NVIDIA B300")).await.ok()
    })
    .await;
    let fetched: GpuModel =
        on_other.send(Method::GET, &format!("/v1/gpu-registry/{}", added.uuid), &[], None).await.unwrap();
    assert_eq!(fetched, added);
    other.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_registry_works_on_postgres() {
    let Some(ctx) = TestContext::start_postgres().await else { return };
    let admin = ctx.new_account(Preset::Admin).await;
    let consumer = ctx.new_account(Preset::Consumer).await;
    assert_eq!(list(&consumer, &[]).await.total, CATALOGUE.len() as u64);
    let added = add(&admin, json!({"name": "NVIDIA B300", "vram_gb": 288, "aliases": ["B300"]})).await.unwrap();
    assert_eq!(
        add(&admin, json!({"name": "b300", "vram_gb": 1})).await.unwrap_err().status(),
        Some(StatusCode::CONFLICT)
    );
    submit(&consumer, ("gpu_name", "b300")).await.unwrap();
    submit(&consumer, ("gpu_registry_uuid", RTX_5090_UUID)).await.unwrap();
    let err = submit(&consumer, ("gpu_name", "RTX 9999")).await.unwrap_err();
    assert_eq!(fields(&err), ["gpu_name"]);
    let stored = ctx.store().gpu_model_fetch(added.uuid).await.unwrap();
    assert_eq!(stored, Some(added));
    ctx.shutdown().await;
}
