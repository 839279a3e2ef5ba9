//! Nodes and job runs on SQLite: every write (heartbeats and placements included) is
//! one closure on the group-commit writer thread, every read goes through the reader
//! pool. Rows are encoded on the caller's thread before they are queued.

use gantry_types::{
    AccountId, JobId, JobRunId, NodeId,
    job::{Job, JobStatus},
    job_run::JobRunStatus,
    list::Paging,
    node::{HardwareSample, NodeStatus},
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{self, db, write_error};
use crate::cluster::{JobPlacement, NodeRecord, RunFilter, RunRecord, RunUpdate};
use crate::sql::{
    self, ACTIVE_RUNS, JOB_COLUMNS, JobRow, NODE_COLUMNS, NodeRow, Placeholders, RUN_COLUMNS, RUNS_OF_A_JOB_ORDER,
    RunRow, Subject, Violation,
};
use crate::{Page, StoreResult};

/// Reads [`NODE_COLUMNS`].
fn node_row(row: &Row<'_>) -> rusqlite::Result<NodeRow> {
    Ok(NodeRow {
        uuid: row.get(0)?,
        account_uuid: row.get(1)?,
        name: row.get(2)?,
        region_code: row.get(3)?,
        labels: row.get(4)?,
        hostname: row.get(5)?,
        inventory: row.get(6)?,
        gpu_models: row.get(7)?,
        status: row.get(8)?,
        is_draining: row.get(9)?,
        lease_epoch: row.get(10)?,
        last_seen_at_ms: row.get(11)?,
        latest_sample: row.get(12)?,
        created_at_ms: row.get(13)?,
        updated_at_ms: row.get(14)?,
    })
}

/// Reads [`RUN_COLUMNS`].
pub(super) fn run_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        uuid: row.get(0)?,
        job_uuid: row.get(1)?,
        account_uuid: row.get(2)?,
        node_uuid: row.get(3)?,
        status: row.get(4)?,
        status_reason: row.get(5)?,
        attempt: row.get(6)?,
        rank: row.get(7)?,
        gang_size: row.get(8)?,
        lease_epoch: row.get(9)?,
        cpu: row.get(10)?,
        ram_gb: row.get(11)?,
        storage_gb: row.get(12)?,
        gpu_indices: row.get(13)?,
        node_urls: row.get(14)?,
        container_access_tokens: row.get(15)?,
        exit_code: row.get(16)?,
        started_at_ms: row.get(17)?,
        ended_at_ms: row.get(18)?,
        duration_ms: row.get(19)?,
        hourly_rate_usd: row.get(20)?,
        created_at_ms: row.get(21)?,
        updated_at_ms: row.get(22)?,
        job_snapshot: row.get(23)?,
    })
}

/// Every row of `sql` (no parameters but `params`), converted.
fn all<R, T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    during: &'static str,
    map: fn(&Row<'_>) -> rusqlite::Result<R>,
    convert: fn(R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let rows = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_map(params, map)?.collect::<rusqlite::Result<Vec<R>>>())
        .map_err(db(during))?;
    rows.into_iter().map(convert).collect()
}

/// At most one row of `sql`, converted.
fn one<R, T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    during: &'static str,
    map: fn(&Row<'_>) -> rusqlite::Result<R>,
    convert: fn(R) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let row = conn.prepare_cached(sql).and_then(|mut s| s.query_row(params, map).optional()).map_err(db(during))?;
    row.map(convert).transpose()
}

pub(super) async fn node_upsert(store: &SqliteStore, node: &NodeRecord) -> StoreResult<()> {
    let r = NodeRow::new(node)?;
    let (id, account) = (node.uuid, node.account_uuid);
    store
        .writer
        .write(move |conn| {
            let changed = conn
                .prepare_cached(&sql::node_upsert_sql(Placeholders::Question))
                .and_then(|mut s| {
                    s.execute(params![
                        r.uuid,
                        r.account_uuid,
                        r.name,
                        r.region_code,
                        r.labels,
                        r.hostname,
                        r.inventory,
                        r.gpu_models,
                        r.status,
                        r.is_draining,
                        r.lease_epoch,
                        r.last_seen_at_ms,
                        r.latest_sample,
                        r.created_at_ms,
                        r.updated_at_ms,
                    ])
                })
                .map_err(write_error("node upsert", || Subject::node(id, account)))?;
            // No row changed: the uuid is another account's node.
            if changed == 0 {
                return Err(Subject::node(id, account).error(Violation::PrimaryKey));
            }
            Ok(())
        })
        .await
}

pub(super) async fn node_fetch(
    store: &SqliteStore,
    account: Option<AccountId>,
    id: NodeId,
) -> StoreResult<Option<NodeRecord>> {
    let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
    store
        .read(move |conn| {
            let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)");
            one(conn, &sql, params![id, scope], "node fetch", node_row, NodeRow::into_record)
        })
        .await
}

pub(super) async fn node_list(
    store: &SqliteStore,
    account: Option<AccountId>,
    statuses: &[NodeStatus],
    paging: Paging,
) -> StoreResult<Page<NodeRecord>> {
    let query = sql::node_list(Placeholders::Question, account, statuses, paging);
    store
        .read(move |conn| {
            let found = rows::list(conn, &query, "node list", node_row)?;
            rows::page(found, NodeRow::into_record)
        })
        .await
}

pub(super) async fn node_list_all(store: &SqliteStore) -> StoreResult<Vec<NodeRecord>> {
    store
        .read(|conn| {
            let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY created_at_ms, uuid");
            all(conn, &sql, [], "node list all", node_row, NodeRow::into_record)
        })
        .await
}

pub(super) async fn node_heartbeat(
    store: &SqliteStore,
    id: NodeId,
    lease_epoch: i64,
    now_ms: i64,
    sample: Option<&HardwareSample>,
) -> StoreResult<bool> {
    let sample = sample.map(sql::sample_json).transpose()?;
    let id = id.to_string();
    store
        .writer
        .write(move |conn| {
            // max(): a heartbeat delayed behind a newer one never moves last_seen back.
            conn.prepare_cached(
                "UPDATE nodes SET last_seen_at_ms = max(last_seen_at_ms, ?3), \
                 latest_sample = COALESCE(?4, latest_sample) \
                 WHERE uuid = ?1 AND lease_epoch = ?2 AND status = ?5",
            )
            .and_then(|mut s| s.execute(params![id, lease_epoch, now_ms, sample, NodeStatus::Online.as_str()]))
            .map(|changed| changed == 1)
            .map_err(db("node heartbeat"))
        })
        .await
}

pub(super) async fn node_set_draining(
    store: &SqliteStore,
    account: Option<AccountId>,
    id: NodeId,
    draining: bool,
    now_ms: i64,
) -> StoreResult<Option<NodeRecord>> {
    let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
    store
        .writer
        .write(move |conn| {
            // Every SET expression sees the old row, so updated_at moves only on a change.
            let sql = format!(
                "UPDATE nodes SET is_draining = ?3, \
                 updated_at_ms = CASE WHEN is_draining <> ?3 THEN ?4 ELSE updated_at_ms END \
                 WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2) RETURNING {NODE_COLUMNS}"
            );
            one(conn, &sql, params![id, scope, draining, now_ms], "node set draining", node_row, NodeRow::into_record)
        })
        .await
}

pub(super) async fn node_mark_lost(
    store: &SqliteStore,
    id: NodeId,
    seen_before_ms: i64,
    now_ms: i64,
) -> StoreResult<bool> {
    let id = id.to_string();
    store
        .writer
        .write(move |conn| {
            conn.prepare_cached(
                "UPDATE nodes SET status = ?4, updated_at_ms = ?3 \
                 WHERE uuid = ?1 AND status = ?5 AND last_seen_at_ms < ?2",
            )
            .and_then(|mut s| {
                s.execute(params![id, seen_before_ms, now_ms, NodeStatus::Lost.as_str(), NodeStatus::Online.as_str()])
            })
            .map(|changed| changed == 1)
            .map_err(db("node mark lost"))
        })
        .await
}

pub(super) async fn run_place(store: &SqliteStore, placements: &[JobPlacement]) -> StoreResult<Vec<JobId>> {
    let placements = sql::placement_rows(placements)?;
    if placements.is_empty() {
        return Ok(Vec::new());
    }
    store
        .writer
        .write(move |conn| {
            // One op of the group commit: its savepoint undoes the whole call on error.
            let mut assign = conn
                .prepare_cached(
                    "UPDATE jobs SET status = ?3, status_reason = NULL, updated_at_ms = ?2 \
                     WHERE uuid = ?1 AND status = ?4",
                )
                .map_err(db("run place"))?;
            let insert_sql = format!(
                "INSERT INTO job_runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                 ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
            );
            let mut insert = conn.prepare_cached(&insert_sql).map_err(db("run place"))?;
            let (assigned, pending) = (JobStatus::Assigned.as_str(), JobStatus::Pending.as_str());
            let mut placed = Vec::new();
            for p in &placements {
                let changed =
                    assign.execute(params![p.job_uuid, p.now_ms, assigned, pending]).map_err(db("run place"))?;
                if changed == 0 {
                    continue; // no longer PENDING (or unknown): skipped
                }
                for r in &p.runs {
                    insert
                        .execute(params![
                            r.uuid,
                            r.job_uuid,
                            r.account_uuid,
                            r.node_uuid,
                            r.status,
                            r.status_reason,
                            r.attempt,
                            r.rank,
                            r.gang_size,
                            r.lease_epoch,
                            r.cpu,
                            r.ram_gb,
                            r.storage_gb,
                            r.gpu_indices,
                            r.node_urls,
                            r.container_access_tokens,
                            r.exit_code,
                            r.started_at_ms,
                            r.ended_at_ms,
                            r.duration_ms,
                            r.hourly_rate_usd,
                            r.created_at_ms,
                            r.updated_at_ms,
                            r.job_snapshot,
                        ])
                        .map_err(write_error("run place", || Subject::run(r)))?;
                }
                placed.push(p.job);
            }
            Ok(placed)
        })
        .await
}

pub(super) async fn run_fetch(
    store: &SqliteStore,
    account: Option<AccountId>,
    id: JobRunId,
) -> StoreResult<Option<RunRecord>> {
    let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
    store
        .read(move |conn| {
            let sql =
                format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)");
            one(conn, &sql, params![id, scope], "job run fetch", run_row, RunRow::into_record)
        })
        .await
}

pub(super) async fn run_list(
    store: &SqliteStore,
    account: Option<AccountId>,
    filter: &RunFilter,
    paging: Paging,
) -> StoreResult<Page<RunRecord>> {
    let query = sql::run_list(Placeholders::Question, account, filter, paging);
    store
        .read(move |conn| {
            let found = rows::list(conn, &query, "job run list", run_row)?;
            rows::page(found, RunRow::into_record)
        })
        .await
}

pub(super) async fn run_list_active(store: &SqliteStore) -> StoreResult<Vec<RunRecord>> {
    store
        .read(|conn| {
            let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE {ACTIVE_RUNS} ORDER BY created_at_ms, uuid");
            all(conn, &sql, [], "job run list active", run_row, RunRow::into_record)
        })
        .await
}

pub(super) async fn run_list_for_job(store: &SqliteStore, job: JobId) -> StoreResult<Vec<RunRecord>> {
    let job = job.to_string();
    store
        .read(move |conn| {
            let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE job_uuid = ?1 ORDER BY {RUNS_OF_A_JOB_ORDER}");
            all(conn, &sql, [job], "job run list for job", run_row, RunRow::into_record)
        })
        .await
}

pub(super) async fn run_update(
    store: &SqliteStore,
    id: JobRunId,
    update: &RunUpdate,
) -> StoreResult<Option<RunRecord>> {
    let id = id.to_string();
    let u = update.clone();
    let node_urls = u.node_urls.as_deref().map(sql::node_urls_json).transpose()?;
    // SQLite cannot bind a list; the allowed statuses travel as one JSON array.
    let from: Vec<String> = u.from.iter().map(|s| s.as_str().to_owned()).collect();
    let from = sql::json_list(&from);
    store
        .writer
        .write(move |conn| {
            // Compare-and-set in one statement; every SET expression sees the old row
            // (so duration uses the started_at from before this update).
            let sql = format!(
                "UPDATE job_runs SET status = ?1, status_reason = ?2, updated_at_ms = ?3, \
                 started_at_ms = CASE WHEN ?4 AND started_at_ms IS NULL THEN ?3 ELSE started_at_ms END, \
                 ended_at_ms = CASE WHEN ?5 THEN ?3 ELSE ended_at_ms END, \
                 duration_ms = CASE WHEN ?5 AND started_at_ms IS NOT NULL THEN ?3 - started_at_ms \
                 ELSE duration_ms END, \
                 exit_code = COALESCE(?6, exit_code), node_urls = COALESCE(?7, node_urls) \
                 WHERE uuid = ?8 AND status IN (SELECT value FROM json_each(?9)) \
                 RETURNING {RUN_COLUMNS}"
            );
            let (running, terminal) = (u.to == JobRunStatus::Running, u.to.is_terminal());
            let params =
                params![u.to.as_str(), u.reason, u.now_ms, running, terminal, u.exit_code, node_urls, id, from];
            let Some(run) = one(conn, &sql, params, "job run update", run_row, RunRow::into_record)? else {
                return Ok(None);
            };
            if let Some(size) = u.image_size_bytes {
                conn.prepare_cached("UPDATE jobs SET image_size_bytes = ?2 WHERE uuid = ?1")
                    .and_then(|mut s| s.execute(params![run.run.job_uuid.to_string(), size]))
                    .map_err(db("job run update (image size)"))?;
            }
            Ok(Some(run))
        })
        .await
}

pub(super) async fn run_logs_append(
    store: &SqliteStore,
    id: JobRunId,
    chunk: &str,
    max_bytes: usize,
) -> StoreResult<()> {
    let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    // A chunk as long as the limit replaces everything: no need to read the old logs.
    let (chunk, replace) = if chunk.len() >= max_bytes {
        (sql::append_log("", chunk, max_bytes), true)
    } else {
        (chunk.to_owned(), false)
    };
    store
        .writer
        .write(move |conn| {
            let missing = || Subject::run_logs(id);
            let run = id.to_string();
            let replace_sql = sql::log_replace_sql(Placeholders::Question);
            if !replace {
                let appended = conn
                    .prepare_cached(&sql::log_append_sql(Placeholders::Question))
                    .and_then(|mut s| s.execute(params![run, chunk, max]))
                    .map_err(write_error("job run logs append", missing))?;
                if appended == 1 {
                    return Ok(());
                }
            }
            let logs = if replace {
                chunk
            } else {
                // Too long together: keep the newest bytes.
                let existing: String = conn
                    .prepare_cached("SELECT logs FROM job_run_logs WHERE run_uuid = ?1")
                    .and_then(|mut s| s.query_row([&run], |r| r.get(0)))
                    .map_err(db("job run logs append"))?;
                sql::append_log(&existing, &chunk, max_bytes)
            };
            conn.prepare_cached(&replace_sql)
                .and_then(|mut s| s.execute(params![run, logs]))
                .map(drop)
                .map_err(write_error("job run logs append", missing))
        })
        .await
}

pub(super) async fn run_logs_fetch(
    store: &SqliteStore,
    account: Option<AccountId>,
    id: JobRunId,
) -> StoreResult<Option<String>> {
    let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
    store
        .read(move |conn| {
            conn.prepare_cached(
                "SELECT COALESCE(l.logs, '') FROM job_runs r LEFT JOIN job_run_logs l ON l.run_uuid = r.uuid \
                 WHERE r.uuid = ?1 AND (?2 IS NULL OR r.account_uuid = ?2)",
            )
            .and_then(|mut s| s.query_row(params![id, scope], |r| r.get(0)).optional())
            .map_err(db("job run logs fetch"))
        })
        .await
}

pub(super) async fn job_list_pending(store: &SqliteStore, limit: u32) -> StoreResult<Vec<Job>> {
    store
        .read(move |conn| {
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status = ?1 ORDER BY created_at_ms, uuid LIMIT ?2");
            all(
                conn,
                &sql,
                params![JobStatus::Pending.as_str(), limit],
                "job list pending",
                rows::job_row,
                JobRow::into_job,
            )
        })
        .await
}
