//! API keys and `/v1/users/me`.

use gantry_test_harness::TestContext;
use gantry_types::api_key::CreateApiKeyRequest;
use gantry_types::permissions::Preset;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn the_secret_is_shown_once_and_keys_are_listed_without_it() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let req = CreateApiKeyRequest {
        name: Some("ci".into()),
        permissions: Some(vec!["jobs.read.own".into(), "jobs.create.own".into()]),
        allowed_ips: Some(vec!["127.0.0.1/32".into()]),
        ..Default::default()
    };
    let raw =
        client.send_raw(Method::POST, "/v1/api-keys", &[], Some(&serde_json::to_value(&req).unwrap())).await.unwrap();
    assert_eq!(raw.status, StatusCode::CREATED);
    let key = raw.body;
    assert!(key["public_key"].as_str().unwrap().starts_with("pk_"));
    assert!(key["secret_key"].as_str().unwrap().starts_with("sk_"));
    assert_eq!(key["object"], "api_key");
    assert_eq!(key["_id"], key["uuid"]);
    assert_eq!(key["is_revoked"], false);
    let list = client.send_raw(Method::GET, "/v1/api-keys", &[], None).await.unwrap();
    assert_eq!(list.body["total"], 2);
    for k in list.body["data"].as_array().unwrap() {
        assert!(k.get("secret_key").is_none(), "secret listed: {k}");
    }
    // The new key works, with just its permissions.
    let ci = ctx.client(key["public_key"].as_str().unwrap().into(), key["secret_key"].as_str().unwrap().into());
    assert!(ci.list_jobs(&[]).await.is_ok());
    assert_eq!(ci.list_api_keys(&[]).await.unwrap_err().status(), Some(StatusCode::FORBIDDEN));
    // Filters.
    let q = gantry_client::query(&[("filter[is_revoked]", "true")]);
    assert_eq!(client.list_api_keys(&q).await.unwrap().total, 0);
    client.revoke_api_key(key["uuid"].as_str().unwrap().parse().unwrap()).await.unwrap();
    assert_eq!(client.list_api_keys(&q).await.unwrap().total, 1);
    // Revoking again is fine.
    let again = client.revoke_api_key(key["uuid"].as_str().unwrap().parse().unwrap()).await.unwrap();
    assert!(again.is_revoked && again.deleted_at.is_some());
}

#[tokio::test]
async fn bad_key_requests_are_400_and_escalation_is_403() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Consumer).await;
    let cases = [
        (json!({"permissions": ["jobs.read.own"]}), "name"),
        (json!({"name": "x"}), "permissions"),
        (json!({"name": "x", "permissions": ["jobs.fly.own"]}), "permissions[0]"),
        (json!({"name": "x", "preset": "wizard"}), "preset"),
        (json!({"name": "x", "preset": "consumer", "allowed_ips": ["nope"]}), "allowed_ips[0]"),
        (json!({"name": "x", "preset": "consumer", "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"name": "x", "preset": "consumer", "expires_at": "soon"}), "expires_at"),
    ];
    for (body, field) in cases {
        let raw = client.send_raw(Method::POST, "/v1/api-keys", &[], Some(&body)).await.unwrap();
        assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(raw.body["error"]["details"][0]["field"], field, "{body}");
    }
    for body in [json!({"name": "x", "preset": "admin"}), json!({"name": "x", "permissions": ["nodes.update.own"]})] {
        let raw = client.send_raw(Method::POST, "/v1/api-keys", &[], Some(&body)).await.unwrap();
        assert_eq!(raw.status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(raw.body["error"]["code"], "permission_escalation");
    }
    assert_eq!(client.list_api_keys(&[]).await.unwrap().total, 1, "nothing half-created");
}

#[tokio::test]
async fn keys_of_other_accounts_are_invisible() {
    let ctx = TestContext::start().await;
    let alice = ctx.new_account(Preset::Consumer).await;
    let bob = ctx.new_account(Preset::Consumer).await;
    let alice_keys = alice.list_api_keys(&[]).await.unwrap();
    let err = bob.revoke_api_key(alice_keys.data[0].uuid).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    let alice_account = alice.me().await.unwrap().account_uuid.to_string();
    let q = gantry_client::query(&[("filter[account_uuid]", &alice_account)]);
    assert_eq!(bob.list_api_keys(&q).await.unwrap().total, 0);
    assert!(alice.list_jobs(&[]).await.is_ok(), "alice's key still works");
}

#[tokio::test]
async fn users_me_names_the_account_for_the_balance_call() {
    let ctx = TestContext::start().await;
    let client = ctx.new_account(Preset::Node).await;
    let me = client.me().await.unwrap();
    assert_eq!(me.object, "user");
    assert_eq!(me.uuid, me.account_uuid);
    assert_eq!(me.email.as_deref(), Some("test@example.com"));
    assert!(me.permissions.contains(&"nodes.update.own".to_string()));
}

/// Issue 15 point 9: a key pinned to one address and expiring soon could mint an
/// unpinned, eternal key. A created key now lies within its creator's `allowed_ips` and
/// expires no later; operator keys are exempt.
#[tokio::test]
async fn a_key_cannot_mint_a_broader_key() {
    let ctx = TestContext::start().await;
    let owner = ctx.new_account(Preset::Consumer).await;
    let pinned = owner
        .send_raw(
            Method::POST,
            "/v1/api-keys",
            &[],
            Some(&json!({"name": "pinned", "preset": "consumer", "allowed_ips": ["127.0.0.1/32"],
                "expires_at": "2030-01-01T00:00:00Z"})),
        )
        .await
        .unwrap();
    assert_eq!(pinned.status, StatusCode::CREATED, "{}", pinned.body);
    let pinned = ctx
        .client(pinned.body["public_key"].as_str().unwrap().into(), pinned.body["secret_key"].as_str().unwrap().into());
    let before = owner.list_api_keys(&[]).await.unwrap().total;
    let broader = [
        json!({"name": "x", "preset": "consumer"}),
        json!({"name": "x", "preset": "consumer", "expires_at": "2029-01-01T00:00:00Z"}),
        json!({"name": "x", "preset": "consumer", "allowed_ips": ["127.0.0.1"]}),
        json!({"name": "x", "preset": "consumer", "allowed_ips": ["127.0.0.0/8"], "expires_at": "2029-01-01T00:00:00Z"}),
        json!({"name": "x", "preset": "consumer", "allowed_ips": ["127.0.0.1", "::/0"], "expires_at": "2029-01-01T00:00:00Z"}),
        json!({"name": "x", "preset": "consumer", "allowed_ips": ["127.0.0.1"], "expires_at": "2031-01-01T00:00:00Z"}),
    ];
    for body in broader {
        let raw = pinned.send_raw(Method::POST, "/v1/api-keys", &[], Some(&body)).await.unwrap();
        assert_eq!(raw.status, StatusCode::FORBIDDEN, "{body}: {}", raw.body);
        assert_eq!(raw.body["error"]["code"], "permission_escalation", "{body}");
    }
    assert_eq!(owner.list_api_keys(&[]).await.unwrap().total, before, "nothing created");
    // As narrow or narrower is fine.
    for body in [
        json!({"name": "same", "preset": "consumer", "allowed_ips": ["127.0.0.1"], "expires_at": "2030-01-01T00:00:00Z"}),
        json!({"name": "narrower", "permissions": ["jobs.read.own"], "allowed_ips": ["::ffff:127.0.0.1"], "expires_at": "2027-01-01T00:00:00Z"}),
    ] {
        let raw = pinned.send_raw(Method::POST, "/v1/api-keys", &[], Some(&body)).await.unwrap();
        assert_eq!(raw.status, StatusCode::CREATED, "{body}: {}", raw.body);
    }
    // Operators mint keys for others, so their own limits do not bind them.
    let admin = ctx.new_account(Preset::Admin).await;
    let account = admin.me().await.unwrap().account_uuid;
    let admin_pinned = ctx.key_in(account, Preset::Admin.permissions(), vec!["127.0.0.1/32".into()]).await;
    let raw = admin_pinned
        .send_raw(Method::POST, "/v1/api-keys", &[], Some(&json!({"name": "wide", "preset": "consumer"})))
        .await
        .unwrap();
    assert_eq!(raw.status, StatusCode::CREATED, "{}", raw.body);
}
