//! The conformance suite on SQLite (a fresh temp file per test), plus the checks only
//! SQLite has: group commit, WAL on disk, a second opener of the same file (the admin
//! CLI next to the server), and refusing a downgrade.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use gantry_store::sqlite::SqliteStore;
use gantry_store::testsuite::{self, StoreFixture, T0};
use gantry_store::{Store, StoreError};
use gantry_types::list::{JobFilter, Paging};

/// A store on `<tempdir>/data/gantry.db` (a subdirectory, so `open` must create it).
struct SqliteFixture {
    dir: tempfile::TempDir,
    store: Option<Arc<SqliteStore>>,
}

impl SqliteFixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&db_path(dir.path())).await.expect("open");
        Self { dir, store: Some(Arc::new(store)) }
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("data").join("gantry.db")
}

#[async_trait]
impl StoreFixture for SqliteFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("open")
    }

    async fn reopen(&mut self) {
        let old = self.store.take().expect("open");
        assert_eq!(Arc::strong_count(&old), 1, "the test still holds the store");
        drop(old); // joins the writer thread: everything is committed and closed
        self.store = Some(Arc::new(SqliteStore::open(&db_path(self.dir.path())).await.expect("reopen")));
    }
}

gantry_store::store_test_suite!(async { Some(SqliteFixture::new().await) });

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_shares_commits() {
    let fixture = SqliteFixture::new().await;
    let store = fixture.store();
    let account = testsuite::new_account(&*store, "Batch").await;
    let before = store.write_stats();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.job_create(&testsuite::job(account, T0 + i, i as usize)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let after = store.write_stats();
    let (commits, writes) = (after.commits - before.commits, after.writes - before.writes);
    assert_eq!(writes, 500);
    assert!(commits < writes, "no group commit: {commits} commits for {writes} writes");
    let total = store.job_list(Some(account), &JobFilter::default(), Paging::default()).await.unwrap().total;
    assert_eq!(total, 500);
}

#[tokio::test]
async fn a_failing_write_in_a_batch_fails_alone() {
    let fixture = SqliteFixture::new().await;
    let store = fixture.store();
    let account = testsuite::new_account(&*store, "Mixed").await;
    let dup = testsuite::job(account, T0, 0);
    store.job_create(&dup).await.unwrap();
    // Queue good and bad writes together so they share batches.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = Arc::clone(&store);
            let job = if i % 2 == 0 { dup.clone() } else { testsuite::job(account, T0 + i, i as usize) };
            tokio::spawn(async move { store.job_create(&job).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i % 2 == 0 {
            assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
        } else {
            result.unwrap();
        }
    }
    let total = store.job_list(Some(account), &JobFilter::default(), Paging::default()).await.unwrap().total;
    assert_eq!(total, 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_opener_of_the_same_file_works() {
    // The admin CLI opens the server's file from another process; two stores on one
    // file exercise the same locking (busy_timeout + BEGIN IMMEDIATE).
    let fixture = SqliteFixture::new().await;
    let server = fixture.store();
    let cli: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path(fixture.dir.path())).await.unwrap());
    let account = testsuite::new_account(&*server, "Shared").await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = if i % 2 == 0 { Arc::clone(&server) } else { Arc::clone(&cli) };
            tokio::spawn(async move { store.job_create(&testsuite::job(account, T0 + i, i as usize)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for store in [&server, &cli] {
        let page = store.job_list(Some(account), &JobFilter::default(), Paging::default()).await.unwrap();
        assert_eq!(page.total, 100);
    }
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let fixture = SqliteFixture::new().await;
    let conn = rusqlite::Connection::open(db_path(fixture.dir.path())).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let mut fixture = SqliteFixture::new().await;
    drop(fixture.store.take());
    let path = db_path(fixture.dir.path());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO gantry_migrations VALUES (999, 'from the future', 0)", []).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).await.err().expect("downgrade must be refused");
    let StoreError::Database { during, source } = &err else { panic!("{err:?}") };
    assert!(during.contains("downgrade refused"), "{during}");
    assert!(source.to_string().contains("999"), "{source}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_another_process_lock() {
    // Another connection (as the admin CLI would) holds the write lock for a while:
    // the store's batch waits for it (busy_timeout) instead of failing.
    let fixture = SqliteFixture::new().await;
    let store = fixture.store();
    let account = testsuite::new_account(&*store, "Locked").await;
    let path = db_path(fixture.dir.path());
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        // A plain thread holding a lock for a fixed time, not async code (clippy.toml).
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(300));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let start = std::time::Instant::now();
    store.job_create(&testsuite::job(account, T0, 0)).await.expect("waits, then commits");
    assert!(start.elapsed() >= std::time::Duration::from_millis(200), "did not wait for the lock");
    holder.join().unwrap();
}
