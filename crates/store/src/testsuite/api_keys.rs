//! Conformance checks for API keys (see the parent module).

use gantry_types::{
    AccountId, ApiKeyId,
    list::{ApiKeyFilter, Paging},
};

use super::{T0, api_key, assert_conflict, assert_missing, key_ids, new_account, range};
use crate::{ApiKeyRecord, Store};

/// Keys round-trip by public key, revoked and expired ones included.
pub async fn api_key_create_fetch_by_public_key(store: &dyn Store) {
    let account = new_account(store, "Keys").await;
    let key = ApiKeyRecord { expires_at_ms: Some(T0 + 86_400_000), ..api_key(account, T0) };
    store.api_key_create(&key).await.unwrap();
    assert_eq!(store.api_key_fetch_by_public_key(&key.public_key).await.unwrap(), Some(key.clone()));
    assert_eq!(store.api_key_fetch_by_public_key("pk_unknown").await.unwrap(), None);

    let old = ApiKeyRecord {
        is_revoked: true,
        expires_at_ms: Some(T0 - 1),
        last_used_at_ms: Some(T0 - 5),
        deleted_at_ms: Some(T0 - 2),
        permissions: vec![],
        allowed_ips: vec![],
        ..api_key(account, T0 - 10)
    };
    store.api_key_create(&old).await.unwrap();
    assert_eq!(store.api_key_fetch_by_public_key(&old.public_key).await.unwrap(), Some(old));
}

/// A second key with the same public key (or uuid) conflicts.
pub async fn api_key_duplicate_public_key_conflicts(store: &dyn Store) {
    let account = new_account(store, "Dup").await;
    let key = api_key(account, T0);
    store.api_key_create(&key).await.unwrap();
    let same_public = ApiKeyRecord { public_key: key.public_key.clone(), ..api_key(account, T0 + 1) };
    assert_conflict(store.api_key_create(&same_public).await);
    let same_uuid = ApiKeyRecord { uuid: key.uuid, ..api_key(account, T0 + 2) };
    assert_conflict(store.api_key_create(&same_uuid).await);
    // Nothing of the failed inserts was kept.
    assert_eq!(key_ids(store, Some(account), &ApiKeyFilter::default()).await, [key.uuid]);
}

/// A key for an unknown account is refused.
pub async fn api_key_unknown_account_is_missing_reference(store: &dyn Store) {
    let key = api_key(AccountId::new(), T0);
    assert_missing(store.api_key_create(&key).await);
    assert_eq!(store.api_key_fetch_by_public_key(&key.public_key).await.unwrap(), None);
}

/// Every ApiKeyFilter field, paging, and account scoping.
pub async fn api_key_list_filters_and_scoping(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let mut keys = Vec::new();
    for i in 0..5 {
        let mut key = api_key(a, T0 + i);
        key.is_revoked = i % 2 == 1;
        key.expires_at_ms = match i {
            2 => Some(T0 + 1000),
            4 => Some(T0 + 2000),
            _ => None,
        };
        store.api_key_create(&key).await.unwrap();
        keys.push(key.uuid);
    }
    for i in 0..2 {
        store.api_key_create(&api_key(b, T0 + 10 + i)).await.unwrap();
    }
    let k = |ix: &[usize]| ix.iter().map(|&i| keys[i]).collect::<Vec<_>>();
    let all = ApiKeyFilter::default();

    // Default order is newest first.
    let page = store.api_key_list(Some(a), &all, Paging::default()).await.unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.items.iter().map(|k| k.uuid).collect::<Vec<_>>(), k(&[4, 3, 2, 1, 0]));
    // Paging, oldest first.
    let page = store.api_key_list(Some(a), &all, Paging { page: 2, limit: 2, newest_first: false }).await.unwrap();
    assert_eq!((page.total, page.items.iter().map(|k| k.uuid).collect::<Vec<_>>()), (5, k(&[2, 3])));

    let revoked = |r| ApiKeyFilter { is_revoked: Some(r), ..all.clone() };
    assert_eq!(key_ids(store, Some(a), &revoked(true)).await, k(&[1, 3]));
    assert_eq!(key_ids(store, Some(a), &revoked(false)).await, k(&[0, 2, 4]));
    let created = |min, max| ApiKeyFilter { created_at: range(min, max), ..all.clone() };
    assert_eq!(key_ids(store, Some(a), &created(Some(T0 + 1), Some(T0 + 3))).await, k(&[1, 2, 3]));
    assert_eq!(key_ids(store, Some(a), &created(Some(T0 + 3), None)).await, k(&[3, 4]));
    assert_eq!(key_ids(store, Some(a), &created(None, Some(T0 + 1))).await, k(&[0, 1]));
    let expires = |min, max| ApiKeyFilter { expires_at: range(min, max), ..all.clone() };
    assert_eq!(key_ids(store, Some(a), &expires(Some(T0 + 1500), None)).await, k(&[4]));
    assert_eq!(key_ids(store, Some(a), &expires(None, Some(T0 + 2000))).await, k(&[2, 4]));

    // Scoping: A never sees B's keys, even when filtering for them.
    assert_eq!(key_ids(store, Some(b), &all).await.len(), 2);
    let for_b = ApiKeyFilter { account_uuid: Some(b), ..all.clone() };
    assert!(key_ids(store, Some(a), &for_b).await.is_empty());
    assert_eq!(key_ids(store, None, &for_b).await.len(), 2);
    let everyone = key_ids(store, None, &all).await;
    assert!(everyone.len() >= 7 && keys.iter().all(|k| everyone.contains(k)));
}

/// Revoking twice returns the first revocation unchanged.
pub async fn api_key_revoke_is_idempotent(store: &dyn Store) {
    let account = new_account(store, "Revoke").await;
    let key = api_key(account, T0);
    store.api_key_create(&key).await.unwrap();
    let revoked = store.api_key_revoke(Some(account), key.uuid, T0 + 100).await.unwrap().expect("in scope");
    let expected =
        ApiKeyRecord { is_revoked: true, deleted_at_ms: Some(T0 + 100), updated_at_ms: T0 + 100, ..key.clone() };
    assert_eq!(revoked, expected);
    assert_eq!(store.api_key_revoke(Some(account), key.uuid, T0 + 200).await.unwrap(), Some(expected.clone()));
    // Operators (no scope) may revoke too; still unchanged.
    assert_eq!(store.api_key_revoke(None, key.uuid, T0 + 300).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.api_key_fetch_by_public_key(&key.public_key).await.unwrap(), Some(expected));
    assert_eq!(store.api_key_revoke(None, ApiKeyId::new(), T0).await.unwrap(), None);
}

/// Revoking another account's key is "absent" and changes nothing.
pub async fn api_key_revoke_out_of_scope_is_none(store: &dyn Store) {
    let (a, b) = (new_account(store, "Owner").await, new_account(store, "Other").await);
    let key = api_key(a, T0);
    store.api_key_create(&key).await.unwrap();
    assert_eq!(store.api_key_revoke(Some(b), key.uuid, T0 + 1).await.unwrap(), None);
    assert_eq!(store.api_key_fetch_by_public_key(&key.public_key).await.unwrap(), Some(key));
}

/// `last_used_at_ms` only ever moves forward; other fields stay.
pub async fn api_key_touch_only_moves_forward(store: &dyn Store) {
    let account = new_account(store, "Touch").await;
    let (k1, k2) = (api_key(account, T0), api_key(account, T0 + 1));
    store.api_key_create(&k1).await.unwrap();
    store.api_key_create(&k2).await.unwrap();
    let last_used = |key: ApiKeyRecord| async move {
        let found = store.api_key_fetch_by_public_key(&key.public_key).await.unwrap().unwrap();
        assert_eq!(ApiKeyRecord { last_used_at_ms: key.last_used_at_ms, ..found.clone() }, key);
        found.last_used_at_ms
    };
    store.api_key_touch(&[(k1.uuid, T0 + 10)]).await.unwrap();
    assert_eq!(last_used(k1.clone()).await, Some(T0 + 10));
    assert_eq!(last_used(k2.clone()).await, None);
    store.api_key_touch(&[(k1.uuid, T0 + 5), (k2.uuid, T0 + 7)]).await.unwrap();
    assert_eq!(last_used(k1.clone()).await, Some(T0 + 10));
    assert_eq!(last_used(k2.clone()).await, Some(T0 + 7));
    // Several uses of one key in a batch: the latest wins whatever the order.
    store.api_key_touch(&[(k1.uuid, T0 + 20), (k1.uuid, T0 + 15)]).await.unwrap();
    assert_eq!(last_used(k1.clone()).await, Some(T0 + 20));
    store.api_key_touch(&[]).await.unwrap();
    store.api_key_touch(&[(ApiKeyId::new(), T0)]).await.unwrap();
}
