//! Hostile tenants and hostile input (issue 15, the API's half): absurd capacities and
//! requirements refused with the field named, money that cannot overflow, and a
//! server that keeps answering everyone else.

use gantry_test_harness::{TestContext, batch_job};
use gantry_types::permissions::Preset;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn fields(body: &Value) -> Vec<String> {
    body["error"]["details"].as_array().map_or(vec![], |d| d.iter().map(|e| e["field"].as_str().unwrap().into()).collect())
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
    let two = json!({"inventory": {"cpus": [{"name": "a", "num_cores": 4_294_967_295_u64}, {"name": "b", "num_cores": 2}]}});
    let raw = node.send_raw(Method::POST, "/v1/nodes/register", &[], Some(&two)).await.unwrap();
    assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{}", raw.body);
    assert_eq!(fields(&raw.body), ["inventory.cpus"]);

    // A real node registers; its heartbeat samples are checked too.
    let ok = node.send_raw(Method::POST, "/v1/nodes/register", &[], Some(&inventory(json!(64), 16, json!(24)))).await.unwrap();
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
    let store = ctx.state().store.as_ref();
    let max = gantry_types::num::MAX_SAFE_INTEGER;
    assert!(gantry_server::app::ledger::credit(store, account, max - 1, None, None).await.unwrap());
    let err = gantry_server::app::ledger::credit(store, account, 2, None, None).await.unwrap_err();
    assert!(format!("{err:?}").contains("amount"), "{err:?}");
    for _ in 0..3 {
        assert!(gantry_server::app::ledger::credit(store, account, max, None, None).await.is_err());
    }
    let balance = user.balance(account).await.unwrap();
    assert_eq!(balance.posted_balance_micros, max - 1);
}
