//! The conformance suite on PostgreSQL: each test gets a fresh database
//! (`gantry_t_<random hex>`) on the server named by `GANTRY_TEST_DATABASE_URL`, so the
//! tests run in parallel and a failing one leaves its database to inspect.
//!
//! Without the variable the suite is skipped with a notice, except under CI (`CI`
//! set), where a silently skipped backend would be a hole in the safety net, so every
//! test fails instead. To run it locally:
//!
//! ```text
//! D=/tmp/pgstore; mkdir -p $D; chown postgres $D
//! runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D $D/data -A trust -U postgres
//! runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D $D/data \
//!     -o "-p 55432 -k $D -c listen_addresses=127.0.0.1" -l $D/log -w start
//! GANTRY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres cargo test -p gantry-store
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use gantry_store::postgres::PgStore;
use gantry_store::testsuite::StoreFixture;
use gantry_store::testsuite::scratch_pg::{admin_url, create_database, drop_database};
use gantry_store::{Store, StoreError};
use sqlx::{Connection, PgConnection};

/// Per-test pool size: many tests run at once against one server (default
/// `max_connections` 100).
const POOL: u32 = 4;

struct PgFixture {
    admin_url: String,
    database: String,
    url: String,
    store: Option<Arc<PgStore>>,
}

impl PgFixture {
    async fn new() -> Option<Self> {
        let admin_url = admin_url()?;
        let (database, url) = create_database(&admin_url).await;
        let store = PgStore::connect_with_max_connections(&url, POOL).await.expect("connect");
        Some(Self { admin_url, database, url, store: Some(Arc::new(store)) })
    }
}

#[async_trait]
impl StoreFixture for PgFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("connected")
    }

    async fn reopen(&mut self) {
        let old = self.store.take().expect("connected");
        assert_eq!(Arc::strong_count(&old), 1, "the test still holds the store");
        old.close().await;
        drop(old);
        let store = PgStore::connect_with_max_connections(&self.url, POOL).await.expect("reconnect");
        self.store = Some(Arc::new(store));
    }

    async fn teardown(&mut self) {
        if let Some(store) = self.store.take() {
            store.close().await;
        }
        drop_database(&self.admin_url, &self.database).await;
    }
}

gantry_store::store_test_suite!(PgFixture::new());

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(mut fixture) = PgFixture::new().await else {
        return;
    };
    let mut conn = PgConnection::connect(&fixture.url).await.unwrap();
    sqlx::query("INSERT INTO gantry_migrations VALUES (999, 'from the future', 0)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let err = PgStore::connect_with_max_connections(&fixture.url, 1).await.err().expect("refused");
    let StoreError::Database { during, source } = &err else { panic!("{err:?}") };
    assert!(during.contains("downgrade refused"), "{during}");
    assert!(source.to_string().contains("999"), "{source}");
    fixture.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_starting_together_migrate_once() {
    let Some(admin_url) = admin_url() else { return };
    let (database, url) = create_database(&admin_url).await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect_with_max_connections(&url, 2).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every server starts");
    }
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gantry_migrations").fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, gantry_store::migrate::POSTGRES.len() as i64);
    conn.close().await.unwrap();
    drop_database(&admin_url, &database).await;
}

/// Polls `count_sql` (a `SELECT COUNT(*)`) on `conn` until `done` holds for its count
/// (up to 10 s; then fails naming `what` and the last count): how these tests wait for
/// another connection to reach a lock, or for writes to land.
async fn until_count(conn: &mut PgConnection, count_sql: &str, done: impl Fn(i64) -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql)).fetch_one(&mut *conn).await.unwrap();
        if done(count) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what} (count {count} after 10 s)");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `f` once; whether it finished.
async fn poll_once<F: Future>(mut f: std::pin::Pin<&mut F>) -> bool {
    std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx).is_ready())).await
}

/// Runs `call` until it finishes or is cancelled at another point of its round trips
/// for each `step`: odd steps poll it once (it sends what it sends first), let the
/// runtime run up to `step * yields` times (answers may arrive) and drop it unless it
/// finished; even steps drop it after `step * micros` µs. The yields reach the points
/// between a request being sent and its answer (the timer alone rounds up to whole
/// milliseconds, in which an idle database answers everything). Whether it finished.
async fn finished_or_cancelled<F: Future>(call: F, step: u64, yields: u64, micros: u64) -> bool {
    if step % 2 == 1 {
        let mut call = std::pin::pin!(call);
        let mut done = poll_once(call.as_mut()).await;
        for _ in 0..step * yields {
            if done {
                break;
            }
            tokio::task::yield_now().await;
            done = poll_once(call.as_mut()).await;
        }
        done
    } else {
        tokio::time::timeout(std::time::Duration::from_micros(step * micros), call).await.is_ok()
    }
}

/// Creates `created` through `store`, as the write right after a cancelled or refused
/// one: it must commit, visible to `other` (another connection), not run inside a
/// transaction that a pooled connection was left in.
async fn next_write_commits(store: &PgStore, other: &mut PgConnection, created: gantry_types::job::Job, step: u64) {
    use gantry_store::JobStore;
    store.job_create(&created).await.unwrap_or_else(|e| panic!("create of step {step}: {e:?}"));
    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE uuid = $1")
        .bind(created.uuid.to_string())
        .fetch_one(other)
        .await
        .unwrap();
    assert_eq!(seen, 1, "job {} of step {step} is not committed: it ran in a stale transaction", created.uuid);
}

/// A request cancelled while its transaction's `BEGIN` is in flight (a client that
/// disconnects, a timeout) must not hand the next caller a connection still inside
/// that transaction. sqlx 0.9.0 did (transact-rs/sqlx#4393): the next caller's writes
/// ran inside the stale read-only transaction and failed, and once one failed every
/// statement on that pooled connection answered 25P02 ("current transaction is
/// aborted") — the 500s seen with several instances on one database. Fixed in sqlx
/// 0.9.1; this keeps it fixed.
#[tokio::test]
async fn a_list_cancelled_mid_begin_leaves_no_connection_in_a_transaction() {
    use gantry_store::JobStore;
    use gantry_store::testsuite::{T0, job, new_account};
    use gantry_types::list::{JobFilter, Paging};

    let Some(admin_url) = admin_url() else { return };
    let (database, url) = create_database(&admin_url).await;
    // One connection, so every call reuses the one a cancelled call gave back.
    let store = PgStore::connect_with_max_connections(&url, 1).await.unwrap();
    let account = new_account(&store, "Cancelled").await;
    let all = JobFilter::default();
    let mut other = PgConnection::connect(&url).await.unwrap();
    let mut cancelled = 0;
    // Each step cancels a list at another point of its round trips; some land between
    // BEGIN being sent and its answer, the window the bug lived in.
    for step in 0..300u64 {
        let list = store.job_list(Some(account), &all, Paging::default());
        if !finished_or_cancelled(list, step, 1, 10).await {
            cancelled += 1;
        }
        next_write_commits(&store, &mut other, job(account, T0 + step as i64, step as usize), step).await;
    }
    assert!(cancelled > 0, "no call was cancelled: the test proves nothing");
    other.close().await.unwrap();
    store.close().await;
    drop_database(&admin_url, &database).await;
}

/// The writes whose events' insert and COMMIT are one message (`postgres/event_tx.rs`:
/// placements, agents' status batches) open their transaction themselves, outside
/// sqlx's bookkeeping, so nothing but that type keeps a connection inside one from
/// going back to the pool. Cancelled at every point of their round trips (as in the
/// test above), or refused by the database half-way (a NUL in a report), each must
/// leave no pooled connection in a transaction: the next write commits, and no
/// session stays idle in a transaction.
#[tokio::test]
async fn one_message_commits_cancelled_or_refused_leave_no_connection_in_a_transaction() {
    use gantry_store::testsuite::{T0, job, new_account, node_record, run_record};
    use gantry_store::{ClusterStore, JobPlacement, JobStore, RunUpdate};
    use gantry_types::job_run::JobRunStatus;

    let Some(admin_url) = admin_url() else { return };
    let (database, url) = create_database(&admin_url).await;
    // One connection, so every call reuses the one a cancelled call gave back (or the
    // one the pool opens in place of a closed one).
    let store = PgStore::connect_with_max_connections(&url, 1).await.unwrap();
    let account = new_account(&store, "Cancelled writes").await;
    let node = node_record(account, T0, 0);
    store.node_upsert(&node).await.unwrap();
    let mut other = PgConnection::connect(&url).await.unwrap();
    let (mut cancelled, mut placed) = (0, 0);
    for step in 0..200u64 {
        let pending = job(account, T0 + step as i64, step as usize);
        store.job_create(&pending).await.unwrap();
        let run = run_record(&pending, &node, 0, 0, T0 + 1000 + step as i64);
        let placement = JobPlacement { job: pending.uuid, runs: vec![run.clone()], now_ms: T0 + 1000 };
        let write = store.run_place(std::slice::from_ref(&placement));
        let done = finished_or_cancelled(write, step, 5, 60).await;
        if !done {
            cancelled += 1;
        }
        // A placed run's report, refused by the database every fourth step (a NUL in
        // the reason), answered either way.
        if store.run_fetch(None, run.run.uuid).await.unwrap().is_some() {
            placed += 1;
            let reason = (step % 4 == 0).then(|| "bad\0reason".to_string());
            let report = RunUpdate {
                from: vec![JobRunStatus::Assigned],
                to: JobRunStatus::Preparing,
                reason,
                now_ms: T0 + 2000,
                exit_code: None,
                node_urls: None,
                image_size_bytes: None,
            };
            let _ = store.run_update(run.run.uuid, &report).await;
        }
        next_write_commits(&store, &mut other, job(account, T0 + 5000 + step as i64, step as usize), step).await;
    }
    assert!(cancelled > 0 && placed > 0, "cancelled {cancelled}, placed {placed}: the test proves nothing");
    let in_transaction = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                          AND state LIKE 'idle in transaction%'";
    until_count(&mut other, in_transaction, |n| n == 0, "a session stayed idle in a transaction").await;
    other.close().await.unwrap();
    store.close().await;
    drop_database(&admin_url, &database).await;
}

/// Two status changes that need the same two usage-counter shards of an account,
/// in opposite orders, must not deadlock. A placement changes many jobs in one
/// UPDATE; the row trigger of migration 6 took their counter rows in the order the
/// UPDATE visited the jobs (by uuid here), so it held shard B and waited for shard A
/// while another transaction held A and wanted B: PostgreSQL broke the cycle after
/// `deadlock_timeout` by failing one of them (seen under `gantry bench failover`,
/// placements against group-committed creations). Migration 16 takes the counter
/// rows once per statement in (account, shard) order, so the placement waits for A
/// holding nothing, and the other transaction finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_job_status_change_takes_counter_shards_in_order() {
    use gantry_store::JobStore;
    use gantry_store::testsuite::{T0, job, new_account};
    use std::collections::BTreeMap;

    let Some(admin_url) = admin_url() else { return };
    let (database, url) = create_database(&admin_url).await;
    let store = PgStore::connect_with_max_connections(&url, 2).await.unwrap();
    let account = new_account(&store, "Shard order").await;
    // Jobs by shard (the uuid's last hex digit), in uuid order.
    let mut by_shard: BTreeMap<char, Vec<String>> = BTreeMap::new();
    for i in 0..96 {
        let j = job(account, T0 + i, i as usize);
        store.job_create(&j).await.unwrap();
        let uuid = j.uuid.to_string();
        by_shard.entry(uuid.chars().last().unwrap()).or_default().push(uuid);
    }
    for list in by_shard.values_mut() {
        list.sort();
    }
    // Shards A < B, each with two jobs, where B's first job sorts before A's last, so
    // the UPDATE visits B's job first (what made the row trigger lock B before A).
    let (a, b) = by_shard
        .iter()
        .filter(|(_, l)| l.len() >= 2)
        .flat_map(|(sa, la)| by_shard.range(sa..).skip(1).map(move |(sb, lb)| (sa, la, sb, lb)))
        .find(|(_, la, _, lb)| lb.len() >= 2 && lb[0] < la[1])
        .map(|(_, la, _, lb)| (la.clone(), lb.clone()))
        .expect("96 random uuids give such a pair of shards");
    let (placed_a, other_a) = (a[1].clone(), a[0].clone());
    let (placed_b, other_b) = (b[0].clone(), b[1].clone());

    let mut first = PgConnection::connect(&url).await.unwrap();
    let cancel = "UPDATE jobs SET status = 'CANCELLED' WHERE uuid = $1";
    sqlx::query("BEGIN").execute(&mut first).await.unwrap();
    sqlx::query(cancel).bind(&other_a).execute(&mut first).await.unwrap(); // holds shard A
    let placement = tokio::spawn({
        let url = url.clone();
        async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            sqlx::query("UPDATE jobs SET status = 'ASSIGNED' WHERE uuid = ANY($1)")
                .bind(vec![placed_b, placed_a])
                .execute(&mut conn)
                .await
        }
    });
    // Let the placement reach its wait for shard A (it cannot finish before `first`
    // commits), then take shard B.
    let mut probe = PgConnection::connect(&url).await.unwrap();
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE 'UPDATE jobs SET status = ''ASSIGNED''%'";
    until_count(&mut probe, waiting, |n| n > 0, "the placement never waited for shard A").await;
    sqlx::query(cancel).bind(&other_b).execute(&mut first).await.expect("shard B is free: no deadlock");
    sqlx::query("COMMIT").execute(&mut first).await.unwrap();
    let placed = placement.await.unwrap().expect("the placement completes once shard A is free");
    assert_eq!(placed.rows_affected(), 2);
    assert_eq!(store.job_usage(account).await.unwrap().pending_jobs, 96 - 4, "counters exact");
    store.close().await;
    for c in [first, probe] {
        c.close().await.unwrap();
    }
    drop_database(&admin_url, &database).await;
}

/// With two lanes (`PgStore::connect_with_lanes`; the default is one), job creations
/// go in lanes by counter shard (`job_batch.rs`): a batch of the even shards and one
/// of the odd shards never wait for each other's counter rows, so
/// one commits while the other is held up. With a quota the account's check stays one
/// at a time: the held-up batch keeps the account's lock, and the other waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creation_lanes_commit_apart_unless_a_quota_is_checked() {
    use gantry_store::testsuite::{T0, job, new_account};
    use gantry_store::{JobQuota, JobStore};
    use std::time::Duration;

    let Some(admin_url) = admin_url() else { return };
    let (database, url) = create_database(&admin_url).await;
    let store = Arc::new(PgStore::connect_with_lanes(&url, 8, 2).await.unwrap());
    let account = new_account(&*store, "Lanes").await;
    // A job's counter shard, as `gantry_usage_shard` computes it: the uuid's last hex digit.
    let shard = |j: &gantry_types::job::Job| {
        i16::try_from(j.uuid.to_string().chars().last().unwrap().to_digit(16).unwrap()).unwrap()
    };
    // Jobs whose shard is even / odd, in creation order.
    let mut next = 0usize;
    let mut with_parity = |odd: bool| loop {
        next += 1;
        let j = job(account, T0 + next as i64, next);
        if (shard(&j) % 2 == 1) == odd {
            return j;
        }
    };
    let first_even = with_parity(false);
    store.job_create(&first_even).await.unwrap(); // its counter row exists from now on
    let held_shard = shard(&first_even);

    for quota in [JobQuota::UNLIMITED, JobQuota { max_pending_jobs: Some(1_000), max_job_bytes: None }] {
        // Hold the even job's counter row: the even lane's next batch waits for it.
        let mut holder = PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT 1 FROM account_usage WHERE account_uuid = $1 AND shard = $2 FOR UPDATE")
            .bind(account.to_string())
            .bind(held_shard)
            .execute(&mut holder)
            .await
            .unwrap();
        let mut even = with_parity(false);
        while shard(&even) != held_shard {
            even = with_parity(false);
        }
        let held = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.job_create_within(&even, &quota).await }
        });
        let mut probe = PgConnection::connect(&url).await.unwrap();
        let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                       AND wait_event_type = 'Lock' \
                       AND (query LIKE 'INSERT INTO jobs%' OR query LIKE 'SELECT gantry_create_jobs(%')";
        until_count(&mut probe, waiting, |n| n > 0, "the even batch never waited for its counter row").await;
        let odd = with_parity(true);
        let other = tokio::time::timeout(Duration::from_secs(2), store.job_create_within(&odd, &quota)).await;
        if quota.is_limited() {
            assert!(other.is_err(), "with a quota the odd job's check waits for the even batch's");
        } else {
            other.expect("the odd lane commits while the even one is held up").unwrap();
        }
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        held.await.unwrap().expect("the held-up batch commits once the row is free");
        for c in [holder, probe] {
            c.close().await.unwrap();
        }
    }
    // The first job and two per round, the odd one whose wait timed out included (it
    // was queued, so it commits after the batch it waited for): counters exact.
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let pending = "SELECT COUNT(*) FROM jobs WHERE status = 'PENDING'";
    until_count(&mut conn, pending, |n| n == 5, "not 5 PENDING jobs").await;
    assert_eq!(store.job_usage(account).await.unwrap().pending_jobs, 5, "counters exact");
    conn.close().await.unwrap();
    Arc::try_unwrap(store).ok().expect("the test holds the only handle").close().await;
    drop_database(&admin_url, &database).await;
}
