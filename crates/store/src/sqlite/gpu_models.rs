//! The GPU registry on SQLite: writes go through the group-commit writer like every
//! other write; reads use the reader pool.

use gantry_types::GpuModelId;
use gantry_types::gpu::GpuModel;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{db, write_error};
use crate::StoreResult;
use crate::gpu_models::{GPU_MODEL_COLUMNS, GpuModelRow, subject};

fn insert_sql(on_conflict: &str) -> String {
    format!("INSERT INTO gpu_models ({GPU_MODEL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8){on_conflict}")
}

fn insert(conn: &Connection, sql: &str, r: &GpuModelRow) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql).and_then(|mut s| {
        s.execute(params![
            r.uuid,
            r.name,
            r.vendor,
            r.vram_gb,
            r.aliases,
            r.is_official,
            r.created_at_ms,
            r.updated_at_ms
        ])
    })
}

fn row(r: &Row<'_>) -> rusqlite::Result<GpuModelRow> {
    Ok(GpuModelRow {
        uuid: r.get(0)?,
        name: r.get(1)?,
        vendor: r.get(2)?,
        vram_gb: r.get(3)?,
        aliases: r.get(4)?,
        is_official: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
    })
}

pub(super) async fn upsert_seed(store: &SqliteStore, models: &[GpuModel]) -> StoreResult<u64> {
    let rows: Vec<GpuModelRow> = models.iter().map(GpuModelRow::new).collect();
    store
        .writer
        .write(move |conn| {
            // Without a conflict target, DO NOTHING covers the uuid and the name: a row
            // an operator created or changed is never overwritten. One op, so the
            // whole catalogue commits together.
            let sql = insert_sql(" ON CONFLICT DO NOTHING");
            let mut inserted = 0;
            for r in &rows {
                inserted += insert(conn, &sql, r).map_err(db("gpu model seed"))? as u64;
            }
            Ok(inserted)
        })
        .await
}

pub(super) async fn create(store: &SqliteStore, model: &GpuModel) -> StoreResult<()> {
    let r = GpuModelRow::new(model);
    let model = model.clone();
    store
        .writer
        .write(move |conn| {
            insert(conn, &insert_sql(""), &r).map(drop).map_err(write_error("gpu model create", || subject(&model)))
        })
        .await
}

pub(super) async fn list(store: &SqliteStore) -> StoreResult<Vec<GpuModel>> {
    store
        .read(|conn| {
            let sql = format!("SELECT {GPU_MODEL_COLUMNS} FROM gpu_models ORDER BY created_at_ms, uuid");
            let rows = conn
                .prepare_cached(&sql)
                .and_then(|mut s| s.query_map([], row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db("gpu model list"))?;
            rows.into_iter().map(GpuModelRow::into_model).collect()
        })
        .await
}

pub(super) async fn fetch(store: &SqliteStore, id: GpuModelId) -> StoreResult<Option<GpuModel>> {
    store
        .read(move |conn| {
            let sql = format!("SELECT {GPU_MODEL_COLUMNS} FROM gpu_models WHERE uuid = ?1");
            let found = conn
                .prepare_cached(&sql)
                .and_then(|mut s| s.query_row([id.to_string()], row).optional())
                .map_err(db("gpu model fetch"))?;
            found.map(GpuModelRow::into_model).transpose()
        })
        .await
}
