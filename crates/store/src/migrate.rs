//! Schema migrations: a tiny migrator, the same design for both backends.
//!
//! Why not `sqlx::migrate!`: the SQLite backend uses rusqlite, not sqlx, and the
//! whole job is twenty lines per backend. The design:
//!
//! * Migrations are SQL files under `migrations/<backend>/NNNN_name.sql`, append-only
//!   and embedded in the binary with `include_str!` (listed in [`SQLITE`] and
//!   [`POSTGRES`]), so a server never depends on files next to it.
//! * Applied versions are recorded in `gantry_migrations(version, name, applied_at_ms)`.
//! * Each pending migration is applied in **its own transaction** together with its
//!   row in `gantry_migrations`, so a crash leaves the schema at a clean version.
//! * Two processes starting at once (two servers on one PostgreSQL, or the admin CLI
//!   next to the server on one SQLite file) serialize: PostgreSQL takes
//!   `pg_advisory_xact_lock`, SQLite starts the transaction with `BEGIN IMMEDIATE`
//!   (the write lock). Inside the lock the applied set is read again, so the loser
//!   of the race finds the work done and skips it.
//! * Versions increase but need not be contiguous: each known version missing from
//!   `gantry_migrations` is applied, in order, so a version added later with a lower
//!   number (branches developed side by side) is still applied to a database that
//!   already has higher ones. Each migration must therefore stand on the earlier
//!   numbers only, never on a higher one.
//! * A database that has a version this binary does not know (it was migrated by a
//!   newer Gantry) is refused: running old code on a newer schema could corrupt it.

use std::collections::BTreeSet;

use crate::{StoreError, StoreResult};

/// One embedded migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Version, from the file name's number; strictly increasing.
    pub version: i64,
    /// The file name's rest (`init`), for the record.
    pub name: &'static str,
    /// The SQL, possibly several statements.
    pub sql: &'static str,
}

/// SQLite migrations, oldest first.
pub const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/sqlite/0001_init.sql") },
    Migration { version: 2, name: "gpu_registry", sql: include_str!("../migrations/sqlite/0002_gpu_registry.sql") },
    Migration { version: 3, name: "nodes_runs", sql: include_str!("../migrations/sqlite/0003_nodes_runs.sql") },
    Migration { version: 4, name: "recipes", sql: include_str!("../migrations/sqlite/0004_recipes.sql") },
    Migration { version: 5, name: "billing", sql: include_str!("../migrations/sqlite/0005_billing.sql") },
    Migration { version: 6, name: "account_usage", sql: include_str!("../migrations/sqlite/0006_account_usage.sql") },
    Migration {
        version: 7,
        name: "deployment_settings",
        sql: include_str!("../migrations/sqlite/0007_deployment_settings.sql"),
    },
    Migration { version: 8, name: "events", sql: include_str!("../migrations/sqlite/0008_events.sql") },
    Migration { version: 9, name: "leader_lease", sql: include_str!("../migrations/sqlite/0009_leader_lease.sql") },
    Migration { version: 12, name: "log_offsets", sql: include_str!("../migrations/sqlite/0012_log_offsets.sql") },
    Migration { version: 14, name: "submit_path", sql: include_str!("../migrations/sqlite/0014_submit_path.sql") },
    Migration {
        version: 16,
        name: "usage_update_order",
        sql: include_str!("../migrations/sqlite/0016_usage_update_order.sql"),
    },
    Migration { version: 17, name: "run_timeouts", sql: include_str!("../migrations/sqlite/0017_run_timeouts.sql") },
    Migration { version: 18, name: "due_runs", sql: include_str!("../migrations/sqlite/0018_due_runs.sql") },
    Migration {
        version: 19,
        name: "job_batch_function",
        sql: include_str!("../migrations/sqlite/0019_job_batch_function.sql"),
    },
];

/// PostgreSQL migrations, oldest first (same versions as [`SQLITE`]).
pub const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/postgres/0001_init.sql") },
    Migration { version: 2, name: "gpu_registry", sql: include_str!("../migrations/postgres/0002_gpu_registry.sql") },
    Migration { version: 3, name: "nodes_runs", sql: include_str!("../migrations/postgres/0003_nodes_runs.sql") },
    Migration { version: 4, name: "recipes", sql: include_str!("../migrations/postgres/0004_recipes.sql") },
    Migration { version: 5, name: "billing", sql: include_str!("../migrations/postgres/0005_billing.sql") },
    Migration { version: 6, name: "account_usage", sql: include_str!("../migrations/postgres/0006_account_usage.sql") },
    Migration {
        version: 7,
        name: "deployment_settings",
        sql: include_str!("../migrations/postgres/0007_deployment_settings.sql"),
    },
    Migration { version: 8, name: "events", sql: include_str!("../migrations/postgres/0008_events.sql") },
    Migration { version: 9, name: "leader_lease", sql: include_str!("../migrations/postgres/0009_leader_lease.sql") },
    Migration { version: 12, name: "log_offsets", sql: include_str!("../migrations/postgres/0012_log_offsets.sql") },
    Migration { version: 14, name: "submit_path", sql: include_str!("../migrations/postgres/0014_submit_path.sql") },
    Migration {
        version: 16,
        name: "usage_update_order",
        sql: include_str!("../migrations/postgres/0016_usage_update_order.sql"),
    },
    Migration { version: 17, name: "run_timeouts", sql: include_str!("../migrations/postgres/0017_run_timeouts.sql") },
    Migration { version: 18, name: "due_runs", sql: include_str!("../migrations/postgres/0018_due_runs.sql") },
    Migration {
        version: 19,
        name: "job_batch_function",
        sql: include_str!("../migrations/postgres/0019_job_batch_function.sql"),
    },
];

/// The newest schema version this binary knows (both backends share versions).
pub fn newest_version() -> i64 {
    SQLITE.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The bookkeeping table; this DDL is valid in both dialects.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS gantry_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

/// Key of the PostgreSQL advisory lock held while migrating ("gantry" in ASCII).
const PG_LOCK_KEY: i64 = 0x6761_6e74_7279;

/// The error for a database migrated by a newer binary.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database has schema migration {found}, but this binary knows migrations up to {newest}; \
     it was used by a newer Gantry. Refusing to start: run that version (or newer), or restore a backup"
)]
pub struct SchemaTooNew {
    /// The unknown version found in the database.
    pub found: i64,
    /// The newest version this binary has.
    pub newest: i64,
}

/// Checks the applied versions against `known`; `Err` on a downgrade.
fn check_not_newer(known: &[Migration], applied: &BTreeSet<i64>) -> StoreResult<()> {
    let known_versions: BTreeSet<i64> = known.iter().map(|m| m.version).collect();
    match applied.iter().find(|v| !known_versions.contains(v)) {
        None => Ok(()),
        Some(&found) => Err(StoreError::Database {
            // `during` is what a log line shows first, so it says what happened.
            during: "schema check (database is newer than this binary; downgrade refused)",
            source: Box::new(SchemaTooNew { found, newest: known_versions.last().copied().unwrap_or(0) }),
        }),
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The migrations a start would apply to the store a deployment configured, oldest
/// first, without changing anything (`gantry admin migrate --dry-run`). A database
/// newer than this binary is the same error a start gives.
pub async fn pending(data_dir: &std::path::Path, database_url: Option<&str>) -> StoreResult<Vec<Migration>> {
    let applied = match database_url {
        Some(url) => {
            let db =
                |e: sqlx::Error| StoreError::Database { during: "reading the applied migrations", source: Box::new(e) };
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.map_err(db)?;
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('gantry_migrations') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .map_err(db)?;
            let applied = if exists {
                sqlx::query_scalar("SELECT version FROM gantry_migrations").fetch_all(&pool).await.map_err(db)?
            } else {
                Vec::new()
            };
            pool.close().await;
            applied
        }
        None => {
            let path = data_dir.join("gantry.db");
            tokio::task::spawn_blocking(move || sqlite_applied(&path))
                .await
                .map_err(|e| StoreError::Database { during: "reading the applied migrations", source: Box::new(e) })??
        }
    };
    let applied: BTreeSet<i64> = applied.into_iter().collect();
    let known = if database_url.is_some() { POSTGRES } else { SQLITE };
    check_not_newer(known, &applied)?;
    Ok(known.iter().filter(|m| !applied.contains(&m.version)).copied().collect())
}

/// The versions recorded in a SQLite file, opened read-only (none when it is absent).
fn sqlite_applied(path: &std::path::Path) -> StoreResult<Vec<i64>> {
    let db =
        |e: rusqlite::Error| StoreError::Database { during: "reading the applied migrations", source: Box::new(e) };
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
    let exists: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'gantry_migrations'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare("SELECT version FROM gantry_migrations").map_err(db)?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(db)?;
    rows.collect::<Result<Vec<i64>, _>>().map_err(db)
}

/// Applies only the first `count` SQLite migrations: how the upgrade tests build a
/// database as an older release left it.
pub fn run_sqlite_prefix(conn: &mut rusqlite::Connection, count: usize) -> StoreResult<()> {
    run_sqlite_list(conn, &SQLITE[..count.min(SQLITE.len())])
}

/// Brings a SQLite database up to date (blocking; call off the async runtime).
pub fn run_sqlite(conn: &mut rusqlite::Connection) -> StoreResult<()> {
    run_sqlite_list(conn, SQLITE)
}

fn run_sqlite_list(conn: &mut rusqlite::Connection, known: &[Migration]) -> StoreResult<()> {
    let db = |e: rusqlite::Error| StoreError::Database { during: "migrate", source: Box::new(e) };
    for migration in known {
        // IMMEDIATE takes the write lock now, so a second process waits here (up to
        // busy_timeout) instead of failing half-way with SQLITE_BUSY.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
        tx.execute_batch(CREATE_TABLE).map_err(db)?;
        let applied = {
            let mut stmt = tx.prepare("SELECT version FROM gantry_migrations").map_err(db)?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(db)?;
            rows.collect::<Result<BTreeSet<i64>, _>>().map_err(db)?
        };
        check_not_newer(known, &applied)?;
        if !applied.contains(&migration.version) {
            tx.execute_batch(migration.sql).map_err(db)?;
            tx.execute(
                "INSERT INTO gantry_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![migration.version, migration.name, now_ms()],
            )
            .map_err(db)?;
            tracing::info!(version = migration.version, name = migration.name, "applied SQLite migration");
        }
        tx.commit().map_err(db)?;
    }
    Ok(())
}

/// Brings a PostgreSQL database up to date.
pub async fn run_postgres(pool: &sqlx::PgPool) -> StoreResult<()> {
    let db = |e: sqlx::Error| StoreError::Database { during: "migrate", source: Box::new(e) };
    for migration in POSTGRES {
        let mut tx = pool.begin().await.map_err(db)?;
        // Released by COMMIT/ROLLBACK; a second server blocks here until we finish.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_LOCK_KEY).execute(&mut *tx).await.map_err(db)?;
        sqlx::raw_sql(CREATE_TABLE).execute(&mut *tx).await.map_err(db)?;
        let applied: BTreeSet<i64> = sqlx::query_scalar("SELECT version FROM gantry_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .into_iter()
            .collect();
        check_not_newer(POSTGRES, &applied)?;
        if !applied.contains(&migration.version) {
            // raw_sql: the simple-query protocol, which runs several statements.
            sqlx::raw_sql(migration.sql).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("INSERT INTO gantry_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)")
                .bind(migration.version)
                .bind(migration.name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tracing::info!(version = migration.version, name = migration.name, "applied PostgreSQL migration");
        }
        tx.commit().await.map_err(db)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_backends_agree() {
        for list in [SQLITE, POSTGRES] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
        }
        let versions = |l: &[Migration]| l.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
    }

    #[test]
    fn a_gap_in_versions_is_accepted_and_filled_later() {
        // This branch ships 1, 2, 3, 5; a later release adds 4. A database migrated
        // to 5 must accept the gap, then get 4 applied on the next start.
        let m = |version, sql| Migration { version, name: "t", sql };
        let with_gap = [m(1, "CREATE TABLE a (x INTEGER)"), m(3, "CREATE TABLE c (x INTEGER)")];
        let filled = [with_gap[0], m(2, "CREATE TABLE b (x INTEGER)"), with_gap[1]];
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        run_sqlite_list(&mut conn, &with_gap).unwrap();
        run_sqlite_list(&mut conn, &filled).unwrap();
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM gantry_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(versions, [1, 2, 3]);
        conn.execute("INSERT INTO b VALUES (1)", []).unwrap();
        // The real lists have the gap too, and agree.
        assert!(SQLITE.windows(2).all(|w| w[0].version < w[1].version));
    }

    #[test]
    fn a_newer_database_is_refused_with_a_clear_message() {
        assert!(check_not_newer(SQLITE, &BTreeSet::from([1])).is_ok());
        let err = check_not_newer(SQLITE, &BTreeSet::from([1, 99])).unwrap_err();
        let StoreError::Database { during, source } = err else { panic!("{err:?}") };
        assert!(during.contains("downgrade refused"));
        assert!(source.to_string().contains("migration 99"), "{source}");
    }

    #[test]
    fn sqlite_migrates_once_and_refuses_downgrade() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        run_sqlite(&mut conn).unwrap();
        run_sqlite(&mut conn).unwrap(); // idempotent
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM gantry_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n, SQLITE.len() as i64);
        conn.execute("INSERT INTO gantry_migrations VALUES (9999, 'future', 0)", []).unwrap();
        assert!(run_sqlite(&mut conn).is_err());
    }
}
