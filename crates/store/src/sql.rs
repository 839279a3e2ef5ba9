//! SQL text and row mapping shared by both backends.
//!
//! The schema is deliberately the same in SQLite and PostgreSQL (TEXT uuids, epoch-ms
//! integers), so the list queries (the only dynamic SQL) are built here once, and the
//! backends differ only in the placeholder spelling (`?N` vs `$N`) and in how they
//! bind a [`SqlValue`]. Rows are declared once per table ([`row`]) and
//! read and written through that one declaration by both backends.
//!
//! Injection safety: every piece of SQL text built here is either a string literal of
//! this file or a placeholder number; values are always bound, never formatted in.
//! That is the audit the backends rely on when they pass this text to
//! `sqlx::AssertSqlSafe`.

use gantry_types::{
    AccountId, JobId,
    list::{ApiKeyFilter, JobFilter, Paging, Range},
};

use self::row::Columns;
use crate::api_keys::ApiKeyRow;
use crate::jobs::JobRow;
use crate::{ApiKeyRecord, StoreError};

mod cluster;
mod recipes;
pub(crate) mod row;
pub(crate) use self::cluster::*;
pub(crate) use self::recipes::recipe_list;

/// The latest use of each key among `uses`: `api_key_touch` writes one row per key.
pub(crate) fn latest_use_per_key(
    uses: &[(gantry_types::ApiKeyId, i64)],
) -> std::collections::BTreeMap<gantry_types::ApiKeyId, i64> {
    let mut latest = std::collections::BTreeMap::new();
    for &(id, at) in uses {
        let e = latest.entry(id).or_insert(at);
        *e = i64::max(*e, at);
    }
    latest
}

/// Columns a job is read from (see [`JobRow`]).
pub(crate) const JOB_COLUMNS: &str = JobRow::LIST;

/// Columns an API key is read from (see [`ApiKeyRow`]).
pub(crate) const API_KEY_COLUMNS: &str = ApiKeyRow::LIST;

/// How a backend spells the Nth (1-based) placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placeholders {
    /// `?1`: SQLite. (SQLite would also take `$1`, but as a *named* parameter whose
    /// index depends on order of appearance; `?N` is positional by definition.)
    Question,
    /// `$1`: PostgreSQL.
    Dollar,
}

impl Placeholders {
    /// The Nth (1-based) placeholder.
    pub(crate) fn nth(self, n: usize) -> String {
        match self {
            Self::Question => format!("?{n}"),
            Self::Dollar => format!("${n}"),
        }
    }
}

/// A value bound to a placeholder.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SqlValue {
    /// TEXT.
    Text(String),
    /// INTEGER / BIGINT.
    Int(i64),
    /// REAL / DOUBLE PRECISION.
    Real(f64),
    /// INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL.
    Bool(bool),
}

/// A page query: `select` returns the page, `count` the total over all pages. Both
/// share the WHERE clause; `select` has two more parameters (LIMIT, OFFSET) at the end.
#[derive(Debug)]
pub(crate) struct ListQuery {
    /// `SELECT <columns> ... ORDER BY ... LIMIT .. OFFSET ..`.
    pub select: String,
    /// `SELECT COUNT(*) ...` with the same WHERE.
    pub count: String,
    /// Parameters of `select`; `count` uses the first [`Self::count_params`] of them.
    pub params: Vec<SqlValue>,
    count_len: usize,
}

impl ListQuery {
    /// The parameters of `count` (the WHERE clause's).
    pub fn count_params(&self) -> &[SqlValue] {
        &self.params[..self.count_len]
    }
}

/// Accumulates `AND`-ed conditions and their parameters.
struct Conditions {
    style: Placeholders,
    clauses: Vec<String>,
    params: Vec<SqlValue>,
}

impl Conditions {
    fn new(style: Placeholders) -> Self {
        Self { style, clauses: Vec::new(), params: Vec::new() }
    }

    /// Adds a parameter, returns its placeholder.
    fn bind(&mut self, value: SqlValue) -> String {
        self.params.push(value);
        self.style.nth(self.params.len())
    }

    /// `column = value`.
    fn eq(&mut self, column: &'static str, value: SqlValue) {
        let p = self.bind(value);
        self.clauses.push(format!("{column} = {p}"));
    }

    /// `column IN (...)`; an empty list means "no constraint", as in the API.
    fn any_of(&mut self, column: &'static str, values: impl IntoIterator<Item = SqlValue>) {
        let placeholders: Vec<String> = values.into_iter().map(|v| self.bind(v)).collect();
        if !placeholders.is_empty() {
            self.clauses.push(format!("{column} IN ({})", placeholders.join(", ")));
        }
    }

    /// Inclusive range with open ends.
    fn range<T: Copy>(&mut self, column: &'static str, range: Option<Range<T>>, value: impl Fn(T) -> SqlValue) {
        let Some(range) = range else { return };
        if let Some(min) = range.min {
            let p = self.bind(value(min));
            self.clauses.push(format!("{column} >= {p}"));
        }
        if let Some(max) = range.max {
            let p = self.bind(value(max));
            self.clauses.push(format!("{column} <= {p}"));
        }
    }

    /// Assembles the SELECT and COUNT around the conditions.
    fn finish(mut self, table: &'static str, columns: &'static str, paging: Paging) -> ListQuery {
        let where_sql =
            if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) };
        let count = format!("SELECT COUNT(*) FROM {table}{where_sql}");
        let count_len = self.params.len();
        // uuid breaks ties between rows created in the same millisecond, so paging
        // never skips or repeats a row.
        let dir = if paging.newest_first { "DESC" } else { "ASC" };
        // LIMIT/OFFSET are parameters, not literals, so each filter shape is one
        // cached prepared statement whatever page is asked for.
        let limit = self.bind(SqlValue::Int(i64::from(paging.limit)));
        let offset = self.bind(SqlValue::Int(i64::try_from(paging.offset()).unwrap_or(i64::MAX)));
        let select = format!(
            "SELECT {columns} FROM {table}{where_sql} \
             ORDER BY created_at_ms {dir}, uuid {dir} LIMIT {limit} OFFSET {offset}"
        );
        ListQuery { select, count, params: self.params, count_len }
    }
}

/// The `job_list` query: `account` scopes, `filter` narrows.
pub(crate) fn job_list(
    style: Placeholders,
    account: Option<AccountId>,
    filter: &JobFilter,
    paging: Paging,
) -> ListQuery {
    let mut c = Conditions::new(style);
    if let Some(account) = account {
        c.eq("account_uuid", SqlValue::Text(account.to_string()));
    }
    c.any_of("uuid", filter.uuids.iter().map(|id| SqlValue::Text(id.to_string())));
    c.any_of("status", filter.statuses.iter().map(|s| SqlValue::Text(s.as_str().into())));
    c.any_of("task", filter.tasks.iter().map(|t| SqlValue::Text(t.as_str().into())));
    c.range("cpu_count", filter.cpu_count, SqlValue::Int);
    c.range("gpu_count", filter.gpu_count, SqlValue::Int);
    c.range("created_at_ms", filter.created_at, SqlValue::Int);
    c.range("min_ram_gb", filter.min_ram_gb, SqlValue::Real);
    c.range("min_storage_gb", filter.min_storage_gb, SqlValue::Real);
    c.range("min_vram_gb", filter.min_vram_gb, SqlValue::Real);
    c.any_of("source_recipe_uuid", filter.source_recipe_uuids.iter().map(|r| SqlValue::Text(r.clone())));
    c.finish("jobs", JOB_COLUMNS, paging)
}

/// `job_count_by_status`'s query: one grouped count over `jobs (status, created_at)`
/// (`statuses` are the enum's own names, never input).
pub(crate) fn job_count_sql(statuses: &[gantry_types::job::JobStatus]) -> String {
    let listed: Vec<String> = statuses.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("SELECT status, COUNT(*) FROM jobs WHERE status IN ({}) GROUP BY status", listed.join(", "))
}

/// [`job_count_sql`]'s rows as counts, every status asked for present (0 without jobs).
pub(crate) fn job_counts(
    statuses: &[gantry_types::job::JobStatus],
    rows: Vec<(String, i64)>,
) -> Result<std::collections::HashMap<gantry_types::job::JobStatus, u64>, StoreError> {
    let mut counts: std::collections::HashMap<_, u64> = statuses.iter().map(|s| (*s, 0)).collect();
    for (status, n) in rows {
        let parsed = gantry_types::job::JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt { table: "jobs", detail: format!("unknown status {status:?}") })?;
        counts.insert(parsed, u64::try_from(n).unwrap_or(0));
    }
    Ok(counts)
}

/// The `api_key_list` query. Both the caller's scope and `filter.account_uuid` apply
/// (an operator may filter by account; anyone else is scoped to their own, and a
/// filter naming another account then matches nothing).
pub(crate) fn api_key_list(
    style: Placeholders,
    account: Option<AccountId>,
    filter: &ApiKeyFilter,
    paging: Paging,
) -> ListQuery {
    let mut c = Conditions::new(style);
    if let Some(account) = account {
        c.eq("account_uuid", SqlValue::Text(account.to_string()));
    }
    if let Some(account) = filter.account_uuid {
        c.eq("account_uuid", SqlValue::Text(account.to_string()));
    }
    if let Some(revoked) = filter.is_revoked {
        c.eq("is_revoked", SqlValue::Bool(revoked));
    }
    c.range("created_at_ms", filter.created_at, SqlValue::Int);
    // A key without expiry has NULL here and so never matches an expiry range.
    c.range("expires_at_ms", filter.expires_at, SqlValue::Int);
    c.finish("api_keys", API_KEY_COLUMNS, paging)
}

/// The `webhook_list` query: `account` scopes (operators see every endpoint).
pub(crate) fn webhook_list(style: Placeholders, account: Option<AccountId>, paging: Paging) -> ListQuery {
    let mut c = Conditions::new(style);
    if let Some(account) = account {
        c.eq("account_uuid", SqlValue::Text(account.to_string()));
    }
    c.finish("webhooks", crate::webhooks::WEBHOOK_COLUMNS, paging)
}

/// An API key's list columns, encoded for insertion.
pub(crate) fn json_list(list: &[String]) -> String {
    // Serializing a list of strings cannot fail.
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_uuid(text: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(text).map_err(|e| format!("bad uuid {text:?}: {e}"))
}

/// An `account_usage.account_uuid` as an id.
pub(crate) fn parse_account(text: &str) -> Result<AccountId, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt { table: "account_usage", detail: format!("bad account uuid {text:?}") })
}

/// A `nodes` row's liveness columns as read by either backend.
pub(crate) fn node_liveness(uuid: &str, name: String, last_seen_at_ms: i64) -> Result<crate::NodeLiveness, StoreError> {
    let uuid =
        uuid.parse().map_err(|_| StoreError::Corrupt { table: "nodes", detail: format!("bad uuid {uuid:?}") })?;
    Ok(crate::NodeLiveness { uuid, name, last_seen_at_ms })
}

/// A constraint the database refused a write for, as each backend detects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// The row's primary key exists.
    PrimaryKey,
    /// Another UNIQUE column clashes (`api_keys.public_key`).
    Unique,
    /// A foreign key points at nothing.
    ForeignKey,
}

/// What a write is about, to word a [`Violation`] the same way in both backends.
pub(crate) struct Subject {
    /// The row itself (`job 0190...`), for a primary-key clash.
    pub row: String,
    /// The other unique key, if any (`API key with public key pk_...`).
    pub unique: Option<String>,
    /// What the row references (`account 0190...`).
    pub reference: Option<String>,
}

impl Subject {
    /// A job insert.
    pub fn job(id: JobId, account: AccountId) -> Self {
        Self { row: format!("job {id}"), unique: None, reference: Some(format!("account {account}")) }
    }

    /// An API key insert.
    pub fn api_key(key: &ApiKeyRecord) -> Self {
        Self {
            row: format!("API key {}", key.uuid),
            unique: Some(format!("API key with public key {}", key.public_key)),
            reference: Some(format!("account {}", key.account_uuid)),
        }
    }

    /// An account insert.
    pub fn account(id: AccountId) -> Self {
        Self { row: format!("account {id}"), unique: None, reference: None }
    }

    /// A webhook endpoint insert.
    pub fn webhook(id: gantry_types::WebhookId, account: AccountId) -> Self {
        Self { row: format!("webhook {id}"), unique: None, reference: Some(format!("account {account}")) }
    }

    /// The store error for `violation`.
    pub fn error(self, violation: Violation) -> StoreError {
        match violation {
            Violation::PrimaryKey => StoreError::Conflict { what: self.row },
            Violation::Unique => StoreError::Conflict { what: self.unique.unwrap_or(self.row) },
            Violation::ForeignKey => {
                StoreError::MissingReference { what: self.reference.unwrap_or_else(|| "a referenced row".into()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gantry_types::job::JobStatus;

    use super::*;

    #[test]
    fn empty_filter_has_no_where_and_pages_by_parameter() {
        let q = job_list(Placeholders::Dollar, None, &JobFilter::default(), Paging::default());
        assert_eq!(q.count, "SELECT COUNT(*) FROM jobs");
        assert!(q.select.ends_with("ORDER BY created_at_ms DESC, uuid DESC LIMIT $1 OFFSET $2"));
        assert_eq!(q.params, [SqlValue::Int(20), SqlValue::Int(0)]);
        assert!(q.count_params().is_empty());
    }

    #[test]
    fn filters_become_numbered_conditions() {
        let account = AccountId::new();
        let filter = JobFilter {
            statuses: vec![JobStatus::Pending, JobStatus::Running],
            cpu_count: Some(Range { min: Some(2), max: None }),
            min_ram_gb: Some(Range { min: None, max: Some(0.5) }),
            ..JobFilter::default()
        };
        let paging = Paging { page: 3, limit: 10, newest_first: false };
        let q = job_list(Placeholders::Question, Some(account), &filter, paging);
        assert_eq!(
            q.count,
            "SELECT COUNT(*) FROM jobs WHERE account_uuid = ?1 AND status IN (?2, ?3) \
             AND cpu_count >= ?4 AND min_ram_gb <= ?5"
        );
        assert!(q.select.ends_with("ORDER BY created_at_ms ASC, uuid ASC LIMIT ?6 OFFSET ?7"));
        assert_eq!(q.count_params().len(), 5);
        assert_eq!(q.params[4], SqlValue::Real(0.5));
        assert_eq!(q.params[5..], [SqlValue::Int(10), SqlValue::Int(20)]);
    }

    #[test]
    fn api_key_scope_and_filter_both_apply() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let filter = ApiKeyFilter { account_uuid: Some(b), is_revoked: Some(false), ..Default::default() };
        let q = api_key_list(Placeholders::Dollar, Some(a), &filter, Paging::default());
        assert_eq!(
            q.count,
            "SELECT COUNT(*) FROM api_keys WHERE account_uuid = $1 AND account_uuid = $2 AND is_revoked = $3"
        );
    }
}
