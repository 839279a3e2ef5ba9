//! Job recipes on SQLite: writes through the group-commit writer, reads from the
//! reader pool (see `crate::recipes` for the shared SQL and the visibility rule).

use async_trait::async_trait;
use gantry_types::list::Paging;
use gantry_types::recipe::RecipeFilter;
use gantry_types::{AccountId, RecipeId};
use rusqlite::params;

use super::SqliteStore;
use super::rows::{self, db, write_error};
use crate::recipes::{self, RecipeRecord, RecipeRow, RecipeStore, RecipeViewer};
use crate::sql::{self, Placeholders};
use crate::{Page, StoreResult};

const Q: Placeholders = Placeholders::Question;

#[async_trait]
impl RecipeStore for SqliteStore {
    async fn recipe_upsert_seed(&self, recipes: &[RecipeRecord]) -> StoreResult<u64> {
        let rows = recipes.iter().map(RecipeRow::new).collect::<StoreResult<Vec<_>>>()?;
        self.writer
            .write(move |conn| {
                // One op, so the seeds commit together; an existing uuid is left alone.
                let sql = recipes::insert_sql(Q, " ON CONFLICT DO NOTHING");
                let mut inserted = 0;
                for r in &rows {
                    inserted += rows::insert(conn, &sql, r).map_err(db("recipe seed"))? as u64;
                }
                Ok(inserted)
            })
            .await
    }

    async fn recipe_create(&self, recipe: &RecipeRecord) -> StoreResult<()> {
        let r = RecipeRow::new(recipe)?;
        let recipe = recipe.clone();
        self.writer
            .write(move |conn| {
                rows::insert(conn, &recipes::insert_sql(Q, ""), &r)
                    .map(drop)
                    .map_err(write_error("recipe create", || recipes::subject(&recipe)))
            })
            .await
    }

    async fn recipe_fetch(&self, viewer: RecipeViewer, id: RecipeId) -> StoreResult<Option<RecipeRecord>> {
        let scope = (!viewer.sees_all).then(|| viewer.account.to_string());
        self.read(move |conn| {
            rows::one::<RecipeRow>(conn, &recipes::fetch_sql(Q), params![id.to_string(), scope], "recipe fetch")
        })
        .await
    }

    async fn recipe_list(
        &self,
        viewer: RecipeViewer,
        filter: &RecipeFilter,
        paging: Paging,
    ) -> StoreResult<Page<RecipeRecord>> {
        let query = sql::recipe_list(Q, viewer, filter, paging);
        self.read(move |conn| rows::page::<RecipeRow>(conn, &query, "recipe list")).await
    }

    async fn recipe_update(&self, owner: Option<AccountId>, recipe: &RecipeRecord, expected: i64) -> StoreResult<bool> {
        let r = RecipeRow::new(recipe)?;
        let scope = owner.map(|a| a.to_string());
        self.writer
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

    async fn recipe_delete(&self, owner: Option<AccountId>, id: RecipeId) -> StoreResult<bool> {
        let (id, scope) = (id.to_string(), owner.map(|a| a.to_string()));
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(&recipes::delete_sql(Q))
                    .and_then(|mut s| s.execute(params![id, scope]))
                    .map_err(db("recipe delete"))?;
                Ok(n == 1)
            })
            .await
    }

    async fn recipe_touch(&self, id: RecipeId, now_ms: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(&recipes::touch_sql(Q))
                    .and_then(|mut s| s.execute(params![id, now_ms]))
                    .map(drop)
                    .map_err(db("recipe touch"))
            })
            .await
    }
}
