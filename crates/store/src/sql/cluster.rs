//! SQL text and row mapping of nodes and job runs (tables of migration 0003), shared by
//! both backends like the rest of [`crate::sql`].
//!
//! Each row struct is both what a backend writes (built from a record on the caller's
//! thread, so JSON encoding never runs on the SQLite writer thread) and what it reads
//! back (turned into a record in one place).

use std::collections::BTreeMap;

use gantry_types::{
    AccountId, GpuModelId, JobId, JobRunId, NodeId, Timestamp,
    job::ContainerAccessToken,
    job_run::{JobRun, JobRunStatus, NodeUrl},
    list::Paging,
    node::{HardwareSample, NodeInventory, NodeStatus},
};

use super::row::{Columns, IntoRecord, row};
use super::{Conditions, ListQuery, Placeholders, SqlValue, Subject, parse_uuid};
use crate::cluster::{JobPlacement, NodeRecord, RunFilter, RunRecord};
use crate::{StoreError, StoreResult};

/// Columns of a node (see [`NodeRow`]).
pub(crate) const NODE_COLUMNS: &str = NodeRow::LIST;

/// Columns of a run (see [`RunRow`]).
pub(crate) const RUN_COLUMNS: &str = RunRow::LIST;

/// The job timeouts a brief run's `job_snapshot` keeps
/// (`ClusterStore::run_list_active_brief`), stored as `start_limit_ms` and
/// `run_limit_ms`.
pub(crate) const BRIEF_SNAPSHOT_KEYS: [&str; 2] = ["max_timeout_start_ms", "max_timeout_run_ms"];

/// [`RUN_COLUMNS`] with `job_snapshot` built from the timeout columns by `object`,
/// the backend's JSON object function (`json_object`, `json_build_object`), cast by
/// `cast` to the column's text type. A run whose columns are empty (written by a
/// binary older than migration 17, still placing during a rolling upgrade: every job
/// has a start timeout) keeps its whole snapshot, so its timeouts are never lost.
pub(crate) fn brief_run_columns(object: &str, cast: &str) -> String {
    let [start, run] = BRIEF_SNAPSHOT_KEYS;
    let snapshot = format!(
        "CASE WHEN start_limit_ms IS NULL THEN job_snapshot \
         ELSE {object}('{start}', start_limit_ms, '{run}', run_limit_ms){cast} END AS job_snapshot"
    );
    RUN_COLUMNS
        .split(", ")
        .map(|c| if c == "job_snapshot" { snapshot.as_str() } else { c })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The moment an active run becomes due for the lifecycle pass (epoch ms): its start
/// limit after its creation while ASSIGNED or PREPARING, its run limit after its start
/// while RUNNING, at once (0) without limits in columns (see [`brief_run_columns`]),
/// and 9e18 (later than any clock) without a limit. Indexed over the active runs
/// (`job_runs_due`, migration 18: the index's expression is this text, which a test
/// keeps in step), so a pass finds the few due runs instead of visiting every active
/// one.
///
/// Never NULL (but for a RUNNING run without a start, which no write makes): with
/// every value NULL (no run has limits, as under `gantry bench schedule`), PostgreSQL
/// has no histogram, guesses that a third of the rows match, and scans the table. A
/// limit from 4e15 ms (over 100,000 years) on counts as none: adding it could
/// overflow a BIGINT, and PostgreSQL's error would stop every pass.
pub(crate) const RUN_DUE_AT: &str = "(CASE WHEN start_limit_ms IS NULL THEN 0 \
     WHEN status = 'RUNNING' THEN (CASE WHEN run_limit_ms < 4000000000000000 THEN started_at_ms + run_limit_ms \
     ELSE 9000000000000000000 END) \
     WHEN start_limit_ms < 4000000000000000 THEN created_at_ms + start_limit_ms ELSE 9000000000000000000 END)";

/// `run_list_due`'s query: the active runs past their start or run limit at `now`
/// (SQLite's parameter; PostgreSQL's literal, see its `run_list_due`), or without limits in columns ([`RUN_DUE_AT`]), then
/// those on a LOST node (`nodes_lost`, migration 18) not already listed; the same
/// rules as `gantry_lifecycle::timeouts`, which decides on what this returns. Two
/// indexed halves rather than one OR: an OR with the LOST nodes' subquery made both
/// databases visit every active run (9 ms a pass at 10,000 runs on PostgreSQL, most of
/// it reading the runs' wide rows) to return none in a quiet pass. Unordered: with an
/// ORDER BY, SQLite walks `job_runs_active` (already in that order) over every active
/// run rather than sort the few due ones; [`oldest_first`] orders them.
pub(crate) fn due_runs_sql(columns: &str, now: &str) -> String {
    format!(
        "SELECT {columns} FROM job_runs WHERE {ACTIVE_RUNS} AND {RUN_DUE_AT} < {now} \
         UNION ALL \
         SELECT {columns} FROM job_runs WHERE {ACTIVE_RUNS} \
         AND node_uuid IN (SELECT uuid FROM nodes WHERE status = 'LOST') AND ({RUN_DUE_AT} < {now}) IS NOT TRUE"
    )
}

/// Sorts `runs` by (created_at, uuid), the order of `ORDER BY created_at_ms, uuid`
/// (a uuid's text orders as its bytes).
pub(crate) fn oldest_first(mut runs: Vec<RunRecord>) -> Vec<RunRecord> {
    runs.sort_by_key(|r| (r.run.created_at, r.run.uuid));
    runs
}

/// `run_count_active`'s query, one pass over the active runs: a row per status for
/// the runs without GPUs (node and GPUs NULL), and one per status, node and GPU list
/// (a JSON array) for the others, each with its count.
pub(crate) fn count_active_sql() -> String {
    let holds = "gpu_indices <> '[]'";
    format!(
        "SELECT status, CASE WHEN {holds} THEN node_uuid END, CASE WHEN {holds} THEN gpu_indices END, COUNT(*) \
         FROM job_runs WHERE {ACTIVE_RUNS} GROUP BY 1, 2, 3"
    )
}

/// A row of [`count_active_sql`].
pub(crate) type ActiveCountRow = (String, Option<String>, Option<String>, i64);

/// [`count_active_sql`]'s rows as counts.
pub(crate) fn active_counts(rows: Vec<ActiveCountRow>) -> StoreResult<crate::ActiveRunCounts> {
    const T: &str = "job_runs";
    let corrupt = |detail: String| StoreError::Corrupt { table: T, detail };
    let mut counts = crate::ActiveRunCounts::default();
    for (status, node, gpus, n) in rows {
        let parsed = JobRunStatus::parse(&status).ok_or_else(|| corrupt(format!("unknown run status {status:?}")))?;
        *counts.by_status.entry(parsed).or_default() += n.max(0) as u64;
        if let (Some(node), Some(gpus)) = (node, gpus) {
            let owner = format!("a run of node {node}");
            let node = NodeId(parse_uuid(&node).map_err(corrupt)?);
            let gpus: Vec<u32> = decoded(T, "gpu_indices", &owner, serde_json::from_str(&gpus))?;
            counts.gpus_held.extend(gpus.into_iter().map(|i| (node, i)));
        }
    }
    Ok(counts)
}

/// The runs that still hold node capacity, as a literal condition: SQLite uses the
/// partial index `job_runs_active` only for a query repeating its condition verbatim.
pub(crate) const ACTIVE_RUNS: &str = "status IN ('ASSIGNED', 'PREPARING', 'RUNNING')";

/// `run_still_wanted`'s query, `ids_condition` being the backend's way of saying
/// "uuid is one of the given list". Its job must still be wanted (the rule of a node's
/// desired state: not cancelling, not ended).
pub(crate) fn still_wanted_sql(ids_condition: &str) -> String {
    format!(
        "SELECT uuid FROM job_runs WHERE {ids_condition} AND {ACTIVE_RUNS} AND EXISTS \
         (SELECT 1 FROM jobs j WHERE j.uuid = job_runs.job_uuid AND j.status IN ('ASSIGNED', 'RUNNING'))"
    )
}

/// Run uuids as read back (a bad one is a corrupt row).
pub(crate) fn run_ids(uuids: Vec<String>) -> StoreResult<Vec<JobRunId>> {
    uuids
        .into_iter()
        .map(|u| {
            u.parse().map_err(|_| StoreError::Corrupt { table: "job_runs", detail: format!("bad run uuid {u:?}") })
        })
        .collect()
}

/// The order of `run_list_for_job` (a gang's runs share `created_at`).
pub(crate) const RUNS_OF_A_JOB_ORDER: &str = "created_at_ms, attempt, rank, uuid";

/// A JSON encoding's result as a store result (encoding these types cannot fail in
/// practice: every map has string keys).
fn encoded(during: &'static str, result: serde_json::Result<String>) -> StoreResult<String> {
    result.map_err(|e| StoreError::Database { during, source: Box::new(e) })
}

/// A JSON column's decoding result; failure means a corrupt row.
fn decoded<T>(table: &'static str, what: &str, owner: &str, result: serde_json::Result<T>) -> StoreResult<T> {
    result.map_err(|e| StoreError::Corrupt { table, detail: format!("{what} of {owner} does not decode: {e}") })
}

fn to_u32(table: &'static str, what: &str, owner: &str, value: i64) -> StoreResult<u32> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt { table, detail: format!("{what} of {owner} is out of range: {value}") })
}

row! {
    /// A node's columns.
    #[derive(Clone, Debug)]
    pub(crate) struct NodeRow in "nodes" (read, write) {
        uuid: String,
        account_uuid: String,
        name: String,
        region_code: Option<String>,
        labels: String,
        hostname: Option<String>,
        inventory: String,
        gpu_models: String,
        status: String,
        is_draining: bool,
        lease_epoch: i64,
        last_seen_at_ms: i64,
        latest_sample: Option<String>,
        created_at_ms: i64,
        updated_at_ms: i64,
    }
}

impl NodeRow {
    /// The columns of `node`, JSON encoded.
    pub fn new(node: &NodeRecord) -> StoreResult<Self> {
        Ok(Self {
            uuid: node.uuid.to_string(),
            account_uuid: node.account_uuid.to_string(),
            name: node.name.clone(),
            region_code: node.region_code.clone(),
            labels: encoded("node encoding", serde_json::to_string(&node.labels))?,
            hostname: node.hostname.clone(),
            inventory: encoded("node encoding", serde_json::to_string(&node.inventory))?,
            gpu_models: encoded("node encoding", serde_json::to_string(&node.gpu_models))?,
            status: node.status.as_str().to_owned(),
            is_draining: node.is_draining,
            lease_epoch: node.lease_epoch,
            last_seen_at_ms: node.last_seen_at_ms,
            latest_sample: node.latest_sample.as_ref().map(sample_json).transpose()?,
            created_at_ms: node.created_at_ms,
            updated_at_ms: node.updated_at_ms,
        })
    }
}

impl IntoRecord for NodeRow {
    type Record = NodeRecord;

    /// Parses the uuids, status and JSON columns.
    fn into_record(self) -> StoreResult<NodeRecord> {
        const T: &str = "nodes";
        let corrupt = |detail: String| StoreError::Corrupt { table: T, detail };
        let owner = format!("node {}", self.uuid);
        let status = NodeStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown status {:?} of {owner}", self.status)))?;
        let labels: BTreeMap<String, String> = decoded(T, "labels", &owner, serde_json::from_str(&self.labels))?;
        let inventory: NodeInventory = decoded(T, "inventory", &owner, serde_json::from_str(&self.inventory))?;
        let gpu_models: Vec<Option<GpuModelId>> =
            decoded(T, "gpu_models", &owner, serde_json::from_str(&self.gpu_models))?;
        let latest_sample: Option<HardwareSample> = self
            .latest_sample
            .as_deref()
            .map(|s| decoded(T, "latest_sample", &owner, serde_json::from_str(s)))
            .transpose()?;
        Ok(NodeRecord {
            uuid: NodeId(parse_uuid(&self.uuid).map_err(corrupt)?),
            account_uuid: AccountId(parse_uuid(&self.account_uuid).map_err(corrupt)?),
            name: self.name,
            region_code: self.region_code,
            labels,
            hostname: self.hostname,
            inventory,
            gpu_models,
            status,
            is_draining: self.is_draining,
            lease_epoch: self.lease_epoch,
            last_seen_at_ms: self.last_seen_at_ms,
            latest_sample,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

/// A hardware sample as stored (`nodes.latest_sample`).
pub(crate) fn sample_json(sample: &HardwareSample) -> StoreResult<String> {
    encoded("hardware sample encoding", serde_json::to_string(sample))
}

/// Published ports as stored (`job_runs.node_urls`).
pub(crate) fn node_urls_json(urls: &[NodeUrl]) -> StoreResult<String> {
    encoded("node urls encoding", serde_json::to_string(urls))
}

row! {
    /// A job run's columns (`logs` live in `job_run_logs`).
    #[derive(Clone, Debug)]
    pub(crate) struct RunRow in "job_runs" (read, write) {
        uuid: String,
        job_uuid: String,
        account_uuid: String,
        node_uuid: String,
        status: String,
        status_reason: Option<String>,
        attempt: i64,
        rank: i64,
        gang_size: i64,
        lease_epoch: i64,
        cpu: i64,
        ram_gb: f64,
        storage_gb: f64,
        gpu_indices: String,
        node_urls: String,
        container_access_tokens: String,
        exit_code: Option<i64>,
        started_at_ms: Option<i64>,
        ended_at_ms: Option<i64>,
        duration_ms: Option<i64>,
        hourly_rate_usd: Option<f64>,
        created_at_ms: i64,
        updated_at_ms: i64,
        job_snapshot: String,
        // The job's timeouts, from the snapshot (migration 17: what the lifecycle
        // pass reads instead of the snapshot); not part of the record.
        start_limit_ms: Option<i64>,
        run_limit_ms: Option<i64>,
    }
}

impl RunRow {
    /// The columns of `record`, JSON encoded (`run.logs` is not part of the row).
    pub fn new(record: &RunRecord) -> StoreResult<Self> {
        let r = &record.run;
        let during = "job run encoding";
        Ok(Self {
            uuid: r.uuid.to_string(),
            job_uuid: r.job_uuid.to_string(),
            account_uuid: r.account_uuid.to_string(),
            node_uuid: r.node_uuid.to_string(),
            status: r.status.as_str().to_owned(),
            status_reason: r.status_reason.clone(),
            attempt: i64::from(r.attempt),
            rank: i64::from(r.rank),
            gang_size: i64::from(r.gang_size),
            lease_epoch: r.lease_epoch,
            cpu: i64::from(record.cpu),
            ram_gb: record.ram_gb,
            storage_gb: record.storage_gb,
            gpu_indices: encoded(during, serde_json::to_string(&r.gpu_indices))?,
            node_urls: node_urls_json(&r.node_urls)?,
            container_access_tokens: encoded(during, serde_json::to_string(&r.container_access_tokens))?,
            exit_code: r.exit_code.map(i64::from),
            started_at_ms: r.started_at_ms,
            ended_at_ms: r.ended_at_ms,
            duration_ms: r.duration_ms,
            hourly_rate_usd: r.hourly_rate_usd,
            created_at_ms: r.created_at.0,
            updated_at_ms: r.updated_at.0,
            job_snapshot: encoded(during, serde_json::to_string(&r.job_snapshot))?,
            start_limit_ms: r.job_snapshot[BRIEF_SNAPSHOT_KEYS[0]].as_i64(),
            run_limit_ms: r.job_snapshot[BRIEF_SNAPSHOT_KEYS[1]].as_i64(),
        })
    }
}

impl IntoRecord for RunRow {
    type Record = RunRecord;

    /// Parses the uuids, status, numbers and JSON columns.
    fn into_record(self) -> StoreResult<RunRecord> {
        const T: &str = "job_runs";
        let corrupt = |detail: String| StoreError::Corrupt { table: T, detail };
        let owner = format!("job run {}", self.uuid);
        let status = JobRunStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown status {:?} of {owner}", self.status)))?;
        let exit_code = self
            .exit_code
            .map(|c| i32::try_from(c).map_err(|_| corrupt(format!("exit_code of {owner} is out of range: {c}"))))
            .transpose()?;
        let gpu_indices: Vec<u32> = decoded(T, "gpu_indices", &owner, serde_json::from_str(&self.gpu_indices))?;
        let node_urls: Vec<NodeUrl> = decoded(T, "node_urls", &owner, serde_json::from_str(&self.node_urls))?;
        let container_access_tokens: Vec<ContainerAccessToken> =
            decoded(T, "container_access_tokens", &owner, serde_json::from_str(&self.container_access_tokens))?;
        let job_snapshot: serde_json::Value =
            decoded(T, "job_snapshot", &owner, serde_json::from_str(&self.job_snapshot))?;
        let run = JobRun {
            object: "job_run".into(),
            uuid: JobRunId(parse_uuid(&self.uuid).map_err(corrupt)?),
            job_uuid: JobId(parse_uuid(&self.job_uuid).map_err(corrupt)?),
            job_snapshot,
            node_uuid: NodeId(parse_uuid(&self.node_uuid).map_err(corrupt)?),
            status,
            status_reason: self.status_reason,
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.ended_at_ms,
            duration_ms: self.duration_ms,
            exit_code,
            node_urls,
            container_access_tokens,
            hourly_rate_usd: self.hourly_rate_usd,
            attempt: to_u32(T, "attempt", &owner, self.attempt)?,
            rank: to_u32(T, "rank", &owner, self.rank)?,
            gang_size: to_u32(T, "gang_size", &owner, self.gang_size)?,
            gpu_indices,
            lease_epoch: self.lease_epoch,
            account_uuid: AccountId(parse_uuid(&self.account_uuid).map_err(corrupt)?),
            logs: None,
            created_at: Timestamp(self.created_at_ms),
            updated_at: Timestamp(self.updated_at_ms),
        };
        Ok(RunRecord {
            cpu: to_u32(T, "cpu", &owner, self.cpu)?,
            ram_gb: self.ram_gb,
            storage_gb: self.storage_gb,
            run,
        })
    }
}

/// The `node_list` query: `account` scopes, `statuses` narrows (empty = all).
pub(crate) fn node_list(
    style: Placeholders,
    account: Option<AccountId>,
    statuses: &[NodeStatus],
    paging: Paging,
) -> ListQuery {
    let mut c = Conditions::new(style);
    if let Some(account) = account {
        c.eq("account_uuid", SqlValue::Text(account.to_string()));
    }
    c.any_of("status", statuses.iter().map(|s| SqlValue::Text(s.as_str().into())));
    c.finish("nodes", NODE_COLUMNS, paging)
}

/// The `run_list` query: `account` scopes, `filter` narrows.
pub(crate) fn run_list(
    style: Placeholders,
    account: Option<AccountId>,
    filter: &RunFilter,
    paging: Paging,
) -> ListQuery {
    let mut c = Conditions::new(style);
    if let Some(account) = account {
        c.eq("account_uuid", SqlValue::Text(account.to_string()));
    }
    c.any_of("job_uuid", filter.job_uuids.iter().map(|id| SqlValue::Text(id.to_string())));
    c.any_of("status", filter.statuses.iter().map(|s| SqlValue::Text(s.as_str().into())));
    c.any_of("node_uuid", filter.node_uuids.iter().map(|id| SqlValue::Text(id.to_string())));
    c.finish("job_runs", RUN_COLUMNS, paging)
}

/// `(p1, p2, ..., pn)` in the backend's spelling.
fn values(style: Placeholders, n: usize) -> String {
    let list: Vec<String> = (1..=n).map(|i| style.nth(i)).collect();
    format!("({})", list.join(", "))
}

/// `node_upsert`: parameters are [`NodeRow`]'s columns in order. A new uuid is inserted;
/// an existing one of the same account gets the registration fields (created_at and
/// is_draining stay, latest_sample only when given); one of another account is left
/// alone (the statement changes no row, which the backend reports as a conflict).
pub(crate) fn node_upsert_sql(style: Placeholders) -> String {
    format!(
        "{} \
         ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, region_code = excluded.region_code, \
         labels = excluded.labels, hostname = excluded.hostname, inventory = excluded.inventory, \
         gpu_models = excluded.gpu_models, status = excluded.status, lease_epoch = excluded.lease_epoch, \
         last_seen_at_ms = excluded.last_seen_at_ms, \
         latest_sample = COALESCE(excluded.latest_sample, nodes.latest_sample), \
         updated_at_ms = excluded.updated_at_ms \
         WHERE nodes.account_uuid = excluded.account_uuid",
        super::row::insert_sql::<NodeRow>(style, "")
    )
}

/// The fast path of `run_logs_append` (parameters: run, chunk, max bytes, chunk
/// bytes): inserts the first chunk, or appends in place while the result fits, and
/// returns the bytes ever appended. No row (and nothing returned) when it would not
/// fit; the backend then trims with [`append_log`].
pub(crate) fn log_append_sql(style: Placeholders) -> String {
    let (run, chunk, max, added) = (style.nth(1), style.nth(2), style.nth(3), style.nth(4));
    format!(
        "INSERT INTO job_run_logs (run_uuid, logs, appended_bytes) VALUES ({run}, {chunk}, {added}) \
         ON CONFLICT (run_uuid) DO UPDATE SET logs = job_run_logs.logs || excluded.logs, \
         appended_bytes = job_run_logs.appended_bytes + excluded.appended_bytes \
         WHERE octet_length(job_run_logs.logs) + octet_length(excluded.logs) <= {max} \
         RETURNING appended_bytes"
    )
}

/// Sets a run's logs (parameters: run, logs, bytes appended by this write), inserting
/// the row if needed; returns the bytes ever appended.
pub(crate) fn log_replace_sql(style: Placeholders) -> String {
    format!(
        "INSERT INTO job_run_logs (run_uuid, logs, appended_bytes) VALUES {} \
         ON CONFLICT (run_uuid) DO UPDATE SET logs = excluded.logs, \
         appended_bytes = job_run_logs.appended_bytes + excluded.appended_bytes \
         RETURNING appended_bytes",
        values(style, 3)
    )
}

/// A run's logs and bytes ever appended (parameter: run); no row for an unknown run.
pub(crate) const LOG_TAIL: &str = "SELECT COALESCE(l.logs, ''), COALESCE(l.appended_bytes, 0) FROM job_runs r \
     LEFT JOIN job_run_logs l ON l.run_uuid = r.uuid WHERE r.uuid = ";

/// A placement's job and its runs' rows, encoded before the write.
#[derive(Debug)]
pub(crate) struct PlacementRows {
    pub job: JobId,
    pub job_uuid: String,
    pub now_ms: i64,
    pub runs: Vec<RunRow>,
    /// The runs' `job_run.created` events, appended when the job is placed.
    pub run_events: Vec<crate::events::NewEventRow>,
}

/// Encodes `placements` for `run_place`, keeping only the first placement of each
/// job (a later one would find the job ASSIGNED already and be skipped; dropping it
/// up front makes that hold for the PostgreSQL batch statement too).
pub(crate) fn placement_rows(placements: &[JobPlacement]) -> StoreResult<Vec<PlacementRows>> {
    let mut seen = std::collections::HashSet::with_capacity(placements.len());
    placements
        .iter()
        .filter(|p| seen.insert(p.job))
        .map(|p| {
            Ok(PlacementRows {
                job: p.job,
                job_uuid: p.job.to_string(),
                now_ms: p.now_ms,
                runs: p.runs.iter().map(RunRow::new).collect::<StoreResult<_>>()?,
                run_events: p
                    .runs
                    .iter()
                    .map(|r| {
                        let t = gantry_types::event::EventType::JobRunCreated;
                        crate::events::NewEventRow::run(t, &r.run, p.now_ms)
                    })
                    .collect::<StoreResult<_>>()?,
            })
        })
        .collect()
}

/// `existing` followed by `chunk`, cut to the newest `max_bytes` bytes: the cut moves
/// forward to the next character boundary, so the result is valid UTF-8 and at most
/// `max_bytes` long.
pub(crate) fn append_log(existing: &str, chunk: &str, max_bytes: usize) -> String {
    let total = existing.len() + chunk.len();
    let drop = total.saturating_sub(max_bytes);
    if drop >= existing.len() {
        let start = chunk.ceil_char_boundary(drop - existing.len());
        return chunk[start..].to_owned();
    }
    // `existing.len()` is a boundary, so the cut stays inside `existing`.
    let start = existing.ceil_char_boundary(drop);
    let mut out = String::with_capacity(total - start);
    out.push_str(&existing[start..]);
    out.push_str(chunk);
    out
}

impl Subject {
    /// A node upsert.
    pub fn node(id: NodeId, account: AccountId) -> Self {
        Self {
            row: format!("node {id} (registered by another account)"),
            unique: None,
            reference: Some(format!("account {account}")),
        }
    }

    /// A run insert of a placement: its job exists (it was just updated), so a
    /// missing reference is the node.
    pub fn run(run: &RunRow) -> Self {
        Self { row: format!("job run {}", run.uuid), unique: None, reference: Some(format!("node {}", run.node_uuid)) }
    }

    /// The run inserts of a whole batch of placements (one statement on PostgreSQL).
    pub fn placed_runs() -> Self {
        Self {
            row: "a job run of the placements (duplicate uuid)".into(),
            unique: None,
            reference: Some("a node of the placements' runs".into()),
        }
    }

    /// A log append.
    pub fn run_logs(id: JobRunId) -> Self {
        Self { row: format!("logs of job run {id}"), unique: None, reference: Some(format!("job run {id}")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_keep_the_newest_bytes_at_a_char_boundary() {
        assert_eq!(append_log("abc", "def", 10), "abcdef");
        assert_eq!(append_log("abc", "def", 6), "abcdef");
        assert_eq!(append_log("abc", "def", 4), "cdef");
        assert_eq!(append_log("abc", "def", 2), "ef");
        assert_eq!(append_log("abc", "def", 0), "");
        assert_eq!(append_log("", "", 0), "");
        // é is 2 bytes, € is 3: a cut inside one drops the whole character.
        assert_eq!(append_log("aé", "b", 3), "éb");
        assert_eq!(append_log("aé", "b", 2), "b");
        assert_eq!(append_log("x", "€y", 4), "€y");
        assert_eq!(append_log("x", "€y", 3), "y");
        assert_eq!(append_log("x", "€y", 2), "y");
        assert_eq!(append_log("€", "", 2), "");
    }

    #[test]
    fn active_runs_are_the_non_terminal_ones() {
        let listed: Vec<&str> = JobRunStatus::ALL.iter().filter(|s| !s.is_terminal()).map(|s| s.as_str()).collect();
        assert_eq!(ACTIVE_RUNS, format!("status IN ('{}')", listed.join("', '")));
    }

    #[test]
    fn the_due_index_is_built_on_the_due_query_s_expression() {
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        for migration in [
            include_str!("../../migrations/sqlite/0018_due_runs.sql"),
            include_str!("../../migrations/postgres/0018_due_runs.sql"),
        ] {
            let index = format!("CREATE INDEX job_runs_due ON job_runs ({}) WHERE {ACTIVE_RUNS};", words(RUN_DUE_AT));
            assert!(words(migration).contains(&index), "migration 18 must index {RUN_DUE_AT}");
        }
    }

    #[test]
    fn run_filters_become_conditions() {
        let (job, node) = (JobId::new(), NodeId::new());
        let filter = RunFilter {
            job_uuids: vec![job],
            statuses: vec![JobRunStatus::Running, JobRunStatus::Failed],
            node_uuids: vec![node],
        };
        let q = run_list(Placeholders::Dollar, Some(AccountId::new()), &filter, Paging::default());
        assert_eq!(
            q.count,
            "SELECT COUNT(*) FROM job_runs WHERE account_uuid = $1 AND job_uuid IN ($2) \
             AND status IN ($3, $4) AND node_uuid IN ($5)"
        );
        let q = node_list(Placeholders::Question, None, &[], Paging::default());
        assert_eq!(q.count, "SELECT COUNT(*) FROM nodes");
    }
}
