//! Deployment settings on PostgreSQL, and the leader lease.

use std::time::Duration;

use async_trait::async_trait;

use super::{PgStore, db};
use crate::StoreResult;
use crate::deployment::{DeploymentStore, Leadership};
use crate::fence::Fence;

/// How long a renewal of the lease may take before the leader assumes it lost it.
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

    async fn try_lead(&self, instance: &str, ttl: Duration) -> StoreResult<Option<Box<dyn Leadership>>> {
        // Taken when expired (by database time), or again by its own holder (after it
        // stepped down on a failed renewal), always with the next epoch: whatever the
        // loops of an earlier hold still try to write is fenced out. A fenced write in
        // flight holds the row FOR KEY SHARE; FOR UPDATE waits for it (briefly: the
        // lock timeout; the next try comes a second later), so no fenced write can
        // commit after the epoch moved.
        //
        // A plain read first: while the lease is held and unexpired (nearly every try
        // of a follower), nothing is locked, so followers polling often cost the
        // leader's fenced writes no waits. The locked UPDATE below decides.
        let free: Option<bool> =
            sqlx::query_scalar("SELECT expires_at <= now() OR holder = $1 FROM leader_lease WHERE id = 1")
                .bind(instance)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("leader lease"))?;
        if free == Some(false) {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(db("leader lease"))?;
        sqlx::query("SET LOCAL lock_timeout = '1s'").execute(&mut *tx).await.map_err(db("leader lease"))?;
        sqlx::query("SELECT 1 FROM leader_lease WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await
            .map_err(db("leader lease"))?;
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE leader_lease SET holder = $1, epoch = epoch + 1, \
             expires_at = now() + make_interval(secs => $2) \
             WHERE id = 1 AND (expires_at <= now() OR holder = $1) RETURNING epoch",
        )
        .bind(instance)
        .bind(ttl.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("leader lease"))?;
        tx.commit().await.map_err(db("leader lease"))?;
        Ok(epoch.map(|epoch| {
            self.wrote();
            Box::new(PgLeadership { pool: self.pool.clone(), instance: instance.to_string(), epoch, ttl, lost: false })
                as Box<dyn Leadership>
        }))
    }
}

/// A held lease: renewed by [`Leadership::still_leading`], expired at once when
/// dropped (a clean shutdown or step-down hands over without waiting for the TTL).
struct PgLeadership {
    pool: sqlx::PgPool,
    instance: String,
    epoch: i64,
    ttl: Duration,
    lost: bool,
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn still_leading(&mut self) -> bool {
        if self.lost {
            return false;
        }
        // Renewed only while unexpired: a leader that was paused past its lease has
        // lost it even if nobody took over yet (its loops' state is stale).
        let renew = sqlx::query(
            "UPDATE leader_lease SET expires_at = now() + make_interval(secs => $3) \
             WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > now()",
        )
        .bind(&self.instance)
        .bind(self.epoch)
        .bind(self.ttl.as_secs_f64())
        .execute(&self.pool);
        self.lost = !matches!(tokio::time::timeout(CHECK_TIMEOUT, renew).await, Ok(Ok(r)) if r.rows_affected() == 1);
        !self.lost
    }

    fn fence(&self) -> Fence {
        Fence { epoch: self.epoch }
    }
}

impl Drop for PgLeadership {
    fn drop(&mut self) {
        if self.lost {
            return;
        }
        let (pool, instance, epoch) = (self.pool.clone(), self.instance.clone(), self.epoch);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = sqlx::query(
                    "UPDATE leader_lease SET expires_at = now() WHERE id = 1 AND holder = $1 AND epoch = $2",
                )
                .bind(instance)
                .bind(epoch)
                .execute(&pool)
                .await;
            });
        }
    }
}
