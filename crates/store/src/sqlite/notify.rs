//! Notifications on SQLite: one instance owns the file, so there is nobody to tell.

use async_trait::async_trait;

use super::SqliteStore;
use crate::StoreResult;
use crate::notify::{Notice, NotifyStore, Topic};

#[async_trait]
impl NotifyStore for SqliteStore {
    async fn notify(&self, _topic: Topic, _payload: &str) -> StoreResult<()> {
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Notice>>> {
        Ok(None)
    }
}
