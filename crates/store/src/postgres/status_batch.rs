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
//! compare-and-set, and all their events appended with one statement after the event
//! lock is taken (last, as everywhere). The compare-and-sets are set-based: one
//! statement for all the batch's run changes and one for its job changes
//! ([`apply_all`]), not a statement (and a round trip) per change: under `gantry bench
//! schedule` on PostgreSQL that took the run's status statements from 20,000 to about
//! 2,000 and their database time from 2.6-2.9 s to 1.9-2.2 s (all statements of the
//! run: ~143k to ~106k). The events' insert and the COMMIT go as one message
//! (`event_tx.rs`), so the event lock is held for no round trip. A caller is answered
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use gantry_types::event::EventType;
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::JobRunStatus;
use gantry_types::{AccountId, JobId, JobRunId};
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::{mpsc, oneshot};

use super::event_tx::EventTx;
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
    let (mut outcomes, mut new_events) = apply_all(tx, &[change]).await?;
    let changed = outcomes.pop().expect("one outcome per change");
    Ok((changed, new_events.pop()))
}

/// Applies `changes` inside the caller's transaction, as if one after another in
/// queue order: what each changed, and the events of those that applied, in queue
/// order (not appended here).
///
/// Set-based: one statement for the run changes and one for the job changes of each
/// *round*, not one statement per change. A batch of agents' reports is hundreds of
/// changes; one statement each was one round trip each, inside the transaction, and
/// a seventh of the statements of a `gantry bench schedule` run (a bind and an execute
/// per change). Changes to different rows commute (their callers raced, so no order among
/// them was promised), so only changes to the *same* row keep their queue order: a
/// change goes to the round after the last one that touched its row ([`rounds`]).
pub(super) async fn apply_all(
    tx: &mut PgConnection,
    changes: &[&Change],
) -> StoreResult<(Vec<Changed>, Vec<NewEventRow>)> {
    let mut outcomes: Vec<Option<Changed>> = changes.iter().map(|_| None).collect();
    let mut new_events: Vec<(usize, NewEventRow)> = Vec::with_capacity(changes.len());
    let round_of = rounds(changes);
    for round in 0..=round_of.iter().copied().max().unwrap_or(0) {
        let in_round = |want_run: bool| -> Vec<usize> {
            (0..changes.len())
                .filter(|&i| round_of[i] == round && matches!(changes[i], Change::Run(..)) == want_run)
                .collect()
        };
        let runs = in_round(true);
        if !runs.is_empty() {
            let updates: Vec<(JobRunId, &RunUpdate)> = runs
                .iter()
                .map(|&i| match changes[i] {
                    Change::Run(id, update) => (*id, update),
                    Change::Job(..) => unreachable!("filtered to run changes"),
                })
                .collect();
            let mut after = run_update_set(tx, &updates).await?;
            for (&i, (id, update)) in runs.iter().zip(&updates) {
                let run = after.remove(id);
                if let Some(r) = &run {
                    new_events.push((i, NewEventRow::run(EventType::JobRunStatusChanged, &r.run, update.now_ms)?));
                }
                outcomes[i] = Some(Changed::Run(run.map(Box::new)));
            }
        }
        let jobs = in_round(false);
        if !jobs.is_empty() {
            let transitions: Vec<(Option<AccountId>, JobId, &JobTransition)> = jobs
                .iter()
                .map(|&i| match changes[i] {
                    Change::Job(account, id, t) => (*account, *id, t),
                    Change::Run(..) => unreachable!("filtered to job changes"),
                })
                .collect();
            let mut after = job_transition_set(tx, &transitions, "job transition").await?;
            for (&i, (_, id, t)) in jobs.iter().zip(&transitions) {
                let job = after.remove(id);
                if let Some(j) = &job {
                    new_events.push((i, NewEventRow::job(EventType::JobStatusChanged, j, t.now_ms)?));
                }
                outcomes[i] = Some(Changed::Job(job.map(Box::new)));
            }
        }
    }
    new_events.sort_by_key(|(i, _)| *i);
    let outcomes = outcomes.into_iter().map(|o| o.expect("every change is in a round")).collect();
    Ok((outcomes, new_events.into_iter().map(|(_, e)| e).collect()))
}

/// Each change's round: one more than the last earlier change to the same row (a run
/// by its id, a job by its id), so a round never changes a row twice and a row's
/// changes apply in queue order.
fn rounds(changes: &[&Change]) -> Vec<usize> {
    let mut next: HashMap<(bool, uuid::Uuid), usize> = HashMap::with_capacity(changes.len());
    changes
        .iter()
        .map(|c| {
            let key = match c {
                Change::Run(id, _) => (true, id.0),
                Change::Job(_, id, _) => (false, id.0),
            };
            let slot = next.entry(key).or_insert(0);
            let round = *slot;
            *slot += 1;
            round
        })
        .collect()
}

/// The statuses a compare-and-set accepts, as the comma list its statement splits.
fn status_list<'a>(statuses: impl Iterator<Item = &'a str>) -> String {
    statuses.collect::<Vec<_>>().join(",")
}

/// The runs' compare-and-sets (distinct ids) in one statement; the runs it changed,
/// by id. Every SET expression sees the old row (so duration uses the started_at from
/// before this update). A run's job's image size changes in the same statement, only
/// when the run's update applied.
async fn run_update_set(
    tx: &mut PgConnection,
    updates: &[(JobRunId, &RunUpdate)],
) -> StoreResult<HashMap<JobRunId, RunRecord>> {
    let node_urls = updates
        .iter()
        .map(|(_, u)| u.node_urls.as_deref().map(sql::node_urls_json).transpose())
        .collect::<StoreResult<Vec<Option<String>>>>()?;
    let flag = |f: &dyn Fn(&RunUpdate) -> bool| updates.iter().map(|(_, u)| f(u)).collect::<Vec<bool>>();
    // The parameters' columns are named p_*, so the RETURNING list's bare names are the
    // run's own.
    let sql = format!(
        "WITH r AS (UPDATE job_runs SET status = p.p_to, status_reason = p.p_reason, updated_at_ms = p.p_now, \
         started_at_ms = CASE WHEN p.p_running AND started_at_ms IS NULL THEN p.p_now ELSE started_at_ms END, \
         ended_at_ms = CASE WHEN p.p_terminal THEN p.p_now ELSE ended_at_ms END, \
         duration_ms = CASE WHEN p.p_terminal AND started_at_ms IS NOT NULL THEN p.p_now - started_at_ms \
         ELSE duration_ms END, \
         exit_code = COALESCE(p.p_exit, exit_code), node_urls = COALESCE(p.p_urls, node_urls) \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bool[], $6::bool[], $7::bigint[], \
         $8::text[], $9::text[], $10::bigint[]) \
         AS p(p_uuid, p_to, p_reason, p_now, p_running, p_terminal, p_exit, p_urls, p_from, p_image) \
         WHERE job_runs.uuid = p.p_uuid AND job_runs.status = ANY(string_to_array(p.p_from, ',')) \
         RETURNING {RUN_COLUMNS}, p.p_image), \
         j AS (UPDATE jobs SET image_size_bytes = r.p_image FROM r WHERE r.p_image IS NOT NULL AND jobs.uuid = r.job_uuid) \
         SELECT {RUN_COLUMNS} FROM r"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(updates.iter().map(|(id, _)| id.to_string()).collect::<Vec<String>>())
        .bind(updates.iter().map(|(_, u)| u.to.as_str()).collect::<Vec<&str>>())
        .bind(updates.iter().map(|(_, u)| u.reason.as_deref()).collect::<Vec<Option<&str>>>())
        .bind(updates.iter().map(|(_, u)| u.now_ms).collect::<Vec<i64>>())
        .bind(flag(&|u| u.to == JobRunStatus::Running))
        .bind(flag(&|u| u.to.is_terminal()))
        .bind(updates.iter().map(|(_, u)| u.exit_code.map(i64::from)).collect::<Vec<Option<i64>>>())
        .bind(node_urls)
        .bind(updates.iter().map(|(_, u)| status_list(u.from.iter().map(|s| s.as_str()))).collect::<Vec<String>>())
        .bind(updates.iter().map(|(_, u)| u.image_size_bytes).collect::<Vec<Option<i64>>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(db("job run update"))?;
    rows.iter().map(|row| record::<RunRow>(row).map(|r| (r.run.uuid, r))).collect()
}

/// The jobs' compare-and-sets (distinct ids) in one statement, each within its
/// account when one is given; the jobs it changed, by id. The WHERE is the "compare";
/// the row lock UPDATE takes makes a concurrent transition re-check it after we
/// commit. Also `job_transition_many`'s statement.
pub(super) async fn job_transition_set(
    tx: &mut PgConnection,
    transitions: &[(Option<AccountId>, JobId, &JobTransition)],
    during: &'static str,
) -> StoreResult<HashMap<JobId, Job>> {
    let sql = format!(
        "UPDATE jobs SET status = p.p_to, status_reason = p.p_reason, updated_at_ms = p.p_now, \
         started_at_ms = CASE WHEN p.p_running AND started_at_ms IS NULL THEN p.p_now ELSE started_at_ms END, \
         completed_at_ms = CASE WHEN p.p_terminal THEN p.p_now ELSE completed_at_ms END \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bool[], $6::bool[], $7::text[], \
         $8::text[]) AS p(p_uuid, p_to, p_reason, p_now, p_running, p_terminal, p_from, p_account) \
         WHERE jobs.uuid = p.p_uuid AND jobs.status = ANY(string_to_array(p.p_from, ',')) \
         AND (p.p_account IS NULL OR jobs.account_uuid = p.p_account) \
         RETURNING {JOB_COLUMNS}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(transitions.iter().map(|(_, id, _)| id.to_string()).collect::<Vec<String>>())
        .bind(transitions.iter().map(|(_, _, t)| t.to.as_str()).collect::<Vec<&str>>())
        .bind(transitions.iter().map(|(_, _, t)| t.reason.as_deref()).collect::<Vec<Option<&str>>>())
        .bind(transitions.iter().map(|(_, _, t)| t.now_ms).collect::<Vec<i64>>())
        .bind(transitions.iter().map(|(_, _, t)| t.to == JobStatus::Running).collect::<Vec<bool>>())
        .bind(transitions.iter().map(|(_, _, t)| t.to.is_terminal()).collect::<Vec<bool>>())
        .bind(
            transitions.iter().map(|(_, _, t)| status_list(t.from.iter().map(|s| s.as_str()))).collect::<Vec<String>>(),
        )
        .bind(transitions.iter().map(|(a, _, _)| a.map(|a| a.to_string())).collect::<Vec<Option<String>>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(during))?;
    rows.iter().map(|row| record::<JobRow>(row).map(|j| (j.uuid, j))).collect()
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
    let mut tx = EventTx::begin(&shared.pool).await.map_err(|e| Failure::Statement(db("status write")(e)))?;
    let changes: Vec<&Change> = batch.iter().map(|q| &q.change).collect();
    let (outcomes, new_events) = apply_all(tx.conn(), &changes).await.map_err(Failure::Statement)?;
    let refs: Vec<&NewEventRow> = new_events.iter().collect();
    // The events and the COMMIT are one message: refused by the database (or not
    // encodable), nothing committed and each change may be retried alone; any other
    // failure leaves the outcome unknown.
    let last_event = tx.commit_with_events(&refs).await.map_err(|e| match e {
        sqlx::Error::Database(_) | sqlx::Error::Encode(_) => Failure::Statement(db("status write (events)")(e)),
        e => Failure::Commit(e),
    })?;
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
