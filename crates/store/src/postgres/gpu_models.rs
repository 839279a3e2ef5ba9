//! The GPU registry on PostgreSQL.

use async_trait::async_trait;
use gantry_types::GpuModelId;
use gantry_types::gpu::GpuModel;
use sqlx::AssertSqlSafe;

use super::{PgStore, db, insert, record, write_error};
use crate::StoreResult;
use crate::gpu_models::{GpuModelRow, GpuModelStore, subject};
use crate::sql::Placeholders;
use crate::sql::row::{Columns, insert_sql};

/// Columns of a model (see [`GpuModelRow`]).
const GPU_MODEL_COLUMNS: &str = GpuModelRow::LIST;

#[async_trait]
impl GpuModelStore for PgStore {
    async fn gpu_model_upsert_seed(&self, models: &[GpuModel]) -> StoreResult<u64> {
        let rows: Vec<GpuModelRow> = models.iter().map(GpuModelRow::new).collect();
        let column = |f: fn(&GpuModelRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
        // One statement: the catalogue commits as a whole, and servers starting together
        // are serialized by the unique indexes (the loser's rows become no-ops). Without
        // a conflict target, DO NOTHING covers the uuid and the name, so a row an
        // operator created or changed is never overwritten.
        let sql = format!(
            "INSERT INTO gpu_models ({GPU_MODEL_COLUMNS}) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::bool[], \
             $7::bigint[], $8::bigint[]) ON CONFLICT DO NOTHING"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(column(|r| r.uuid.clone()))
            .bind(column(|r| r.name.clone()))
            .bind(column(|r| r.vendor.clone()))
            .bind(rows.iter().map(|r| r.vram_gb).collect::<Vec<f64>>())
            .bind(column(|r| r.aliases.clone()))
            .bind(rows.iter().map(|r| r.is_official).collect::<Vec<bool>>())
            .bind(rows.iter().map(|r| r.created_at_ms).collect::<Vec<i64>>())
            .bind(rows.iter().map(|r| r.updated_at_ms).collect::<Vec<i64>>())
            .execute(&self.pool)
            .await
            .map_err(db("gpu model seed"))?;
        self.wrote();
        Ok(done.rows_affected())
    }

    async fn gpu_model_create(&self, m: &GpuModel) -> StoreResult<()> {
        insert(insert_sql::<GpuModelRow>(Placeholders::Dollar, ""), GpuModelRow::new(m))
            .execute(&self.pool)
            .await
            .map_err(write_error("gpu model create", || subject(m)))?;
        self.wrote();
        Ok(())
    }

    async fn gpu_model_list(&self) -> StoreResult<Vec<GpuModel>> {
        let sql = format!("SELECT {GPU_MODEL_COLUMNS} FROM gpu_models ORDER BY created_at_ms, uuid");
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db("gpu model list"))?;
        rows.iter().map(record::<GpuModelRow>).collect()
    }

    async fn gpu_model_fetch(&self, id: GpuModelId) -> StoreResult<Option<GpuModel>> {
        let sql = format!("SELECT {GPU_MODEL_COLUMNS} FROM gpu_models WHERE uuid = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("gpu model fetch"))?;
        row.as_ref().map(record::<GpuModelRow>).transpose()
    }
}
