//! The SQLite backend: one file in the data dir, the default deployment.
//!
//! Design, for durability first and throughput second:
//!
//! * `journal_mode=WAL` so readers and the writer do not block each other, and
//!   `synchronous=FULL` so a write acknowledged to a client has been fsynced and
//!   survives kill -9 and power loss. Never lower it: throughput comes from
//!   [group commit](writer), which shares one fsync among all writes queued meanwhile.
//! * Every write goes through one writer thread ([`writer`]); reads go through a small
//!   pool of read-only connections ([`readers`]) on the blocking pool.
//! * Other processes (the admin CLI) may open the same file while the server runs:
//!   writes start with `BEGIN IMMEDIATE` and every connection has a `busy_timeout`,
//!   so they queue for the lock instead of failing.
//! * Constraint violations are told apart by SQLite's extended result codes
//!   ([`rows`]) and become `Conflict` / `MissingReference`.

mod accounts;
mod api_keys;
mod billing;
mod cluster;
mod deployment;
mod events;
mod gpu_models;
mod jobs;
mod notify;
mod readers;
mod recipes;
mod rows;
mod usage;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use self::readers::Readers;
use self::rows::db;
use self::writer::Writer;
use crate::{StoreError, StoreInfo, StoreResult, WriteStats, migrate};

/// How long a connection waits for a lock another connection or process holds.
const BUSY_TIMEOUT_MS: u64 = 5000;

/// The SQLite store. Dropping it finishes the queued writes and closes the file.
pub struct SqliteStore {
    // Field order matters for drop: the writer (which joins its thread) goes first.
    writer: Writer,
    readers: Arc<Readers>,
    path: PathBuf,
    /// The newest committed event id (the writer publishes it after each commit).
    events: tokio::sync::watch::Receiver<i64>,
}

impl SqliteStore {
    /// Opens (creating if needed, parent directory included) the database at `path`
    /// and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let path = path.to_path_buf();
        let writer_path = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_writer(&writer_path))
            .await
            .map_err(|e| StoreError::Database { during: "open", source: Box::new(e) })??;
        let (events_tx, events) = tokio::sync::watch::channel(0);
        writer::publish_events(&conn, &events_tx);
        let writer = Writer::spawn(conn, events_tx)?;
        tracing::info!(path = %path.display(), "opened SQLite store");
        Ok(Self { writer, readers: Arc::new(Readers::new(path.clone())), path, events })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<R, F>(&self, read: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.readers.read(read).await
    }
}

/// Creates the database file with mode 0600 (or narrows an existing one to it): it
/// holds every account's jobs and the encrypted secrets. SQLite gives its `-wal` and
/// `-shm` files the database file's mode.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Err(e) => return Err(e),
        }
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            if std::path::Path::new(&side).exists() {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The write connection: file, pragmas, migrations.
fn open_writer(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Database { during: "creating the data directory", source: Box::new(e) })?;
    }
    owner_only(path)
        .map_err(|e| StoreError::Database { during: "making the database file owner-only", source: Box::new(e) })?;
    let open = db("open");
    let mut conn = Connection::open(path).map_err(&open)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(&open)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(&open)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database {
            during: "open (enabling WAL)",
            source: format!("journal_mode is {mode:?}, not wal").into(),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(&open)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(&open)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate::run_sqlite(&mut conn)?;
    Ok(conn)
}

impl StoreInfo for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }
}
