//! The event log on SQLite: appends run inside the writes that cause them (on the
//! writer thread, so ids follow commit order); reads go through the reader pool.

use std::sync::LazyLock;

use async_trait::async_trait;
use gantry_types::AccountId;
use gantry_types::event::{Event, EventType};
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::rows::{self, db};
use crate::StoreResult;
use crate::events::{EVENT_SELECT, EventHorizon, EventRow, EventStore, NewEventRow, id_and_type, type_names};
use crate::sql::row::insert_sql;
use crate::sql::{self, Placeholders};

/// The insert of an event.
static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql::<NewEventRow>(Placeholders::Question, ""));

/// Appends `event` in the caller's transaction (a writer-thread closure).
pub(super) fn append(conn: &Connection, event: &NewEventRow) -> StoreResult<()> {
    rows::insert(conn, &INSERT, event).map(drop).map_err(db("event append"))
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn event_list(
        &self,
        account: Option<AccountId>,
        after: i64,
        types: &[EventType],
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let scope = account.map(|a| a.to_string());
        let types = type_names(types).map(|t| sql::json_list(&t));
        self.read(move |conn| {
            let sql = format!(
                "SELECT {EVENT_SELECT} FROM events WHERE id > ?1 AND (?2 IS NULL OR account_uuid = ?2) \
                 AND (?3 IS NULL OR event_type IN (SELECT value FROM json_each(?3))) ORDER BY id LIMIT ?4"
            );
            rows::all::<EventRow>(conn, &sql, params![after, scope, types, limit], "event list")
        })
        .await
    }

    async fn event_list_types(&self, after: i64, limit: u32) -> StoreResult<Vec<(i64, EventType)>> {
        let rows: Vec<(i64, String)> = self
            .read(move |conn| {
                conn.prepare_cached("SELECT id, event_type FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
                    .and_then(|mut s| {
                        s.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()
                    })
                    .map_err(db("event list types"))
            })
            .await?;
        rows.iter().map(|(id, name)| id_and_type(*id, name)).collect()
    }

    async fn event_horizon(&self) -> StoreResult<EventHorizon> {
        self.read(|conn| {
            // MAX(id), not a sequence: retention never deletes the newest event.
            conn.prepare_cached(
                "SELECT (SELECT pruned_through FROM event_log_state), COALESCE((SELECT MAX(id) FROM events), 0)",
            )
            .and_then(|mut s| s.query_row([], |r| Ok(EventHorizon { pruned_through: r.get(0)?, last_id: r.get(1)? })))
            .map_err(db("event horizon"))
        })
        .await
    }

    async fn event_prune(&self, before_ms: i64) -> StoreResult<u64> {
        // The scan runs on a reader, not on the writer thread every write waits for.
        // The newest event is kept: the largest rowid must never go back.
        let through: Option<i64> = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT MAX(id) FROM events WHERE created_at_ms < ?1 AND id < (SELECT MAX(id) FROM events)",
                )
                .and_then(|mut s| s.query_row([before_ms], |r| r.get(0)))
                .map_err(db("event prune"))
            })
            .await?;
        let Some(through) = through else {
            return Ok(0);
        };
        self.writer
            .write(move |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM events WHERE id <= ?1")
                    .and_then(|mut s| s.execute([through]))
                    .map_err(db("event prune"))?;
                conn.prepare_cached("UPDATE event_log_state SET pruned_through = max(pruned_through, ?1)")
                    .and_then(|mut s| s.execute([through]))
                    .map_err(db("event prune"))?;
                Ok(deleted as u64)
            })
            .await
    }

    fn event_watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.events.clone()
    }
}
