//! Deployment settings on PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};

use super::{PgStore, db};
use crate::StoreResult;
use crate::deployment::{DeploymentStore, Leadership};

/// The advisory lock key of the leadership ("gantry" and 1, as a 64-bit number).
const LEADER_LOCK: i64 = 0x6761_6e74_7279_0001;

/// How long a liveness check of the leader's session may take before the leader
/// assumes it lost the lock.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db("ping"))?;
        Ok(())
    }

    async fn try_lead(&self) -> StoreResult<Option<Box<dyn Leadership>>> {
        // A connection of its own, out of the pool: the lock lives as long as it.
        let mut conn = self.pool.acquire().await.map_err(db("leader lock"))?.detach();
        // The database notices a vanished leader within seconds, not the default
        // two hours, and releases its lock.
        for set in ["SET tcp_keepalives_idle = 5", "SET tcp_keepalives_interval = 2", "SET tcp_keepalives_count = 3"] {
            sqlx::query(set).execute(&mut conn).await.map_err(db("leader lock"))?;
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut conn)
            .await
            .map_err(db("leader lock"))?;
        if !got {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(Box::new(PgLeadership { conn: Some(conn) })))
    }
}

/// The session holding the leader lock.
struct PgLeadership {
    conn: Option<PgConnection>,
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn still_leading(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        let check = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = pg_backend_pid() AND (classid::bigint << 32 | objid::bigint) = $1)",
        )
        .bind(LEADER_LOCK)
        .fetch_one(conn);
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(true)) => true,
            _ => {
                // Lost or unsure: close the session so the lock is surely released.
                if let Some(conn) = self.conn.take() {
                    let _ = conn.close().await;
                }
                false
            }
        }
    }
}
