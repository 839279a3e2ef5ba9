//! Signed-request authentication end to end: each way a signature can be missing,
//! wrong, expired or replayed gets a 401 saying which; permissions and IP allow-lists
//! get 403; both query encodings and both JSON renderings seen in the wild pass.

use gantry_client::Credentials;
use gantry_test_harness::{TestContext, batch_job, wait_for};
use gantry_types::permissions::Preset;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sends a request with explicit header values and raw query/body, as a hand-written
/// client would, and returns (status, error code).
async fn send(
    creds: &Credentials,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> (StatusCode, String) {
    let mut req =
        reqwest::Client::new().request(method.parse().unwrap(), format!("{}{}", creds.base_url, path_and_query));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("").to_string())
}

/// Headers for a request signed over exactly `query` and `body_hash`.
fn sign(
    creds: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    body_hash: &str,
    time: i64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let canonical =
        gantry_auth::canonical_string(&creds.public_key, &time.to_string(), nonce, method, path, query, body_hash);
    vec![
        ("X-API-Key", creds.public_key.clone()),
        ("X-Time", time.to_string()),
        ("X-Nonce", nonce.to_string()),
        ("X-Signature", gantry_auth::sign(&creds.secret_key, &canonical)),
    ]
}

fn sha256_hex(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn each_signature_failure_is_a_401_that_says_which() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let c = client.credentials().clone();
    let empty = gantry_auth::EMPTY_BODY_SHA256;
    let good = sign(&c, "GET", "/v1/jobs", "", empty, now_ms(), &gantry_auth::new_nonce());
    assert_eq!(send(&c, "GET", "/v1/jobs", &good, None).await.0, StatusCode::OK);

    for missing in ["X-API-Key", "X-Time", "X-Nonce", "X-Signature"] {
        let headers: Vec<_> = sign(&c, "GET", "/v1/jobs", "", empty, now_ms(), &gantry_auth::new_nonce())
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        assert_eq!(
            send(&c, "GET", "/v1/jobs", &headers, None).await,
            (StatusCode::UNAUTHORIZED, "missing_signature".into())
        );
    }
    // Replay of the good request.
    assert_eq!(send(&c, "GET", "/v1/jobs", &good, None).await, (StatusCode::UNAUTHORIZED, "replayed_nonce".into()));
    // Wrong secret.
    let wrong = Credentials { secret_key: "sk_wrong".into(), ..c.clone() };
    let h = sign(&wrong, "GET", "/v1/jobs", "", empty, now_ms(), &gantry_auth::new_nonce());
    assert_eq!(send(&c, "GET", "/v1/jobs", &h, None).await, (StatusCode::UNAUTHORIZED, "invalid_signature".into()));
    // Signed for another path.
    let h = sign(&c, "GET", "/v1/api-keys", "", empty, now_ms(), &gantry_auth::new_nonce());
    assert_eq!(send(&c, "GET", "/v1/jobs", &h, None).await, (StatusCode::UNAUTHORIZED, "invalid_signature".into()));
    // Six minutes old, and six minutes ahead.
    for skew in [-360_000, 360_000] {
        let h = sign(&c, "GET", "/v1/jobs", "", empty, now_ms() + skew, &gantry_auth::new_nonce());
        assert_eq!(send(&c, "GET", "/v1/jobs", &h, None).await, (StatusCode::UNAUTHORIZED, "expired_signature".into()));
    }
    // Unknown key.
    let stranger = Credentials { public_key: "pk_00000000000000000000000000000000".into(), ..c.clone() };
    let h = sign(&stranger, "GET", "/v1/jobs", "", empty, now_ms(), &gantry_auth::new_nonce());
    assert_eq!(send(&c, "GET", "/v1/jobs", &h, None).await, (StatusCode::UNAUTHORIZED, "unknown_api_key".into()));
    // Tampered body: signed one body, sent another.
    let signed_body = r#"{"title":"a"}"#;
    let h = sign(&c, "POST", "/v1/jobs", "", &sha256_hex(signed_body), now_ms(), &gantry_auth::new_nonce());
    let sent = batch_job("b").to_string();
    assert_eq!(
        send(&c, "POST", "/v1/jobs", &h, Some(sent)).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
}

#[tokio::test]
async fn both_query_encodings_and_both_json_renderings_are_accepted() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let c = client.credentials().clone();
    let empty = gantry_auth::EMPTY_BODY_SHA256;
    // Python urlencode (form encoding), sent on the wire exactly as signed.
    let form = "filter%5Bstatus%5D=PENDING%2CRUNNING&filter%5Btask%5D=BATCH&limit=10&page=1";
    let h = sign(&c, "GET", "/v1/jobs", form, empty, now_ms(), &gantry_auth::new_nonce());
    assert_eq!(send(&c, "GET", &format!("/v1/jobs?{form}"), &h, None).await.0, StatusCode::OK);
    // The same request with the parameters in another order on the wire.
    let shuffled = "page=1&limit=10&filter%5Btask%5D=BATCH&filter%5Bstatus%5D=PENDING%2CRUNNING";
    let h = sign(&c, "GET", "/v1/jobs", form, empty, now_ms(), &gantry_auth::new_nonce());
    assert_eq!(send(&c, "GET", &format!("/v1/jobs?{shuffled}"), &h, None).await.0, StatusCode::OK);
    // A value with a space: '+' (form) and '%20' (RFC 3986) renderings both verify.
    let date = "filter%5Bcreated_at%5D=2020-01-01T00%3A00%3A00Z%2C";
    for signed_as in [format!("{date}&sort=-created_at"), format!("{date}&sort=-created_at")] {
        let h = sign(&c, "GET", "/v1/jobs", &signed_as, empty, now_ms(), &gantry_auth::new_nonce());
        assert_eq!(send(&c, "GET", &format!("/v1/jobs?{signed_as}"), &h, None).await.0, StatusCode::OK);
    }
    let h = sign(
        &c,
        "GET",
        "/v1/api-keys",
        "filter%5Bcreated_at%5D=2020-01-01+00%3A00",
        empty,
        now_ms(),
        &gantry_auth::new_nonce(),
    );
    let (status, code) = send(&c, "GET", "/v1/api-keys?filter%5Bcreated_at%5D=2020-01-01%2000%3A00", &h, None).await;
    assert_ne!(code, "invalid_signature", "form-encoded signature over a %20 wire query must verify ({status})");
    // Non-ASCII body: ensure_ascii=True (escaped) and ensure_ascii=False (raw UTF-8)
    // renderings; the wire body itself pretty-printed with unsorted keys.
    let mut body = batch_job("Übung 日本 😀");
    body["description"] = json!("café");
    let wire = serde_json::to_string_pretty(&body).unwrap();
    for ascii in [true, false] {
        let canonical = gantry_auth::canonical_json(&body, gantry_auth::JsonStyle { ascii, js_numbers: true });
        let h = sign(&c, "POST", "/v1/jobs", "", &sha256_hex(&canonical), now_ms(), &gantry_auth::new_nonce());
        assert_eq!(send(&c, "POST", "/v1/jobs", &h, Some(wire.clone())).await.0, StatusCode::CREATED, "ascii={ascii}");
    }
    let jobs = client.list_jobs(&[]).await.unwrap();
    assert!(jobs.data.iter().all(|j| j.title == "Übung 日本 😀"));
}

#[tokio::test]
async fn permissions_revocation_expiry_and_ip_allow_lists() {
    let ctx = TestContext::start().await;
    let consumer = ctx.new_account(Preset::Consumer).await;
    let account = consumer.me().await.unwrap().account_uuid;

    // A node key may not submit jobs.
    let node = ctx.key_in(account, Preset::Node.permissions(), vec![]).await;
    let err = node.create_job(&batch_job("x")).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    assert!(err.to_string().contains("jobs.create"), "{err}");

    // Allow-lists: loopback allowed, elsewhere refused with 403.
    let lan_only = ctx.key_in(account, Preset::Consumer.permissions(), vec!["10.0.0.0/8".into()]).await;
    assert_eq!(lan_only.list_jobs(&[]).await.unwrap_err().status(), Some(StatusCode::FORBIDDEN));
    let local = ctx.key_in(account, Preset::Consumer.permissions(), vec!["127.0.0.1/32".into(), "::1".into()]).await;
    assert!(local.list_jobs(&[]).await.is_ok());

    // Revocation takes effect at once.
    let spare = consumer
        .create_api_key(&gantry_types::api_key::CreateApiKeyRequest {
            name: Some("spare".into()),
            preset: Some("consumer".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let spare_client = ctx.client(spare.public_key.clone(), spare.secret_key.clone().unwrap());
    assert!(spare_client.list_jobs(&[]).await.is_ok());
    consumer.revoke_api_key(spare.uuid).await.unwrap();
    let err = spare_client.list_jobs(&[]).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(err.to_string().contains("revoked"), "{err}");

    // Expiry: a key expiring in a moment stops working.
    let expires = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let short = consumer
        .create_api_key(&gantry_types::api_key::CreateApiKeyRequest {
            name: Some("short".into()),
            permissions: Some(vec!["jobs.read.own".into()]),
            expires_at: Some(expires.to_rfc3339()),
            ..Default::default()
        })
        .await
        .unwrap();
    let short_client = ctx.client(short.public_key, short.secret_key.unwrap());
    assert!(short_client.list_jobs(&[]).await.is_ok());
    let err = wait_for("the short-lived key to expire", std::time::Duration::from_secs(10), || async {
        short_client.list_jobs(&[]).await.err()
    })
    .await;
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(err.to_string().contains("expired"), "{err}");
}
