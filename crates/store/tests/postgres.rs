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

use std::io::Write;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use gantry_store::postgres::PgStore;
use gantry_store::testsuite::StoreFixture;
use gantry_store::{Store, StoreError};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const URL_VAR: &str = "GANTRY_TEST_DATABASE_URL";
/// Per-test pool size: many tests run at once against one server (default
/// `max_connections` 100).
const POOL: u32 = 4;

struct PgFixture {
    admin_url: String,
    database: String,
    url: String,
    store: Option<Arc<PgStore>>,
}

/// The admin URL, or `None` (after a one-time notice) when the suite is skipped.
fn admin_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {URL_VAR} is not: CI must run the PostgreSQL store suite (see tests/postgres.rs)")
        }
        _ => {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                // Straight to stderr: libtest captures println! of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTE: PostgreSQL store suite skipped: set {URL_VAR}=postgres://user@host:port/db \
                     (any database; each test creates its own). See crates/store/tests/postgres.rs."
                );
            });
            None
        }
    }
}

/// `url` with its database path replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn admin(url: &str, sql: String) {
    let mut conn = PgConnection::connect(url).await.expect("connect to the admin database");
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.expect("admin statement");
    conn.close().await.ok();
}

impl PgFixture {
    async fn new() -> Option<Self> {
        let admin_url = admin_url()?;
        // The name is ours (hex), so formatting it into DDL is safe.
        let database = format!("gantry_t_{}", uuid::Uuid::new_v4().simple());
        admin(&admin_url, format!("CREATE DATABASE {database}")).await;
        let url = with_database(&admin_url, &database);
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
        admin(&self.admin_url, format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database)).await;
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
    let database = format!("gantry_t_{}", uuid::Uuid::new_v4().simple());
    admin(&admin_url, format!("CREATE DATABASE {database}")).await;
    let url = with_database(&admin_url, &database);
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
    admin(&admin_url, format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
}
