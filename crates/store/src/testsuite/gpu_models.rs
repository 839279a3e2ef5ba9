//! Conformance checks for the GPU registry: seeding (idempotent, concurrent, never
//! overwriting an operator's row), create/fetch/list round trips, conflicts and
//! durability (see the parent module).

use gantry_types::GpuModelId;
use gantry_types::gpu::catalogue::seeded_models;
use gantry_types::gpu::{GpuModel, GpuModelSpec};

use super::{StoreFixture, T0, assert_conflict};
use crate::Store;

/// An operator-added model created at `created_at_ms`.
pub fn gpu_model(name: &str, created_at_ms: i64) -> GpuModel {
    GpuModelSpec {
        name: name.into(),
        vendor: "NVIDIA".into(),
        vram_gb: 23.5,
        aliases: vec![format!("{name} (NVML)"), "quotes \" and unicode é".into()],
    }
    .into_model(GpuModelId::new(), created_at_ms)
}

/// Seeding inserts the catalogue once; seeding again inserts nothing and changes nothing.
pub async fn gpu_model_seed_is_idempotent(store: &dyn Store) {
    let catalogue = seeded_models();
    assert_eq!(store.gpu_model_upsert_seed(&catalogue).await.unwrap(), catalogue.len() as u64);
    assert_eq!(store.gpu_model_list().await.unwrap(), catalogue, "listed in (created_at, uuid) order, unchanged");
    assert_eq!(store.gpu_model_upsert_seed(&catalogue).await.unwrap(), 0);
    assert_eq!(store.gpu_model_list().await.unwrap(), catalogue);
    assert_eq!(store.gpu_model_upsert_seed(&[]).await.unwrap(), 0);
}

/// A seeded entry never overwrites a row with its uuid or its name: an operator's
/// change or earlier addition wins.
pub async fn gpu_model_seed_never_overwrites(store: &dyn Store) {
    let catalogue = seeded_models();
    // An operator's version of a seeded uuid, and an operator's model under a name a
    // later catalogue also ships.
    let edited = GpuModel { vram_gb: 99.0, aliases: vec!["edited".into()], is_official: false, ..catalogue[0].clone() };
    store.gpu_model_create(&edited).await.unwrap();
    let early = GpuModel { name: catalogue[1].name.clone(), ..gpu_model("x", T0) };
    store.gpu_model_create(&early).await.unwrap();

    let inserted = store.gpu_model_upsert_seed(&catalogue).await.unwrap();
    assert_eq!(inserted, catalogue.len() as u64 - 2);
    assert_eq!(store.gpu_model_fetch(edited.uuid).await.unwrap(), Some(edited));
    assert_eq!(store.gpu_model_fetch(early.uuid).await.unwrap(), Some(early));
    assert_eq!(store.gpu_model_fetch(catalogue[1].uuid).await.unwrap(), None, "the clashing seed row was skipped");
    assert_eq!(store.gpu_model_list().await.unwrap().len(), catalogue.len());
}

/// Servers starting together seed at once: every row lands exactly once.
pub async fn gpu_model_seed_concurrent(store: &dyn Store) {
    let catalogue = seeded_models();
    let seeds = (0..4).map(|_| store.gpu_model_upsert_seed(&catalogue));
    let mut inserted = 0;
    for result in join_all(seeds).await {
        inserted += result.unwrap();
    }
    assert_eq!(inserted, catalogue.len() as u64);
    assert_eq!(store.gpu_model_list().await.unwrap(), catalogue);
}

/// Polls the futures together (the suite has no `futures` dependency).
pub(super) async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|v| v.expect("every future completed")).collect()
}

/// A created model comes back exactly (fractional VRAM, odd alias text); unknown is None.
pub async fn gpu_model_create_fetch_list(store: &dyn Store) {
    let catalogue = seeded_models();
    store.gpu_model_upsert_seed(&catalogue).await.unwrap();
    let b300 = gpu_model("NVIDIA B300", T0 + 86_400_000);
    let empty = GpuModel { aliases: vec![], vendor: "Acme".into(), ..gpu_model("Acme X1", T0 + 86_400_001) };
    store.gpu_model_create(&b300).await.unwrap();
    store.gpu_model_create(&empty).await.unwrap();
    assert_eq!(store.gpu_model_fetch(b300.uuid).await.unwrap(), Some(b300.clone()));
    assert_eq!(store.gpu_model_fetch(empty.uuid).await.unwrap(), Some(empty.clone()));
    assert_eq!(store.gpu_model_fetch(GpuModelId::new()).await.unwrap(), None);
    let mut expected = catalogue;
    expected.extend([b300, empty]);
    assert_eq!(store.gpu_model_list().await.unwrap(), expected);
}

/// A second model with the same uuid or the same name conflicts, and leaves nothing.
pub async fn gpu_model_duplicate_conflicts(store: &dyn Store) {
    let model = gpu_model("NVIDIA B300", T0);
    store.gpu_model_create(&model).await.unwrap();
    assert_conflict(store.gpu_model_create(&GpuModel { uuid: GpuModelId::new(), ..model.clone() }).await);
    assert_conflict(store.gpu_model_create(&GpuModel { name: "Other".into(), ..model.clone() }).await);
    assert_eq!(store.gpu_model_list().await.unwrap(), [model]);
}

/// Seeded and created models survive a restart.
pub async fn gpu_models_survive_reopen(fixture: &mut dyn StoreFixture) {
    let store = fixture.store();
    store.gpu_model_upsert_seed(&seeded_models()).await.unwrap();
    let added = gpu_model("NVIDIA B300", T0);
    store.gpu_model_create(&added).await.unwrap();
    let before = store.gpu_model_list().await.unwrap();
    drop(store);

    fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.gpu_model_list().await.unwrap(), before);
    assert_eq!(store.gpu_model_upsert_seed(&seeded_models()).await.unwrap(), 0);
    assert_eq!(store.gpu_model_fetch(added.uuid).await.unwrap(), Some(added));
}
