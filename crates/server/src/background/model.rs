//! The leader's in-memory model of what the scheduler plans from: the nodes, their
//! active runs and free capacity, and the pending queue.
//!
//! Rereading every node, every active run and the pending queue on each pass cost
//! the 200–400 ms between a submit and its placement (issue 11, point 4). The model
//! is instead kept up to date incrementally, and each pass plans from memory:
//!
//! - **its own plans**: the runs a pass planned join their nodes and their jobs leave
//!   the queue at once, before the write commits ([`Model::placed`]; a write that
//!   places fewer, or fails, rebuilds the model: see `super::placing`);
//! - **wake-ups** ([`crate::signals::SchedulerInbox`]): a job submitted on this
//!   instance arrives whole (no read), and so does a job this instance put back in
//!   PENDING for a retry, with its retry history; a node this instance declared lost,
//!   and a run it ended, arrive as facts the model applies (no read: after a mass loss
//!   at 10,000 nodes, the rereads of the queue, the retried jobs' runs and the lost
//!   nodes, queued behind 9,000 nodes' syncs, took 0.4-0.6 s of each pass that
//!   re-placed their jobs); a node whose capacity may have changed otherwise (a run
//!   on it ended by its agent, it registered or drained; here or on another
//!   instance) is reread with its active runs; a queue change the inbox cannot
//!   describe (a submit on another instance, a profile's regions) rereads the queue;
//! - **a full rebuild** from the store when the model is new (on taking the
//!   leadership), every [`REBUILD_EVERY`] as a safety net against a lost wake-up
//!   (put off while submits keep arriving, up to twice that), after notifications
//!   reconnect, and after any write conflict or error.
//!
//! Staleness is safe in one direction only, and the wake-ups cover the other: freed
//! capacity the model has not heard of costs latency (until the rebuild); capacity the
//! model believes free but is not could only come from a node change, and every node
//! change wakes the scheduler with the node. Placements stay a compare-and-set on each
//! job (PENDING → ASSIGNED), so a stale queue can never place a job twice: a conflict
//! just rebuilds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use gantry_scheduler::NodeView;
use gantry_store::{JobPlacement, NodeRecord, RunRecord};
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::JobRunStatus;
use gantry_types::{AccountId, JobId, NodeId};

use crate::app::capacity;
use crate::app::error::AppError;
use crate::signals::{RetryHistory, SchedulerInbox};
use crate::state::AppState;

/// The safety net: the model is rebuilt from the store at least this often.
pub const REBUILD_EVERY: Duration = Duration::from_secs(30);
/// More changed nodes than this in one wake-up, and more than a quarter of the
/// model's nodes, are read as a rebuild (one query for all nodes and active runs
/// beats one keyed read of the changed ones only when most of them changed). A fixed
/// 64 turned a mass loss at 10,000 nodes (hundreds of nodes, their runs failing over
/// seconds) into a rebuild of every node and active run on each pass until the
/// losses were settled.
const REREAD_NODES_MAX: usize = 64;
/// How many placed job ids are remembered (see [`Model::recently_placed`]).
const RECENT_PLACED: usize = 10_000;

/// A job as of one of its PENDING spells: its id and `updated_at` then.
pub type JobVersion = (JobId, i64);

/// Per retried job (keyed with the time it re-entered PENDING): its next attempt
/// number and the nodes it failed on.
pub type History = HashMap<JobVersion, RetryHistory>;

/// The model; owned by the scheduler loop of the leader.
#[derive(Default)]
pub struct Model {
    pub nodes: HashMap<NodeId, NodeRecord>,
    /// Active runs (ASSIGNED, PREPARING, RUNNING) per node.
    runs: HashMap<NodeId, Vec<RunRecord>>,
    /// Each node's free capacity, recomputed when the node or its runs change.
    views: HashMap<NodeId, NodeView>,
    /// Active runs per account (fair share across passes).
    pub active_per_account: HashMap<AccountId, u32>,
    /// The pending jobs the model holds: at most the pass limit, split fairly.
    pending: HashMap<JobId, Job>,
    /// How many of `pending` each account has.
    held: HashMap<AccountId, u32>,
    /// The store holds pending jobs the model does not (a read or a trim was capped,
    /// or submitted jobs were not taken):
    /// after placing some, the queue is reread to bring the next ones in.
    truncated: bool,
    /// Reread the queue on the next refresh (see `truncated`).
    queue_stale: bool,
    pub history: History,
    /// Consumer profiles' region allowlists (restricted ones only).
    pub allowlists: HashMap<AccountId, Vec<String>>,
    /// Jobs placed lately, each as the pending version placed (its `updated_at`): a
    /// submit or retry wake-up can arrive after a reread already saw (and a pass
    /// placed) that version of its job; it must not come back as pending.
    recently_placed: (HashSet<JobVersion>, VecDeque<JobVersion>),
    built_at: Option<Instant>,
    /// How many times the model was rebuilt from the store (for the logs).
    pub rebuilds: u64,
}

impl Model {
    /// Forces a rebuild on the next refresh (after a conflict or an error).
    pub fn invalidate(&mut self) {
        self.built_at = None;
    }

    /// Whether catching up with `inbox` reads the store (a rebuild, nodes, the
    /// queue); the writes in flight must be settled first (`super::placing`).
    pub fn must_read(&self, inbox: &SchedulerInbox) -> bool {
        self.rebuild_due(inbox) || !inbox.nodes.is_empty() || inbox.queue || self.queue_stale
    }

    /// A rebuild is due: the model is new or invalidated, the inbox asks for one or
    /// names too many nodes, or the safety net's period passed. The periodic one waits
    /// while submitted jobs keep arriving (a rebuild reads every node and active run:
    /// it would stall the placements of a steady stream), up to twice the period.
    fn rebuild_due(&self, inbox: &SchedulerInbox) -> bool {
        let age = self.built_at.map(|t| t.elapsed());
        let periodic = age.is_none_or(|age| {
            age >= REBUILD_EVERY && (inbox.jobs.is_empty() || age >= REBUILD_EVERY.saturating_mul(2))
        });
        periodic || inbox.rebuild || inbox.nodes.len() > REREAD_NODES_MAX.max(self.nodes.len() / 4)
    }

    /// Catches up with `inbox` (taken just before, so everything it names is
    /// committed and visible to the reads below).
    pub async fn refresh(&mut self, state: &AppState, inbox: SchedulerInbox) -> Result<(), AppError> {
        if self.rebuild_due(&inbox) {
            self.rebuild(state).await?;
        } else {
            // Before the rereads, which are newer than these facts.
            self.apply_lost(&inbox.lost);
            self.apply_ended(&inbox.ended);
            if !inbox.nodes.is_empty() {
                self.reread_nodes(state, inbox.nodes.into_iter().collect()).await?;
            }
            if inbox.queue || self.queue_stale {
                self.reread_queue(state).await?;
            }
        }
        let limit = state.scheduling.pass_limit;
        self.take_submitted(inbox.jobs, inbox.retried, inbox.untaken, limit);
        // Slack before trimming back to the limit: a trim sorts every held job by
        // account, and only accounts under their share still add jobs to a full model.
        if self.pending.len() > (limit + limit / 8) as usize {
            self.trim(limit);
        }
        state.signals.set_saturated(self.saturated(limit));
        Ok(())
    }

    /// Takes jobs submitted on this instance into the queue. Once the model holds the
    /// pass limit (a backlog, or no node to run anything: `gantry bench submit`), a
    /// job is taken only while its account holds less than an equal share of the
    /// limit; else it stays in the store only and the model counts as truncated (the
    /// queue is reread, split fairly, once placements make room). Cloning every
    /// submitted job into the inbox and the model only to trim the newest back out was
    /// the scheduler's main cost per created job under such a burst; the accounts at
    /// their share ([`Model::saturated`]) are told to the signals, which then hand
    /// over none of their jobs (`untaken`). An account arriving with a first job still
    /// gets it in at once (a backlog never hides another account's job). Jobs requeued
    /// for a retry (`retried`) are taken the same way, and their histories kept.
    fn take_submitted(&mut self, jobs: Vec<Job>, retried: Vec<(Job, RetryHistory)>, untaken: bool, limit: u32) {
        if untaken {
            self.truncated = true;
        }
        let mut all = jobs;
        for (job, history) in retried {
            self.history.insert((job.uuid, job.updated_at.0), history);
            all.push(job);
        }
        for job in all {
            if job.status != JobStatus::Pending || self.recently_placed.0.contains(&(job.uuid, job.updated_at.0)) {
                continue;
            }
            if self.at_share(job.account_uuid, limit) {
                self.truncated = true;
            } else {
                *self.held.entry(job.account_uuid).or_default() += 1;
                self.pending.insert(job.uuid, job);
            }
        }
    }

    /// Whether the model is full and `account` holds at least an equal share of it
    /// (counting `account` among the accounts if it holds nothing yet; a share is at
    /// least one job, so an account's first job is always taken).
    fn at_share(&self, account: AccountId, limit: u32) -> bool {
        if self.pending.len() < limit as usize {
            return false;
        }
        let held = self.held.get(&account).copied().unwrap_or(0);
        let accounts = self.held.len() + usize::from(held == 0);
        held as usize >= (limit as usize / accounts).max(1)
    }

    /// The accounts whose submitted jobs a full model would not take now.
    pub fn saturated(&self, limit: u32) -> HashSet<AccountId> {
        self.held.keys().copied().filter(|a| self.at_share(*a, limit)).collect()
    }

    /// Recounts [`Model::held`] from the queue (after it was replaced or trimmed).
    fn count_held(&mut self) {
        self.held.clear();
        for j in self.pending.values() {
            *self.held.entry(j.account_uuid).or_default() += 1;
        }
    }

    /// Everything from the store.
    async fn rebuild(&mut self, state: &AppState) -> Result<(), AppError> {
        self.built_at = None;
        let nodes = state.store.node_list_all().await?;
        let active = state.store.run_list_active_brief().await?;
        self.nodes = nodes.into_iter().map(|n| (n.uuid, n)).collect();
        self.runs.clear();
        self.active_per_account.clear();
        for r in active {
            *self.active_per_account.entry(r.run.account_uuid).or_default() += 1;
            self.runs.entry(r.run.node_uuid).or_default().push(r);
        }
        self.views.clear();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        ids.into_iter().for_each(|id| self.recompute(id));
        self.history.clear();
        self.reread_queue(state).await?;
        self.built_at = Some(Instant::now());
        self.rebuilds += 1;
        Ok(())
    }

    /// Nodes this instance declared LOST (`(node, marked at)`): each becomes LOST in
    /// the model unless the model's record is newer than the marking (the node
    /// registered again since, and a reread saw it). A record as new as the marking
    /// itself is taken as lost: at worst a node is left unused until its next change
    /// or the rebuild, the safe direction.
    fn apply_lost(&mut self, lost: &[(NodeId, i64)]) {
        for &(id, marked_at) in lost {
            if let Some(node) = self.nodes.get_mut(&id)
                && node.updated_at_ms <= marked_at
            {
                node.status = gantry_types::node::NodeStatus::Lost;
                node.updated_at_ms = marked_at;
                self.recompute(id);
            }
        }
    }

    /// Runs this instance ended: they leave their nodes (and their accounts' counts).
    fn apply_ended(&mut self, ended: &[(NodeId, gantry_types::JobRunId)]) {
        let mut touched = HashSet::new();
        for &(node, run) in ended {
            let Some(runs) = self.runs.get_mut(&node) else { continue };
            let Some(at) = runs.iter().position(|r| r.run.uuid == run) else { continue };
            let gone = runs.swap_remove(at);
            if let Some(n) = self.active_per_account.get_mut(&gone.run.account_uuid) {
                *n = n.saturating_sub(1);
            }
            touched.insert(node);
        }
        self.active_per_account.retain(|_, n| *n > 0);
        touched.into_iter().for_each(|id| self.recompute(id));
    }

    /// `ids` and their active runs from the store.
    async fn reread_nodes(&mut self, state: &AppState, ids: Vec<NodeId>) -> Result<(), AppError> {
        let active = crate::app::nodes::active_runs_on(state, ids.clone()).await?;
        let mut fresh: HashMap<NodeId, Vec<RunRecord>> = HashMap::new();
        for r in active {
            fresh.entry(r.run.node_uuid).or_default().push(r);
        }
        // One read for all of them: a mass loss changes hundreds of nodes at once,
        // and reading them one by one took the scheduler 0.6-1.5 s at 10,000 nodes.
        let mut found: HashMap<NodeId, NodeRecord> =
            state.store.node_fetch_many(&ids).await?.into_iter().map(|n| (n.uuid, n)).collect();
        let fetched: Vec<(NodeId, Option<NodeRecord>)> = ids.into_iter().map(|id| (id, found.remove(&id))).collect();
        for (id, node) in fetched {
            match node {
                Some(node) => {
                    self.nodes.insert(id, node);
                }
                None => {
                    self.nodes.remove(&id);
                }
            }
            let runs = fresh.remove(&id).unwrap_or_default();
            for r in self.runs.get(&id).into_iter().flatten() {
                if let Some(n) = self.active_per_account.get_mut(&r.run.account_uuid) {
                    *n = n.saturating_sub(1);
                }
            }
            for r in &runs {
                *self.active_per_account.entry(r.run.account_uuid).or_default() += 1;
            }
            self.runs.insert(id, runs);
            self.recompute(id);
        }
        self.active_per_account.retain(|_, n| *n > 0);
        Ok(())
    }

    /// The pending queue (each account's oldest jobs within the pass limit) and the
    /// region allowlists that go with it.
    async fn reread_queue(&mut self, state: &AppState) -> Result<(), AppError> {
        let accounts = state.store.job_pending_accounts().await?;
        let shares = gantry_scheduler::queue_shares(&accounts, state.scheduling.pass_limit);
        let pending = if shares.is_empty() { vec![] } else { state.store.job_list_pending_by_account(&shares).await? };
        let queued: u64 = accounts.iter().map(|a| a.1).sum();
        self.truncated = queued > pending.len() as u64;
        self.queue_stale = false;
        self.pending = pending.into_iter().map(|j| (j.uuid, j)).collect();
        self.count_held();
        self.history.retain(|(id, _), _| self.pending.contains_key(id));
        self.allowlists = state
            .store
            .consumer_profile_list_all()
            .await?
            .into_iter()
            .filter(|p| !p.allowed_region_codes.is_empty())
            .map(|p| (p.account_uuid, p.allowed_region_codes))
            .collect();
        Ok(())
    }

    /// Keeps at most `limit` pending jobs, each account's oldest, split as the store
    /// read splits them (`gantry_scheduler::queue_shares`).
    fn trim(&mut self, limit: u32) {
        if self.pending.len() <= limit as usize {
            return;
        }
        let mut by_account: HashMap<AccountId, Vec<(i64, JobId)>> = HashMap::new();
        for j in self.pending.values() {
            by_account.entry(j.account_uuid).or_default().push((j.created_at.0, j.uuid));
        }
        let counts: Vec<(AccountId, u64)> = by_account.iter().map(|(a, v)| (*a, v.len() as u64)).collect();
        for (account, share) in gantry_scheduler::queue_shares(&counts, limit) {
            let jobs = by_account.get_mut(&account).expect("counted account");
            jobs.sort_unstable();
            for (_, id) in jobs.drain(..).skip(share as usize) {
                self.pending.remove(&id);
            }
        }
        self.truncated = true;
        self.count_held();
    }

    fn recompute(&mut self, id: NodeId) {
        match self.nodes.get(&id) {
            Some(node) => {
                let runs = self.runs.get(&id).map(Vec::as_slice).unwrap_or(&[]);
                let view = capacity::node_views(std::slice::from_ref(node), runs).pop().expect("one view");
                self.views.insert(id, view);
            }
            None => {
                self.views.remove(&id);
            }
        }
    }

    /// The pending jobs, oldest first (created_at, uuid).
    pub fn pending(&self) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = self.pending.values().collect();
        jobs.sort_by_key(|j| (j.created_at.0, j.uuid));
        jobs
    }

    /// Each account's `limit` oldest pending jobs, oldest first (created_at, uuid): the
    /// only jobs that can be among the first `limit` that `heads_first` ranks (an
    /// account's later job comes after its earlier ones), so a pass that explains but
    /// cannot place plans from these instead of sorting the whole queue (up to the pass
    /// limit plus an eighth; once per `EXPLAIN_EVERY` under streaming submits).
    pub fn heads(&self, limit: usize) -> Vec<&Job> {
        let key = |j: &&Job| (j.created_at.0, j.uuid);
        let mut by_account: HashMap<AccountId, Vec<&Job>> = HashMap::new();
        for j in self.pending.values() {
            by_account.entry(j.account_uuid).or_default().push(j);
        }
        let mut heads = Vec::new();
        for mut jobs in by_account.into_values() {
            if jobs.len() > limit {
                jobs.select_nth_unstable_by_key(limit, key);
                jobs.truncate(limit);
            }
            heads.extend(jobs);
        }
        heads.sort_by_key(key);
        heads
    }

    /// The pending jobs, in no order (for what needs no order: cheaper than [`Model::pending`]).
    pub fn pending_unordered(&self) -> impl Iterator<Item = &Job> {
        self.pending.values()
    }

    /// Whether the model holds any pending job.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Every node's free capacity, as the planner takes it.
    pub fn views(&self) -> Vec<NodeView> {
        self.views.values().cloned().collect()
    }

    /// How many active runs the model holds.
    pub fn active_count(&self) -> usize {
        self.runs.values().map(Vec::len).sum()
    }

    /// Applies a pass's plan before its write commits (`super::placing`): the jobs
    /// leave the queue and their runs join their nodes. If the write then places
    /// fewer (a job was no longer PENDING) or fails, the model is rebuilt; until then
    /// it counts capacity as taken that is not, the safe direction.
    pub fn placed(&mut self, placements: &[JobPlacement]) {
        let mut touched = HashSet::new();
        for p in placements {
            if let Some(job) = self.pending.remove(&p.job) {
                self.history.remove(&(job.uuid, job.updated_at.0));
                if let Some(n) = self.held.get_mut(&job.account_uuid) {
                    *n -= 1;
                    if *n == 0 {
                        self.held.remove(&job.account_uuid);
                    }
                }
                self.remember_placed((job.uuid, job.updated_at.0));
            }
            for r in &p.runs {
                debug_assert_eq!(r.run.status, JobRunStatus::Assigned);
                *self.active_per_account.entry(r.run.account_uuid).or_default() += 1;
                self.runs.entry(r.run.node_uuid).or_default().push(r.clone());
                touched.insert(r.run.node_uuid);
            }
        }
        touched.into_iter().for_each(|id| self.recompute(id));
        if self.truncated && !placements.is_empty() {
            // Room was made in the queue the model holds: bring the next jobs in.
            self.queue_stale = true;
        }
    }

    fn remember_placed(&mut self, job: JobVersion) {
        let (set, order) = &mut self.recently_placed;
        if set.insert(job) {
            order.push_back(job);
        }
        while order.len() > RECENT_PLACED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gantry_store::testsuite::{job, node_record, run_record};
    use gantry_types::AccountId;

    use super::*;

    /// A model built by hand: one node (variant 0: no GPUs, 32 cores) and `jobs`
    /// pending jobs of one core each, as if just rebuilt.
    fn model(jobs: usize) -> (Model, NodeRecord, Vec<Job>) {
        let account = AccountId::new();
        let node = node_record(account, 1_000, 0);
        let jobs: Vec<Job> = (0..jobs)
            .map(|i| {
                let mut j = job(account, 2_000 + i as i64, 1);
                (j.cpu_count, j.gpu_count, j.min_ram_gb, j.min_storage_gb) = (1, 0, 1.0, 1.0);
                j
            })
            .collect();
        let mut m = Model::default();
        m.nodes.insert(node.uuid, node.clone());
        m.recompute(node.uuid);
        m.pending = jobs.iter().map(|j| (j.uuid, j.clone())).collect();
        m.count_held();
        m.built_at = Some(Instant::now());
        (m, node, jobs)
    }

    fn placement(job: &Job, node: &NodeRecord) -> JobPlacement {
        let mut run = run_record(job, node, 0, 0, 3_000);
        (run.cpu, run.ram_gb, run.storage_gb) = (1, 1.0, 1.0);
        run.run.gpu_indices = vec![];
        JobPlacement { job: job.uuid, runs: vec![run], now_ms: 3_000 }
    }

    #[test]
    fn a_plan_takes_its_capacity_and_leaves_the_queue_before_the_write() {
        let (mut m, node, jobs) = model(3);
        let free = m.views()[0].free_cpu;
        m.placed(&[placement(&jobs[0], &node), placement(&jobs[1], &node)]);
        assert_eq!(m.views()[0].free_cpu, free - 2, "the planned runs hold their cores at once");
        assert_eq!(m.pending().iter().map(|j| j.uuid).collect::<Vec<_>>(), [jobs[2].uuid]);
        assert_eq!(m.active_count(), 2);
        assert_eq!(m.active_per_account[&jobs[0].account_uuid], 2);
        // A submit wake-up that arrives after the plan does not bring the job back.
        assert!(m.recently_placed.0.contains(&(jobs[0].uuid, jobs[0].updated_at.0)));
        assert!(!m.queue_stale, "the whole queue is held: nothing to reread");
    }

    #[test]
    fn facts_from_this_instance_apply_without_a_read() {
        let (mut m, node, jobs) = model(2);
        let free = m.views()[0].free_cpu;
        let p = placement(&jobs[0], &node);
        m.placed(std::slice::from_ref(&p));
        let run = p.runs[0].run.uuid;
        m.apply_ended(&[(node.uuid, run), (node.uuid, gantry_types::JobRunId::new())]);
        assert_eq!(m.views()[0].free_cpu, free, "the ended run's core is free again; an unknown run changes nothing");
        assert_eq!(m.active_count(), 0);
        assert!(m.active_per_account.is_empty());

        // The same version of a job, handed over after a pass placed it, stays out; a
        // later version (the job back in PENDING for a retry) comes in with its history.
        let again = jobs[0].clone();
        m.take_submitted(vec![again.clone()], vec![], false, 100);
        assert!(!m.pending().iter().any(|j| j.uuid == again.uuid), "a placed version does not come back");
        let mut retry = again;
        retry.updated_at = gantry_types::Timestamp(retry.updated_at.0 + 5_000);
        m.take_submitted(vec![], vec![(retry.clone(), (1, vec![node.uuid]))], false, 100);
        assert!(m.pending().iter().any(|j| j.uuid == retry.uuid), "the retry is pending");
        assert_eq!(m.history[&(retry.uuid, retry.updated_at.0)], (1, vec![node.uuid]));

        // A loss older than the record (the node registered again since) is ignored.
        m.apply_lost(&[(node.uuid, node.updated_at_ms - 1)]);
        assert!(m.views()[0].schedulable);
        m.apply_lost(&[(node.uuid, node.updated_at_ms + 1)]);
        assert!(!m.views()[0].schedulable, "a node declared lost takes nothing");
    }

    #[test]
    fn heads_are_each_accounts_oldest_in_queue_order() {
        let (mut m, _, jobs) = model(5);
        let other = AccountId::new();
        let theirs: Vec<Job> = (0..3).map(|i| job(other, 1_000 + 2 * i, 1)).collect();
        m.pending.extend(theirs.iter().map(|j| (j.uuid, j.clone())));
        let ids = |js: Vec<&Job>| js.iter().map(|j| j.uuid).collect::<Vec<_>>();
        assert_eq!(ids(m.heads(2)), [theirs[0].uuid, theirs[1].uuid, jobs[0].uuid, jobs[1].uuid]);
        assert_eq!(ids(m.heads(100)), ids(m.pending()), "under the limit: the whole queue, in order");
    }

    #[test]
    fn a_full_model_takes_only_accounts_under_their_share_and_rereads_once_room_is_made() {
        let (mut m, node, jobs) = model(2);
        let mine = jobs[0].account_uuid;
        let later: Vec<Job> = (0..2).map(|i| job(mine, 10_000 + i, 1)).collect();
        m.take_submitted(later, vec![], false, 3);
        assert_eq!(m.pending().len(), 3, "taken up to the limit");
        assert!(m.truncated, "the one past it stays in the store only");
        assert_eq!(m.saturated(3), HashSet::from([mine]), "the signals stop handing this account's jobs over");
        m.truncated = false;
        m.take_submitted(vec![], vec![], true, 3);
        assert!(m.truncated, "jobs the signals did not hand over (untaken) count too");

        let theirs = job(AccountId::new(), 20_000, 1);
        m.take_submitted(vec![theirs.clone()], vec![], false, 3);
        assert!(m.pending().iter().any(|j| j.uuid == theirs.uuid), "another account's first job is taken at once");
        assert_eq!(m.saturated(3), HashSet::from([mine, theirs.account_uuid]), "each holds its share (3 / 2)");
        let crowd: Vec<Job> = (0..4).map(|i| job(AccountId::new(), 30_000 + i, 1)).collect();
        m.take_submitted(crowd, vec![], false, 3);
        assert_eq!(m.pending().len(), 8, "more accounts than the limit: each first job still comes in");

        let oldest = m.pending()[0].clone();
        assert_eq!(oldest.uuid, jobs[0].uuid);
        m.placed(&[placement(&oldest, &node)]);
        assert_eq!(m.held[&mine], 2, "placed jobs leave the count");
        assert!(m.queue_stale);
        assert!(m.must_read(&SchedulerInbox::default()), "the queue is reread, after the writes settle");
    }

    #[test]
    fn a_trim_keeps_each_accounts_oldest() {
        let (mut m, _, jobs) = model(4);
        m.trim(2);
        assert_eq!(m.pending().iter().map(|j| j.uuid).collect::<Vec<_>>(), [jobs[0].uuid, jobs[1].uuid]);
        assert_eq!(m.held[&jobs[0].account_uuid], 2);
    }

    #[test]
    fn only_wakeups_that_name_no_store_state_skip_the_read() {
        let (m, _, jobs) = model(1);
        let submitted = SchedulerInbox { jobs: vec![jobs[0].clone()], ..Default::default() };
        assert!(!m.must_read(&submitted), "a submitted job arrives whole");
        assert!(!m.must_read(&SchedulerInbox::default()));
        let node = SchedulerInbox { nodes: [NodeId::new()].into(), ..Default::default() };
        assert!(m.must_read(&node));
        assert!(m.must_read(&SchedulerInbox { queue: true, ..Default::default() }));
        assert!(m.must_read(&SchedulerInbox { rebuild: true, ..Default::default() }));
        let mut fresh = Model::default();
        assert!(fresh.must_read(&submitted), "a new model is built from the store");
        fresh.built_at = Some(Instant::now());
        fresh.invalidate();
        assert!(fresh.must_read(&submitted), "an invalidated one is rebuilt");
    }

    #[test]
    fn the_periodic_rebuild_waits_while_submits_stream_in_up_to_twice_its_period() {
        let (mut m, _, jobs) = model(1);
        let submitted = SchedulerInbox { jobs: vec![jobs[0].clone()], ..Default::default() };
        let ago = |d: Duration| Instant::now().checked_sub(d).expect("uptime");
        m.built_at = Some(ago(REBUILD_EVERY + Duration::from_secs(1)));
        assert!(!m.rebuild_due(&submitted), "put off while jobs arrive");
        assert!(m.rebuild_due(&SchedulerInbox::default()), "done at the first quiet pass");
        m.built_at = Some(ago(REBUILD_EVERY * 2 + Duration::from_secs(1)));
        assert!(m.rebuild_due(&submitted), "not put off for ever");
    }
}
