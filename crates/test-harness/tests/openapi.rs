//! The OpenAPI document: generated from the code, committed as `openapi/api.json`,
//! served at `/v1/openapi.json`, and every path in it refuses unsigned requests.

use gantry_test_harness::TestContext;
use reqwest::StatusCode;
use serde_json::Value;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/api.json");

#[test]
fn the_committed_document_matches_the_code() {
    let generated = gantry_server::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("GANTRY_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/api.json is out of date; regenerate it with GANTRY_UPDATE_OPENAPI=1 cargo test -p gantry-test-harness --test openapi"
    );
}

#[tokio::test]
async fn every_documented_endpoint_refuses_unsigned_requests() {
    let ctx = TestContext::start().await;
    let served: Value = reqwest::get(format!("{}/v1/openapi.json", ctx.base_url)).await.unwrap().json().await.unwrap();
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(COMMITTED).unwrap()).unwrap();
    assert_eq!(served, committed, "the server serves the committed document");
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in served["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", ctx.base_url, path.replace("{uuid}", &uuid::Uuid::now_v7().to_string()));
            let resp = http.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path} answered without a signature");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "missing_signature", "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} operations documented");
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let ctx = TestContext::start().await;
    let health = reqwest::get(format!("{}/healthz", ctx.base_url)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let missing = reqwest::get(format!("{}/v1/nothing-here", ctx.base_url)).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}
