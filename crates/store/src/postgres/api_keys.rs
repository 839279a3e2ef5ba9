//! API keys on PostgreSQL.

use async_trait::async_trait;
use gantry_types::list::{ApiKeyFilter, Paging};
use gantry_types::{AccountId, ApiKeyId};
use sqlx::AssertSqlSafe;

use super::{PgStore, db, insert, record, write_error};
use crate::api_keys::{ApiKeyRecord, ApiKeyRow, ApiKeyStore};
use crate::sql::row::insert_sql;
use crate::sql::{self, API_KEY_COLUMNS, Placeholders, Subject};
use crate::{Page, StoreResult};

impl PgStore {
    /// One key by `condition` on `$1` (and `$2`, when the condition uses it).
    async fn api_key_where(
        &self,
        condition: &'static str,
        first: String,
        second: Option<Option<String>>,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {condition}");
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(first);
        if let Some(second) = second {
            query = query.bind(second);
        }
        let row = query.fetch_optional(&self.pool).await.map_err(db("api key read"))?;
        row.as_ref().map(record::<ApiKeyRow>).transpose()
    }
}

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn api_key_create(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        insert(insert_sql::<ApiKeyRow>(Placeholders::Dollar, ""), ApiKeyRow::new(key))
            .execute(&self.pool)
            .await
            .map_err(write_error("api key create", || Subject::api_key(key)))?;
        self.wrote();
        Ok(())
    }

    async fn api_key_fetch_by_public_key(&self, public_key: &str) -> StoreResult<Option<ApiKeyRecord>> {
        self.api_key_where("public_key = $1", public_key.to_owned(), None).await
    }

    async fn api_key_list(
        &self,
        account: Option<AccountId>,
        filter: &ApiKeyFilter,
        paging: Paging,
    ) -> StoreResult<Page<ApiKeyRecord>> {
        let query = sql::api_key_list(Placeholders::Dollar, account, filter, paging);
        self.list(query, "api key list", record::<ApiKeyRow>).await
    }

    async fn api_key_revoke(
        &self,
        account: Option<AccountId>,
        id: ApiKeyId,
        now_ms: i64,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        // Only a live key changes, so revoking twice keeps the first revocation time.
        // The follow-up read needs no transaction: a key never becomes un-revoked.
        sqlx::query(
            "UPDATE api_keys SET is_revoked = TRUE, deleted_at_ms = $2, updated_at_ms = $2 \
             WHERE uuid = $1 AND NOT is_revoked AND ($3::text IS NULL OR account_uuid = $3)",
        )
        .bind(&id)
        .bind(now_ms)
        .bind(&scope)
        .execute(&self.pool)
        .await
        .map_err(db("api key revoke"))?;
        self.wrote();
        self.api_key_where("uuid = $1 AND ($2::text IS NULL OR account_uuid = $2)", id, Some(scope)).await
    }

    async fn api_key_touch(&self, uses: &[(ApiKeyId, i64)]) -> StoreResult<()> {
        // Only the latest use per key matters; one statement updates them all.
        let latest = sql::latest_use_per_key(uses);
        if latest.is_empty() {
            return Ok(());
        }
        let (ids, times): (Vec<String>, Vec<i64>) = latest.into_iter().map(|(id, at)| (id.to_string(), at)).unzip();
        sqlx::query(
            "UPDATE api_keys AS k SET last_used_at_ms = u.at \
             FROM UNNEST($1::text[], $2::bigint[]) AS u(uuid, at) \
             WHERE k.uuid = u.uuid AND (k.last_used_at_ms IS NULL OR k.last_used_at_ms < u.at)",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await
        .map_err(db("api key touch"))?;
        self.wrote();
        Ok(())
    }
}
