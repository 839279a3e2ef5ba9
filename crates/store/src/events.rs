//! The event log: every state change worth telling, appended in the same transaction
//! as the change (so the log and the tables never disagree), read back in id order by
//! `GET /v1/events` and the webhook dispatcher.
//!
//! **Ids are gap-free in commit order**, the property a reader resuming with
//! `after=N` relies on: no event may become visible with an id below one a reader has
//! already seen. SQLite gets it for free (one writer thread, `AUTOINCREMENT`). On
//! PostgreSQL a sequence value is taken when a transaction inserts, but transactions
//! commit in any order, so a reader could see 11 before 10 commits and then skip 10.
//! So an event-writing transaction there takes one advisory transaction lock
//! ([`PG_EVENTS_LOCK`]) just before inserting its events (its last statement) and
//! holds it through COMMIT: event ids are allocated and made visible in one order.
//! The price: event-writing commits on PostgreSQL are serialized (each waits for the
//! previous one's WAL flush), where SQLite's group commit still shares one fsync
//! among a whole batch. Chosen over "serve only ids below the oldest in-flight
//! transaction" because it needs no bookkeeping table and no second writer.
//!
//! **Waking readers:** [`EventStore::event_watch`] carries the newest committed event
//! id; a backend publishes it right after a commit that appended events, so readers in
//! this process wake at once without polling. Another process's appends (a second
//! server on one PostgreSQL) are seen by readers' fallback timer.
//!
//! **`job.created` refers to its job instead of copying it.** Its `data` would be
//! the job as created, redacted: exactly the job's creation snapshot, which the jobs
//! table already holds in `jobs.spec` (the mutable fields live in columns of their
//! own; the snapshot is never updated and jobs are never deleted). Writing it twice
//! in the submit transaction doubled the bytes every submit commits and cost an
//! encoding of the job on each request; so the event row stores `data = ''` and
//! `job_uuid`, and a read takes the snapshot from `jobs.spec` and redacts it as the
//! write used to ([`Job::redacted`]): the `data` a reader sees is the same JSON. Every
//! other event (`job.status_changed` included: it shows the job as it then was)
//! carries its own `data`. Events written before migration 14 keep their copies.
//!
//! **Retention:** [`EventStore::event_prune`] deletes a prefix of the log (by id, so
//! the horizon is one number) and records how far it went, so a reader resuming from
//! inside the deleted prefix is told so instead of silently missing events. The newest
//! event is never deleted, so the largest id never goes back (SQLite ids are rowids).

use async_trait::async_trait;
use gantry_types::event::{BalanceChange, Event, EventType};
use gantry_types::job::Job;
use gantry_types::job_run::JobRun;
use gantry_types::{AccountId, Timestamp};
use serde::Serialize;

use crate::billing::{LedgerPosting, PLATFORM_ACCOUNT};
use crate::cluster::NodeRecord;
use crate::sql::row::{IntoRecord, row};
use crate::{StoreError, StoreResult};

/// Key of the PostgreSQL advisory lock that orders event-writing commits ("events").
pub const PG_EVENTS_LOCK: i64 = 0x6576_656e_7473;

/// How far the log reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHorizon {
    /// Every event with an id up to this one was deleted by retention (0: none).
    pub pruned_through: i64,
    /// The newest event's id (0 before the first).
    pub last_id: i64,
}

/// The event log.
#[async_trait]
pub trait EventStore {
    /// Events with `id > after`, oldest first, at most `limit`; `account` scopes
    /// (`None`: every account), `types` narrows (empty: every type).
    async fn event_list(
        &self,
        account: Option<AccountId>,
        after: i64,
        types: &[EventType],
        limit: u32,
    ) -> StoreResult<Vec<Event>>;
    /// The ids and types of the events with `id > after` (every account), oldest
    /// first, at most `limit`: what counting needs, without decoding the data.
    async fn event_list_types(&self, after: i64, limit: u32) -> StoreResult<Vec<(i64, EventType)>>;
    /// The retention horizon and the newest id.
    async fn event_horizon(&self) -> StoreResult<EventHorizon>;
    /// Deletes the events created before `before_ms` (the whole prefix of the log up
    /// to the newest such event), always keeping the newest event of all (so ids never
    /// restart); returns how many.
    async fn event_prune(&self, before_ms: i64) -> StoreResult<u64>;
    /// The newest committed event id this process knows of; changes after each
    /// commit that appended events.
    fn event_watch(&self) -> tokio::sync::watch::Receiver<i64>;
}

row! {
    /// An event as read ([`EVENT_SELECT`]): `job_spec` is the referred job's snapshot
    /// (a `job.created` event's data), NULL for the others.
    #[derive(Debug)]
    pub(crate) struct EventRow in "events" (read) {
        id: i64,
        event_type: String,
        account_uuid: String,
        created_at_ms: i64,
        data: String,
        job_spec: Option<String>,
    }
}

row! {
    /// A new event: everything but the id, which the database assigns. Encoded on the
    /// caller's thread where the data is known before the write. (A batch of them
    /// travels to PostgreSQL as one JSON array, Serialize, or, with a batch of job
    /// creations, as one array per column.)
    #[derive(Clone, Debug, serde::Serialize)]
    pub(crate) struct NewEventRow in "events" (write, batch) {
        event_type: &'static str,
        account_uuid: String,
        created_at_ms: i64,
        data: String,
        job_uuid: Option<String>,
    }
}

/// What a read selects from `events`: [`EventRow`]'s columns, `job_spec` looked up
/// by the jobs primary key (one probe per `job.created` event, none for the others).
pub(crate) const EVENT_SELECT: &str = "id, event_type, account_uuid, created_at_ms, data, \
     (SELECT spec FROM jobs WHERE jobs.uuid = events.job_uuid) AS job_spec";

fn encode(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Database { during: what, source: Box::new(e) }
}

impl NewEventRow {
    fn new(t: EventType, account: AccountId, at_ms: i64, data: &impl Serialize) -> StoreResult<Self> {
        let data = serde_json::to_string(data).map_err(encode("event encoding"))?;
        Ok(Self {
            event_type: t.as_str(),
            account_uuid: account.to_string(),
            created_at_ms: at_ms,
            data,
            job_uuid: None,
        })
    }

    /// `job.created`: a reference to the job, whose row (inserted in the same
    /// transaction) holds the snapshot a read redacts (see the module doc).
    pub(crate) fn job_created(job: &Job) -> Self {
        Self {
            event_type: EventType::JobCreated.as_str(),
            account_uuid: job.account_uuid.to_string(),
            created_at_ms: job.created_at.0,
            data: String::new(),
            job_uuid: Some(job.uuid.to_string()),
        }
    }

    /// `job.status_changed`: the job as it now is, redacted.
    pub(crate) fn job(t: EventType, job: &Job, at_ms: i64) -> StoreResult<Self> {
        Self::new(t, job.account_uuid, at_ms, &job.clone().redacted())
    }

    /// `job_run.created` / `job_run.status_changed`: the run (its job snapshot is
    /// redacted when the scheduler takes it), without logs.
    pub(crate) fn run(t: EventType, run: &JobRun, at_ms: i64) -> StoreResult<Self> {
        Self::new(t, run.account_uuid, at_ms, run)
    }

    /// `node.registered` / `node.status_changed`: the node's identity and state
    /// (the API's node object less what is derived from live capacity).
    pub(crate) fn node(t: EventType, node: &NodeRecord, at_ms: i64) -> StoreResult<Self> {
        let data = serde_json::json!({
            "object": "node",
            "_id": node.uuid,
            "uuid": node.uuid,
            "name": node.name,
            "status": node.status,
            "is_draining": node.is_draining,
            "region_code": node.region_code,
            "labels": node.labels,
            "hostname": node.hostname,
            "lease_epoch": node.lease_epoch,
            "account_uuid": node.account_uuid,
            "last_seen_at": Timestamp(node.last_seen_at_ms),
            "created_at": Timestamp(node.created_at_ms),
            "updated_at": Timestamp(node.updated_at_ms),
        });
        Self::new(t, node.account_uuid, at_ms, &data)
    }

    /// `balance.changed`: one per account side of the posting (the platform's own
    /// side is bookkeeping, not an account's news).
    pub(crate) fn balance(posting: &LedgerPosting) -> StoreResult<Vec<Self>> {
        posting
            .sides()
            .iter()
            .filter(|s| s.account != PLATFORM_ACCOUNT && s.amount_micros != 0)
            .map(|s| {
                let change = BalanceChange {
                    object: "balance_change".into(),
                    account_uuid: s.account,
                    transaction_uuid: posting.uuid,
                    kind: posting.kind,
                    amount: gantry_types::money::micros_to_usd(s.amount_micros),
                    amount_micros: s.amount_micros,
                    currency: "USD".into(),
                    job_run_uuid: posting.run_uuid,
                };
                Self::new(EventType::BalanceChanged, s.account, posting.created_at_ms, &change)
            })
            .collect()
    }
}

impl IntoRecord for EventRow {
    type Record = Event;

    fn into_record(self) -> StoreResult<Event> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "events", detail };
        let event_type = EventType::parse(&self.event_type)
            .ok_or_else(|| corrupt(format!("unknown type {:?} of event {}", self.event_type, self.id)))?;
        let account_uuid =
            self.account_uuid.parse().map_err(|_| corrupt(format!("bad account uuid {:?}", self.account_uuid)))?;
        let data = match self.job_spec {
            // The job's creation snapshot, redacted as every job event's data is.
            Some(spec) => {
                let job: Job =
                    serde_json::from_str(&spec).map_err(|e| corrupt(format!("job of event {}: {e}", self.id)))?;
                serde_json::to_value(job.redacted()).map_err(|e| corrupt(format!("job of event {}: {e}", self.id)))?
            }
            None if self.data.is_empty() => return Err(corrupt(format!("event {} refers to no stored job", self.id))),
            None => serde_json::from_str(&self.data).map_err(|e| corrupt(format!("data of event {}: {e}", self.id)))?,
        };
        Ok(Event {
            object: "event".into(),
            id: self.id,
            event_type,
            created_at: Timestamp(self.created_at_ms),
            account_uuid,
            data,
        })
    }
}

/// Decodes an (id, type name) pair of [`EventStore::event_list_types`].
pub(crate) fn id_and_type(id: i64, name: &str) -> StoreResult<(i64, EventType)> {
    let t = EventType::parse(name).ok_or_else(|| StoreError::Corrupt {
        table: "events",
        detail: format!("unknown type {name:?} of event {id}"),
    })?;
    Ok((id, t))
}

/// The wire names of `types`, for a backend's `IN`/`ANY` (`None`: no filter).
pub(crate) fn type_names(types: &[EventType]) -> Option<Vec<String>> {
    (!types.is_empty()).then(|| types.iter().map(|t| t.as_str().to_owned()).collect())
}
