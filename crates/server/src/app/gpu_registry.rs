//! The GPU registry: the models jobs' `gpu_name` and `gpu_registry_uuid` name.
//!
//! * **Seeded at start.** [`seed`] writes Gantry's catalogue
//!   (`gantry_types::gpu::catalogue`) into the store: missing entries only, so it is
//!   idempotent and never overwrites an operator's rows, and servers starting together
//!   are safe.
//! * **Kept in memory.** The registry is small and read on the create-job hot path
//!   (benchmarked at 15k jobs/s), so every lookup is answered from [`GpuCatalogue`], an
//!   immutable snapshot behind an `RwLock` with indexes by normalised name and uuid;
//!   job creation never reads the database for it.
//! * **Refreshed.** An operator's addition refreshes this server's snapshot at once.
//!   Other servers sharing the database pick it up on their periodic refresh (every
//!   [`REFRESH_EVERY`]) or on a miss: a name or uuid not in memory triggers one
//!   refresh before it is called unknown (single-flight, at most one per
//!   [`MISS_REFRESH_MIN_INTERVAL`], so a client sending unknown names cannot turn each
//!   request into a database read).
//! * **Availability.** `filter[only_available]` asks which models are on at least one
//!   online node; [`online_models`] reads the nodes to answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use gantry_store::{Page, Store, StoreResult};
use gantry_types::gpu::catalogue::seeded_models;
use gantry_types::gpu::{GpuModel, GpuModelFilter, GpuModelSpec, RegistryClash, find_clashes, normalize_gpu_name};
use gantry_types::job::JobSpec;
use gantry_types::list::Paging;
use gantry_types::{FieldError, GpuModelId};

use crate::app::error::{AppError, chain};
use crate::state::{AppState, now_ms};

/// How often each server reloads the registry (to see other servers' additions).
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Least time between two refreshes caused by misses.
pub const MISS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One immutable view of the registry.
#[derive(Debug, Default)]
pub struct CatalogueSnapshot {
    /// Every model, ordered by (created_at, uuid).
    models: Vec<GpuModel>,
    /// Normalised name or alias → index in `models`.
    by_name: HashMap<String, usize>,
    /// uuid → index in `models`.
    by_id: HashMap<GpuModelId, usize>,
}

impl CatalogueSnapshot {
    fn new(mut models: Vec<GpuModel>) -> Self {
        models.sort_by_key(|m| (m.created_at, m.uuid));
        let mut by_name = HashMap::new();
        let mut by_id = HashMap::with_capacity(models.len());
        for (i, m) in models.iter().enumerate() {
            by_id.insert(m.uuid, i);
            for name in m.names() {
                // Additions are checked for clashes, but two servers adding at the same
                // moment could both pass: the older model keeps the name.
                if let Some(&first) = by_name.get(&normalize_gpu_name(name)) {
                    if first != i {
                        let first: &GpuModel = &models[first];
                        tracing::warn!(%name, kept = %first.uuid, ignored = %m.uuid, "GPU name names two models");
                    }
                    continue;
                }
                by_name.insert(normalize_gpu_name(name), i);
            }
        }
        Self { models, by_name, by_id }
    }

    /// Every model, ordered by (created_at, uuid).
    pub fn models(&self) -> &[GpuModel] {
        &self.models
    }

    /// The model a name or alias names (case-insensitive, whitespace-normalised).
    pub fn by_name(&self, name: &str) -> Option<&GpuModel> {
        self.by_name.get(&normalize_gpu_name(name)).map(|&i| &self.models[i])
    }

    /// The model with this uuid.
    pub fn by_id(&self, id: GpuModelId) -> Option<&GpuModel> {
        self.by_id.get(&id).map(|&i| &self.models[i])
    }
}

/// The registry in memory (see the module docs).
#[derive(Default)]
pub struct GpuCatalogue {
    snapshot: RwLock<Arc<CatalogueSnapshot>>,
    /// Serializes reloads (so an older read never replaces a newer snapshot) and
    /// remembers when the last one finished.
    reload: tokio::sync::Mutex<Option<Instant>>,
}

impl GpuCatalogue {
    /// The current view.
    pub fn snapshot(&self) -> Arc<CatalogueSnapshot> {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The uuid of the model `name` names, from memory.
    pub fn resolve(&self, name: &str) -> Option<GpuModelId> {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).by_name(name).map(|m| m.uuid)
    }

    /// Whether a model has this uuid, from memory.
    pub fn contains(&self, id: GpuModelId) -> bool {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).by_id.contains_key(&id)
    }

    /// The display name of a model, from memory.
    pub fn name(&self, id: GpuModelId) -> Option<String> {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).by_id(id).map(|m| m.name.clone())
    }

    /// Reloads the registry from the store.
    pub async fn refresh(&self, store: &dyn Store) -> StoreResult<()> {
        let mut last = self.reload.lock().await;
        self.reload_locked(store, &mut last).await
    }

    /// Reloads after a miss, unless another reload finished meanwhile or one ran
    /// less than [`MISS_REFRESH_MIN_INTERVAL`] ago. Returns whether the snapshot may
    /// have changed since the caller looked (worth looking again).
    pub async fn refresh_after_miss(&self, store: &dyn Store, missed_at: Instant) -> StoreResult<bool> {
        let mut last = self.reload.lock().await;
        match *last {
            // Someone reloaded after the caller's miss: look again, no reload needed.
            Some(at) if at > missed_at => Ok(true),
            Some(at) if at.elapsed() < MISS_REFRESH_MIN_INTERVAL => Ok(false),
            _ => self.reload_locked(store, &mut last).await.map(|()| true),
        }
    }

    async fn reload_locked(&self, store: &dyn Store, last: &mut Option<Instant>) -> StoreResult<()> {
        let models = store.gpu_model_list().await?;
        let snapshot = Arc::new(CatalogueSnapshot::new(models));
        *self.snapshot.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        *last = Some(Instant::now());
        Ok(())
    }
}

/// The registry models present on online nodes now (`filter[only_available]`).
pub async fn online_models(state: &AppState) -> StoreResult<HashSet<GpuModelId>> {
    let nodes = state.store.node_list_all().await?;
    Ok(nodes
        .iter()
        .filter(|n| n.status == gantry_types::node::NodeStatus::Online)
        .flat_map(|n| n.gpu_models.iter().flatten().copied())
        .collect())
}

/// Writes the seeded catalogue's missing entries and loads the registry into memory.
pub async fn seed(state: &AppState) -> StoreResult<()> {
    let inserted = state.store.gpu_model_upsert_seed(&seeded_models()).await?;
    state.caches.gpus.refresh(state.store.as_ref()).await?;
    tracing::info!(inserted, models = state.caches.gpus.snapshot().models().len(), "GPU registry loaded");
    Ok(())
}

/// Refreshes every [`REFRESH_EVERY`] until aborted (spawned by `background::spawn`).
pub async fn run_refresher(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; `seed` just loaded it
    loop {
        tick.tick().await;
        if let Err(e) = state.caches.gpus.refresh(state.store.as_ref()).await {
            tracing::warn!(error = %chain(&e), "could not refresh the GPU registry; keeping the last one");
        }
    }
}

/// Looks `found` up in memory; on a miss, refreshes once (see the module docs) and
/// looks again.
async fn lookup<T>(state: &AppState, found: impl Fn(&GpuCatalogue) -> Option<T>) -> StoreResult<Option<T>> {
    if let Some(v) = found(&state.caches.gpus) {
        return Ok(Some(v));
    }
    if state.caches.gpus.refresh_after_miss(state.store.as_ref(), Instant::now()).await? {
        return Ok(found(&state.caches.gpus));
    }
    Ok(None)
}

/// The registry's verdict on a job's GPU requirement: a 400 entry for a `gpu_name`
/// or `gpu_registry_uuid` the registry does not know. Shape problems (both fields
/// given, a uuid that is not a UUID) are left to request validation.
pub async fn job_gpu_errors(
    state: &AppState,
    gpu_name: Option<&str>,
    gpu_registry_uuid: Option<&str>,
) -> StoreResult<Vec<FieldError>> {
    let (name, uuid) = (gpu_name.filter(|s| !s.is_empty()), gpu_registry_uuid.filter(|s| !s.is_empty()));
    let mut errors = Vec::new();
    if let (Some(name), None) = (name, uuid)
        && lookup(state, |c| c.resolve(name)).await?.is_none()
    {
        errors.push(FieldError::new(
            "gpu_name",
            format!("unknown GPU model {name:?}: see GET /v1/gpu-registry for the names this server knows"),
        ));
    }
    if let (None, Some(text)) = (name, uuid)
        && let Ok(id) = text.parse::<GpuModelId>()
        && lookup(state, |c| c.contains(id).then_some(())).await?.is_none()
    {
        errors.push(FieldError::new(
            "gpu_registry_uuid",
            format!("unknown GPU registry uuid {text:?}: see GET /v1/gpu-registry for the models this server knows"),
        ));
    }
    Ok(errors)
}

/// Refuses a job whose GPU requirement names no registered model (400), so it
/// cannot wait forever for a GPU that does not exist. The job itself is stored as
/// the client sent it; the scheduler resolves the name through the registry.
pub async fn check_job(state: &AppState, spec: &JobSpec) -> Result<(), AppError> {
    let errors = job_gpu_errors(state, spec.gpu_name.as_deref(), spec.gpu_registry_uuid.as_deref()).await?;
    if errors.is_empty() { Ok(()) } else { Err(AppError::Validation(errors)) }
}

/// One page of the registry, filtered, in `paging`'s order.
pub async fn list(state: &AppState, filter: &GpuModelFilter, paging: Paging) -> Result<Page<GpuModel>, AppError> {
    let snapshot = state.caches.gpus.snapshot();
    let available = if filter.only_available { Some(online_models(state).await?) } else { None };
    let matching: Vec<&GpuModel> = snapshot
        .models()
        .iter()
        .filter(|m| filter.matches(m) && available.as_ref().is_none_or(|a| a.contains(&m.uuid)))
        .collect();
    let total = matching.len() as u64;
    let offset = usize::try_from(paging.offset()).unwrap_or(usize::MAX);
    let limit = paging.limit as usize;
    let items: Vec<GpuModel> = if paging.newest_first {
        matching.into_iter().rev().skip(offset).take(limit).cloned().collect()
    } else {
        matching.into_iter().skip(offset).take(limit).cloned().collect()
    };
    Ok(Page { items, total })
}

/// One model; 404 when no model has this uuid.
pub async fn fetch(state: &AppState, id: GpuModelId) -> Result<GpuModel, AppError> {
    lookup(state, |c| c.snapshot().by_id(id).cloned()).await?.ok_or_else(|| AppError::not_found("GPU model", id))
}

/// Adds an operator's model: 409 when its name already names a model, 400 naming
/// each alias that does. Refreshes this server's registry at once.
pub async fn create(state: &AppState, spec: GpuModelSpec) -> Result<GpuModel, AppError> {
    // Check against the database's registry, not a possibly older snapshot.
    state.caches.gpus.refresh(state.store.as_ref()).await?;
    match find_clashes(state.caches.gpus.snapshot().models(), &spec) {
        Some(RegistryClash::Name { existing, existing_name }) => {
            return Err(AppError::Conflict {
                what: format!("GPU model named {:?} (as {existing_name:?}, uuid {existing})", spec.name),
            });
        }
        Some(RegistryClash::Aliases(errors)) => return Err(AppError::Validation(errors)),
        None => {}
    }
    let model = spec.into_model(GpuModelId::new(), now_ms());
    state.store.gpu_model_create(&model).await?;
    state.caches.gpus.refresh(state.store.as_ref()).await?;
    Ok(model)
}
