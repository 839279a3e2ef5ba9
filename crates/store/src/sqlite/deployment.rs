//! Deployment settings on SQLite.

use async_trait::async_trait;
use rusqlite::OptionalExtension;

use super::SqliteStore;
use super::rows::db;
use crate::StoreResult;
use crate::deployment::{DeploymentStore, Leadership, SoleInstance};

#[async_trait]
impl DeploymentStore for SqliteStore {
    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_string(), value.to_string());
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO deployment_settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    [&name, &value],
                )
                .map_err(db("setting insert"))?;
                conn.query_row("SELECT value FROM deployment_settings WHERE name = ?1", [&name], |r| r.get(0))
                    .map_err(db("setting insert"))
            })
            .await
    }

    async fn setting_fetch(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT value FROM deployment_settings WHERE name = ?1", [&name], |r| r.get(0))
                .optional()
                .map_err(db("setting fetch"))
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db("ping"))).await
    }

    async fn try_lead(&self, _instance: &str, _ttl: std::time::Duration) -> StoreResult<Option<Box<dyn Leadership>>> {
        Ok(Some(Box::new(SoleInstance)))
    }
}
