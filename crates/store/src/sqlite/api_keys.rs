//! API keys on SQLite.

use async_trait::async_trait;
use gantry_types::list::{ApiKeyFilter, Paging};
use gantry_types::{AccountId, ApiKeyId};
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::rows::{self, db, write_error};
use crate::api_keys::{ApiKeyRecord, ApiKeyRow, ApiKeyStore};
use crate::sql::row::insert_sql;
use crate::sql::{self, API_KEY_COLUMNS, Placeholders, Subject};
use crate::{Page, StoreResult};

/// Reads one API key by a WHERE clause on `?1` (and an optional scope on `?2`).
fn key_where(conn: &Connection, condition: &str, params: impl rusqlite::Params) -> StoreResult<Option<ApiKeyRecord>> {
    let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {condition}");
    rows::one::<ApiKeyRow>(conn, &sql, params, "api key read")
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn api_key_create(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let row = ApiKeyRow::new(key);
        let k = key.clone();
        self.writer
            .write(move |conn| {
                rows::insert(conn, &insert_sql::<ApiKeyRow>(Placeholders::Question, ""), &row)
                    .map(drop)
                    .map_err(write_error("api key create", || Subject::api_key(&k)))
            })
            .await
    }

    async fn api_key_fetch_by_public_key(&self, public_key: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let public_key = public_key.to_owned();
        self.read(move |conn| key_where(conn, "public_key = ?1", [public_key])).await
    }

    async fn api_key_list(
        &self,
        account: Option<AccountId>,
        filter: &ApiKeyFilter,
        paging: Paging,
    ) -> StoreResult<Page<ApiKeyRecord>> {
        let query = sql::api_key_list(Placeholders::Question, account, filter, paging);
        self.read(move |conn| rows::page::<ApiKeyRow>(conn, &query, "api key list")).await
    }

    async fn api_key_revoke(
        &self,
        account: Option<AccountId>,
        id: ApiKeyId,
        now_ms: i64,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.writer
            .write(move |conn| {
                // Only a live key changes, so revoking twice keeps the first revocation time.
                conn.prepare_cached(
                    "UPDATE api_keys SET is_revoked = 1, deleted_at_ms = ?2, updated_at_ms = ?2 \
                     WHERE uuid = ?1 AND is_revoked = 0 AND (?3 IS NULL OR account_uuid = ?3)",
                )
                .and_then(|mut s| s.execute(params![id, now_ms, scope]))
                .map_err(db("api key revoke"))?;
                key_where(conn, "uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)", params![id, scope])
            })
            .await
    }

    async fn api_key_touch(&self, uses: &[(ApiKeyId, i64)]) -> StoreResult<()> {
        // Only the latest use per key matters.
        let latest = sql::latest_use_per_key(uses);
        if latest.is_empty() {
            return Ok(());
        }
        self.writer
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at_ms = ?2 \
                         WHERE uuid = ?1 AND (last_used_at_ms IS NULL OR last_used_at_ms < ?2)",
                    )
                    .map_err(db("api key touch"))?;
                for (id, at) in latest {
                    stmt.execute(params![id.to_string(), at]).map_err(db("api key touch"))?;
                }
                Ok(())
            })
            .await
    }
}
