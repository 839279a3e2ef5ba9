//! Throwaway PostgreSQL databases for tests: the store suite and the server's
//! integration tests both need a fresh database per test on the server named by
//! `GANTRY_TEST_DATABASE_URL`, so tests run in parallel without sharing state.
//!
//! Without the variable, tests that need PostgreSQL are skipped with a notice, except
//! under CI (`CI` set), where a silently skipped backend would be a hole in the
//! safety net, so they fail instead.

use std::io::Write;
use std::sync::Once;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The variable naming the test server.
pub const URL_VAR: &str = "GANTRY_TEST_DATABASE_URL";

/// The admin URL, or `None` (after a one-time notice) when PostgreSQL tests are skipped.
pub fn admin_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {URL_VAR} is not: CI must run the PostgreSQL tests (.ci/run starts a server)")
        }
        _ => {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                // Straight to stderr: libtest captures println! of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTE: PostgreSQL tests skipped: set {URL_VAR}=postgres://user@host:port/db \
                     (any database; each test creates its own). .ci/run does this."
                );
            });
            None
        }
    }
}

/// `url` with its database path replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
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

/// Runs one statement on the admin database.
pub async fn admin(url: &str, sql: String) {
    let mut conn = PgConnection::connect(url).await.expect("connect to the admin database");
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.expect("admin statement");
    conn.close().await.ok();
}

/// Creates a fresh database; returns its name and URL.
pub async fn create_database(admin_url: &str) -> (String, String) {
    // The name is ours (hex), so formatting it into DDL is safe.
    let database = format!("gantry_t_{}", uuid::Uuid::new_v4().simple());
    admin(admin_url, format!("CREATE DATABASE {database}")).await;
    let url = with_database(admin_url, &database);
    (database, url)
}

/// Drops a database made by [`create_database`], disconnecting its sessions.
pub async fn drop_database(admin_url: &str, database: &str) {
    admin(admin_url, format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_are_rewritten() {
        use super::with_database;
        assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }
}
