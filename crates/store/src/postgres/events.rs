//! The event log on PostgreSQL: appends run inside the transactions that cause them,
//! taking [`crate::events::PG_EVENTS_LOCK`] in the insert itself (held through
//! COMMIT, so ids become visible in order; see `crate::events`); reads are plain
//! queries.

use async_trait::async_trait;
use gantry_types::AccountId;
use gantry_types::event::{Event, EventType};
use sqlx::{AssertSqlSafe, PgConnection};

use super::{PgStore, db, record};
use crate::StoreResult;
use crate::events::{EVENT_SELECT, EventHorizon, EventRow, EventStore, NewEventRow, id_and_type, type_names};

/// Appends `events` inside the caller's transaction, after taking the event lock
/// (call it last, just before COMMIT, to hold the lock briefly); the newest id
/// (0 when `events` is empty). Publish it with [`PgStore::published`] after COMMIT.
/// One statement for all of them, lock included: the lock is held for every round
/// trip made under it, and a placement write appended two events per job one by one
/// (a chunk of 256 jobs: 512 round trips that every other event writer waited for).
pub(super) async fn append(tx: &mut PgConnection, events: &[NewEventRow]) -> StoreResult<i64> {
    let all: Vec<&NewEventRow> = events.iter().collect();
    append_json(tx, &all).await.map_err(db("event append"))
}

/// [`append`] for borrowed rows: one statement (`job_batch::INSERT_EVENTS`) that
/// takes the lock and inserts them from one JSON array, answering the newest id.
pub(super) async fn append_json(tx: &mut PgConnection, events: &[&NewEventRow]) -> Result<i64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(events).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query_scalar(super::job_batch::INSERT_EVENTS.as_str()).bind(json).fetch_one(&mut *tx).await
}

impl PgStore {
    /// Tells this process's event readers that events up to `id` committed.
    pub(super) fn published(&self, id: i64) {
        super::job_batch::publish(&self.events, id);
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn event_list(
        &self,
        account: Option<AccountId>,
        after: i64,
        types: &[EventType],
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let sql = format!(
            "SELECT {EVENT_SELECT} FROM events WHERE id > $1 AND ($2::text IS NULL OR account_uuid = $2) \
             AND ($3::text[] IS NULL OR event_type = ANY($3)) ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(account.map(|a| a.to_string()))
            .bind(type_names(types))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("event list"))?;
        rows.iter().map(record::<EventRow>).collect()
    }

    async fn event_list_types(&self, after: i64, limit: u32) -> StoreResult<Vec<(i64, EventType)>> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, event_type FROM events WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db("event list types"))?;
        rows.iter().map(|(id, name)| id_and_type(*id, name)).collect()
    }

    async fn event_horizon(&self) -> StoreResult<EventHorizon> {
        // The sequence's last value, not MAX(id): retention may have emptied the table.
        let (pruned_through, last_id): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT pruned_through FROM event_log_state), \
             COALESCE((SELECT last_value FROM events_id_seq WHERE is_called), 0)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db("event horizon"))?;
        Ok(EventHorizon { pruned_through, last_id })
    }

    async fn event_prune(&self, before_ms: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(db("event prune"))?;
        // Like SQLite, the newest event is kept (one rule for both backends).
        let through: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(id) FROM events WHERE created_at_ms < $1 AND id < (SELECT MAX(id) FROM events)",
        )
        .bind(before_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("event prune"))?;
        let Some(through) = through else {
            return Ok(0);
        };
        let deleted = sqlx::query("DELETE FROM events WHERE id <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(db("event prune"))?
            .rows_affected();
        sqlx::query("UPDATE event_log_state SET pruned_through = GREATEST(pruned_through, $1)")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(db("event prune"))?;
        tx.commit().await.map_err(db("event prune"))?;
        self.wrote();
        Ok(deleted)
    }

    fn event_watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.events.subscribe()
    }
}
