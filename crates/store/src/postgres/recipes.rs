//! Job recipes on PostgreSQL (see `crate::recipes` for the shared SQL and the
//! visibility rule).

use gantry_types::list::Paging;
use gantry_types::recipe::RecipeFilter;
use gantry_types::{AccountId, RecipeId};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::{PgQuery, PgStore, db, write_error};
use crate::recipes::{self, RecipeRecord, RecipeRow, RecipeViewer};
use crate::sql::{self, Placeholders};
use crate::{Page, StoreResult};

const D: Placeholders = Placeholders::Dollar;

fn record(row: &PgRow) -> StoreResult<RecipeRecord> {
    let get = || -> Result<RecipeRow, sqlx::Error> {
        Ok(RecipeRow {
            uuid: row.try_get(0)?,
            account_uuid: row.try_get(1)?,
            name: row.try_get(2)?,
            visibility: row.try_get(3)?,
            is_official: row.try_get(4)?,
            forked_from_recipe_uuid: row.try_get(5)?,
            created_at_ms: row.try_get(6)?,
            updated_at_ms: row.try_get(7)?,
            last_used_at_ms: row.try_get(8)?,
            body: row.try_get(9)?,
        })
    };
    get().map_err(db("reading a recipe row"))?.into_record()
}

fn bind_row(query: PgQuery<'_>, r: RecipeRow) -> PgQuery<'_> {
    query
        .bind(r.uuid)
        .bind(r.account_uuid)
        .bind(r.name)
        .bind(r.visibility)
        .bind(r.is_official)
        .bind(r.forked_from_recipe_uuid)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .bind(r.last_used_at_ms)
        .bind(r.body)
}

pub(super) async fn upsert_seed(store: &PgStore, recipes: &[RecipeRecord]) -> StoreResult<u64> {
    let rows = recipes.iter().map(RecipeRow::new).collect::<StoreResult<Vec<_>>>()?;
    // One transaction: the seeds commit together; servers seeding at once are
    // serialized by the primary key (the loser's rows become no-ops).
    let mut tx = store.pool.begin().await.map_err(db("recipe seed"))?;
    let mut inserted = 0;
    for r in rows {
        let q = sqlx::query(AssertSqlSafe(recipes::insert_sql(D, " ON CONFLICT DO NOTHING")));
        inserted += bind_row(q, r).execute(&mut *tx).await.map_err(db("recipe seed"))?.rows_affected();
    }
    tx.commit().await.map_err(db("recipe seed"))?;
    store.wrote();
    Ok(inserted)
}

pub(super) async fn create(store: &PgStore, recipe: &RecipeRecord) -> StoreResult<()> {
    let r = RecipeRow::new(recipe)?;
    bind_row(sqlx::query(AssertSqlSafe(recipes::insert_sql(D, ""))), r)
        .execute(&store.pool)
        .await
        .map_err(write_error("recipe create", || recipes::subject(recipe)))?;
    store.wrote();
    Ok(())
}

pub(super) async fn fetch(store: &PgStore, viewer: RecipeViewer, id: RecipeId) -> StoreResult<Option<RecipeRecord>> {
    let scope = (!viewer.sees_all).then(|| viewer.account.to_string());
    let row = sqlx::query(AssertSqlSafe(recipes::fetch_sql(D)))
        .bind(id.to_string())
        .bind(scope)
        .fetch_optional(&store.pool)
        .await
        .map_err(db("recipe fetch"))?;
    row.as_ref().map(record).transpose()
}

pub(super) async fn list(
    store: &PgStore,
    viewer: RecipeViewer,
    filter: &RecipeFilter,
    paging: Paging,
) -> StoreResult<Page<RecipeRecord>> {
    store.list(sql::recipe_list(D, viewer, filter, paging), "recipe list", record).await
}

pub(super) async fn update(
    store: &PgStore,
    owner: Option<AccountId>,
    recipe: &RecipeRecord,
    expected: i64,
) -> StoreResult<bool> {
    let r = RecipeRow::new(recipe)?;
    let done = sqlx::query(AssertSqlSafe(recipes::update_sql(D)))
        .bind(r.uuid)
        .bind(expected)
        .bind(owner.map(|a| a.to_string()))
        .bind(r.name)
        .bind(r.visibility)
        .bind(r.is_official)
        .bind(r.updated_at_ms)
        .bind(r.body)
        .execute(&store.pool)
        .await
        .map_err(db("recipe update"))?;
    store.wrote();
    Ok(done.rows_affected() == 1)
}

pub(super) async fn delete(store: &PgStore, owner: Option<AccountId>, id: RecipeId) -> StoreResult<bool> {
    let done = sqlx::query(AssertSqlSafe(recipes::delete_sql(D)))
        .bind(id.to_string())
        .bind(owner.map(|a| a.to_string()))
        .execute(&store.pool)
        .await
        .map_err(db("recipe delete"))?;
    store.wrote();
    Ok(done.rows_affected() == 1)
}

pub(super) async fn touch(store: &PgStore, id: RecipeId, now_ms: i64) -> StoreResult<()> {
    sqlx::query(AssertSqlSafe(recipes::touch_sql(D)))
        .bind(id.to_string())
        .bind(now_ms)
        .execute(&store.pool)
        .await
        .map_err(db("recipe touch"))?;
    store.wrote();
    Ok(())
}
