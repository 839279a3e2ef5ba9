//! Upgrades: a database as the first release left it (schema version 1, with jobs in
//! it, from `fixtures/schema_v1_jobs.sql`) is opened by the current store, which
//! applies every later migration and serves every job unchanged; `migrate::pending`
//! (what `gantry admin migrate --dry-run` prints) lists exactly what a start applies;
//! migration 17's backfill gives the runs active at upgrade their timeout columns.

use gantry_store::jobs::JobStore;
use gantry_store::migrate;
use gantry_store::sqlite::SqliteStore;
use gantry_types::JobId;
use gantry_types::job::JobStatus;

const FIXTURE: &str = include_str!("fixtures/schema_v1_jobs.sql");

/// A data dir holding a version-1 database with the fixture's rows.
fn first_release_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(dir.path().join("gantry.db")).unwrap();
    migrate::run_sqlite_prefix(&mut conn, 1).unwrap();
    conn.execute_batch(FIXTURE).unwrap();
    dir
}

#[tokio::test]
async fn a_first_release_database_is_upgraded_with_every_job_intact() {
    let dir = first_release_data_dir();
    let pending = migrate::pending(dir.path(), None).await.unwrap();
    let versions: Vec<i64> = pending.iter().map(|m| m.version).collect();
    let expected: Vec<i64> = migrate::SQLITE.iter().skip(1).map(|m| m.version).collect();
    assert_eq!(versions, expected, "the dry run lists every migration after the first");
    // The dry run changed nothing.
    assert_eq!(migrate::pending(dir.path(), None).await.unwrap().len(), pending.len());

    let store = SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap();
    assert!(migrate::pending(dir.path(), None).await.unwrap().is_empty(), "a start applied them all");
    let id = |s: &str| s.parse::<JobId>().unwrap();
    let batch = store.job_fetch(None, id("01a23ae0-a19b-73a8-9305-4a2d41885feb")).await.unwrap().expect("batch job");
    assert_eq!((batch.title.as_str(), batch.status), ("fixture batch", JobStatus::Pending));
    assert_eq!(batch.parameters.parameters.image, "busybox");
    let gpu = store.job_fetch(None, id("01a23ae0-a235-77c7-a977-754442b33e1b")).await.unwrap().expect("gpu job");
    assert_eq!((gpu.gpu_count, gpu.cpu_count), (1, 4));
    assert_eq!(gpu.parameters.parameters.tag.as_deref(), Some("v3"));
    let cancelled =
        store.job_fetch(None, id("01a23ae0-a304-720c-9247-2634fde6dc38")).await.unwrap().expect("cancelled job");
    assert_eq!((cancelled.status, cancelled.status_reason.as_deref()), (JobStatus::Cancelled, Some("fixture")));
    assert!(cancelled.completed_at.is_some());
    // The upgraded store takes new work next to the old.
    let account = batch.account_uuid;
    let page = store
        .job_list(
            Some(account),
            &Default::default(),
            gantry_types::list::Paging { page: 1, limit: 50, newest_first: true },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    // Version 6 counted the jobs already stored: two PENDING, and their JSON's bytes.
    let usage = store.job_usage(account).await.unwrap();
    assert_eq!(usage.pending_jobs, 2, "{usage:?}");
    assert!(usage.job_bytes > 0);
    assert_eq!(store.job_pending_accounts().await.unwrap(), vec![(account, 2)]);
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused_and_left_untouched() {
    let dir = first_release_data_dir();
    {
        let conn = rusqlite::Connection::open(dir.path().join("gantry.db")).unwrap();
        conn.execute("INSERT INTO gantry_migrations VALUES (9999, 'from_the_future', 0)", []).unwrap();
    }
    let before = std::fs::read(dir.path().join("gantry.db")).unwrap();
    let err = migrate::pending(dir.path(), None).await.unwrap_err().to_string();
    assert!(err.contains("9999") || err.contains("newer"), "{err}");
    let err = match SqliteStore::open(&dir.path().join("gantry.db")).await {
        Ok(_) => panic!("a newer schema was opened"),
        Err(e) => format!("{e:#} {:?}", std::error::Error::source(&e).map(|s| s.to_string())),
    };
    assert!(err.contains("newer") && err.contains("9999"), "{err}");
    // No migration ran: the tables of version 2 on are still absent.
    let conn = rusqlite::Connection::open(dir.path().join("gantry.db")).unwrap();
    let versions: i64 = conn.query_row("SELECT COUNT(*) FROM gantry_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!(versions, 2, "only version 1 and the future one");
    drop(conn);
    let after = std::fs::read(dir.path().join("gantry.db")).unwrap();
    assert_eq!(before.len(), after.len());
}

/// The dry run on PostgreSQL (when `GANTRY_TEST_DATABASE_URL` names a server): every
/// migration on an empty database, none once a store opened it, and a newer schema
/// refused with the same message as a start.
#[tokio::test]
async fn postgres_dry_run_lists_what_a_start_applies() {
    use gantry_store::testsuite::scratch_pg::{admin_url, create_database, drop_database};
    let Some(admin) = admin_url() else { return };
    let (database, url) = create_database(&admin).await;
    let none = std::path::Path::new("/nonexistent");
    let pending = migrate::pending(none, Some(&url)).await.unwrap();
    assert_eq!(pending.len(), migrate::POSTGRES.len());
    let store = gantry_store::postgres::PgStore::connect_with_max_connections(&url, 2).await.unwrap();
    assert!(migrate::pending(none, Some(&url)).await.unwrap().is_empty());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO gantry_migrations VALUES (9999, 'from_the_future', 0)").execute(&mut conn).await.unwrap();
    drop(conn);
    let err = migrate::pending(none, Some(&url)).await.unwrap_err();
    let text = format!("{err} {:?}", std::error::Error::source(&err).map(|s| s.to_string()));
    assert!(text.contains("newer") && text.contains("9999"), "{text}");
    store.close().await;
    drop_database(&admin, &database).await;
}

/// Places one job on a new node of a new account in `store` and blanks the run's
/// timeout columns, as they are in a database older than version 17; the run.
async fn active_run_without_timeout_columns(store: &dyn gantry_store::Store) -> gantry_store::RunRecord {
    use gantry_store::JobPlacement;
    use gantry_store::testsuite::{T0, job, new_account, node_record, run_record};
    let account = new_account(store, "Upgraded runs").await;
    let node = node_record(account, T0, 0);
    store.node_upsert(&node).await.unwrap();
    let pending = job(account, T0 + 1, 1);
    store.job_create(&pending).await.unwrap();
    let run = run_record(&pending, &node, 0, 0, T0 + 2);
    let placement = JobPlacement { job: pending.uuid, runs: vec![run.clone()], now_ms: T0 + 2 };
    assert_eq!(store.run_place(&[placement]).await.unwrap(), [pending.uuid]);
    assert!(run.run.job_snapshot["max_timeout_start_ms"].is_i64(), "the fixture job has a start timeout");
    run
}

/// Migration 17's backfill (its UPDATE) as `migration` holds it.
fn backfill_of(migration: &[migrate::Migration]) -> &'static str {
    let sql = migration.iter().find(|m| m.version == 17).expect("migration 17").sql;
    &sql[sql.find("UPDATE job_runs").expect("the backfill")..]
}

/// The brief read's timeouts of `run` equal its snapshot's.
async fn assert_brief_timeouts(store: &dyn gantry_store::Store, run: &gantry_store::RunRecord) {
    assert!(store.run_list_due(gantry_store::testsuite::T0 + 3).await.unwrap().is_empty(), "not due any more");
    let brief = store.run_list_active_brief().await.unwrap();
    let [found] = brief.as_slice() else { panic!("one active run, got {}", brief.len()) };
    for key in ["max_timeout_start_ms", "max_timeout_run_ms"] {
        assert_eq!(found.run.job_snapshot[key], run.run.job_snapshot[key], "{key} backfilled");
    }
}

/// A run without timeout columns (as an older binary still places them during a
/// rolling upgrade) keeps its whole snapshot in the brief reads, and the lifecycle
/// pass is always handed it, so its timeouts are never lost.
async fn assert_whole_snapshot_until_backfilled(store: &dyn gantry_store::Store, run: &gantry_store::RunRecord) {
    let brief = store.run_list_active_brief().await.unwrap();
    assert_eq!(brief[0].run.job_snapshot, run.run.job_snapshot, "the whole snapshot");
    let due = store.run_list_due(gantry_store::testsuite::T0 + 3).await.unwrap();
    assert_eq!(due.iter().map(|r| r.run.uuid).collect::<Vec<_>>(), [run.run.uuid], "due: its limits are unknown");
    assert_eq!(due[0].run.job_snapshot, run.run.job_snapshot);
}

/// Migration 17 fills the timeout columns of the runs active when it is applied, from
/// their snapshots (the brief read has nothing else), on SQLite...
#[tokio::test]
async fn the_runs_active_at_migration_17_get_their_timeouts_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let run = active_run_without_timeout_columns(&store).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("UPDATE job_runs SET start_limit_ms = NULL, run_limit_ms = NULL").unwrap();
    assert_whole_snapshot_until_backfilled(&store, &run).await;
    conn.execute_batch(backfill_of(migrate::SQLITE)).unwrap();
    assert_brief_timeouts(&store, &run).await;
}

/// ... and on PostgreSQL.
#[tokio::test]
async fn the_runs_active_at_migration_17_get_their_timeouts_on_postgres() {
    use gantry_store::testsuite::scratch_pg::{admin_url, create_database, drop_database};
    let Some(admin) = admin_url() else { return };
    let (database, url) = create_database(&admin).await;
    let store = gantry_store::postgres::PgStore::connect_with_max_connections(&url, 2).await.unwrap();
    let run = active_run_without_timeout_columns(&store).await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::raw_sql("UPDATE job_runs SET start_limit_ms = NULL, run_limit_ms = NULL").execute(&mut conn).await.unwrap();
    assert_whole_snapshot_until_backfilled(&store, &run).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(backfill_of(migrate::POSTGRES))).execute(&mut conn).await.unwrap();
    assert_brief_timeouts(&store, &run).await;
    drop(conn);
    store.close().await;
    drop_database(&admin, &database).await;
}
