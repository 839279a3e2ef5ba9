//! SQLite glue: binding [`SqlValue`]s, reading rows into the shared row structs, and
//! turning rusqlite errors into [`StoreError`]s (constraint violations by their
//! extended result codes, which say exactly which kind of constraint failed).

use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::sql::{ApiKeyRow, JobRow, ListQuery, SqlValue, Subject, Violation};
use crate::{ApiKeyRecord, Page, StoreError, StoreResult};

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

/// Reads [`crate::sql::JOB_COLUMNS`].
pub(super) fn job_row(row: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        spec: row.get(0)?,
        status: row.get(1)?,
        status_reason: row.get(2)?,
        updated_at_ms: row.get(3)?,
        started_at_ms: row.get(4)?,
        completed_at_ms: row.get(5)?,
        image_size_bytes: row.get(6)?,
    })
}

/// Reads [`crate::sql::API_KEY_COLUMNS`].
pub(super) fn api_key_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        uuid: row.get(0)?,
        account_uuid: row.get(1)?,
        name: row.get(2)?,
        public_key: row.get(3)?,
        secret_encrypted: row.get(4)?,
        permissions: row.get(5)?,
        allowed_ips: row.get(6)?,
        expires_at_ms: row.get(7)?,
        is_revoked: row.get(8)?,
        created_at_ms: row.get(9)?,
        updated_at_ms: row.get(10)?,
        last_used_at_ms: row.get(11)?,
        deleted_at_ms: row.get(12)?,
    })
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
pub(super) fn list<T>(
    conn: &Connection,
    query: &ListQuery,
    during: &'static str,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<(Vec<T>, u64)> {
    let tx = conn.unchecked_transaction().map_err(db(during))?;
    let total: i64 = tx
        .prepare_cached(&query.count)
        .and_then(|mut s| s.query_row(rusqlite::params_from_iter(query.count_params()), |r| r.get(0)))
        .map_err(db(during))?;
    let items = tx
        .prepare_cached(&query.select)
        .and_then(|mut s| {
            s.query_map(rusqlite::params_from_iter(&query.params), &map)?.collect::<rusqlite::Result<Vec<T>>>()
        })
        .map_err(db(during))?;
    tx.finish().map_err(db(during))?;
    Ok((items, u64::try_from(total).unwrap_or(0)))
}

/// Reads one API key by a WHERE clause on `?1` (and an optional scope on `?2`).
pub(super) fn api_key_where(
    conn: &Connection,
    condition: &'static str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<ApiKeyRecord>> {
    let sql = format!("SELECT {} FROM api_keys WHERE {condition}", crate::sql::API_KEY_COLUMNS);
    let row = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params, api_key_row).optional())
        .map_err(db("api key read"))?;
    row.map(ApiKeyRow::into_record).transpose()
}

/// Turns mapped rows and a total into a [`Page`].
pub(super) fn page<R, T>((rows, total): (Vec<R>, u64), convert: impl Fn(R) -> StoreResult<T>) -> StoreResult<Page<T>> {
    Ok(Page { items: rows.into_iter().map(convert).collect::<StoreResult<_>>()?, total })
}
