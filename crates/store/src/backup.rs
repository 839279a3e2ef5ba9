//! Consistent copies of a live SQLite store, for `gantry admin backup`.
//!
//! `VACUUM INTO` runs inside a read transaction on its own connection: it copies the
//! database exactly as of one commit while the server's writer keeps committing (WAL
//! lets readers and the writer proceed together), and the copy is compact and
//! self-contained (no `-wal` file to carry along). PostgreSQL deployments use
//! PostgreSQL's own tools instead (README, "Backups").

use std::path::Path;
use std::time::Duration;

use crate::{StoreError, StoreResult};

/// Writes a consistent copy of the SQLite database at `source` to `target` (which
/// must not exist) and returns the copy's schema version. Blocking.
pub fn sqlite_snapshot(source: &Path, target: &Path) -> StoreResult<i64> {
    let db = |during: &'static str| move |e: rusqlite::Error| StoreError::Database { during, source: Box::new(e) };
    let conn = rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(db("opening the store to back it up"))?;
    // The writer holds the lock only for one group commit at a time; wait it out.
    conn.busy_timeout(Duration::from_secs(30)).map_err(db("opening the store to back it up"))?;
    let target = target.to_str().ok_or_else(|| StoreError::Database {
        during: "backup",
        source: format!("the backup path {} is not UTF-8", target.display()).into(),
    })?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(db("copying the store (VACUUM INTO)"))?;
    let copy = rusqlite::Connection::open_with_flags(target, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db("reading the copy's schema version"))?;
    copy.query_row("SELECT COALESCE(MAX(version), 0) FROM gantry_migrations", [], |r| r.get(0))
        .map_err(db("reading the copy's schema version"))
}
