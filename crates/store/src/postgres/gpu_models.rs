//! The GPU registry on PostgreSQL.

use gantry_types::GpuModelId;
use gantry_types::gpu::GpuModel;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::{PgStore, db, write_error};
use crate::StoreResult;
use crate::gpu_models::{GPU_MODEL_COLUMNS, GpuModelRow, subject};

fn model(row: &PgRow) -> StoreResult<GpuModel> {
    let get = || -> Result<GpuModelRow, sqlx::Error> {
        Ok(GpuModelRow {
            uuid: row.try_get(0)?,
            name: row.try_get(1)?,
            vendor: row.try_get(2)?,
            vram_gb: row.try_get(3)?,
            aliases: row.try_get(4)?,
            is_official: row.try_get(5)?,
            created_at_ms: row.try_get(6)?,
            updated_at_ms: row.try_get(7)?,
        })
    };
    get().map_err(db("reading a GPU model row"))?.into_model()
}

pub(super) async fn upsert_seed(store: &PgStore, models: &[GpuModel]) -> StoreResult<u64> {
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
        .execute(&store.pool)
        .await
        .map_err(db("gpu model seed"))?;
    store.wrote();
    Ok(done.rows_affected())
}

pub(super) async fn create(store: &PgStore, m: &GpuModel) -> StoreResult<()> {
    let r = GpuModelRow::new(m);
    let sql = format!("INSERT INTO gpu_models ({GPU_MODEL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
    sqlx::query(AssertSqlSafe(sql))
        .bind(r.uuid)
        .bind(r.name)
        .bind(r.vendor)
        .bind(r.vram_gb)
        .bind(r.aliases)
        .bind(r.is_official)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .execute(&store.pool)
        .await
        .map_err(write_error("gpu model create", || subject(m)))?;
    store.wrote();
    Ok(())
}

pub(super) async fn list(store: &PgStore) -> StoreResult<Vec<GpuModel>> {
    let sql = format!("SELECT {GPU_MODEL_COLUMNS} FROM gpu_models ORDER BY created_at_ms, uuid");
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&store.pool).await.map_err(db("gpu model list"))?;
    rows.iter().map(model).collect()
}

pub(super) async fn fetch(store: &PgStore, id: GpuModelId) -> StoreResult<Option<GpuModel>> {
    let sql = format!("SELECT {GPU_MODEL_COLUMNS} FROM gpu_models WHERE uuid = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await
        .map_err(db("gpu model fetch"))?;
    row.as_ref().map(model).transpose()
}
