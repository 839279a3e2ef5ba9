//! Conformance checks for job recipes: round trips, the visibility rule in fetch and
//! list (owner, other accounts, operators), filters and paging, compare-and-set
//! updates, scoped deletes, last-used times, idempotent seeding and durability.

use gantry_types::list::{Paging, Range};
use gantry_types::recipe::{
    RecipeFilter, RecipeInputRequest, RecipeVisibility, inputs::validate_input_schema, payload,
};
use gantry_types::{AccountId, RecipeId};
use serde_json::json;

use super::{StoreFixture, T0, assert_conflict, assert_missing, new_account};
use crate::{RecipeRecord, RecipeViewer, Store};

/// A recipe of `owner` (None: a seed) created at `created_at_ms`, with a template
/// that has an (already "encrypted") registry secret and one input.
pub fn recipe(owner: Option<AccountId>, visibility: RecipeVisibility, created_at_ms: i64) -> RecipeRecord {
    let template = payload(json!({
        "title": "train", "task": "BATCH", "max_timeout_run_ms": 600000, "gpu_count": 1, "min_vram_gb": 23.5,
        "gpu_name": "NVIDIA RTX 4090", "allowed_region_codes": ["eu-west-1"],
        "parameters": {"type": "docker", "parameters": {"image": "reg.example/t", "host": "reg.example",
            "user": "bot", "secret": "v1.sealed", "env": {"A": "ünïcode \" quote"}, "ports": [22]}}
    }))
    .expect("valid template");
    let inputs: Vec<RecipeInputRequest> =
        serde_json::from_value(json!([{"key": "sshkey", "required": true, "target": "sshkey"},
                                      {"key": "n", "type": "integer", "default_value": 3}]))
        .unwrap();
    RecipeRecord {
        uuid: RecipeId::new(),
        account_uuid: owner,
        name: format!("recipe at {created_at_ms}"),
        description: Some("a description".into()),
        visibility,
        is_official: owner.is_none(),
        payload: template,
        input_schema: validate_input_schema(inputs).unwrap(),
        quickstart_md: Some("# Use it\n`ssh`".into()),
        thumbnail_url: None,
        forked_from_recipe_uuid: None,
        created_at_ms,
        updated_at_ms: created_at_ms,
        last_used_at_ms: None,
    }
}

fn viewer(account: AccountId) -> RecipeViewer {
    RecipeViewer { account, sees_all: false }
}

fn operator() -> RecipeViewer {
    RecipeViewer { account: AccountId::new(), sees_all: true }
}

fn oldest_first(limit: u32) -> Paging {
    Paging { page: 1, limit, newest_first: false }
}

async fn ids(store: &dyn Store, who: RecipeViewer, filter: &RecipeFilter) -> Vec<RecipeId> {
    let page = store.recipe_list(who, filter, oldest_first(50)).await.expect("recipe list");
    assert_eq!(page.total, page.items.len() as u64, "total vs items for {filter:?}");
    page.items.iter().map(|r| r.uuid).collect()
}

/// A created recipe comes back exactly; duplicates conflict; unknown owners are refused.
pub async fn recipe_create_fetch_roundtrip(store: &dyn Store) {
    let alice = new_account(store, "Alice").await;
    let mut r = recipe(Some(alice), RecipeVisibility::Private, T0);
    r.forked_from_recipe_uuid = Some(RecipeId::new());
    r.thumbnail_url = Some("https://example.com/t.png".into());
    store.recipe_create(&r).await.unwrap();
    assert_eq!(store.recipe_fetch(viewer(alice), r.uuid).await.unwrap(), Some(r.clone()));
    assert_eq!(store.recipe_fetch(operator(), r.uuid).await.unwrap(), Some(r.clone()));
    assert_eq!(store.recipe_fetch(viewer(alice), RecipeId::new()).await.unwrap(), None);
    assert_conflict(store.recipe_create(&RecipeRecord { name: "other".into(), ..r.clone() }).await);
    assert_missing(store.recipe_create(&recipe(Some(AccountId::new()), RecipeVisibility::Public, T0)).await);
    let seed = recipe(None, RecipeVisibility::Public, T0 + 1);
    store.recipe_create(&seed).await.unwrap();
    assert_eq!(store.recipe_fetch(viewer(alice), seed.uuid).await.unwrap(), Some(seed));
}

/// Owners see all of theirs; others see PUBLIC and official ones unless ARCHIVED;
/// operators see everything, in fetch and list alike.
pub async fn recipe_visibility_in_fetch_and_list(store: &dyn Store) {
    let (alice, bob) = (new_account(store, "Alice").await, new_account(store, "Bob").await);
    let private = recipe(Some(alice), RecipeVisibility::Private, T0);
    let public = recipe(Some(alice), RecipeVisibility::Public, T0 + 1);
    let archived = recipe(Some(alice), RecipeVisibility::Archived, T0 + 2);
    let official_private = RecipeRecord { is_official: true, ..recipe(Some(alice), RecipeVisibility::Private, T0 + 3) };
    let seed = recipe(None, RecipeVisibility::Public, T0 + 4);
    let seed_archived = recipe(None, RecipeVisibility::Archived, T0 + 5);
    let all = [&private, &public, &archived, &official_private, &seed, &seed_archived];
    for r in all {
        store.recipe_create(r).await.unwrap();
    }
    let every = RecipeFilter::default();
    let alice_sees = vec![private.uuid, public.uuid, archived.uuid, official_private.uuid, seed.uuid];
    assert_eq!(ids(store, viewer(alice), &every).await, alice_sees);
    let bob_sees = vec![public.uuid, official_private.uuid, seed.uuid];
    assert_eq!(ids(store, viewer(bob), &every).await, bob_sees);
    assert_eq!(ids(store, operator(), &every).await, all.iter().map(|r| r.uuid).collect::<Vec<_>>());
    for r in all {
        let bob_fetch = store.recipe_fetch(viewer(bob), r.uuid).await.unwrap();
        assert_eq!(bob_fetch.is_some(), bob_sees.contains(&r.uuid), "{:?} official={}", r.visibility, r.is_official);
        assert!(store.recipe_fetch(operator(), r.uuid).await.unwrap().is_some());
    }
}

/// Every filter narrows, on top of visibility; pages are ordered and complete.
pub async fn recipe_list_filters_and_paging(store: &dyn Store) {
    let (alice, bob) = (new_account(store, "Alice").await, new_account(store, "Bob").await);
    let a0 = recipe(Some(alice), RecipeVisibility::Public, T0);
    let a1 = recipe(Some(alice), RecipeVisibility::Private, T0 + 1000);
    let fork = RecipeRecord {
        forked_from_recipe_uuid: Some(a0.uuid),
        ..recipe(Some(bob), RecipeVisibility::Public, T0 + 2000)
    };
    let seed = recipe(None, RecipeVisibility::Public, T0 + 3000);
    for r in [&a0, &a1, &fork, &seed] {
        store.recipe_create(r).await.unwrap();
    }
    let f = |edit: &dyn Fn(&mut RecipeFilter)| {
        let mut filter = RecipeFilter::default();
        edit(&mut filter);
        filter
    };
    let me = viewer(alice);
    assert_eq!(ids(store, me, &f(&|f| f.is_official = Some(true))).await, [seed.uuid]);
    assert_eq!(ids(store, me, &f(&|f| f.is_official = Some(false))).await, [a0.uuid, a1.uuid, fork.uuid]);
    assert_eq!(ids(store, me, &f(&|f| f.is_owner = Some(true))).await, [a0.uuid, a1.uuid]);
    assert_eq!(ids(store, me, &f(&|f| f.is_owner = Some(false))).await, [fork.uuid, seed.uuid]);
    assert_eq!(ids(store, me, &f(&|f| f.visibilities = vec![RecipeVisibility::Private])).await, [a1.uuid]);
    assert_eq!(ids(store, me, &f(&|f| f.uuids = vec![a1.uuid, seed.uuid])).await, [a1.uuid, seed.uuid]);
    assert_eq!(ids(store, me, &f(&|f| f.forked_from = vec![a0.uuid])).await, [fork.uuid]);
    let range = Range { min: Some(T0 + 1000), max: Some(T0 + 2000) };
    assert_eq!(ids(store, me, &f(&|f| f.created_at = Some(range))).await, [a1.uuid, fork.uuid]);
    // Bob cannot reach Alice's private recipe through any filter.
    assert!(ids(store, viewer(bob), &f(&|f| f.uuids = vec![a1.uuid])).await.is_empty());

    let every = RecipeFilter::default();
    let newest = store.recipe_list(me, &every, Paging { page: 1, limit: 3, newest_first: true }).await.unwrap();
    assert_eq!(newest.total, 4);
    assert_eq!(newest.items.iter().map(|r| r.uuid).collect::<Vec<_>>(), [seed.uuid, fork.uuid, a1.uuid]);
    let page2 = store.recipe_list(me, &every, Paging { page: 2, limit: 3, newest_first: true }).await.unwrap();
    assert_eq!(page2.items.iter().map(|r| r.uuid).collect::<Vec<_>>(), [a0.uuid]);
}

/// Updates apply only with the current token and within the owner scope, and never
/// touch the identity columns.
pub async fn recipe_update_compare_and_set(store: &dyn Store) {
    let (alice, bob) = (new_account(store, "Alice").await, new_account(store, "Bob").await);
    let r = recipe(Some(alice), RecipeVisibility::Private, T0);
    store.recipe_create(&r).await.unwrap();
    store.recipe_touch(r.uuid, T0 + 5).await.unwrap();
    let mut changed = r.clone();
    changed.name = "renamed".into();
    changed.visibility = RecipeVisibility::Public;
    changed.is_official = true;
    changed.description = None;
    changed.payload.title = "new title".into();
    changed.input_schema.clear();
    changed.updated_at_ms = T0 + 10;
    // Identity columns in the record are ignored.
    let attempt = RecipeRecord { created_at_ms: 1, account_uuid: Some(bob), last_used_at_ms: None, ..changed.clone() };
    assert!(!store.recipe_update(Some(bob), &attempt, T0).await.unwrap(), "another owner's scope");
    assert!(!store.recipe_update(Some(alice), &attempt, T0 - 1).await.unwrap(), "a stale token");
    assert!(store.recipe_update(Some(alice), &attempt, T0).await.unwrap());
    let after = store.recipe_fetch(viewer(alice), r.uuid).await.unwrap().unwrap();
    assert_eq!(after, RecipeRecord { last_used_at_ms: Some(T0 + 5), ..changed.clone() });
    assert!(!store.recipe_update(Some(alice), &attempt, T0).await.unwrap(), "the token moved on");
    // Operators update any recipe, seeds included.
    let seed = recipe(None, RecipeVisibility::Public, T0);
    store.recipe_create(&seed).await.unwrap();
    let archived = RecipeRecord { visibility: RecipeVisibility::Archived, updated_at_ms: T0 + 1, ..seed.clone() };
    assert!(!store.recipe_update(Some(alice), &archived, T0).await.unwrap(), "a seed has no owner");
    assert!(store.recipe_update(None, &archived, T0).await.unwrap());
    assert_eq!(store.recipe_fetch(operator(), seed.uuid).await.unwrap(), Some(archived));
}

/// Deletes are scoped and report whether a row went.
pub async fn recipe_delete_is_scoped(store: &dyn Store) {
    let (alice, bob) = (new_account(store, "Alice").await, new_account(store, "Bob").await);
    let r = recipe(Some(alice), RecipeVisibility::Public, T0);
    let seed = recipe(None, RecipeVisibility::Public, T0 + 1);
    store.recipe_create(&r).await.unwrap();
    store.recipe_create(&seed).await.unwrap();
    assert!(!store.recipe_delete(Some(bob), r.uuid).await.unwrap());
    assert!(!store.recipe_delete(Some(alice), seed.uuid).await.unwrap());
    assert!(store.recipe_delete(Some(alice), r.uuid).await.unwrap());
    assert!(!store.recipe_delete(Some(alice), r.uuid).await.unwrap());
    assert_eq!(store.recipe_fetch(operator(), r.uuid).await.unwrap(), None);
    assert!(store.recipe_delete(None, seed.uuid).await.unwrap());
}

/// last_used_at only moves forward, and updated_at stays.
pub async fn recipe_touch_only_moves_forward(store: &dyn Store) {
    let alice = new_account(store, "Alice").await;
    let r = recipe(Some(alice), RecipeVisibility::Private, T0);
    store.recipe_create(&r).await.unwrap();
    store.recipe_touch(r.uuid, T0 + 100).await.unwrap();
    store.recipe_touch(r.uuid, T0 + 50).await.unwrap();
    store.recipe_touch(RecipeId::new(), T0).await.unwrap();
    let after = store.recipe_fetch(viewer(alice), r.uuid).await.unwrap().unwrap();
    assert_eq!((after.last_used_at_ms, after.updated_at_ms), (Some(T0 + 100), T0));
}

/// Seeding inserts missing uuids only: again inserts nothing, an operator's edit of a
/// seed survives, and concurrent seeding lands each row once.
pub async fn recipe_seed_is_idempotent(store: &dyn Store) {
    let seeds: Vec<RecipeRecord> = (0..3).map(|i| recipe(None, RecipeVisibility::Public, T0 + i)).collect();
    let runs = (0..4).map(|_| store.recipe_upsert_seed(&seeds));
    let mut inserted = 0;
    for r in super::gpu_models::join_all(runs).await {
        inserted += r.unwrap();
    }
    assert_eq!(inserted, 3);
    let edited = RecipeRecord { name: "operator's".into(), updated_at_ms: T0 + 9, ..seeds[0].clone() };
    assert!(store.recipe_update(None, &edited, seeds[0].updated_at_ms).await.unwrap());
    assert_eq!(store.recipe_upsert_seed(&seeds).await.unwrap(), 0);
    let listed = store.recipe_list(operator(), &RecipeFilter::default(), oldest_first(50)).await.unwrap();
    assert_eq!(listed.items, [edited, seeds[1].clone(), seeds[2].clone()]);
}

/// Recipes survive a restart.
pub async fn recipes_survive_reopen(fixture: &mut dyn StoreFixture) {
    let store = fixture.store();
    let alice = new_account(&*store, "Alice").await;
    let r = recipe(Some(alice), RecipeVisibility::Private, T0);
    store.recipe_create(&r).await.unwrap();
    store.recipe_upsert_seed(&[recipe(None, RecipeVisibility::Public, T0 + 1)]).await.unwrap();
    drop(store);
    fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.recipe_fetch(viewer(alice), r.uuid).await.unwrap(), Some(r));
    assert_eq!(store.recipe_list(operator(), &RecipeFilter::default(), oldest_first(50)).await.unwrap().total, 2);
}
