//! Nodes and job runs on SQLite: every write (heartbeats and placements included) is
//! one closure on the group-commit writer thread, every read goes through the reader
//! pool. Rows are encoded on the caller's thread before they are queued.

use std::sync::LazyLock;

use async_trait::async_trait;
use gantry_types::{
    AccountId, JobId, JobRunId, NodeId,
    event::EventType,
    job::JobStatus,
    job_run::JobRunStatus,
    list::Paging,
    node::{HardwareSample, NodeStatus},
};
use rusqlite::{OptionalExtension, params};

use super::rows::{self, db, write_error};
use super::{SqliteStore, events};
use crate::cluster::{
    ClusterStore, Heartbeat, JobPlacement, LogTail, NodeLiveness, NodeRecord, RunFilter, RunRecord, RunUpdate,
};
use crate::events::NewEventRow;
use crate::jobs::JobRow;
use crate::sql::row::{FromRow, IntoRecord, ToRow, insert_sql};
use crate::sql::{
    self, ACTIVE_RUNS, JOB_COLUMNS, NODE_COLUMNS, NodeRow, Placeholders, RUN_COLUMNS, RUNS_OF_A_JOB_ORDER, RunRow,
    Subject, Violation,
};
use crate::{Page, StoreResult};

/// The node upsert (see [`sql::node_upsert_sql`]).
static UPSERT_NODE: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING {NODE_COLUMNS}", sql::node_upsert_sql(Placeholders::Question)));

/// A run's compare-and-set (see [`update_run`]).
static UPDATE_RUN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE job_runs SET status = ?1, status_reason = ?2, updated_at_ms = ?3, \
         started_at_ms = CASE WHEN ?4 AND started_at_ms IS NULL THEN ?3 ELSE started_at_ms END, \
         ended_at_ms = CASE WHEN ?5 THEN ?3 ELSE ended_at_ms END, \
         duration_ms = CASE WHEN ?5 AND started_at_ms IS NOT NULL THEN ?3 - started_at_ms ELSE duration_ms END, \
         exit_code = COALESCE(?6, exit_code), node_urls = COALESCE(?7, node_urls) \
         WHERE uuid = ?8 AND status IN (SELECT value FROM json_each(?9)) \
         RETURNING {RUN_COLUMNS}"
    )
});

/// The insert of a placed run.
static INSERT_RUN: LazyLock<String> = LazyLock::new(|| insert_sql::<RunRow>(Placeholders::Question, ""));

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn node_upsert(&self, node: &NodeRecord) -> StoreResult<()> {
        let r = NodeRow::new(node)?;
        let (id, account) = (node.uuid, node.account_uuid);
        self.writer
            .write(move |conn| {
                let after = {
                    let mut stmt = conn.prepare_cached(&UPSERT_NODE).map_err(db("node upsert"))?;
                    r.with_sqlite_params(|params| stmt.query_row(params, |row| NodeRow::from_row(row)).optional())
                        .map_err(write_error("node upsert", || Subject::node(id, account)))?
                };
                // No row changed: the uuid is another account's node.
                let Some(after) = after else {
                    return Err(Subject::node(id, account).error(Violation::PrimaryKey));
                };
                let after = after.into_record()?;
                events::append(conn, &NewEventRow::node(EventType::NodeRegistered, &after, after.updated_at_ms)?)
            })
            .await
    }

    async fn node_fetch(&self, account: Option<AccountId>, id: NodeId) -> StoreResult<Option<NodeRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.read(move |conn| {
            let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)");
            rows::one::<NodeRow>(conn, &sql, params![id, scope], "node fetch")
        })
        .await
    }

    async fn node_list(
        &self,
        account: Option<AccountId>,
        statuses: &[NodeStatus],
        paging: Paging,
    ) -> StoreResult<Page<NodeRecord>> {
        let query = sql::node_list(Placeholders::Question, account, statuses, paging);
        self.read(move |conn| rows::page::<NodeRow>(conn, &query, "node list")).await
    }

    async fn node_list_all(&self) -> StoreResult<Vec<NodeRecord>> {
        self.read(|conn| {
            let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY created_at_ms, uuid");
            rows::all::<NodeRow>(conn, &sql, [], "node list all")
        })
        .await
    }

    async fn node_list_online(&self) -> StoreResult<Vec<NodeLiveness>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT uuid, name, last_seen_at_ms FROM nodes WHERE status = ?1")
                .map_err(db("node list online"))?;
            let rows = stmt
                .query_map([NodeStatus::Online.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db("node list online"))?;
            rows.into_iter().map(|(uuid, name, seen)| sql::node_liveness(&uuid, name, seen)).collect()
        })
        .await
    }

    async fn node_fetch_many(&self, ids: &[NodeId]) -> StoreResult<Vec<NodeRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(NodeId::to_string).collect();
        let ids = sql::json_list(&ids);
        self.read(move |conn| {
            let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE uuid IN (SELECT value FROM json_each(?1))");
            rows::all::<NodeRow>(conn, &sql, [ids], "node fetch many")
        })
        .await
    }

    async fn node_heartbeat(
        &self,
        id: NodeId,
        lease_epoch: i64,
        now_ms: i64,
        sample: Option<&HardwareSample>,
    ) -> StoreResult<bool> {
        let sample = sample.map(sql::sample_json).transpose()?;
        let id = id.to_string();
        self.writer
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

    async fn node_heartbeats(&self, beats: &[Heartbeat]) -> StoreResult<u64> {
        if beats.is_empty() {
            return Ok(0);
        }
        let rows = beats
            .iter()
            .map(|b| {
                Ok((
                    b.node.to_string(),
                    b.lease_epoch,
                    b.seen_at_ms,
                    b.sample.as_ref().map(sql::sample_json).transpose()?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.writer
            .write(move |conn| {
                // One write (one commit) for the batch, the same statement as `node_heartbeat`.
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE nodes SET last_seen_at_ms = max(last_seen_at_ms, ?3), \
                         latest_sample = COALESCE(?4, latest_sample) \
                         WHERE uuid = ?1 AND lease_epoch = ?2 AND status = ?5",
                    )
                    .map_err(db("node heartbeats"))?;
                let mut applied = 0;
                for (id, epoch, seen, sample) in rows {
                    applied += stmt
                        .execute(params![id, epoch, seen, sample, NodeStatus::Online.as_str()])
                        .map_err(db("node heartbeats"))? as u64;
                }
                Ok(applied)
            })
            .await
    }

    async fn node_set_draining(
        &self,
        account: Option<AccountId>,
        id: NodeId,
        draining: bool,
        now_ms: i64,
    ) -> StoreResult<Option<NodeRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.writer
            .write(move |conn| {
                // Every SET expression sees the old row, so updated_at moves only on a change.
                let sql = format!(
                    "UPDATE nodes SET is_draining = ?3, \
                     updated_at_ms = CASE WHEN is_draining <> ?3 THEN ?4 ELSE updated_at_ms END \
                     WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2) RETURNING {NODE_COLUMNS}"
                );
                rows::one::<NodeRow>(conn, &sql, params![id, scope, draining, now_ms], "node set draining")
            })
            .await
    }

    async fn node_mark_lost(&self, id: NodeId, seen_before_ms: i64, now_ms: i64) -> StoreResult<bool> {
        // One node is a chunk of one: the same compare-and-set, event and fence.
        Ok(!self.node_mark_lost_many(&[id], seen_before_ms, now_ms).await?.is_empty())
    }

    async fn node_mark_lost_many(&self, ids: &[NodeId], seen_before_ms: i64, now_ms: i64) -> StoreResult<Vec<NodeId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(NodeId::to_string).collect();
        self.writer
            .write(move |conn| {
                // One op of the group commit (one savepoint), the same compare-and-set
                // per node as `node_mark_lost`.
                let sql = format!(
                    "UPDATE nodes SET status = ?4, updated_at_ms = ?3 \
                     WHERE uuid = ?1 AND status = ?5 AND last_seen_at_ms < ?2 RETURNING {NODE_COLUMNS}"
                );
                let (lost, online) = (NodeStatus::Lost.as_str(), NodeStatus::Online.as_str());
                let mut marked = Vec::new();
                for id in &ids {
                    let params = params![id, seen_before_ms, now_ms, lost, online];
                    let Some(after) = rows::one::<NodeRow>(conn, &sql, params, "node mark lost")? else {
                        continue;
                    };
                    events::append(conn, &NewEventRow::node(EventType::NodeStatusChanged, &after, now_ms)?)?;
                    marked.push(after.uuid);
                }
                Ok(marked)
            })
            .await
    }

    async fn run_place(&self, placements: &[JobPlacement]) -> StoreResult<Vec<JobId>> {
        let placements = sql::placement_rows(placements)?;
        if placements.is_empty() {
            return Ok(Vec::new());
        }
        self.writer
            .write(move |conn| {
                // One op of the group commit: its savepoint undoes the whole call on error.
                let assign_sql = format!(
                    "UPDATE jobs SET status = ?3, status_reason = NULL, updated_at_ms = ?2 \
                     WHERE uuid = ?1 AND status = ?4 RETURNING {JOB_COLUMNS}"
                );
                let mut insert = conn.prepare_cached(&INSERT_RUN).map_err(db("run place"))?;
                let (assigned, pending) = (JobStatus::Assigned.as_str(), JobStatus::Pending.as_str());
                let mut placed = Vec::new();
                for p in &placements {
                    let params = params![p.job_uuid, p.now_ms, assigned, pending];
                    let Some(job) = rows::one::<JobRow>(conn, &assign_sql, params, "run place")? else {
                        continue; // no longer PENDING (or unknown): skipped
                    };
                    for r in &p.runs {
                        r.with_sqlite_params(|params| insert.execute(params))
                            .map_err(write_error("run place", || Subject::run(r)))?;
                    }
                    events::append(conn, &NewEventRow::job(EventType::JobStatusChanged, &job, p.now_ms)?)?;
                    for e in &p.run_events {
                        events::append(conn, e)?;
                    }
                    placed.push(p.job);
                }
                Ok(placed)
            })
            .await
    }

    async fn run_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<RunRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.read(move |conn| {
            let sql =
                format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)");
            rows::one::<RunRow>(conn, &sql, params![id, scope], "job run fetch")
        })
        .await
    }

    async fn run_list(
        &self,
        account: Option<AccountId>,
        filter: &RunFilter,
        paging: Paging,
    ) -> StoreResult<Page<RunRecord>> {
        let query = sql::run_list(Placeholders::Question, account, filter, paging);
        self.read(move |conn| rows::page::<RunRow>(conn, &query, "job run list")).await
    }

    async fn run_list_active(&self) -> StoreResult<Vec<RunRecord>> {
        self.read(|conn| {
            let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE {ACTIVE_RUNS} ORDER BY created_at_ms, uuid");
            rows::all::<RunRow>(conn, &sql, [], "job run list active")
        })
        .await
    }

    async fn run_list_active_brief(&self) -> StoreResult<Vec<RunRecord>> {
        let columns = crate::sql::brief_run_columns("json_object", "");
        self.read(move |conn| {
            let sql = format!("SELECT {columns} FROM job_runs WHERE {ACTIVE_RUNS} ORDER BY created_at_ms, uuid");
            rows::all::<RunRow>(conn, &sql, [], "job run list active brief")
        })
        .await
    }

    async fn run_count_active(&self) -> StoreResult<crate::ActiveRunCounts> {
        self.read(|conn| {
            let rows = conn
                .prepare_cached(&sql::count_active_sql())
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect::<rusqlite::Result<Vec<sql::ActiveCountRow>>>()
                })
                .map_err(db("job runs counted"))?;
            sql::active_counts(rows)
        })
        .await
    }

    async fn run_list_due(&self, now_ms: i64) -> StoreResult<Vec<RunRecord>> {
        let columns = crate::sql::brief_run_columns("json_object", "");
        self.read(move |conn| {
            rows::all::<RunRow>(conn, &sql::due_runs_sql(&columns, "?1"), [now_ms], "job run list due")
        })
        .await
        .map(sql::oldest_first)
    }

    async fn run_still_wanted(&self, ids: &[JobRunId]) -> StoreResult<Vec<JobRunId>> {
        // SQLite cannot bind a list; the ids travel as one JSON array.
        let ids = sql::json_list(&ids.iter().map(ToString::to_string).collect::<Vec<_>>());
        let uuids: Vec<String> = self
            .read(move |conn| {
                conn.prepare_cached(&sql::still_wanted_sql("uuid IN (SELECT value FROM json_each(?1))"))
                    .and_then(|mut s| s.query_map([ids], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(db("job runs still wanted"))
            })
            .await?;
        sql::run_ids(uuids)
    }

    async fn run_list_for_job(&self, job: JobId) -> StoreResult<Vec<RunRecord>> {
        let job = job.to_string();
        self.read(move |conn| {
            let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE job_uuid = ?1 ORDER BY {RUNS_OF_A_JOB_ORDER}");
            rows::all::<RunRow>(conn, &sql, [job], "job run list for job")
        })
        .await
    }

    async fn run_update(&self, id: JobRunId, update: &RunUpdate) -> StoreResult<Option<RunRecord>> {
        let update = update.clone();
        self.writer.write(move |conn| update_run(conn, id, &update)).await
    }

    async fn run_update_many(&self, updates: &[(JobRunId, RunUpdate)]) -> StoreResult<Vec<Option<RunRecord>>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = updates.to_vec();
        // One op of the group commit (one savepoint): all of them or none.
        self.writer.write(move |conn| updates.iter().map(|(id, u)| update_run(conn, *id, u)).collect()).await
    }

    async fn run_logs_append(&self, id: JobRunId, chunk: &str, max_bytes: usize) -> StoreResult<u64> {
        let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let added = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
        // A chunk as long as the limit replaces everything: no need to read the old logs.
        let (chunk, replace) = if chunk.len() >= max_bytes {
            (sql::append_log("", chunk, max_bytes), true)
        } else {
            (chunk.to_owned(), false)
        };
        self.writer
            .write(move |conn| {
                let missing = || Subject::run_logs(id);
                let run = id.to_string();
                let replace_sql = sql::log_replace_sql(Placeholders::Question);
                if !replace {
                    let total: Option<i64> = conn
                        .prepare_cached(&sql::log_append_sql(Placeholders::Question))
                        .and_then(|mut s| s.query_row(params![run, chunk, max, added], |r| r.get(0)).optional())
                        .map_err(write_error("job run logs append", missing))?;
                    if let Some(total) = total {
                        return Ok(u64::try_from(total).unwrap_or(0));
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
                    .and_then(|mut s| s.query_row(params![run, logs, added], |r| r.get::<_, i64>(0)))
                    .map(|total| u64::try_from(total).unwrap_or(0))
                    .map_err(write_error("job run logs append", missing))
            })
            .await
    }

    async fn run_logs_tail(&self, id: JobRunId) -> StoreResult<Option<LogTail>> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("{}?1", sql::LOG_TAIL))
                .and_then(|mut s| {
                    s.query_row([id], |r| {
                        Ok(LogTail { logs: r.get(0)?, appended_bytes: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0) })
                    })
                    .optional()
                })
                .map_err(db("job run logs tail"))
        })
        .await
    }

    async fn run_logs_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<String>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT COALESCE(l.logs, '') FROM job_runs r LEFT JOIN job_run_logs l ON l.run_uuid = r.uuid \
                     WHERE r.uuid = ?1 AND (?2 IS NULL OR r.account_uuid = ?2)",
            )
            .and_then(|mut s| s.query_row(params![id, scope], |r| r.get(0)).optional())
            .map_err(db("job run logs fetch"))
        })
        .await
    }
}

/// A run's compare-and-set in one statement, its event, and the job's image size,
/// on the writer's connection. Every SET expression sees the old row (so duration
/// uses the started_at from before this update).
fn update_run(conn: &rusqlite::Connection, id: JobRunId, u: &RunUpdate) -> StoreResult<Option<RunRecord>> {
    let node_urls = u.node_urls.as_deref().map(sql::node_urls_json).transpose()?;
    // SQLite cannot bind a list; the allowed statuses travel as one JSON array.
    let from: Vec<String> = u.from.iter().map(|s| s.as_str().to_owned()).collect();
    let from = sql::json_list(&from);
    let (running, terminal) = (u.to == JobRunStatus::Running, u.to.is_terminal());
    let params =
        params![u.to.as_str(), u.reason, u.now_ms, running, terminal, u.exit_code, node_urls, id.to_string(), from];
    let Some(run) = rows::one::<RunRow>(conn, &UPDATE_RUN, params, "job run update")? else {
        return Ok(None);
    };
    events::append(conn, &NewEventRow::run(EventType::JobRunStatusChanged, &run.run, u.now_ms)?)?;
    if let Some(size) = u.image_size_bytes {
        conn.prepare_cached("UPDATE jobs SET image_size_bytes = ?2 WHERE uuid = ?1")
            .and_then(|mut s| s.execute(params![run.run.job_uuid.to_string(), size]))
            .map_err(db("job run update (image size)"))?;
    }
    Ok(Some(run))
}

#[cfg(test)]
mod tests {
    /// The lifecycle pass's read goes through migration 18's indexes, not a scan of
    /// the active runs: the expression index matches only while its text and the
    /// query's agree (a test in `sql::cluster` keeps them equal; this one shows SQLite
    /// takes it).
    #[test]
    fn due_runs_are_found_by_index() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("memory database");
        crate::migrate::run_sqlite(&mut conn).expect("migrations");
        let query = super::sql::due_runs_sql(&crate::sql::brief_run_columns("json_object", ""), "?1");
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {query}")).expect("plan");
        let plan: Vec<String> =
            stmt.query_map([0i64], |r| r.get::<_, String>(3)).and_then(|rows| rows.collect()).expect("plan rows");
        let plan = plan.join("\n");
        assert!(plan.contains("USING INDEX job_runs_due"), "{plan}");
        assert!(plan.contains("nodes_lost"), "{plan}");
        assert!(!plan.contains("SCAN job_runs"), "{plan}");
    }
}
