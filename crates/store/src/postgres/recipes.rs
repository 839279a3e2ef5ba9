//! Job recipes on PostgreSQL (see `crate::recipes` for the shared SQL and the
//! visibility rule).

use async_trait::async_trait;
use gantry_types::list::Paging;
use gantry_types::recipe::RecipeFilter;
use gantry_types::{AccountId, RecipeId};
use sqlx::AssertSqlSafe;

use super::{PgStore, db, record, write_error};
use crate::recipes::{self, RecipeRecord, RecipeRow, RecipeStore, RecipeViewer};
use crate::sql::row::ToRow;
use crate::sql::{self, Placeholders};
use crate::{Page, StoreResult};

const D: Placeholders = Placeholders::Dollar;

#[async_trait]
impl RecipeStore for PgStore {
    async fn recipe_upsert_seed(&self, recipes: &[RecipeRecord]) -> StoreResult<u64> {
        let rows = recipes.iter().map(RecipeRow::new).collect::<StoreResult<Vec<_>>>()?;
        // One transaction: the seeds commit together; servers seeding at once are
        // serialized by the primary key (the loser's rows become no-ops).
        let mut tx = self.pool.begin().await.map_err(db("recipe seed"))?;
        let mut inserted = 0;
        for r in rows {
            let q = sqlx::query(AssertSqlSafe(recipes::insert_sql(D, " ON CONFLICT DO NOTHING")));
            inserted += r.bind_pg(q).execute(&mut *tx).await.map_err(db("recipe seed"))?.rows_affected();
        }
        tx.commit().await.map_err(db("recipe seed"))?;
        self.wrote();
        Ok(inserted)
    }

    async fn recipe_create(&self, recipe: &RecipeRecord) -> StoreResult<()> {
        let r = RecipeRow::new(recipe)?;
        r.bind_pg(sqlx::query(AssertSqlSafe(recipes::insert_sql(D, ""))))
            .execute(&self.pool)
            .await
            .map_err(write_error("recipe create", || recipes::subject(recipe)))?;
        self.wrote();
        Ok(())
    }

    async fn recipe_fetch(&self, viewer: RecipeViewer, id: RecipeId) -> StoreResult<Option<RecipeRecord>> {
        let scope = (!viewer.sees_all).then(|| viewer.account.to_string());
        let row = sqlx::query(AssertSqlSafe(recipes::fetch_sql(D)))
            .bind(id.to_string())
            .bind(scope)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("recipe fetch"))?;
        row.as_ref().map(record::<RecipeRow>).transpose()
    }

    async fn recipe_list(
        &self,
        viewer: RecipeViewer,
        filter: &RecipeFilter,
        paging: Paging,
    ) -> StoreResult<Page<RecipeRecord>> {
        self.list(sql::recipe_list(D, viewer, filter, paging), "recipe list", record::<RecipeRow>).await
    }

    async fn recipe_update(&self, owner: Option<AccountId>, recipe: &RecipeRecord, expected: i64) -> StoreResult<bool> {
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
            .execute(&self.pool)
            .await
            .map_err(db("recipe update"))?;
        self.wrote();
        Ok(done.rows_affected() == 1)
    }

    async fn recipe_delete(&self, owner: Option<AccountId>, id: RecipeId) -> StoreResult<bool> {
        let done = sqlx::query(AssertSqlSafe(recipes::delete_sql(D)))
            .bind(id.to_string())
            .bind(owner.map(|a| a.to_string()))
            .execute(&self.pool)
            .await
            .map_err(db("recipe delete"))?;
        self.wrote();
        Ok(done.rows_affected() == 1)
    }

    async fn recipe_touch(&self, id: RecipeId, now_ms: i64) -> StoreResult<()> {
        sqlx::query(AssertSqlSafe(recipes::touch_sql(D)))
            .bind(id.to_string())
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(db("recipe touch"))?;
        self.wrote();
        Ok(())
    }
}
