//! Group commit of the status writes nodes cause at volume on PostgreSQL: run updates
//! (what agents report) and the job transitions that follow them.
//!
//! Every such write appends its event, and event-writing transactions hold the event
//! log's lock through COMMIT (`crate::events`), so they commit one WAL flush after
//! another whatever the number of callers: 180–420 such commits/s on the shared 2-core
//! development machine (`pgbench`, 1–16 clients, one advisory lock per transaction),
//! against ~5,000/s for the same insert without the lock.
//! Each placed job costs two of them when its node reports it running (the run's
//! update, then the job's ASSIGNED → RUNNING), so at 500 placements/s the reports alone
//! asked for ~1,000 serialized flushes per second: the lock's queue grew, and the
//! scheduler's placement writes and the submits' batches waited in it (`gantry bench
//! schedule` on PostgreSQL: submit → assigned p50 ~90 ms, p99 ~185 ms, against 1 / 7 ms
//! on SQLite, whose one writer thread commits everything queued in one transaction;
//! sampling `pg_stat_activity` during such a run, 83% of the busy backends were waiting
//! for the event lock, 15% with this batching).
//!
//! So, like job creations (`job_batch.rs`), concurrent status writes are queued and
//! one batch of them commits in **one** transaction, each change still its own
//! compare-and-set statement, in queue order, and all their events appended with one
//! statement after the event lock is taken (last, as everywhere). A caller is answered
//! only after the COMMIT, so `Ok` still means durable. One batch at a time: a second
//! would wait for the first's event lock anyway.
//!
//! What joins a batch: only writes made outside a leader loop (no fence: the API's
//! node syncs and job settlements), so no batch mixes writes of two epochs and a
//! fenced write keeps its own lease check; and only job transitions that neither
//! leave nor enter PENDING. Those are the ones that move no usage counter (migration
//! 16's trigger touches a counter row only when pending-ness or the spec changes), so
//! a batch locks only its runs' and jobs' own rows, never counter shards in an order
//! that could cycle with a placement or a creation batch (which take them sorted).
//!
//! **Errors stay per request**, as in `job_batch.rs`: a statement that fails rolls
//! the batch back and every change of it is retried in a transaction of its own, so a
//! bad one fails alone; a failed COMMIT fails every change that was in it.

use std::sync::Arc;
use std::time::Instant;

use gantry_types::event::EventType;
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::JobRunStatus;
use gantry_types::{AccountId, JobId, JobRunId};
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::{mpsc, oneshot};

use super::job_batch::Shared;
use super::{PgStore, db, events, record};
use crate::cluster::{RunRecord, RunUpdate};
use crate::events::NewEventRow;
use crate::jobs::{JobRow, JobTransition};
use crate::sql::{self, JOB_COLUMNS, RUN_COLUMNS, RunRow};
use crate::{StoreError, StoreResult};

/// Most changes per transaction: bounds what one batch adds to its last caller.
const MAX_BATCH: usize = 512;

/// A status write.
#[derive(Clone, Debug)]
pub(super) enum Change {
    /// [`crate::ClusterStore::run_update`].
    Run(JobRunId, RunUpdate),
    /// [`crate::JobStore::job_transition`].
    Job(Option<AccountId>, JobId, JobTransition),
}

/// What a status write changed (`None`: the compare-and-set did not apply); boxed,
/// so the answers queued per batch stay small.
pub(super) enum Changed {
    Run(Option<Box<RunRecord>>),
    Job(Option<Box<Job>>),
}

impl Change {
    /// Whether this change may share a transaction with others (see the module doc).
    pub fn batchable(&self) -> bool {
        if crate::fence::current().is_some() {
            return false;
        }
        match self {
            Change::Run(..) => true,
            Change::Job(_, _, t) => t.to != JobStatus::Pending && !t.from.contains(&JobStatus::Pending),
        }
    }

    pub fn during(&self) -> &'static str {
        match self {
            Change::Run(..) => "job run update",
            Change::Job(..) => "job transition",
        }
    }
}

impl Changed {
    fn applied(&self) -> bool {
        match self {
            Changed::Run(r) => r.is_some(),
            Changed::Job(j) => j.is_some(),
        }
    }
}

/// Applies `change` inside the caller's transaction; what it changed and its event
/// (none when the compare-and-set did not apply). The event is not appended here.
pub(super) async fn apply(tx: &mut PgConnection, change: &Change) -> StoreResult<(Changed, Option<NewEventRow>)> {
    match change {
        Change::Run(id, update) => {
            let run = run_update(tx, *id, update).await?;
            let event = run
                .as_ref()
                .map(|r| NewEventRow::run(EventType::JobRunStatusChanged, &r.run, update.now_ms))
                .transpose()?;
            Ok((Changed::Run(run.map(Box::new)), event))
        }
        Change::Job(account, id, t) => {
            let job = job_transition(tx, *account, *id, t).await?;
            let event = job.as_ref().map(|j| NewEventRow::job(EventType::JobStatusChanged, j, t.now_ms)).transpose()?;
            Ok((Changed::Job(job.map(Box::new)), event))
        }
    }
}

/// Applies `changes` in order inside the caller's transaction: what each changed,
/// and the events of those that applied (not appended here).
pub(super) async fn apply_all(
    tx: &mut PgConnection,
    changes: &[&Change],
) -> StoreResult<(Vec<Changed>, Vec<NewEventRow>)> {
    let (mut outcomes, mut new_events) = (Vec::with_capacity(changes.len()), Vec::with_capacity(changes.len()));
    for change in changes {
        let (changed, event) = apply(tx, change).await?;
        outcomes.push(changed);
        new_events.extend(event);
    }
    Ok((outcomes, new_events))
}

/// The run's compare-and-set, in one statement; every SET expression sees the old
/// row (so duration uses the started_at from before this update). The job's image
/// size changes in the same statement, only when the run's update applied.
async fn run_update(tx: &mut PgConnection, id: JobRunId, update: &RunUpdate) -> StoreResult<Option<RunRecord>> {
    let node_urls = update.node_urls.as_deref().map(sql::node_urls_json).transpose()?;
    let from: Vec<String> = update.from.iter().map(|s| s.as_str().to_owned()).collect();
    let sql = format!(
        "WITH r AS (UPDATE job_runs SET status = $1, status_reason = $2, updated_at_ms = $3, \
         started_at_ms = CASE WHEN $4 AND started_at_ms IS NULL THEN $3 ELSE started_at_ms END, \
         ended_at_ms = CASE WHEN $5 THEN $3 ELSE ended_at_ms END, \
         duration_ms = CASE WHEN $5 AND started_at_ms IS NOT NULL THEN $3 - started_at_ms ELSE duration_ms END, \
         exit_code = COALESCE($6, exit_code), node_urls = COALESCE($7, node_urls) \
         WHERE uuid = $8 AND status = ANY($9) RETURNING {RUN_COLUMNS}), \
         j AS (UPDATE jobs SET image_size_bytes = $10 FROM r WHERE $10::bigint IS NOT NULL AND jobs.uuid = r.job_uuid) \
         SELECT {RUN_COLUMNS} FROM r"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(update.to.as_str())
        .bind(&update.reason)
        .bind(update.now_ms)
        .bind(update.to == JobRunStatus::Running)
        .bind(update.to.is_terminal())
        .bind(update.exit_code.map(i64::from))
        .bind(node_urls)
        .bind(id.to_string())
        .bind(from)
        .bind(update.image_size_bytes)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("job run update"))?;
    row.as_ref().map(record::<RunRow>).transpose()
}

/// The job's compare-and-set in one statement: the WHERE is the "compare"; the row
/// lock UPDATE takes makes a concurrent transition re-check it after we commit.
async fn job_transition(
    tx: &mut PgConnection,
    account: Option<AccountId>,
    id: JobId,
    transition: &JobTransition,
) -> StoreResult<Option<Job>> {
    let from: Vec<String> = transition.from.iter().map(|s| s.as_str().to_owned()).collect();
    let sql = format!(
        "UPDATE jobs SET status = $1, status_reason = $2, updated_at_ms = $3, \
         started_at_ms = CASE WHEN $4 AND started_at_ms IS NULL THEN $3 ELSE started_at_ms END, \
         completed_at_ms = CASE WHEN $5 THEN $3 ELSE completed_at_ms END \
         WHERE uuid = $6 AND status = ANY($7) AND ($8::text IS NULL OR account_uuid = $8) \
         RETURNING {JOB_COLUMNS}"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(transition.to.as_str())
        .bind(&transition.reason)
        .bind(transition.now_ms)
        .bind(transition.to == JobStatus::Running)
        .bind(transition.to.is_terminal())
        .bind(id.to_string())
        .bind(from)
        .bind(account.map(|a| a.to_string()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("job transition"))?;
    row.as_ref().map(record::<JobRow>).transpose()
}

/// A queued change and where its outcome goes.
struct Queued {
    change: Change,
    reply: oneshot::Sender<StoreResult<Changed>>,
}

/// Handle to the batching task; dropping it lets the task finish what is queued.
pub(super) struct StatusWrites {
    queue: mpsc::Sender<Queued>,
}

impl StatusWrites {
    /// Starts the task (on the current runtime).
    pub fn spawn(shared: Shared) -> Self {
        let (tx, rx) = mpsc::channel(2 * MAX_BATCH);
        tokio::spawn(dispatch(rx, shared));
        Self { queue: tx }
    }

    /// Queues `change` (a [`Change::batchable`] one); resolves once its batch
    /// committed (or it failed alone).
    pub async fn write(&self, change: Change) -> StoreResult<Changed> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Queued { change, reply }).await.map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }
}

/// Takes whatever queued while the previous batch committed, one batch at a time.
async fn dispatch(mut queue: mpsc::Receiver<Queued>, shared: Shared) {
    loop {
        let mut batch = Vec::with_capacity(64);
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // the store is gone and the queue is drained
        }
        run(&shared, batch).await;
    }
}

/// Commits one batch and answers every change of it.
async fn run(shared: &Shared, batch: Vec<Queued>) {
    let started = Instant::now();
    match commit(shared, &batch).await {
        Ok((outcomes, last_event)) => {
            let written = outcomes.iter().filter(|o| o.applied()).count() as u64;
            shared.committed(written, started, last_event);
            for (q, outcome) in batch.into_iter().zip(outcomes) {
                let _ = q.reply.send(Ok(outcome));
            }
        }
        Err(Failure::Commit(e)) => {
            // Whether it committed is unknown, as for any failed COMMIT.
            let e = Arc::new(e);
            for q in batch {
                let err = StoreError::Database { during: "status write (commit)", source: Box::new(Arc::clone(&e)) };
                let _ = q.reply.send(Err(err));
            }
        }
        Err(Failure::Statement(e)) if batch.len() == 1 => {
            let _ = batch.into_iter().next().map(|q| q.reply.send(Err(e)));
        }
        Err(Failure::Statement(e)) => {
            // One change (or more) broke the batch: isolate it; the others commit.
            tracing::debug!(error = %e, size = batch.len(), "a status-write batch failed; retrying its changes one by one");
            for q in batch {
                let outcome = alone(shared, &q.change).await;
                let _ = q.reply.send(outcome);
            }
        }
    }
}

/// Why a batch did not commit.
enum Failure {
    /// A statement before COMMIT failed: retry the changes one by one.
    Statement(StoreError),
    /// COMMIT itself failed.
    Commit(sqlx::Error),
}

/// Runs the batch in one transaction; per change what it changed, and the newest
/// event id.
async fn commit(shared: &Shared, batch: &[Queued]) -> Result<(Vec<Changed>, i64), Failure> {
    let mut tx = shared.pool.begin().await.map_err(|e| Failure::Statement(db("status write")(e)))?;
    let changes: Vec<&Change> = batch.iter().map(|q| &q.change).collect();
    let (outcomes, new_events) = apply_all(&mut tx, &changes).await.map_err(Failure::Statement)?;
    let refs: Vec<&NewEventRow> = new_events.iter().collect();
    let last_event =
        events::append_json(&mut tx, &refs).await.map_err(|e| Failure::Statement(db("status write (events)")(e)))?;
    tx.commit().await.map_err(Failure::Commit)?;
    Ok((outcomes, last_event))
}

/// One change in a transaction of its own (the fallback when its batch failed).
async fn alone(shared: &Shared, change: &Change) -> StoreResult<Changed> {
    let started = Instant::now();
    let during = change.during();
    let mut tx = shared.pool.begin().await.map_err(db(during))?;
    let (changed, event) = apply(&mut tx, change).await?;
    let id = events::append(&mut tx, event.as_slice()).await?;
    tx.commit().await.map_err(db(during))?;
    shared.committed(1, started, id);
    Ok(changed)
}

impl PgStore {
    /// A status write: batched when it may be ([`Change::batchable`]), otherwise in
    /// a transaction of its own, fenced when inside a leader loop.
    pub(super) async fn status_write(&self, change: Change) -> StoreResult<Changed> {
        if change.batchable() {
            return self.status.write(change).await;
        }
        let during = change.during();
        let mut tx = self.begin_write(during).await?;
        let (changed, event) = apply(&mut tx, &change).await?;
        let id = events::append(&mut tx, event.as_slice()).await?;
        tx.commit().await.map_err(db(during))?;
        self.wrote();
        self.published(id);
        Ok(changed)
    }
}
