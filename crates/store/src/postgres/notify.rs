//! Notifications on PostgreSQL: `pg_notify` to send, one `PgListener` connection
//! (taken from the pool) to receive, forwarded to a channel by a task.

use async_trait::async_trait;
use sqlx::postgres::PgListener;

use super::{PgStore, db};
use crate::StoreResult;
use crate::notify::{MAX_PAYLOAD, Notice, NotifyStore, Topic, notice};

/// Notices a slow consumer may fall behind by before the listener waits for it.
const BUFFER: usize = 4096;

#[async_trait]
impl NotifyStore for PgStore {
    async fn notify(&self, topic: Topic, payload: &str) -> StoreResult<()> {
        debug_assert!(payload.len() <= MAX_PAYLOAD, "callers split payloads");
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(topic.channel())
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(db("notify"))?;
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Notice>>> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db("listen"))?;
        let channels: Vec<&str> = Topic::ALL.iter().map(|t| t.channel()).collect();
        listener.listen_all(channels).await.map_err(db("listen"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(BUFFER);
        tokio::spawn(async move {
            loop {
                let next = match listener.try_recv().await {
                    Ok(Some(n)) => notice(n.channel(), n.payload()),
                    // Reconnected (sqlx re-listens): what was sent meanwhile is lost.
                    Ok(None) => Some(Notice::Resync),
                    // The pool closed (shutdown) or cannot connect: stop; the
                    // consumer's timers carry on without hints.
                    Err(e) => {
                        tracing::warn!(error = %e, "database notifications stopped");
                        return;
                    }
                };
                if let Some(next) = next
                    && tx.send(next).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }
}
