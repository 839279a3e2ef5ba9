//! A write transaction whose events' insert and COMMIT go to PostgreSQL as **one**
//! message.
//!
//! Why: an event-writing transaction holds the event lock from its events' insert
//! through its COMMIT (`crate::events`: ids become visible in order), and every other
//! event writer waits for it. Through sqlx's `Transaction` the insert and the COMMIT
//! are two round trips, so each holder kept the lock for a trip back to the server
//! and another one to PostgreSQL; on a loaded machine (the database, the server and
//! 200 agents on two cores, `gantry bench schedule`) a trip is a millisecond or more,
//! and the lock's queue was most of what a placement or a submit waited for. Sent as
//! one message, the lock is held for the insert, the COMMIT and its WAL flush only.
//!
//! sqlx's `Transaction` cannot end with a COMMIT it did not send (dropping it would
//! send a ROLLBACK outside any transaction), so this type opens the transaction
//! itself (`BEGIN` as a simple query); the statements in between run as usual on
//! [`EventTx::conn`]. **A connection goes back to the pool only once that last
//! message committed**, i.e. outside any transaction: after an error, or when the
//! future is dropped half-way (a cancelled request), the connection is closed instead
//! (`close_on_drop`), and PostgreSQL rolls back what it had. So no caller can be
//! handed a pooled connection inside a transaction, the trap behind the 25P02 seen
//! with three instances (see ARCHITECTURE.md).
//!
//! The events travel as a dollar-quoted JSON literal (a message of several statements
//! takes no parameters); a batch whose JSON contains the delimiter takes the
//! parameterized insert and a COMMIT of its own (two trips). The literal costs
//! PostgreSQL a parse of its text, which the submit path's batches no longer pay
//! (`job_batch::one_trip` calls a function with array parameters); these batches are
//! a transaction's few events, not thirty jobs' specs.

use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Row};

use super::job_batch::insert_events_from;
use crate::events::NewEventRow;

/// The dollar-quote delimiter of the JSON literal in [`commit_message`]; a batch whose
/// JSON contains it takes the parameterized insert instead.
const JSON_TAG: &str = "$gantry_batch_json$";

/// An open write transaction on a connection of its own (see the module doc).
pub(super) struct EventTx {
    conn: PoolConnection<Postgres>,
    /// BEGIN was (or may have been) sent and no COMMIT has been seen to succeed:
    /// the connection must not return to the pool.
    open: bool,
}

impl EventTx {
    /// Takes a connection and opens a transaction on it.
    pub async fn begin(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let conn = pool.acquire().await?;
        // Open before BEGIN is sent: a cancel while it is in flight closes the connection.
        let mut tx = Self { conn, open: true };
        sqlx::raw_sql("BEGIN").execute(&mut *tx.conn).await?;
        Ok(tx)
    }

    /// The connection, inside the transaction, for the statements before the commit.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Ends the transaction without writing; the connection returns to the pool once
    /// PostgreSQL confirmed, and is closed if it could not.
    pub async fn rollback(mut self) {
        if sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await.is_ok() {
            self.open = false;
        }
    }

    /// Appends `events` (taking the event lock) and commits, in one message; the
    /// newest event id (0 without events). An error from the database means nothing
    /// committed; any other (the connection broke) leaves it unknown, as for any
    /// failed COMMIT.
    pub async fn commit_with_events(mut self, events: &[&NewEventRow]) -> Result<i64, sqlx::Error> {
        let last = if events.is_empty() {
            sqlx::raw_sql("COMMIT").execute(&mut *self.conn).await?;
            0
        } else {
            let json = serde_json::to_string(events).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            if json.contains(JSON_TAG) {
                let last = super::events::append_json(&mut self.conn, events).await?;
                sqlx::raw_sql("COMMIT").execute(&mut *self.conn).await?;
                last
            } else {
                let sql = commit_message(&format!("{JSON_TAG}{json}{JSON_TAG}"));
                let rows = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(&mut *self.conn).await?;
                let row = rows.first().ok_or_else(|| sqlx::Error::Protocol("no answer to an events' insert".into()))?;
                row.try_get::<i64, _>(0)?
            }
        };
        self.open = false;
        Ok(last)
    }
}

impl Drop for EventTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// The events' insert from the literal `events` (taking the event lock, answering the
/// newest id), then COMMIT.
fn commit_message(events: &str) -> String {
    format!("{};\nCOMMIT", insert_events_from(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_inserts_the_events_then_commits() {
        let sql = commit_message("$t$[1]$t$");
        assert!(sql.starts_with("WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock("), "{sql}");
        assert!(sql.contains("json_populate_recordset(NULL::events, $t$[1]$t$::json) CROSS JOIN lock"), "{sql}");
        assert!(sql.ends_with(";\nCOMMIT"), "{sql}");
    }
}
