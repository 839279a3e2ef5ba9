//! The GPU registry's rows, shared by both backends (the `gpu_models` table of
//! migration 0002): columns, the row struct each backend reads into, and how a
//! clash is worded.

use gantry_types::gpu::{GpuModel, OBJECT};
use gantry_types::{GpuModelId, Timestamp};

use crate::sql::{Subject, json_list};
use crate::{StoreError, StoreResult};

/// Columns a model is read from and written to, in [`GpuModelRow`]'s order.
pub(crate) const GPU_MODEL_COLUMNS: &str =
    "uuid, name, vendor, vram_gb, aliases, is_official, created_at_ms, updated_at_ms";

/// A model as stored ([`GPU_MODEL_COLUMNS`], in that order).
#[derive(Clone, Debug)]
pub(crate) struct GpuModelRow {
    pub uuid: String,
    pub name: String,
    pub vendor: String,
    pub vram_gb: f64,
    pub aliases: String,
    pub is_official: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
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

    /// Parses the uuid and the alias list.
    pub fn into_model(self) -> StoreResult<GpuModel> {
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
