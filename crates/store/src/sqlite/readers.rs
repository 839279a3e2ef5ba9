//! SQLite read connections: a small pool of read-only connections used from
//! `spawn_blocking`.
//!
//! In WAL mode readers never block the writer and the writer never blocks readers,
//! so reads bypass the writer thread entirely and run in parallel on the runtime's
//! blocking pool. A semaphore bounds how many run at once (each holds a connection
//! and a blocking thread); connections are opened lazily and kept for reuse, so their
//! prepared-statement caches stay warm. Read-only connections also guarantee that no
//! write sneaks past the group-commit writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::rows::db;
use crate::{StoreError, StoreResult};

/// Most reads running at once.
const MAX_READERS: usize = 8;

/// The pool.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    /// A pool for the database at `path` (which must already exist, in WAL mode).
    pub fn new(path: PathBuf) -> Self {
        Self { path, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(MAX_READERS)) }
    }

    /// Runs `read` on a pooled connection on the blocking pool.
    pub async fn read<R, F>(self: &Arc<Self>, read: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| StoreError::Unavailable)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.checkout()?;
            let result = read(&conn);
            crate::sync::lock(&pool.idle).push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Database { during: "read", source: Box::new(e) })?
    }

    fn checkout(&self) -> StoreResult<Connection> {
        if let Some(conn) = crate::sync::lock(&self.idle).pop() {
            return Ok(conn);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(db("open read connection"))?;
        // Readers can meet a lock briefly (e.g. during a WAL checkpoint restart).
        conn.busy_timeout(Duration::from_millis(super::BUSY_TIMEOUT_MS)).map_err(db("open read connection"))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}
