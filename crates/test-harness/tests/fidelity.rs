//! Upstream fidelity (issue 16): what clients written for the upstream API send and
//! read, through the signed client against a real server: cooking with the override
//! shapes upstream clients use, upstream's recipe uuids, simulated nodes that behave
//! like real ones, range filters, lenient HTTP edge cases, and the job's mirror of its
//! run's container access tokens.

use std::time::Duration;

use gantry_client::{Client, query};
use gantry_test_harness::{TestContext, batch_job, wait_for};
use gantry_types::RecipeId;
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::permissions::Preset;
use gantry_types::recipe::catalogue::{DEV_BOX_UUID, HELLO_GPU_UUID, LLAMA_CPP_UUID};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn seed(uuid: &str) -> RecipeId {
    uuid.parse().unwrap()
}

fn titles(jobs: &[Job]) -> Vec<String> {
    let mut t: Vec<String> = jobs.iter().map(|j| j.title.clone()).collect();
    t.sort();
    t
}

async fn consumer(ctx: &TestContext) -> Client {
    ctx.new_account(Preset::Consumer).await
}

#[tokio::test]
async fn cooking_with_upstream_shaped_overrides_supplies_inputs() {
    let ctx = TestContext::start().await;
    let user = consumer(&ctx).await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIupstream you@host";

    // The override inside the job shape satisfies the required `sshkey` input.
    let job = user
        .cook_recipe(seed(DEV_BOX_UUID), &json!({"parameters": {"parameters": {"sshkey": key}}}))
        .await
        .expect("upstream-shaped sshkey override cooks");
    assert_eq!(job.parameters.parameters.sshkey.as_deref(), Some(key));

    // `{"parameters": {"env": ...}}`: an env override of an input's target is that input's
    // value (its default does not overwrite it).
    let job = user
        .cook_recipe(seed(HELLO_GPU_UUID), &json!({"parameters": {"env": {"MESSAGE": "from upstream"}}}))
        .await
        .expect("flattened env override cooks");
    let env = job.parameters.parameters.env.clone().unwrap_or_default();
    assert_eq!(env.get("MESSAGE").map(String::as_str), Some("from upstream"));

    // Mixed: Gantry's `inputs` wins over the override of the same target (documented).
    let job = user
        .cook_recipe(
            seed(DEV_BOX_UUID),
            &json!({"parameters": {"parameters": {"sshkey": key}}, "inputs": {"sshkey": "ssh-ed25519 BBBB input"}}),
        )
        .await
        .unwrap();
    assert_eq!(job.parameters.parameters.sshkey.as_deref(), Some("ssh-ed25519 BBBB input"));

    // Nothing supplies it: still the 400 naming the input.
    let err = user.cook_recipe(seed(DEV_BOX_UUID), &json!({"parameters": {"parameters": {"sshkey": ""}}})).await;
    let err = err.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::BAD_REQUEST));
    assert!(err.to_string().contains("inputs.sshkey"), "{err}");
}

#[tokio::test]
async fn min_filters_mean_at_least_and_pairs_stay_ranges() {
    let ctx = TestContext::start().await;
    let user = consumer(&ctx).await;
    for gb in [8, 16, 32] {
        let mut body = batch_job(&format!("s{gb}"));
        body["min_storage_gb"] = json!(gb);
        body["min_ram_gb"] = json!(gb);
        body["min_vram_gb"] = json!(gb);
        user.create_job(&body).await.unwrap();
    }
    for key in ["filter[min_storage_gb]", "filter[min_ram_gb]", "filter[min_vram_gb]"] {
        let p = user.list_jobs(&query(&[(key, "16")])).await.unwrap();
        assert_eq!(titles(&p.data), ["s16", "s32"], "{key}=16 means at least 16");
        let p = user.list_jobs(&query(&[(key, "8,16")])).await.unwrap();
        assert_eq!(titles(&p.data), ["s16", "s8"], "{key}=8,16 is a range");
        let p = user.list_jobs(&query(&[(key, ",8")])).await.unwrap();
        assert_eq!(titles(&p.data), ["s8"], "{key}=,8 is at most 8");
    }
    // cpu_count stays exact.
    let p = user.list_jobs(&query(&[("filter[cpu_count]", "2")])).await.unwrap();
    assert_eq!(p.total, 3);
}

const WAIT: Duration = Duration::from_secs(20);

async fn live_run(user: &Client, job: gantry_types::JobId) -> JobRun {
    wait_for("a RUNNING run with node_urls", WAIT, || async {
        let runs = user.runs_of_job(job).await.ok()?;
        runs.into_iter().find(|r| r.status == JobRunStatus::Running && !r.node_urls.is_empty())
    })
    .await
}

/// What answers at `host:port` when a client sends `request` (empty: just read).
async fn probe(host: &str, port: u16, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect((host, port)).await.expect("the published port accepts");
    if !request.is_empty() {
        s.write_all(request).await.unwrap();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // The SSH greeting is one line; HTTP answers then closes.
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if request.is_empty() && out.ends_with(b"\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn simulated_persistent_runs_stay_up_with_answering_ports_and_tokens() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24").await;
    let user = consumer(&ctx).await;
    let body = json!({"title": "dev box", "task": "PERSISTENT", "max_timeout_run_ms": null, "gpu_count": 1,
                      "parameters": {"type": "docker", "parameters": {
                          "image": "busybox", "ports": [22, 8080], "sshkey": "ssh-ed25519 AAAA k",
                          "allowed_ips": ["0.0.0.0/0"]}}});
    let job = user.create_job(&body).await.unwrap();
    assert!(job.container_access_tokens.is_empty(), "PENDING: no run, no token");
    let run = live_run(&user, job.uuid).await;

    // node_urls as a real node reports them, backed by listeners that answer.
    let by = |d: &str| run.node_urls.iter().find(|u| u.description == d).cloned().unwrap_or_else(|| panic!("{d}"));
    let (ssh, http) = (by("ssh"), by("8080"));
    assert_eq!((ssh.protocol.as_str(), ssh.tls), ("tcp", false));
    assert!(probe(&ssh.hostname, ssh.port, b"").await.starts_with("SSH-2.0-"), "ssh answers with a banner");
    let answer = probe(&http.hostname, http.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A container access token like real runs, mirrored on the job (get and list).
    assert_eq!(run.container_access_tokens.len(), 1);
    assert!(run.container_access_tokens[0].token.len() >= 32);
    let got = user.get_job(job.uuid).await.unwrap();
    assert_eq!(got.container_access_tokens, run.container_access_tokens);
    let listed = user.list_jobs(&query(&[("filter[uuid]", &job.uuid.to_string())])).await.unwrap();
    assert_eq!(listed.data[0].container_access_tokens, run.container_access_tokens);

    // It stays RUNNING (no simulated duration): well past the BATCH default of 100 ms.
    let still = wait_for("the run to have run 1.5 s", WAIT, || async {
        let r = user.get_job_run(run.uuid).await.ok()?;
        (r.duration_ms.unwrap_or(0) >= 1500 || r.status != JobRunStatus::Running).then_some(r)
    })
    .await;
    assert_eq!(still.status, JobRunStatus::Running, "{still:?}");
    assert_eq!(user.get_job(job.uuid).await.unwrap().status, JobStatus::Running);

    // Until cancelled: then it ends, its ports close and the job's mirror empties.
    user.cancel_job(job.uuid, "done").await.unwrap();
    let ended = wait_for("the job to be cancelled", WAIT, || async {
        user.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Cancelled)
    })
    .await;
    assert!(ended.container_access_tokens.is_empty());
    wait_for("the simulated port to close", WAIT, || async {
        tokio::net::TcpStream::connect((http.hostname.as_str(), http.port)).await.is_err().then_some(())
    })
    .await;

    // GANTRY_SIM_DURATION_MS still ends a PERSISTENT simulated run when set.
    let mut short = body.clone();
    short["parameters"]["parameters"]["env"] = json!({"GANTRY_SIM_DURATION_MS": "50"});
    let job = user.create_job(&short).await.unwrap();
    wait_for("the short run to end", WAIT, || async {
        let runs = user.runs_of_job(job.uuid).await.ok()?;
        runs.iter().any(|r| r.ended_at_ms.is_some()).then_some(())
    })
    .await;
    nodes.stop().await;
}

#[tokio::test]
async fn upstream_recipe_ids_admins_choose_uuids_and_the_llama_cpp_seed_cooks() {
    let ctx = TestContext::start().await;
    let user = consumer(&ctx).await;
    let admin = ctx.new_account(Preset::Admin).await;
    let uuid = "01a0114e-e7f8-4e76-a07a-0000000000aa";
    let body = json!({"uuid": uuid, "name": "pinned", "visibility": "PUBLIC",
                      "payload": batch_job("pinned")});

    // Only admins choose the uuid; a taken one is a 409, a bad one a 400 naming it.
    let err = user.create_recipe(&body).await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::FORBIDDEN));
    assert!(err.to_string().contains("uuid"), "{err}");
    let created = admin.create_recipe(&body).await.expect("admin creates under a given uuid");
    assert_eq!(created.uuid.to_string(), uuid);
    assert_eq!(admin.create_recipe(&body).await.unwrap_err().status(), Some(reqwest::StatusCode::CONFLICT));
    let mut bad = body.clone();
    bad["uuid"] = json!("not-a-uuid");
    let err = admin.create_recipe(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::BAD_REQUEST));
    assert!(err.to_string().contains("uuid"), "{err}");
    let job = user.cook_recipe(seed(uuid), &json!({})).await.unwrap();
    assert_eq!(job.source_recipe_uuid.as_deref(), Some(uuid));

    // Upstream's official llama.cpp server recipe, seeded under upstream's uuid.
    let llama = user.get_recipe(seed(LLAMA_CPP_UUID)).await.expect("seeded under upstream's uuid");
    assert!(llama.is_official);
    let job = user
        .cook_recipe(seed(LLAMA_CPP_UUID), &json!({"parameters": {"parameters": {"sshkey": "ssh-ed25519 AAAA k"}}}))
        .await
        .expect("cooking upstream's llama.cpp recipe");
    assert_eq!(job.task, gantry_types::job::JobTask::Persistent);
    assert!(job.gpu_count >= 1);
    let d = &job.parameters.parameters;
    let ports = d.ports.clone().unwrap_or_default();
    assert!(ports.contains(&22) && ports.len() == 2, "{ports:?}");
    assert!(d.env.as_ref().is_some_and(|e| e.contains_key("LLAMA_ARG_HF_REPO")));
    // The model is an input.
    let job = user
        .cook_recipe(seed(LLAMA_CPP_UUID), &json!({"inputs": {"model": "ggml-org/gemma-3-4b-it-GGUF"}}))
        .await
        .unwrap();
    let env = job.parameters.parameters.env.unwrap_or_default();
    assert_eq!(env.get("LLAMA_ARG_HF_REPO").map(String::as_str), Some("ggml-org/gemma-3-4b-it-GGUF"));
}

#[tokio::test]
async fn lenient_http_edge_cases_answer_and_never_500() {
    use reqwest::Method;
    let ctx = TestContext::start().await;
    let user = consumer(&ctx).await;
    let job = user.create_job(&batch_job("edge")).await.unwrap();
    let job_path = format!("/v1/jobs/{}", job.uuid);
    let cancel_path = format!("{job_path}/cancel");
    let cook_path = format!("/v1/job-recipes/{HELLO_GPU_UUID}/cook");
    let json_body = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
    // (method, path, extra headers, Content-Type: application/json without a body, status)
    type Case<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>, bool, u16);
    let cases: Vec<Case> = vec![
        // Bodyless requests that still say Content-Type: application/json.
        (Method::GET, "/v1/jobs", vec![], true, 200),
        (Method::GET, &job_path, vec![], true, 200),
        (Method::POST, &cook_path, vec![], true, 201),
        (Method::PUT, &cancel_path, vec![], true, 200),
        // Accept variants.
        (Method::GET, "/v1/jobs", vec![("Accept", "*/*")], false, 200),
        (Method::GET, "/v1/jobs", vec![("Accept", "application/json; charset=utf-8")], false, 200),
        (Method::GET, "/v1/jobs", vec![("Accept", "application/*, text/html;q=0.5")], false, 200),
        (Method::GET, "/v1/jobs", vec![("Accept", "text/html")], false, 200),
        (Method::GET, "/v1/users/me", vec![("Accept", "")], false, 200),
        // Trailing slashes.
        (Method::GET, "/v1/jobs/", vec![], false, 200),
        (Method::GET, "/v1/users/me/", vec![], false, 200),
        // Unknown paths and methods: the error body.
        (Method::GET, "/v1/nothing-here", vec![], false, 404),
        (Method::DELETE, "/v1/jobs", vec![], false, 405),
    ];
    for (method, path, headers, json_without_body, want) in cases {
        let what = format!("{method} {path} {headers:?} json_without_body={json_without_body}");
        let (status, content_type, body) =
            user.send_raw_with(method, path, None, &headers, json_without_body).await.expect(&what);
        assert_eq!(status.as_u16(), want, "{what}: {}", String::from_utf8_lossy(&body));
        assert!(content_type.as_deref().is_some_and(|c| c.starts_with("application/json")), "{what}: {content_type:?}");
        let body = json_body(&body);
        if want >= 400 {
            assert!(body["error"]["code"].is_string(), "{what}: error body {body}");
        } else {
            assert!(body.is_object(), "{what}: {body}");
        }
    }
    // HEAD on GET endpoints: the GET's status and headers, no body.
    for path in ["/v1/jobs", job_path.as_str(), "/v1/users/me", "/v1/jobs/"] {
        let (status, _, body) = user.send_raw_with(Method::HEAD, path, None, &[], false).await.unwrap();
        assert_eq!(status.as_u16(), 200, "HEAD {path}");
        assert!(body.is_empty(), "HEAD {path} has no body");
    }
    let (status, _, _) = user.send_raw_with(Method::HEAD, "/v1/nothing", None, &[], false).await.unwrap();
    assert_eq!(status.as_u16(), 404);
    // Unsigned HEAD /healthz answers too.
    let health = reqwest::Client::new().head(format!("{}/healthz", ctx.base_url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // And unsigned GET /version, the IO-free reference of `gantry bench submit`.
    let version: serde_json::Value = reqwest::get(format!("{}/version", ctx.base_url))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["version"].as_str(), Some(env!("CARGO_PKG_VERSION")), "{version}");
}
