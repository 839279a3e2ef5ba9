//! How many `job_create`s per second the SQLite store sustains, and how many writes
//! share each commit (fsync) thanks to group commit.
//!
//! Run: `cargo run --release -p gantry-store --example store_throughput`. The
//! database goes in a temp dir under `GANTRY_BENCH_DIR` (default: the system temp
//! dir); put it on the disk you care about, since fsync cost is the whole story.

use std::sync::Arc;
use std::time::Instant;

use gantry_store::Store;
use gantry_store::sqlite::SqliteStore;
use gantry_store::testsuite::{self, T0};

const JOBS: usize = 20_000;
const TASKS: usize = 64;
const SEQUENTIAL: usize = 500;

#[tokio::main]
async fn main() {
    let base = std::env::var_os("GANTRY_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(&base).expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.expect("open"));
    let account = testsuite::new_account(&*store, "Bench").await;
    println!("database: {} (synchronous=FULL, WAL)", dir.path().display());

    // One caller at a time: every write waits for its own fsync.
    let before = store.write_stats();
    let start = Instant::now();
    for i in 0..SEQUENTIAL {
        store.job_create(&testsuite::job(account, T0 + i as i64, i)).await.expect("create");
    }
    report("sequential, 1 caller", SEQUENTIAL, start, before, store.write_stats());

    // 64 concurrent callers: writes queue while each fsync runs and share the next.
    let before = store.write_stats();
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in (t..JOBS).step_by(TASKS) {
                    let created = T0 + (SEQUENTIAL + i) as i64;
                    store.job_create(&testsuite::job(account, created, i)).await.expect("create");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    report(&format!("concurrent, {TASKS} tasks"), JOBS, start, before, store.write_stats());
}

fn report(what: &str, n: usize, start: Instant, before: gantry_store::WriteStats, after: gantry_store::WriteStats) {
    let secs = start.elapsed().as_secs_f64();
    let (commits, writes) = (after.commits - before.commits, after.writes - before.writes);
    println!(
        "{what}: {n} job_create in {secs:.2} s = {:.0}/s; {writes} writes in {commits} commits = {:.1} writes/commit",
        n as f64 / secs,
        writes as f64 / commits.max(1) as f64,
    );
}
