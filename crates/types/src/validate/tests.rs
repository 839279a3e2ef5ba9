//! Unit tests of job request validation: each rule with the field it names, driven by
//! small JSON bodies.

use serde_json::json;

use super::*;

fn check(body: serde_json::Value) -> Result<JobSpec, Vec<FieldError>> {
    validate_create_job(from_json(body).map_err(|e| vec![e])?)
}

fn fields(body: serde_json::Value) -> Vec<String> {
    check(body).unwrap_err().into_iter().map(|e| e.field).collect()
}

fn batch() -> serde_json::Value {
    json!({"title": "t", "task": "BATCH", "max_timeout_run_ms": 900000,
           "parameters": {"type": "docker", "parameters": {"image": "busybox"}}})
}

#[test]
fn minimal_batch_gets_upstream_defaults() {
    let spec = check(batch()).unwrap();
    assert_eq!(spec.max_timeout_assign_ms, 300_000);
    assert_eq!(spec.max_timeout_start_ms, 300_000);
    assert_eq!(spec.max_node_count, 1);
    assert_eq!(spec.max_retry_count, 0);
    assert_eq!(spec.cpu_count, 0);
    assert_eq!(spec.parameters.kind, "docker");
}

#[test]
fn required_fields_are_named() {
    assert_eq!(fields(json!({})), ["title", "task", "parameters"]);
    let mut b = batch();
    b["parameters"] = json!({"type": "docker"});
    assert_eq!(fields(b), ["parameters.parameters"]);
}

#[test]
fn the_seed_example_sends_both_gpu_fields_and_gets_both_named() {
    let mut b = batch();
    b["gpu_name"] = json!("NVIDIA RTX 4090");
    b["gpu_registry_uuid"] = json!("01234567-89ab-cdef-0123-456789abcdef");
    assert_eq!(fields(b), ["gpu_name", "gpu_registry_uuid"]);
}

#[test]
fn timeouts_follow_the_task() {
    let mut b = batch();
    b["max_timeout_run_ms"] = json!(59_999);
    assert_eq!(fields(b), ["max_timeout_run_ms"]);
    let mut b = batch();
    b.as_object_mut().unwrap().remove("max_timeout_run_ms");
    assert_eq!(fields(b), ["max_timeout_run_ms"]);
    let mut p = batch();
    p["task"] = json!("PERSISTENT");
    assert_eq!(fields(p.clone()), ["max_timeout_run_ms"]);
    p["max_timeout_run_ms"] = json!(null);
    assert!(check(p.clone()).is_ok());
    p.as_object_mut().unwrap().remove("max_timeout_run_ms");
    assert!(check(p).is_ok());
    let mut b = batch();
    b["max_timeout_assign_ms"] = json!(299_999);
    b["max_timeout_start_ms"] = json!(119_999);
    assert_eq!(fields(b), ["max_timeout_assign_ms", "max_timeout_start_ms"]);
}

#[test]
fn counts_sizes_and_types_are_checked() {
    let mut b = batch();
    b["cpu_count"] = json!(-1);
    b["min_ram_gb"] = json!(-0.5);
    b["max_node_count"] = json!(0);
    b["max_retry_count"] = json!(-2);
    b["task"] = json!("SOMETIMES");
    assert_eq!(fields(b), ["task", "cpu_count", "max_node_count", "max_retry_count", "min_ram_gb"]);
    let mut b = batch();
    b["parameters"]["type"] = json!("podman");
    assert_eq!(fields(b), ["parameters.type"]);
    let mut b = batch();
    b["gpu_count"] = json!("two");
    assert_eq!(fields(b), ["gpu_count"]);
}

#[test]
fn ports_ips_and_volumes_are_checked() {
    let mut b = batch();
    b["parameters"]["parameters"]["ports"] = json!([22, 0, 70000, 22]);
    b["parameters"]["parameters"]["allowed_ips"] = json!(["10.0.0.0/8", "::1", "nope", "1.2.3.4/33"]);
    b["parameters"]["parameters"]["volumes"] = json!([{"image": "data", "mount": "relative"}]);
    assert_eq!(
        fields(b),
        [
            "parameters.parameters.allowed_ips[2]",
            "parameters.parameters.allowed_ips[3]",
            "parameters.parameters.ports[1]",
            "parameters.parameters.ports[2]",
            "parameters.parameters.ports[3]",
            "parameters.parameters.volumes[0].mount",
        ]
    );
    let mut b = batch();
    b["parameters"]["parameters"]["ports"] = json!([22, "x"]);
    assert_eq!(fields(b), ["parameters.parameters.ports[1]"]);
}

#[test]
fn empty_credentials_mean_unset_and_unknown_fields_are_dropped() {
    let mut b = batch();
    b["parameters"]["parameters"]["host"] = json!("");
    b["parameters"]["parameters"]["user"] = json!("");
    b["parameters"]["parameters"]["secret"] = json!("");
    b["parameters"]["parameters"]["surprise"] = json!("x");
    b["surprise"] = json!(1);
    let spec = check(b).unwrap();
    assert_eq!(spec.parameters.parameters.host, None);
    assert_eq!(spec.parameters.parameters.secret, None);
    let echoed = serde_json::to_value(&spec.parameters).unwrap();
    assert_eq!(echoed, json!({"type": "docker", "parameters": {"image": "busybox"}}));
}

#[test]
fn type_defaults_to_docker_and_floats_that_are_integers_pass() {
    let mut b = batch();
    b["parameters"] = json!({"parameters": {"image": "busybox"}});
    b["max_timeout_run_ms"] = json!(1.8e6);
    let spec = check(b).unwrap();
    assert_eq!(spec.parameters.kind, "docker");
    assert_eq!(spec.max_timeout_run_ms, Some(1_800_000));
}

#[test]
fn region_codes_are_from_the_upstream_enum() {
    let mut b = batch();
    b["allowed_region_codes"] = json!(["eu-west-1", "mars-1"]);
    assert_eq!(fields(b), ["allowed_region_codes[1]"]);
}
