//! Compute offers and regions through the API, with simulated nodes: offers follow
//! live, schedulable capacity (grouped by hardware and region, priced from the
//! server's table, filtered), a run records the rate quoted at placement, and a
//! consumer profile's region allowlist narrows where jobs run and is explained in
//! a PENDING job's `status_reason`.

use std::time::Duration;

use gantry_client::{Client, ClientError, query};
use gantry_server::ServerConfig;
use gantry_test_harness::{TestContext, fast, wait_for};
use gantry_types::billing::ComputeOffer;
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::JobRun;
use gantry_types::list::ListResponse;
use gantry_types::money::usd_to_micros;
use gantry_types::permissions::Preset;
use gantry_types::{JobId, NodeId};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn priced(config: &mut ServerConfig) {
    fast(config);
    config.billing.gpu_prices = vec![("NVIDIA RTX 4090".into(), 350_000), ("NVIDIA RTX 5090".into(), 690_000)];
    config.billing.cpu_core_price = 10_000;
    config.billing.ram_gb_price = 2_000;
}

fn persistent(title: &str, gpu: &str, regions: &[&str]) -> Value {
    json!({"title": title, "task": "PERSISTENT", "cpu_count": 2, "gpu_count": 1, "gpu_name": gpu, "min_ram_gb": 4,
           "allowed_region_codes": regions,
           // A simulated run exits after 100 ms unless told otherwise; a persistent job
           // must keep its GPU for as long as the test looks at the offers.
           "parameters": {"type": "docker", "parameters": {"image": "busybox", "env": {"GANTRY_SIM_DURATION_MS": "600000"}}}})
}

async fn offers(client: &Client, pairs: &[(&str, &str)]) -> Vec<ComputeOffer> {
    client.list_offers(&query(pairs)).await.unwrap().data
}

async fn wait_status(client: &Client, id: JobId, want: JobStatus) -> Job {
    wait_for(&format!("job {id} to be {}", want.as_str()), WAIT, || async {
        client.get_job(id).await.ok().filter(|j| j.status == want)
    })
    .await
}

async fn first_run(client: &Client, id: JobId) -> JobRun {
    let q = query(&[("filter[job_uuid]", &id.to_string())]);
    let list: ListResponse<JobRun> = client.send(reqwest::Method::GET, "/v1/job-runs", &q, None).await.unwrap();
    list.data.into_iter().next().expect("a run")
}

fn field_error(err: &ClientError) -> String {
    let ClientError::Api { status, body } = err else { panic!("{err}") };
    assert_eq!(*status, reqwest::StatusCode::BAD_REQUEST, "{err}");
    body.error.details[0].field.clone()
}

#[tokio::test]
async fn offers_follow_live_capacity_with_prices_and_filters() {
    let ctx = TestContext::start_with(priced).await;
    let user = ctx.new_account(Preset::Consumer).await;
    assert!(offers(&user, &[]).await.is_empty(), "no nodes, no offers");
    let eu = ctx.sim_nodes(2, "2xNVIDIA RTX 4090:24,region=eu-west-1,cpus=16,ram=64,disk=500").await;
    let us = ctx.sim_nodes(1, "1xNVIDIA RTX 5090:32,region=us-east-1,cpus=8,ram=32,disk=200").await;
    let all = wait_for("three nodes on offer", WAIT, || async {
        let o = offers(&user, &[]).await;
        (o.iter().map(|o| o.availability.node_count).sum::<u32>() == 3).then_some(o)
    })
    .await;
    // Cheapest first: the 5090 node (0.69 + 8 x 0.01 + 32 x 0.002) before the 4090s
    // (2 x 0.35 + 16 x 0.01 + 64 x 0.002), which are one offer of two identical nodes.
    assert_eq!(all.len(), 2, "{all:#?}");
    let (cheap, pair) = (&all[0], &all[1]);
    assert_eq!(cheap.region_code.as_deref(), Some("us-east-1"));
    assert_eq!(cheap.pricing.hourly_rate_micros, 834_000);
    assert_eq!(cheap.pricing.hourly_rate_usd, 0.834);
    let h = &cheap.hardware_summary;
    assert_eq!((h.gpu_count, h.cpu_cores, h.ram_gib, h.storage_gib, h.min_gpu_vram_gib), (1, 8, 32.0, 200.0, 32.0));
    assert_eq!(h.gpu_models[0].name, "NVIDIA GeForce RTX 5090");
    assert_eq!((pair.region_code.as_deref(), pair.availability.node_count), (Some("eu-west-1"), 2));
    assert_eq!(pair.pricing.hourly_rate_micros, 988_000);
    assert_eq!(pair.hardware_summary.gpu_model_label, "2x NVIDIA GeForce RTX 4090");

    // Filters.
    let ids = |o: Vec<ComputeOffer>| o.into_iter().map(|o| o.offer_id).collect::<Vec<_>>();
    assert_eq!(ids(offers(&user, &[("filter[gpu_name]", "rtx 4090")]).await), [pair.offer_id.as_str()]);
    let uuid = cheap.hardware_summary.gpu_registry_uuid.unwrap().to_string();
    assert_eq!(ids(offers(&user, &[("filter[gpu_registry_uuid]", &uuid)]).await), [cheap.offer_id.as_str()]);
    assert_eq!(ids(offers(&user, &[("filter[gpu_count]", "2")]).await), [pair.offer_id.as_str()]);
    assert_eq!(ids(offers(&user, &[("filter[min_vram_gb]", "30")]).await), [cheap.offer_id.as_str()]);
    assert_eq!(ids(offers(&user, &[("filter[cpu_count]", "12")]).await), [pair.offer_id.as_str()]);
    assert_eq!(ids(offers(&user, &[("filter[min_ram_gb]", "48")]).await), [pair.offer_id.as_str()]);
    assert_eq!(ids(offers(&user, &[("filter[min_storage_gb]", "300")]).await), [pair.offer_id.as_str()]);
    assert_eq!(ids(offers(&user, &[("filter[allowed_region_codes]", "us-east-1")]).await), [cheap.offer_id.as_str()]);
    assert!(offers(&user, &[("filter[allowed_region_codes]", "ap-south-1")]).await.is_empty());
    for (k, v) in [
        ("filter[gpu_name]", "Voodoo 2"),
        ("filter[allowed_region_codes]", "mars-1"),
        ("filter[cpu_count]", "-1"),
        ("filter[colour]", "red"),
    ] {
        assert_eq!(field_error(&user.list_offers(&query(&[(k, v)])).await.unwrap_err()), k);
    }

    // A persistent job takes the 5090: its run records the rate quoted then, and the
    // 5090 node is offered only for what is left (CPU only).
    let job = user.create_job(&persistent("dev box", "RTX 5090", &[])).await.unwrap();
    wait_status(&user, job.uuid, JobStatus::Running).await;
    let run = first_run(&user, job.uuid).await;
    assert_eq!(run.hourly_rate_usd.map(usd_to_micros), Some(690_000 + 2 * 10_000 + 4 * 2_000));
    let d1 = run.duration_ms.unwrap_or(0);
    let left = wait_for("the 5090 taken off the offers", WAIT, || async {
        let o = offers(&user, &[("filter[allowed_region_codes]", "us-east-1")]).await;
        (o.len() == 1 && o[0].hardware_summary.gpu_count == 0).then_some(o)
    })
    .await;
    assert_eq!((left[0].hardware_summary.cpu_cores, left[0].hardware_summary.ram_gib), (6, 28.0));
    assert!(offers(&user, &[("filter[gpu_name]", "RTX 5090")]).await.is_empty());
    // duration_ms grows while the run is RUNNING.
    wait_for("duration_ms to grow", WAIT, || async {
        (first_run(&user, job.uuid).await.duration_ms.unwrap_or(0) > d1).then_some(())
    })
    .await;
    eu.stop().await;
    us.stop().await;
}

#[tokio::test]
async fn a_profile_allowlist_narrows_where_jobs_run_and_pending_jobs_say_so() {
    let ctx = TestContext::start_with(priced).await;
    let eu = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,region=eu-west-1").await;
    let us = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,region=us-east-1").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let profiles = user.list_consumer_profiles(&[]).await.unwrap();
    assert_eq!(profiles.total, 1, "one profile, created on first look");
    let profile = profiles.data[0].clone();
    assert_eq!(profile.account_uuid, user.me().await.unwrap().uuid);
    assert!(profile.allowed_region_codes.is_empty() && profile.is_active && profile.is_compute_billing_enabled);

    // Bad input and other accounts.
    let bad = json!({"allowed_region_codes": ["us-east-1", "moon-1"]});
    let err = user.update_consumer_profile(profile.uuid, &bad).await.unwrap_err();
    assert_eq!(field_error(&err), "allowed_region_codes[1]");
    let err = user.update_consumer_profile(profile.uuid, &json!({"is_compute_billing_enabled": false})).await;
    assert_eq!(err.unwrap_err().status(), Some(reqwest::StatusCode::FORBIDDEN), "operators only");
    let other = ctx.new_account(Preset::Consumer).await;
    let err = other.update_consumer_profile(profile.uuid, &json!({"allowed_region_codes": []})).await;
    assert_eq!(err.unwrap_err().status(), Some(reqwest::StatusCode::NOT_FOUND));
    assert_eq!(other.list_consumer_profiles(&[]).await.unwrap().total, 1, "only its own");

    let updated =
        user.update_consumer_profile(profile.uuid, &json!({"allowed_region_codes": ["us-east-1"]})).await.unwrap();
    assert_eq!(updated.allowed_region_codes, ["us-east-1"]);
    // The allowlist also narrows the offers this consumer sees.
    let seen = wait_for("the US node offered", WAIT, || async {
        let o = offers(&user, &[]).await;
        (!o.is_empty()).then_some(o)
    })
    .await;
    assert!(seen.iter().all(|o| o.region_code.as_deref() == Some("us-east-1")), "{seen:#?}");

    // A job allowing only eu-west-1 has no effective region: it waits and says why.
    let stuck = user.create_job(&persistent("eu only", "RTX 4090", &["eu-west-1"])).await.unwrap();
    let reason = wait_for("a pending reason", WAIT, || async {
        user.get_job(stuck.uuid).await.ok().and_then(|j| j.status_reason).filter(|r| r.contains("effective regions"))
    })
    .await;
    assert!(reason.contains("effective regions: none"), "{reason}");
    assert!(reason.contains("the consumer profile allows us-east-1"), "{reason}");

    // A job allowing anywhere runs in the US only, even though the EU node is free too.
    let mut placed_on: Vec<NodeId> = Vec::new();
    for i in 0..2 {
        let job = user.create_job(&persistent(&format!("anywhere {i}"), "RTX 4090", &[])).await.unwrap();
        if i == 0 {
            wait_status(&user, job.uuid, JobStatus::Running).await;
            placed_on.push(first_run(&user, job.uuid).await.node_uuid);
        } else {
            // The US node's only GPU is taken: the second waits rather than use the EU node.
            let why = wait_for("the second job's reason", WAIT, || async {
                user.get_job(job.uuid).await.ok().and_then(|j| j.status_reason)
            })
            .await;
            assert!(why.contains("effective regions: us-east-1"), "{why}");
            assert_eq!(user.get_job(job.uuid).await.unwrap().status, JobStatus::Pending);
        }
    }
    let us_nodes: ListResponse<gantry_types::node::Node> =
        us.client.send(reqwest::Method::GET, "/v1/nodes", &[], None).await.unwrap();
    assert_eq!(placed_on, [us_nodes.data[0].uuid]);
    eu.stop().await;
    us.stop().await;
}
