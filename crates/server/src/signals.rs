//! In-memory wake-ups between the parts of the control plane: which node's desired
//! state changed (agents long-poll on it) and when the scheduler should run again.
//!
//! These carry no data that matters for correctness: every reconciler rereads the
//! store when woken, and also runs on a timer, so a lost wake-up only costs latency.
//! The scheduler's inbox is the one place that carries data (a submitted or requeued
//! job, a node this instance declared lost, a run it ended), and only facts already
//! committed, which its model applies instead of a read; the model is still rebuilt
//! from the store periodically, and a placement is still a compare-and-set on the
//! job, so a fact missed or applied late costs latency, never a double placement.
//!
//! With several instances on one database, each wake-up is also handed to
//! [`crate::peers`], which tells the other instances (the `*_local` methods are how
//! their wake-ups arrive here, without being sent back out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gantry_types::{JobRunId, NodeId};
use tokio::sync::{Notify, broadcast, watch};

/// The last desired runs built per node, valid while the node's version is unchanged.
#[derive(Default)]
pub struct DesiredCache {
    entries: Mutex<HashMap<NodeId, (u64, Vec<gantry_types::protocol::DesiredRun>)>>,
}

impl DesiredCache {
    /// The cached runs if they were built at `version`.
    pub fn get(&self, node: NodeId, version: u64) -> Option<Vec<gantry_types::protocol::DesiredRun>> {
        let entries = self.entries.lock().expect("desired cache poisoned");
        entries.get(&node).filter(|(v, _)| *v == version).map(|(_, runs)| runs.clone())
    }

    /// Stores what was built at `version`.
    pub fn put(&self, node: NodeId, version: u64, runs: Vec<gantry_types::protocol::DesiredRun>) {
        self.entries.lock().expect("desired cache poisoned").insert(node, (version, runs));
    }
}

/// What a sync is fenced by (the node's owner, status and lease epoch), remembered per
/// node for one version, so that an idle node's sync need not read its row: at 10,000
/// nodes that read was the sync's largest cost. Every change of a node's status or
/// epoch (registration, loss) bumps its version after it commits, here or, through
/// [`crate::peers`], on the other instances, which makes the entry stale. An entry is
/// put with the version read *before* the store read, so a change committed during
/// that read leaves it stale too. A stale or missing entry only costs the read:
/// `app::nodes::sync` trusts an entry only to accept an idle sync under the epoch it
/// names (anything else reads the store), and such a sync writes nothing but the
/// heartbeat, which the store itself applies only while the node is ONLINE with that
/// epoch.
#[derive(Default)]
pub struct NodeStateCache {
    entries: Mutex<HashMap<NodeId, (u64, NodeState)>>,
}

/// A node's fencing facts, as last read (see [`NodeStateCache`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// Owner.
    pub account: gantry_types::AccountId,
    /// ONLINE or LOST.
    pub status: gantry_types::node::NodeStatus,
    /// Epoch of the current registration.
    pub lease_epoch: i64,
}

impl NodeStateCache {
    /// The node's state if it was read at `version`.
    pub fn get(&self, node: NodeId, version: u64) -> Option<NodeState> {
        let entries = self.entries.lock().expect("node state cache poisoned");
        entries.get(&node).filter(|(v, _)| *v == version).map(|(_, s)| *s)
    }

    /// Stores what a read begun at `version` found.
    pub fn put(&self, node: NodeId, version: u64, state: NodeState) {
        self.entries.lock().expect("node state cache poisoned").insert(node, (version, state));
    }

    /// The node's state as last read, whatever has changed since: its owner is still
    /// its owner (a node never changes hands); its status and epoch may be stale.
    pub fn last_read(&self, node: NodeId) -> Option<NodeState> {
        self.entries.lock().expect("node state cache poisoned").get(&node).map(|(_, s)| *s)
    }
}

/// Wake-ups shared by the API handlers and the background reconcilers.
pub struct Signals {
    nodes: Mutex<HashMap<NodeId, watch::Sender<u64>>>,
    /// Versions start at the server's start time, so an agent holding a version from
    /// before a restart never matches by accident.
    base: u64,
    /// Wakes the scheduler (a job arrived, capacity was freed, a node came).
    pub schedule: Notify,
    /// What changed since the scheduler last looked, for its in-memory model
    /// (`background::model`): the wake-up says what to reread instead of everything.
    inbox: Mutex<SchedulerInbox>,
    /// The accounts whose submitted jobs the model would not take now (it is full and
    /// they hold their share): their jobs are not cloned into the inbox.
    saturated: Mutex<std::collections::HashSet<gantry_types::AccountId>>,
    /// When each node last reached this server (epoch ms), noted as a sync arrives,
    /// before its heartbeat write commits: under write load a committed heartbeat can
    /// trail the real one, and silence must be judged by the real one.
    contact: Mutex<HashMap<NodeId, i64>>,
    /// Syncs whose writes (heartbeat, run reports) are under way, per node: how many,
    /// and the node's lease epoch. While the store is slow to take them (a big
    /// placement batch holding PostgreSQL's event lock), the node is plainly alive: it
    /// is heard *now* (see [`Signals::syncing`]), here and, through
    /// [`crate::peers`]' keep-alive writes, on the other instances.
    syncing: Mutex<HashMap<NodeId, (u32, i64)>>,
    /// New output per run, for `GET /v1/job-runs/{uuid}/logs?follow=true`; a channel
    /// exists only while someone follows the run.
    logs: Mutex<HashMap<JobRunId, broadcast::Sender<LogNews>>>,
    /// This instance's id (fresh per start): in `/healthz`, and on its notifications
    /// to other instances so it can skip its own.
    instance: String,
    /// Where wake-ups for other instances go, once [`crate::peers`] listens (never on
    /// SQLite, which has no other instance).
    peers: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<PeerWakeup>>,
}

/// What the scheduler's model must catch up with (drained by each pass). Only the
/// leader drains it; on a follower it stays bounded ([`SchedulerInbox::MAX_JOBS`]).
#[derive(Debug, Default)]
pub struct SchedulerInbox {
    /// Jobs created PENDING on this instance since the last pass (already committed).
    pub jobs: Vec<gantry_types::job::Job>,
    /// Nodes whose capacity may have changed (a run ended, the node registered,
    /// drained or was lost): reread the node and its active runs.
    pub nodes: std::collections::HashSet<NodeId>,
    /// The pending queue may have changed in a way the jobs here do not say (a submit
    /// or a retry on another instance, a profile's regions changed): reread it.
    pub queue: bool,
    /// Jobs back in PENDING for a retry, by a settlement on this instance (committed),
    /// each with its retry history: the model takes them without rereading the queue
    /// or their runs.
    pub retried: Vec<(gantry_types::job::Job, RetryHistory)>,
    /// Nodes this instance declared LOST, with the time of the marking (committed):
    /// the model stops placing on them without rereading them.
    pub lost: Vec<(NodeId, i64)>,
    /// Runs this instance ended (committed), with their nodes: the model frees their
    /// capacity without rereading the nodes.
    pub ended: Vec<(NodeId, JobRunId)>,
    /// Wake-ups may have been missed (notifications reconnected): rebuild everything.
    pub rebuild: bool,
    /// Jobs were submitted by accounts the model takes no more jobs from
    /// ([`Signals::set_saturated`]): they were not handed over, and the model counts
    /// its queue as truncated.
    pub untaken: bool,
}

impl SchedulerInbox {
    /// Past this many queued jobs (submitted and retried) the inbox keeps only "reread
    /// the queue".
    pub const MAX_JOBS: usize = 10_000;

    /// Whether another job fits in the inbox.
    fn has_room(&self) -> bool {
        self.jobs.len() + self.retried.len() < Self::MAX_JOBS
    }
}

/// A retried job's next attempt number and the nodes its failed runs were on (which
/// its next placement avoids when it can): `app::runs::retry_history`.
pub type RetryHistory = (u32, Vec<NodeId>);

/// A sync's writes under way (see [`Signals::syncing`]).
pub struct SyncInProgress<'a> {
    signals: &'a Signals,
    node: NodeId,
    heard_at_end: bool,
}

impl Drop for SyncInProgress<'_> {
    fn drop(&mut self) {
        {
            let mut syncing = self.signals.syncing.lock().expect("signals poisoned");
            if let Some((n, _)) = syncing.get_mut(&self.node) {
                *n -= 1;
                if *n == 0 {
                    syncing.remove(&self.node);
                }
            }
        }
        if self.heard_at_end {
            self.signals.contact(self.node, crate::state::now_ms());
        }
    }
}

/// What a run's log followers are told.
#[derive(Clone, Debug)]
pub enum LogNews {
    /// Output that reached this instance: `text` ends at byte `end` of everything the
    /// run ever output (the store's `appended_bytes` after it was appended).
    Chunk {
        /// Bytes ever appended, this chunk included.
        end: u64,
        /// The chunk.
        text: Arc<str>,
    },
    /// Output reached another instance: what is new is in the store.
    Elsewhere,
}

/// A wake-up other instances must hear of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerWakeup {
    /// A node's desired state changed.
    Node(NodeId),
    /// The scheduler should run.
    Schedule,
    /// The scheduler should run: the capacity of this node may have changed.
    Capacity(NodeId),
    /// An API key was revoked: cached copies must go.
    KeyRevoked(String),
    /// New output of a run was stored: its followers elsewhere should read it.
    Logs(JobRunId),
}

impl Signals {
    /// Fresh signals; `base` should differ per server start (epoch ms works).
    pub fn new(base: u64) -> Self {
        Self {
            nodes: Mutex::new(HashMap::new()),
            base,
            schedule: Notify::new(),
            inbox: Mutex::new(SchedulerInbox::default()),
            saturated: Mutex::new(std::collections::HashSet::new()),
            contact: Mutex::new(HashMap::new()),
            syncing: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            peers: std::sync::OnceLock::new(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// From now on, every wake-up is also sent to `peers` (set once).
    pub fn connect_peers(&self, peers: tokio::sync::mpsc::UnboundedSender<PeerWakeup>) {
        let _ = self.peers.set(peers);
    }

    fn tell_peers(&self, wakeup: PeerWakeup) {
        if let Some(peers) = self.peers.get() {
            let _ = peers.send(wakeup);
        }
    }

    /// Tells other instances that `public_key` was revoked (this one evicts it itself).
    pub fn key_revoked(&self, public_key: &str) {
        self.tell_peers(PeerWakeup::KeyRevoked(public_key.to_string()));
    }

    /// Notes that `node` reached this server at `now_ms`.
    pub fn contact(&self, node: NodeId, now_ms: i64) {
        let mut contact = self.contact.lock().expect("signals poisoned");
        let at = contact.entry(node).or_insert(now_ms);
        *at = (*at).max(now_ms);
    }

    /// When `node` last reached this server, if it did since the server started;
    /// `now_ms` while one of its syncs is being written.
    pub fn last_contact(&self, node: NodeId, now_ms: i64) -> Option<i64> {
        if self.syncing.lock().expect("signals poisoned").get(&node).is_some_and(|(n, _)| *n > 0) {
            return Some(now_ms);
        }
        self.contact.lock().expect("signals poisoned").get(&node).copied()
    }

    /// Notes that a sync of `node` arrived (`now_ms`) and that its writes are under
    /// way until the guard drops, which notes the contact again. A node is judged
    /// lost by its silence; a sync stuck behind the server's own slow writes is not
    /// silence.
    pub fn syncing(&self, node: NodeId, lease_epoch: i64, now_ms: i64) -> SyncInProgress<'_> {
        self.contact(node, now_ms);
        self.count_sync(node, lease_epoch);
        SyncInProgress { signals: self, node, heard_at_end: true }
    }

    /// Like [`Signals::syncing`] for the answer built after a sync's long-poll: heard
    /// while it is being built, but neither its start nor its end counts as contact
    /// (the node may have gone during the long-poll without the server noticing).
    pub fn answering(&self, node: NodeId, lease_epoch: i64) -> SyncInProgress<'_> {
        self.count_sync(node, lease_epoch);
        SyncInProgress { signals: self, node, heard_at_end: false }
    }

    fn count_sync(&self, node: NodeId, lease_epoch: i64) {
        let mut syncing = self.syncing.lock().expect("signals poisoned");
        let entry = syncing.entry(node).or_insert((0, lease_epoch));
        *entry = (entry.0 + 1, lease_epoch);
    }

    /// The nodes with a sync under way here, with their lease epochs: alive now,
    /// whatever their last committed heartbeat says.
    pub fn syncs_in_progress(&self) -> Vec<(NodeId, i64)> {
        let syncing = self.syncing.lock().expect("signals poisoned");
        syncing.iter().filter(|(_, (n, _))| *n > 0).map(|(node, (_, epoch))| (*node, *epoch)).collect()
    }

    fn sender(&self, node: NodeId) -> watch::Sender<u64> {
        self.nodes.lock().expect("signals poisoned").entry(node).or_insert_with(|| watch::channel(self.base).0).clone()
    }

    /// The node's current desired-state version.
    pub fn version(&self, node: NodeId) -> u64 {
        *self.sender(node).borrow()
    }

    /// Marks the node's desired state as changed, waking its long-polls here and on
    /// the other instances.
    pub fn bump(&self, node: NodeId) {
        self.bump_local(node);
        self.tell_peers(PeerWakeup::Node(node));
    }

    /// [`Signals::bump`] for a change another instance made.
    pub fn bump_local(&self, node: NodeId) {
        self.sender(node).send_modify(|v| *v += 1);
    }

    /// Marks every node's desired state as changed (after notifications may have been
    /// missed).
    pub fn bump_all_local(&self) {
        let senders: Vec<_> = self.nodes.lock().expect("signals poisoned").values().cloned().collect();
        for sender in senders {
            sender.send_modify(|v| *v += 1);
        }
    }

    /// Waits until the node's version differs from `known` or `wait` passes.
    pub async fn wait_change(&self, node: NodeId, known: u64, wait: std::time::Duration) {
        let mut rx = self.sender(node).subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|v| *v != known)).await;
    }

    /// Follows the news of `run`'s output from now on.
    pub fn follow_logs(&self, run: JobRunId) -> broadcast::Receiver<LogNews> {
        let mut logs = self.logs.lock().expect("signals poisoned");
        logs.entry(run).or_insert_with(|| broadcast::channel(1024).0).subscribe()
    }

    /// Hands new output of `run` (stored, ending at byte `end` of its output) to its
    /// followers here and tells the other instances it was stored.
    pub fn publish_logs(&self, run: JobRunId, chunk: &str, end: u64) {
        self.tell_followers(run, LogNews::Chunk { end, text: Arc::from(chunk) });
        self.tell_peers(PeerWakeup::Logs(run));
    }

    /// Another instance stored new output of `run`.
    pub fn logs_arrived_elsewhere(&self, run: JobRunId) {
        self.tell_followers(run, LogNews::Elsewhere);
    }

    /// Sends `news` to `run`'s followers, if any (forgetting the channel once nobody
    /// follows).
    fn tell_followers(&self, run: JobRunId, news: LogNews) {
        let mut logs = self.logs.lock().expect("signals poisoned");
        if let Some(tx) = logs.get(&run)
            && tx.send(news).is_err()
        {
            logs.remove(&run);
        }
    }

    /// Asks the scheduler for a pass that rereads the pending queue (here, and on the
    /// other instances: whichever runs the scheduler).
    pub fn wake_scheduler(&self) {
        self.wake_scheduler_local();
        self.tell_peers(PeerWakeup::Schedule);
    }

    /// [`Signals::wake_scheduler`] for another instance's wake-up.
    pub fn wake_scheduler_local(&self) {
        self.inbox.lock().expect("signals poisoned").queue = true;
        self.schedule.notify_one();
    }

    /// A job was created PENDING here (committed): the scheduler adds it to its model
    /// without rereading the queue. Other instances reread theirs.
    pub fn job_submitted(&self, job: &gantry_types::job::Job) {
        let saturated = self.saturated.lock().expect("signals poisoned").contains(&job.account_uuid);
        {
            let mut inbox = self.inbox.lock().expect("signals poisoned");
            if saturated {
                inbox.untaken = true;
            } else if inbox.has_room() {
                inbox.jobs.push(job.clone());
            } else {
                inbox.queue = true;
            }
        }
        self.schedule.notify_one();
        self.tell_peers(PeerWakeup::Schedule);
    }

    /// A settlement here put `job` back in PENDING for a retry (committed), after its
    /// runs, `history`: the scheduler adds it to its model with its history, without
    /// rereading the queue or the job's runs (after a mass loss those reads, queued
    /// behind 9,000 nodes' syncs, took most of a second per pass: `gantry bench
    /// node-loss --nodes 10000`). Other instances reread their queue. An account the
    /// model takes no more jobs from gets the reread here too: a retried job is its
    /// account's oldest, which a reread brings in.
    pub fn job_requeued(&self, job: &gantry_types::job::Job, history: RetryHistory) {
        let saturated = self.saturated.lock().expect("signals poisoned").contains(&job.account_uuid);
        {
            let mut inbox = self.inbox.lock().expect("signals poisoned");
            if !saturated && inbox.has_room() {
                inbox.retried.push((job.clone(), history));
            } else {
                inbox.queue = true;
            }
        }
        self.schedule.notify_one();
        self.tell_peers(PeerWakeup::Schedule);
    }

    /// This instance declared `node` LOST at `marked_at_ms` (committed): the scheduler
    /// stops placing on it without rereading it. Only the leader declares losses, and
    /// only the leader schedules, so no other instance is told.
    pub fn node_lost_here(&self, node: NodeId, marked_at_ms: i64) {
        self.inbox.lock().expect("signals poisoned").lost.push((node, marked_at_ms));
        self.schedule.notify_one();
    }

    /// This instance ended `run` on `node` from the control plane's side (a lost node,
    /// a timeout; committed): the scheduler frees its capacity without rereading the
    /// node. Only the leader's loops end runs so, and only the leader schedules.
    pub fn run_ended_here(&self, node: NodeId, run: JobRunId) {
        self.inbox.lock().expect("signals poisoned").ended.push((node, run));
        self.schedule.notify_one();
    }

    /// The capacity of `node` may have changed (a run on it ended; it registered,
    /// drained or was lost): the scheduler rereads that node, here and elsewhere.
    pub fn capacity_changed(&self, node: NodeId) {
        self.capacity_changed_local(node);
        self.tell_peers(PeerWakeup::Capacity(node));
    }

    /// [`Signals::capacity_changed`] for another instance's wake-up.
    pub fn capacity_changed_local(&self, node: NodeId) {
        self.inbox.lock().expect("signals poisoned").nodes.insert(node);
        self.schedule.notify_one();
    }

    /// Wake-ups may have been missed: the scheduler rebuilds its model.
    pub fn rebuild_scheduler_local(&self) {
        self.inbox.lock().expect("signals poisoned").rebuild = true;
        self.schedule.notify_one();
    }

    /// The accounts whose jobs the scheduler's model would not take now (set by the
    /// leader after each refresh and placement; see `Model::take_submitted`).
    pub fn set_saturated(&self, accounts: std::collections::HashSet<gantry_types::AccountId>) {
        *self.saturated.lock().expect("signals poisoned") = accounts;
    }

    /// Takes what changed since the last call (for the scheduler's pass).
    pub fn take_inbox(&self) -> SchedulerInbox {
        std::mem::take(&mut *self.inbox.lock().expect("signals poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_whose_sync_is_being_written_is_heard_now() {
        let signals = Signals::new(1);
        let node = NodeId::new();
        assert_eq!(signals.last_contact(node, 50), None, "never heard");
        signals.contact(node, 10);
        assert_eq!(signals.last_contact(node, 50), Some(10));
        {
            let _a = signals.syncing(node, 1, 20);
            let _b = signals.syncing(node, 1, 30);
            assert_eq!(signals.syncs_in_progress(), vec![(node, 1)], "one node, its epoch");
            // However long the writes take, the node is heard at every look.
            assert_eq!(signals.last_contact(node, 10_000), Some(10_000));
            drop(_b);
            assert_eq!(signals.last_contact(node, 20_000), Some(20_000), "one sync still under way");
        }
        // Done: heard when the last sync's writes ended (the wall clock, after 30).
        let after = signals.last_contact(node, i64::MAX).unwrap();
        assert!(after >= crate::state::now_ms() - 60_000 && after < i64::MAX, "{after}");
        // Building an answer after the long-poll: heard meanwhile, no contact noted.
        let before = signals.last_contact(node, 0);
        let answer = signals.answering(node, 1);
        assert_eq!(signals.last_contact(node, 70_000), Some(70_000));
        drop(answer);
        assert_eq!(signals.last_contact(node, 0), before);
        // Another node is not affected.
        assert!(signals.syncs_in_progress().is_empty(), "every guard dropped");
        assert_eq!(signals.last_contact(NodeId::new(), 50), None);
    }

    #[test]
    fn a_node_state_is_remembered_only_until_the_node_changes() {
        let (signals, cache) = (Signals::new(1), NodeStateCache::default());
        let node = NodeId::new();
        let online = NodeState {
            account: gantry_types::AccountId::new(),
            status: gantry_types::node::NodeStatus::Online,
            lease_epoch: 3,
        };
        let read_at = signals.version(node);
        assert_eq!(cache.get(node, read_at), None, "never read");
        cache.put(node, read_at, online);
        assert_eq!(cache.get(node, signals.version(node)), Some(online));
        // A loss or registration here, or one another instance tells of, bumps it.
        signals.bump(node);
        assert_eq!(cache.get(node, signals.version(node)), None, "changed here");
        cache.put(node, signals.version(node), online);
        signals.bump_local(node);
        assert_eq!(cache.get(node, signals.version(node)), None, "changed elsewhere");
        // A read begun before a change that landed during it is stale at once.
        let before = signals.version(node);
        signals.bump(node);
        cache.put(node, before, online);
        assert_eq!(cache.get(node, signals.version(node)), None, "changed during the read");
        cache.put(node, signals.version(node), online);
        signals.bump_all_local();
        assert_eq!(cache.get(node, signals.version(node)), None, "notifications reconnected");
        assert_eq!(cache.get(NodeId::new(), signals.version(node)), None, "another node");
    }
}
