//! Deployment settings on PostgreSQL.

use async_trait::async_trait;

use super::{PgStore, db};
use crate::StoreResult;
use crate::deployment::DeploymentStore;

#[async_trait]
impl DeploymentStore for PgStore {
    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> StoreResult<String> {
        // RETURNING is empty when another instance's row was there first; that row is
        // committed (ON CONFLICT waited for it), so the read below sees it.
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO deployment_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value",
        )
        .bind(name)
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("setting insert"))?;
        if let Some(value) = inserted {
            self.wrote();
            return Ok(value);
        }
        let existing = self.setting_fetch(name).await?;
        existing.ok_or(crate::StoreError::Database {
            during: "setting insert",
            source: "the setting conflicted on insert but cannot be read".into(),
        })
    }

    async fn setting_fetch(&self, name: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM deployment_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("setting fetch"))
    }
}
