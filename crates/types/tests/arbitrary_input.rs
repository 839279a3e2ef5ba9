//! Every parser of request input, fed arbitrary bytes and arbitrary JSON (issue 15,
//! fuzzing): each returns a value or field errors, never panics. Request bodies go
//! through the same steps as on the server: bytes → JSON → typed request (naming the
//! field on failure) → validation.

use gantry_types::billing::{parse_amount, parse_consumer_profile_filter, parse_offer_filter};
use gantry_types::gpu::{CreateGpuModelRequest, parse_gpu_model_filter, validate_create_gpu_model};
use gantry_types::job::CreateJobRequest;
use gantry_types::limits::{check_inventory, check_sample};
use gantry_types::list::{parse_api_key_filter, parse_job_filter, parse_paging};
use gantry_types::node::RegisterNodeRequest;
use gantry_types::protocol::SyncRequest;
use gantry_types::recipe::{CookRecipeRequest, RecipeRequest, parse_recipe_filter, validate_recipe_request};
use gantry_types::validate::{from_json, validate_create_job};
use gantry_types::{Timestamp, docker_ref, money, permissions};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Field names the requests use, so arbitrary JSON reaches past "unknown field".
const KEYS: &[&str] = &[
    "title",
    "task",
    "parameters",
    "type",
    "image",
    "tag",
    "host",
    "user",
    "secret",
    "env",
    "ports",
    "volumes",
    "mount",
    "registry",
    "allowed_ips",
    "cpu_count",
    "gpu_count",
    "min_ram_gb",
    "min_vram_gb",
    "min_storage_gb",
    "max_node_count",
    "max_retry_count",
    "max_timeout_run_ms",
    "max_timeout_assign_ms",
    "max_timeout_start_ms",
    "gpu_name",
    "gpu_registry_uuid",
    "allowed_region_codes",
    "name",
    "visibility",
    "payload",
    "input_schema",
    "inputs",
    "inventory",
    "cpus",
    "num_cores",
    "ram_gb",
    "storage_gb",
    "gpus",
    "index",
    "uuid",
    "vram_gb",
    "lease_epoch",
    "sample",
    "cpu_load",
    "ram_free_gb",
    "runs",
    "wait_ms",
    "amount",
    "aliases",
    "vendor",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,16}", any::<String>(), "[a-z0-9:/@._-]{0,40}", Just("BATCH".to_string()),]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![Just(1e308), Just(-0.0), Just(9e15), Just(4294967295.0)].prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS).prop_map(str::to_owned), inner.clone()), 0..8)
                .prop_map(|e| Value::Object(e.into_iter().collect::<Map<_, _>>())),
            prop::collection::vec((text(), inner), 0..3)
                .prop_map(|e| Value::Object(e.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// What the server does with a body of each request type.
fn every_body_parser(value: Value) {
    if let Ok(req) = from_json::<CreateJobRequest>(value.clone()) {
        let _ = validate_create_job(req);
    }
    if let Ok(req) = from_json::<RecipeRequest>(value.clone()) {
        let _ = validate_recipe_request(req.clone(), true);
        let _ = validate_recipe_request(req, false);
    }
    if let Ok(req) = from_json::<CreateGpuModelRequest>(value.clone()) {
        let _ = validate_create_gpu_model(req);
    }
    if let Ok(req) = from_json::<RegisterNodeRequest>(value.clone()) {
        let _ = check_inventory(&req.inventory.unwrap_or_default());
    }
    if let Ok(req) = from_json::<SyncRequest>(value.clone()) {
        let _ = check_sample(&req.sample.unwrap_or_default());
    }
    let _ = from_json::<CookRecipeRequest>(value.clone());
    let _ = parse_amount("amount", Some(&value));
}

fn every_text_parser(text: &str) {
    let _ = docker_ref::check_image(text);
    let _ = docker_ref::check_tag(text);
    let _ = docker_ref::check_host(text);
    let _ = money::parse_usd(text, true);
    let _ = money::parse_share(text);
    let _ = permissions::check_permission(text);
    let _ = Timestamp::parse(text);
    let _ = gantry_types::validate::normalise_mount(text);
}

fn every_query_parser(pairs: &[(String, String)]) {
    let _ = parse_paging(pairs);
    let _ = parse_job_filter(pairs);
    let _ = parse_api_key_filter(pairs);
    let _ = parse_recipe_filter(pairs);
    let _ = parse_gpu_model_filter(pairs);
    let _ = parse_offer_filter(pairs);
    let _ = parse_consumer_profile_filter(pairs);
}

fn query_key() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        Just("page".to_string()),
        Just("limit".to_string()),
        Just("sort".to_string()),
        "filter\\[[a-z_]{0,16}\\]",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            every_body_parser(value);
        }
        every_text_parser(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_json_never_panics(value in json()) {
        every_body_parser(value.clone());
        // The same value as the docker parameters of an otherwise valid job.
        let job = json!({"title": "t", "task": "BATCH", "max_timeout_run_ms": 60000,
                         "parameters": {"type": "docker", "parameters": value}});
        every_body_parser(job);
    }

    #[test]
    fn arbitrary_queries_never_panic(pairs in prop::collection::vec((query_key(), text()), 0..6)) {
        every_query_parser(&pairs);
        for (k, v) in &pairs {
            every_text_parser(k);
            every_text_parser(v);
        }
    }
}
