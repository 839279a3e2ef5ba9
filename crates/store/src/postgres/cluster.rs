//! Nodes and job runs on PostgreSQL: each write is one statement (its own implicit
//! transaction), except a placement batch and a log append that must trim, which run
//! in one explicit transaction. A placement batch is two statements whatever its size
//! (the jobs' update and one `UNNEST` insert of every run), so thousands of placements
//! cost two round trips, not thousands.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use async_trait::async_trait;

use gantry_types::{
    AccountId, JobId, JobRunId, NodeId,
    event::EventType,
    job::{Job, JobStatus},
    list::Paging,
    node::{HardwareSample, NodeStatus},
};
use sqlx::AssertSqlSafe;

use super::{PgStore, db, events, insert_static, record, status_batch, write_error};
use crate::cluster::{
    ClusterStore, Heartbeat, JobPlacement, LogTail, NodeLiveness, NodeRecord, RunFilter, RunRecord, RunUpdate,
};
use crate::events::NewEventRow;
use crate::jobs::JobRow;
use crate::sql::{
    self, ACTIVE_RUNS, JOB_COLUMNS, NODE_COLUMNS, NodeRow, Placeholders, RUN_COLUMNS, RUNS_OF_A_JOB_ORDER, RunRow,
    Subject, Violation,
};
use crate::{Page, StoreResult};

/// The job columns qualified by the table: an UPDATE ... FROM UNNEST(...) AS p(uuid,
/// now_ms) that returns them would otherwise name `uuid` ambiguously.
pub(super) static RETURNING_JOB: LazyLock<String> =
    LazyLock::new(|| JOB_COLUMNS.split(", ").map(|c| format!("jobs.{c}")).collect::<Vec<_>>().join(", "));

/// The node upsert (see [`sql::node_upsert_sql`]).
static UPSERT_NODE: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING {NODE_COLUMNS}", sql::node_upsert_sql(Placeholders::Dollar)));

#[async_trait]
impl ClusterStore for PgStore {
    async fn node_upsert(&self, node: &NodeRecord) -> StoreResult<()> {
        let r = NodeRow::new(node)?;
        let subject = || Subject::node(node.uuid, node.account_uuid);
        let mut tx = self.pool.begin().await.map_err(db("node upsert"))?;
        let row = insert_static(UPSERT_NODE.as_str(), r)
            .fetch_optional(&mut *tx)
            .await
            .map_err(write_error("node upsert", subject))?;
        // No row changed: the uuid is another account's node.
        let Some(after) = row.as_ref().map(record::<NodeRow>).transpose()? else {
            return Err(subject().error(Violation::PrimaryKey));
        };
        let event = NewEventRow::node(EventType::NodeRegistered, &after, after.updated_at_ms)?;
        let id = events::append(&mut tx, &[event]).await?;
        tx.commit().await.map_err(db("node upsert"))?;
        self.wrote();
        self.published(id);
        Ok(())
    }

    async fn node_fetch(&self, account: Option<AccountId>, id: NodeId) -> StoreResult<Option<NodeRecord>> {
        let sql =
            format!("SELECT {NODE_COLUMNS} FROM nodes WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2)");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("node fetch"))?;
        row.as_ref().map(record::<NodeRow>).transpose()
    }

    async fn node_list_online(&self) -> StoreResult<Vec<NodeLiveness>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT uuid, name, last_seen_at_ms FROM nodes WHERE status = $1")
                .bind(NodeStatus::Online.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(db("node list online"))?;
        rows.into_iter().map(|(uuid, name, seen)| sql::node_liveness(&uuid, name, seen)).collect()
    }

    async fn node_fetch_many(&self, ids: &[NodeId]) -> StoreResult<Vec<NodeRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(NodeId::to_string).collect();
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {NODE_COLUMNS} FROM nodes WHERE uuid = ANY($1)")))
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db("node fetch many"))?;
        rows.iter().map(record::<NodeRow>).collect()
    }

    async fn node_list(
        &self,
        account: Option<AccountId>,
        statuses: &[NodeStatus],
        paging: Paging,
    ) -> StoreResult<Page<NodeRecord>> {
        let query = sql::node_list(Placeholders::Dollar, account, statuses, paging);
        self.list(query, "node list", record::<NodeRow>).await
    }

    async fn node_list_all(&self) -> StoreResult<Vec<NodeRecord>> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY created_at_ms, uuid");
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db("node list all"))?;
        rows.iter().map(record::<NodeRow>).collect()
    }

    async fn node_heartbeat(
        &self,
        id: NodeId,
        lease_epoch: i64,
        now_ms: i64,
        sample: Option<&HardwareSample>,
    ) -> StoreResult<bool> {
        let sample = sample.map(sql::sample_json).transpose()?;
        // GREATEST: a heartbeat delayed behind a newer one never moves last_seen back.
        let done = sqlx::query(
            "UPDATE nodes SET last_seen_at_ms = GREATEST(last_seen_at_ms, $3), \
             latest_sample = COALESCE($4, latest_sample) \
             WHERE uuid = $1 AND lease_epoch = $2 AND status = $5",
        )
        .bind(id.to_string())
        .bind(lease_epoch)
        .bind(now_ms)
        .bind(sample)
        .bind(NodeStatus::Online.as_str())
        .execute(&self.pool)
        .await
        .map_err(db("node heartbeat"))?;
        self.wrote();
        Ok(done.rows_affected() == 1)
    }

    async fn node_heartbeats(&self, beats: &[Heartbeat]) -> StoreResult<u64> {
        if beats.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(beats.len());
        let (mut epochs, mut seen, mut samples) = (Vec::new(), Vec::new(), Vec::<Option<String>>::new());
        for b in beats {
            ids.push(b.node.to_string());
            epochs.push(b.lease_epoch);
            seen.push(b.seen_at_ms);
            samples.push(b.sample.as_ref().map(sql::sample_json).transpose()?);
        }
        // One statement for the whole batch, the same compare-and-set per row as
        // `node_heartbeat`; a node listed twice is not expected (one entry per node).
        let done = sqlx::query(
            "UPDATE nodes AS n SET last_seen_at_ms = GREATEST(n.last_seen_at_ms, b.seen), \
             latest_sample = COALESCE(b.sample, n.latest_sample) \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS b(uuid, epoch, seen, sample) \
             WHERE n.uuid = b.uuid AND n.lease_epoch = b.epoch AND n.status = $5",
        )
        .bind(ids)
        .bind(epochs)
        .bind(seen)
        .bind(samples)
        .bind(NodeStatus::Online.as_str())
        .execute(&self.pool)
        .await
        .map_err(db("node heartbeats"))?;
        self.wrote();
        Ok(done.rows_affected())
    }

    async fn node_set_draining(
        &self,
        account: Option<AccountId>,
        id: NodeId,
        draining: bool,
        now_ms: i64,
    ) -> StoreResult<Option<NodeRecord>> {
        // Every SET expression sees the old row, so updated_at moves only on a change.
        let sql = format!(
            "UPDATE nodes SET is_draining = $3, \
             updated_at_ms = CASE WHEN is_draining <> $3 THEN $4 ELSE updated_at_ms END \
             WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2) RETURNING {NODE_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(account.map(|a| a.to_string()))
            .bind(draining)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("node set draining"))?;
        self.wrote();
        row.as_ref().map(record::<NodeRow>).transpose()
    }

    async fn node_mark_lost(&self, id: NodeId, seen_before_ms: i64, now_ms: i64) -> StoreResult<bool> {
        // One node is a chunk of one: the same compare-and-set, event and fence.
        Ok(!self.node_mark_lost_many(&[id], seen_before_ms, now_ms).await?.is_empty())
    }

    async fn node_mark_lost_many(&self, ids: &[NodeId], seen_before_ms: i64, now_ms: i64) -> StoreResult<Vec<NodeId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let during = "node mark lost";
        let ids: Vec<String> = ids.iter().map(NodeId::to_string).collect();
        let mut tx = self.begin_write(during).await?;
        // The rows locked in uuid order first, so two multi-row writes of nodes taking
        // them in this order cannot wait on each other in a cycle.
        sqlx::query("SELECT uuid FROM nodes WHERE uuid = ANY($1) AND status = $2 ORDER BY uuid FOR UPDATE")
            .bind(&ids)
            .bind(NodeStatus::Online.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db(during))?;
        let sql = format!(
            "UPDATE nodes SET status = $4, updated_at_ms = $3 \
             WHERE uuid = ANY($1) AND status = $5 AND last_seen_at_ms < $2 RETURNING {NODE_COLUMNS}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&ids)
            .bind(seen_before_ms)
            .bind(now_ms)
            .bind(NodeStatus::Lost.as_str())
            .bind(NodeStatus::Online.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db(during))?;
        let marked: Vec<NodeRecord> = rows.iter().map(record::<NodeRow>).collect::<StoreResult<_>>()?;
        if marked.is_empty() {
            return Ok(Vec::new());
        }
        let events = marked
            .iter()
            .map(|n| NewEventRow::node(EventType::NodeStatusChanged, n, now_ms))
            .collect::<StoreResult<Vec<_>>>()?;
        let id = events::append(&mut tx, &events).await?;
        tx.commit().await.map_err(db(during))?;
        self.wrote();
        self.published(id);
        Ok(marked.into_iter().map(|n| n.uuid).collect())
    }

    async fn run_place(&self, placements: &[JobPlacement]) -> StoreResult<Vec<JobId>> {
        let placements = sql::placement_rows(placements)?;
        if placements.is_empty() {
            return Ok(Vec::new());
        }
        let during = "run place";
        let jobs: Vec<String> = placements.iter().map(|p| p.job_uuid.clone()).collect();
        let mut tx = self.begin_write_events(during).await?;
        // Lock the PENDING ones in uuid order first, so two concurrent batches cannot
        // deadlock; a job that changed meanwhile is left out. The locked ones stay
        // PENDING until the UPDATE below, so exactly these are placed.
        let locked: HashSet<String> =
            sqlx::query_scalar("SELECT uuid FROM jobs WHERE uuid = ANY($1) AND status = $2 ORDER BY uuid FOR UPDATE")
                .bind(&jobs)
                .bind(JobStatus::Pending.as_str())
                .fetch_all(tx.conn())
                .await
                .map_err(db(during))?
                .into_iter()
                .collect();
        let placed: Vec<_> = placements.iter().filter(|p| locked.contains(&p.job_uuid)).collect();
        let runs: Vec<&RunRow> = placed.iter().flat_map(|p| &p.runs).collect();
        if !runs.is_empty() {
            let text = |f: fn(&RunRow) -> &str| runs.iter().map(|r| f(r).to_owned()).collect::<Vec<String>>();
            let opt_text = |f: fn(&RunRow) -> Option<&str>| {
                runs.iter().map(|r| f(r).map(str::to_owned)).collect::<Vec<Option<String>>>()
            };
            let int = |f: fn(&RunRow) -> i64| runs.iter().map(|r| f(r)).collect::<Vec<i64>>();
            let opt_int = |f: fn(&RunRow) -> Option<i64>| runs.iter().map(|r| f(r)).collect::<Vec<Option<i64>>>();
            let real = |f: fn(&RunRow) -> f64| runs.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let sql = format!(
                "INSERT INTO job_runs ({RUN_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
                 $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], \
                 $11::bigint[], $12::float8[], $13::float8[], $14::text[], $15::text[], $16::text[], $17::bigint[], \
                 $18::bigint[], $19::bigint[], $20::bigint[], $21::float8[], $22::bigint[], $23::bigint[], $24::text[], \
                 $25::bigint[], $26::bigint[])"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(text(|r| &r.uuid))
                .bind(text(|r| &r.job_uuid))
                .bind(text(|r| &r.account_uuid))
                .bind(text(|r| &r.node_uuid))
                .bind(text(|r| &r.status))
                .bind(opt_text(|r| r.status_reason.as_deref()))
                .bind(int(|r| r.attempt))
                .bind(int(|r| r.rank))
                .bind(int(|r| r.gang_size))
                .bind(int(|r| r.lease_epoch))
                .bind(int(|r| r.cpu))
                .bind(real(|r| r.ram_gb))
                .bind(real(|r| r.storage_gb))
                .bind(text(|r| &r.gpu_indices))
                .bind(text(|r| &r.node_urls))
                .bind(text(|r| &r.container_access_tokens))
                .bind(opt_int(|r| r.exit_code))
                .bind(opt_int(|r| r.started_at_ms))
                .bind(opt_int(|r| r.ended_at_ms))
                .bind(opt_int(|r| r.duration_ms))
                .bind(runs.iter().map(|r| r.hourly_rate_usd).collect::<Vec<Option<f64>>>())
                .bind(int(|r| r.created_at_ms))
                .bind(int(|r| r.updated_at_ms))
                .bind(text(|r| &r.job_snapshot))
                .bind(opt_int(|r| r.start_limit_ms))
                .bind(opt_int(|r| r.run_limit_ms))
                .execute(tx.conn())
                .await
                .map_err(write_error(during, Subject::placed_runs))?;
        }
        // The status change last before the events: its trigger takes the account's
        // usage-counter rows, which a concurrent batch of creations (job_batch.rs)
        // then waits for until this COMMIT, so they are held for as few round trips
        // as possible. It answers the jobs as changed, for their events.
        let mut events = Vec::new();
        if !placed.is_empty() {
            let (uuids, times): (Vec<&str>, Vec<i64>) = placed.iter().map(|p| (p.job_uuid.as_str(), p.now_ms)).unzip();
            let sql = format!(
                "UPDATE jobs SET status = $3, status_reason = NULL, updated_at_ms = p.now_ms \
                 FROM UNNEST($1::text[], $2::bigint[]) AS p(uuid, now_ms) \
                 WHERE jobs.uuid = p.uuid AND jobs.status = $4 RETURNING {}",
                *RETURNING_JOB
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(&uuids)
                .bind(&times)
                .bind(JobStatus::Assigned.as_str())
                .bind(JobStatus::Pending.as_str())
                .fetch_all(tx.conn())
                .await
                .map_err(db(during))?;
            let jobs: HashMap<JobId, Job> =
                rows.iter().map(|r| record::<JobRow>(r).map(|j| (j.uuid, j))).collect::<StoreResult<_>>()?;
            for p in &placed {
                if let Some(job) = jobs.get(&p.job) {
                    events.push(NewEventRow::job(EventType::JobStatusChanged, job, p.now_ms)?);
                }
                events.extend(p.run_events.iter().cloned());
            }
        }
        let refs: Vec<&NewEventRow> = events.iter().collect();
        let id = tx.commit_with_events(&refs).await.map_err(db(during))?;
        self.wrote();
        self.published(id);
        Ok(placed.iter().map(|p| p.job).collect())
    }

    async fn run_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<RunRecord>> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2)");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("job run fetch"))?;
        row.as_ref().map(record::<RunRow>).transpose()
    }

    async fn run_list(
        &self,
        account: Option<AccountId>,
        filter: &RunFilter,
        paging: Paging,
    ) -> StoreResult<Page<RunRecord>> {
        let query = sql::run_list(Placeholders::Dollar, account, filter, paging);
        self.list(query, "job run list", record::<RunRow>).await
    }

    async fn run_list_active(&self) -> StoreResult<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE {ACTIVE_RUNS} ORDER BY created_at_ms, uuid");
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db("job run list active"))?;
        rows.iter().map(record::<RunRow>).collect()
    }

    async fn run_list_active_brief(&self) -> StoreResult<Vec<RunRecord>> {
        let columns = sql::brief_run_columns("json_build_object", "::text");
        let sql = format!("SELECT {columns} FROM job_runs WHERE {ACTIVE_RUNS} ORDER BY created_at_ms, uuid");
        let rows =
            sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db("job run list active brief"))?;
        rows.iter().map(record::<RunRow>).collect()
    }

    async fn run_count_active(&self) -> StoreResult<crate::ActiveRunCounts> {
        let rows = sqlx::query_as(AssertSqlSafe(sql::count_active_sql()))
            .fetch_all(&self.pool)
            .await
            .map_err(db("job runs counted"))?;
        sql::active_counts(rows)
    }

    async fn run_list_due(&self, now_ms: i64) -> StoreResult<Vec<RunRecord>> {
        // `now` as a literal, in a simple query: a prepared statement's generic plan
        // (which PostgreSQL may switch to after five runs) cannot see the bound time,
        // guesses that a third of the active runs are due and scans them all (10-18 ms
        // a pass at 10,000 runs); planned with the time itself, the histogram of
        // `job_runs_due` says how few are, and the index is used.
        let columns = sql::brief_run_columns("json_build_object", "::text");
        let sql = sql::due_runs_sql(&columns, &now_ms.to_string());
        let rows = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db("job run list due"))?;
        rows.iter().map(record::<RunRow>).collect::<StoreResult<_>>().map(sql::oldest_first)
    }

    async fn run_still_wanted(&self, ids: &[JobRunId]) -> StoreResult<Vec<JobRunId>> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let uuids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql::still_wanted_sql("uuid = ANY($1)")))
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db("job runs still wanted"))?;
        sql::run_ids(uuids)
    }

    async fn run_list_for_job(&self, job: JobId) -> StoreResult<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE job_uuid = $1 ORDER BY {RUNS_OF_A_JOB_ORDER}");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(job.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(db("job run list for job"))?;
        rows.iter().map(record::<RunRow>).collect()
    }

    async fn run_update(&self, id: JobRunId, update: &RunUpdate) -> StoreResult<Option<RunRecord>> {
        // Agents' reports at volume: group-committed with other status writes.
        match self.status_write(status_batch::Change::Run(id, update.clone())).await? {
            status_batch::Changed::Run(run) => Ok(run.map(|r| *r)),
            status_batch::Changed::Job(_) => unreachable!("a run change answers a run"),
        }
    }

    async fn run_update_many(&self, updates: &[(JobRunId, RunUpdate)]) -> StoreResult<Vec<Option<RunRecord>>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let during = "job run update many";
        let mut tx = self.begin_write(during).await?;
        // The rows locked in uuid order first, as `node_mark_lost_many` does, so two
        // such writes cannot wait on each other in a cycle.
        let ids: Vec<String> = updates.iter().map(|(id, _)| id.to_string()).collect();
        sqlx::query("SELECT uuid FROM job_runs WHERE uuid = ANY($1) ORDER BY uuid FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(db(during))?;
        let changes: Vec<status_batch::Change> =
            updates.iter().map(|(id, update)| status_batch::Change::Run(*id, update.clone())).collect();
        let (outcomes, new_events) = status_batch::apply_all(&mut tx, &changes.iter().collect::<Vec<_>>()).await?;
        let after = outcomes
            .into_iter()
            .map(|changed| match changed {
                status_batch::Changed::Run(run) => run.map(|r| *r),
                status_batch::Changed::Job(_) => unreachable!("a run change answers a run"),
            })
            .collect();
        let id = events::append(&mut tx, &new_events).await?;
        tx.commit().await.map_err(db(during))?;
        self.wrote();
        self.published(id);
        Ok(after)
    }

    async fn run_logs_append(&self, id: JobRunId, chunk: &str, max_bytes: usize) -> StoreResult<u64> {
        let during = "job run logs append";
        let run = id.to_string();
        let missing = || Subject::run_logs(id);
        let added = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
        let total = |t: i64| u64::try_from(t).unwrap_or(0);
        if chunk.len() >= max_bytes {
            // As long as the limit: the chunk's newest bytes replace everything.
            let logs = sql::append_log("", chunk, max_bytes);
            let t: i64 = sqlx::query_scalar(AssertSqlSafe(sql::log_replace_sql(Placeholders::Dollar)))
                .bind(&run)
                .bind(logs)
                .bind(added)
                .fetch_one(&self.pool)
                .await
                .map_err(write_error(during, missing))?;
            self.wrote();
            return Ok(total(t));
        }
        let appended: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql::log_append_sql(Placeholders::Dollar)))
            .bind(&run)
            .bind(chunk)
            .bind(i64::try_from(max_bytes).unwrap_or(i64::MAX))
            .bind(added)
            .fetch_optional(&self.pool)
            .await
            .map_err(write_error(during, missing))?;
        if let Some(t) = appended {
            self.wrote();
            return Ok(total(t));
        }
        // Too long together (so the row exists): trim under a row lock.
        let mut tx = self.pool.begin().await.map_err(db(during))?;
        let existing: String = sqlx::query_scalar("SELECT logs FROM job_run_logs WHERE run_uuid = $1 FOR UPDATE")
            .bind(&run)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(during))?;
        let t: i64 = sqlx::query_scalar(
            "UPDATE job_run_logs SET logs = $2, appended_bytes = appended_bytes + $3 WHERE run_uuid = $1 \
             RETURNING appended_bytes",
        )
        .bind(&run)
        .bind(sql::append_log(&existing, chunk, max_bytes))
        .bind(added)
        .fetch_one(&mut *tx)
        .await
        .map_err(db(during))?;
        tx.commit().await.map_err(db(during))?;
        self.wrote();
        Ok(total(t))
    }

    async fn run_logs_tail(&self, id: JobRunId) -> StoreResult<Option<LogTail>> {
        let row: Option<(String, i64)> = sqlx::query_as(AssertSqlSafe(format!("{}$1", sql::LOG_TAIL)))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("job run logs tail"))?;
        Ok(row.map(|(logs, n)| LogTail { logs, appended_bytes: u64::try_from(n).unwrap_or(0) }))
    }

    async fn run_logs_fetch(&self, account: Option<AccountId>, id: JobRunId) -> StoreResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT COALESCE(l.logs, '') FROM job_runs r LEFT JOIN job_run_logs l ON l.run_uuid = r.uuid \
             WHERE r.uuid = $1 AND ($2::text IS NULL OR r.account_uuid = $2)",
        )
        .bind(id.to_string())
        .bind(account.map(|a| a.to_string()))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("job run logs fetch"))
    }
}
