//! Conformance checks for deployment settings (see the parent module).

use super::StoreFixture;
use super::gpu_models::join_all;
use crate::Store;

/// The first value written under a name stays; later inserts get it back.
pub async fn setting_first_value_wins(store: &dyn Store) {
    assert_eq!(store.setting_fetch("greeting").await.unwrap(), None);
    assert_eq!(store.setting_insert_if_absent("greeting", "hello").await.unwrap(), "hello");
    assert_eq!(store.setting_insert_if_absent("greeting", "bonjour").await.unwrap(), "hello");
    assert_eq!(store.setting_fetch("greeting").await.unwrap().as_deref(), Some("hello"));
    assert_eq!(store.setting_insert_if_absent("other", "x").await.unwrap(), "x");
}

/// Instances starting together all get the one value that was stored.
pub async fn setting_concurrent_inserts_agree(store: &dyn Store) {
    let values: Vec<String> = (0..16).map(|i| format!("v{i}")).collect();
    let inserts = values.iter().map(|v| store.setting_insert_if_absent("race", v));
    let results: Vec<String> = join_all(inserts).await.into_iter().map(|r| r.unwrap()).collect();
    let stored = store.setting_fetch("race").await.unwrap().expect("stored");
    assert!(results.iter().all(|r| *r == stored), "{results:?} vs {stored}");
}

/// A setting is still there after a restart.
pub async fn settings_survive_reopen(fixture: &mut dyn StoreFixture) {
    fixture.store().setting_insert_if_absent("kept", "yes").await.unwrap();
    fixture.reopen().await;
    assert_eq!(fixture.store().setting_fetch("kept").await.unwrap().as_deref(), Some("yes"));
}

/// One leader at a time: while one instance leads, another cannot; when the leader
/// gives up (or dies), another can lead. SQLite's only instance always leads.
pub async fn leadership_is_exclusive_and_passes_on(store: &dyn Store) {
    let mut first = store.try_lead().await.unwrap().expect("nobody leads yet");
    assert!(first.still_leading().await);
    if store.backend() == "sqlite" {
        assert!(store.try_lead().await.unwrap().is_some(), "the sole instance always leads");
        return;
    }
    assert!(store.try_lead().await.unwrap().is_none(), "a second leader");
    assert!(first.still_leading().await);
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut next = loop {
        if let Some(next) = store.try_lead().await.unwrap() {
            break next;
        }
        assert!(std::time::Instant::now() < deadline, "the leadership was not released");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(next.still_leading().await);
}
