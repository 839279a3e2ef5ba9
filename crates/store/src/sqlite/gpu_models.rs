//! The GPU registry on SQLite: writes go through the group-commit writer like every
//! other write; reads use the reader pool.

use async_trait::async_trait;
use gantry_types::GpuModelId;
use gantry_types::gpu::GpuModel;

use super::SqliteStore;
use super::rows::{self, db, write_error};
use crate::StoreResult;
use crate::gpu_models::{GpuModelRow, GpuModelStore, subject};
use crate::sql::Placeholders;
use crate::sql::row::Columns;

fn insert_sql(on_conflict: &str) -> String {
    crate::sql::row::insert_sql::<GpuModelRow>(Placeholders::Question, on_conflict)
}

#[async_trait]
impl GpuModelStore for SqliteStore {
    async fn gpu_model_upsert_seed(&self, models: &[GpuModel]) -> StoreResult<u64> {
        let rows: Vec<GpuModelRow> = models.iter().map(GpuModelRow::new).collect();
        self.writer
            .write(move |conn| {
                // Without a conflict target, DO NOTHING covers the uuid and the name: a row
                // an operator created or changed is never overwritten. One op, so the
                // whole catalogue commits together.
                let sql = insert_sql(" ON CONFLICT DO NOTHING");
                let mut inserted = 0;
                for r in &rows {
                    inserted += rows::insert(conn, &sql, r).map_err(db("gpu model seed"))? as u64;
                }
                Ok(inserted)
            })
            .await
    }

    async fn gpu_model_create(&self, model: &GpuModel) -> StoreResult<()> {
        let r = GpuModelRow::new(model);
        let model = model.clone();
        self.writer
            .write(move |conn| {
                rows::insert(conn, &insert_sql(""), &r)
                    .map(drop)
                    .map_err(write_error("gpu model create", || subject(&model)))
            })
            .await
    }

    async fn gpu_model_list(&self) -> StoreResult<Vec<GpuModel>> {
        self.read(|conn| {
            let sql = format!("SELECT {} FROM gpu_models ORDER BY created_at_ms, uuid", GpuModelRow::LIST);
            rows::all::<GpuModelRow>(conn, &sql, [], "gpu model list")
        })
        .await
    }

    async fn gpu_model_fetch(&self, id: GpuModelId) -> StoreResult<Option<GpuModel>> {
        self.read(move |conn| {
            let sql = format!("SELECT {} FROM gpu_models WHERE uuid = ?1", GpuModelRow::LIST);
            rows::one::<GpuModelRow>(conn, &sql, [id.to_string()], "gpu model fetch")
        })
        .await
    }
}
