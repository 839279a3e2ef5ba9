//! The GPU registry (the `gpu_models` table of migration 0002): its store trait, the
//! row both backends read and write, and how a clash is worded.

use async_trait::async_trait;
use gantry_types::gpu::{GpuModel, OBJECT};
use gantry_types::{GpuModelId, Timestamp};

use crate::sql::row::IntoRecord;
use crate::sql::row::row;
use crate::sql::{Subject, json_list};
use crate::{StoreError, StoreResult};

row! {
    /// A model as stored.
    #[derive(Clone, Debug)]
    pub(crate) struct GpuModelRow in "gpu_models" (read, write) {
        uuid: String,
        name: String,
        vendor: String,
        vram_gb: f64,
        aliases: String,
        is_official: bool,
        created_at_ms: i64,
        updated_at_ms: i64,
    }
}

impl GpuModelRow {
    /// The columns of `model`.
    pub fn new(model: &GpuModel) -> Self {
        Self {
            uuid: model.uuid.to_string(),
            name: model.name.clone(),
            vendor: model.vendor.clone(),
            vram_gb: model.vram_gb,
            aliases: json_list(&model.aliases),
            is_official: model.is_official,
            created_at_ms: model.created_at.0,
            updated_at_ms: model.updated_at.0,
        }
    }
}

impl IntoRecord for GpuModelRow {
    type Record = GpuModel;

    /// Parses the uuid and the alias list.
    fn into_record(self) -> StoreResult<GpuModel> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "gpu_models", detail };
        let uuid = self.uuid.parse::<GpuModelId>().map_err(|e| corrupt(format!("bad uuid {:?}: {e}", self.uuid)))?;
        let aliases = serde_json::from_str(&self.aliases)
            .map_err(|e| corrupt(format!("aliases of GPU model {uuid} are not a JSON string list: {e}")))?;
        Ok(GpuModel {
            object: OBJECT.into(),
            uuid,
            name: self.name,
            vendor: self.vendor,
            vram_gb: self.vram_gb,
            aliases,
            is_official: self.is_official,
            created_at: Timestamp(self.created_at_ms),
            updated_at: Timestamp(self.updated_at_ms),
        })
    }
}

/// What a model insert is about, for `Conflict` messages.
pub(crate) fn subject(model: &GpuModel) -> Subject {
    Subject {
        row: format!("GPU model {}", model.uuid),
        unique: Some(format!("GPU model named {:?}", model.name)),
        reference: None,
    }
}

/// The GPU registry in the store.
#[async_trait]
pub trait GpuModelStore {
    /// Inserts the models of the seeded catalogue that are missing. A row with the
    /// same uuid or name is left as it is, so an operator's addition or change is
    /// never overwritten; servers seeding at once are safe. Returns the rows inserted.
    async fn gpu_model_upsert_seed(&self, models: &[GpuModel]) -> StoreResult<u64>;
    /// Creates a model; `Conflict` on a duplicate uuid or name.
    async fn gpu_model_create(&self, model: &GpuModel) -> StoreResult<()>;
    /// Every model, ordered by (created_at, uuid). The registry is small: callers
    /// keep it in memory and filter there.
    async fn gpu_model_list(&self) -> StoreResult<Vec<GpuModel>>;
    /// One model.
    async fn gpu_model_fetch(&self, id: GpuModelId) -> StoreResult<Option<GpuModel>>;
}
