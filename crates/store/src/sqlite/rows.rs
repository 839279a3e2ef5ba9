//! SQLite glue: binding [`SqlValue`]s, reading and writing the shared row structs, and
//! turning rusqlite errors into [`StoreError`]s (constraint violations by their
//! extended result codes, which say exactly which kind of constraint failed).

use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{Connection, OptionalExtension};

use crate::sql::row::{IntoRecord, ToRow};
use crate::sql::{ListQuery, SqlValue, Subject, Violation};
use crate::{Page, StoreError, StoreResult};

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Text(s) => ToSqlOutput::from(s.as_str()),
            Self::Int(i) => ToSqlOutput::from(*i),
            Self::Real(f) => ToSqlOutput::from(*f),
            Self::Bool(b) => ToSqlOutput::from(*b),
        })
    }
}

/// A driver error as a [`StoreError::Database`].
pub(super) fn db(during: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database { during, source: Box::new(e) }
}

/// Like [`db`], but a constraint violation becomes `Conflict`/`MissingReference`
/// worded after `subject`.
pub(super) fn write_error(
    during: &'static str,
    subject: impl FnOnce() -> Subject,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match violation(&e) {
        Some(v) => subject().error(v),
        None => StoreError::Database { during, source: Box::new(e) },
    }
}

fn violation(e: &rusqlite::Error) -> Option<Violation> {
    use rusqlite::ffi;
    let rusqlite::Error::SqliteFailure(err, _) = e else {
        return None;
    };
    match err.extended_code {
        ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Some(Violation::PrimaryKey),
        ffi::SQLITE_CONSTRAINT_UNIQUE => Some(Violation::Unique),
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// Runs a [`ListQuery`] (page and total) in one read transaction, so the total
/// matches the page even while writes commit.
pub(super) fn page<T: IntoRecord>(
    conn: &Connection,
    query: &ListQuery,
    during: &'static str,
) -> StoreResult<Page<T::Record>> {
    let tx = conn.unchecked_transaction().map_err(db(during))?;
    let total: i64 = tx
        .prepare_cached(&query.count)
        .and_then(|mut s| s.query_row(rusqlite::params_from_iter(query.count_params()), |r| r.get(0)))
        .map_err(db(during))?;
    let rows = tx
        .prepare_cached(&query.select)
        .and_then(|mut s| {
            s.query_map(rusqlite::params_from_iter(&query.params), |r| T::from_row(r))?
                .collect::<rusqlite::Result<Vec<T>>>()
        })
        .map_err(db(during))?;
    tx.finish().map_err(db(during))?;
    let items = rows.into_iter().map(T::into_record).collect::<StoreResult<_>>()?;
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

/// The record of the row `sql` returns, if any.
pub(super) fn one<T: IntoRecord>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    during: &'static str,
) -> StoreResult<Option<T::Record>> {
    let row = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params, |r| T::from_row(r)).optional())
        .map_err(db(during))?;
    row.map(T::into_record).transpose()
}

/// The records of every row `sql` returns.
pub(super) fn all<T: IntoRecord>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    during: &'static str,
) -> StoreResult<Vec<T::Record>> {
    let rows = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_map(params, |r| T::from_row(r))?.collect::<rusqlite::Result<Vec<T>>>())
        .map_err(db(during))?;
    rows.into_iter().map(T::into_record).collect()
}

/// Inserts `row` with `sql` (an INSERT of its columns, in order); the rows changed.
pub(super) fn insert<T: ToRow>(conn: &Connection, sql: &str, row: &T) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    row.with_sqlite_params(|params| stmt.execute(params))
}
