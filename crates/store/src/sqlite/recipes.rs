//! Job recipes on SQLite: writes through the group-commit writer, reads from the
//! reader pool (see `crate::recipes` for the shared SQL and the visibility rule).

use gantry_types::list::Paging;
use gantry_types::recipe::RecipeFilter;
use gantry_types::{AccountId, RecipeId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{self, db, write_error};
use crate::recipes::{self, RecipeRecord, RecipeRow, RecipeViewer};
use crate::sql::{self, Placeholders};
use crate::{Page, StoreResult};

const Q: Placeholders = Placeholders::Question;

fn insert(conn: &Connection, sql: &str, r: &RecipeRow) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql).and_then(|mut s| {
        s.execute(params![
            r.uuid,
            r.account_uuid,
            r.name,
            r.visibility,
            r.is_official,
            r.forked_from_recipe_uuid,
            r.created_at_ms,
            r.updated_at_ms,
            r.last_used_at_ms,
            r.body
        ])
    })
}

fn row(r: &Row<'_>) -> rusqlite::Result<RecipeRow> {
    Ok(RecipeRow {
        uuid: r.get(0)?,
        account_uuid: r.get(1)?,
        name: r.get(2)?,
        visibility: r.get(3)?,
        is_official: r.get(4)?,
        forked_from_recipe_uuid: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
        last_used_at_ms: r.get(8)?,
        body: r.get(9)?,
    })
}

pub(super) async fn upsert_seed(store: &SqliteStore, recipes: &[RecipeRecord]) -> StoreResult<u64> {
    let rows = recipes.iter().map(RecipeRow::new).collect::<StoreResult<Vec<_>>>()?;
    store
        .writer
        .write(move |conn| {
            // One op, so the seeds commit together; an existing uuid is left alone.
            let sql = recipes::insert_sql(Q, " ON CONFLICT DO NOTHING");
            let mut inserted = 0;
            for r in &rows {
                inserted += insert(conn, &sql, r).map_err(db("recipe seed"))? as u64;
            }
            Ok(inserted)
        })
        .await
}

pub(super) async fn create(store: &SqliteStore, recipe: &RecipeRecord) -> StoreResult<()> {
    let r = RecipeRow::new(recipe)?;
    let recipe = recipe.clone();
    store
        .writer
        .write(move |conn| {
            insert(conn, &recipes::insert_sql(Q, ""), &r)
                .map(drop)
                .map_err(write_error("recipe create", || recipes::subject(&recipe)))
        })
        .await
}

pub(super) async fn fetch(
    store: &SqliteStore,
    viewer: RecipeViewer,
    id: RecipeId,
) -> StoreResult<Option<RecipeRecord>> {
    let scope = (!viewer.sees_all).then(|| viewer.account.to_string());
    store
        .read(move |conn| {
            let found = conn
                .prepare_cached(&recipes::fetch_sql(Q))
                .and_then(|mut s| s.query_row(params![id.to_string(), scope], row).optional())
                .map_err(db("recipe fetch"))?;
            found.map(RecipeRow::into_record).transpose()
        })
        .await
}

pub(super) async fn list(
    store: &SqliteStore,
    viewer: RecipeViewer,
    filter: &RecipeFilter,
    paging: Paging,
) -> StoreResult<Page<RecipeRecord>> {
    let query = sql::recipe_list(Q, viewer, filter, paging);
    store
        .read(move |conn| {
            let found = rows::list(conn, &query, "recipe list", row)?;
            rows::page(found, RecipeRow::into_record)
        })
        .await
}

pub(super) async fn update(
    store: &SqliteStore,
    owner: Option<AccountId>,
    recipe: &RecipeRecord,
    expected: i64,
) -> StoreResult<bool> {
    let r = RecipeRow::new(recipe)?;
    let scope = owner.map(|a| a.to_string());
    store
        .writer
        .write(move |conn| {
            let changed = conn
                .prepare_cached(&recipes::update_sql(Q))
                .and_then(|mut s| {
                    s.execute(params![
                        r.uuid,
                        expected,
                        scope,
                        r.name,
                        r.visibility,
                        r.is_official,
                        r.updated_at_ms,
                        r.body
                    ])
                })
                .map_err(db("recipe update"))?;
            Ok(changed == 1)
        })
        .await
}

pub(super) async fn delete(store: &SqliteStore, owner: Option<AccountId>, id: RecipeId) -> StoreResult<bool> {
    let (id, scope) = (id.to_string(), owner.map(|a| a.to_string()));
    store
        .writer
        .write(move |conn| {
            let n = conn
                .prepare_cached(&recipes::delete_sql(Q))
                .and_then(|mut s| s.execute(params![id, scope]))
                .map_err(db("recipe delete"))?;
            Ok(n == 1)
        })
        .await
}

pub(super) async fn touch(store: &SqliteStore, id: RecipeId, now_ms: i64) -> StoreResult<()> {
    let id = id.to_string();
    store
        .writer
        .write(move |conn| {
            conn.prepare_cached(&recipes::touch_sql(Q))
                .and_then(|mut s| s.execute(params![id, now_ms]))
                .map(drop)
                .map_err(db("recipe touch"))
        })
        .await
}
