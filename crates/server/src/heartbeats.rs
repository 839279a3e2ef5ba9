//! Coalesced heartbeats. An idle node syncs once a second; writing its `last_seen_at_ms`
//! (and sample) on every sync made a fleet at rest the store's main write load — one
//! write, one commit to wait for, per node per second. Instead a sync notes the
//! heartbeat here and a background task writes the latest one per node in one batch
//! every [`FLUSH_EVERY`] (and at shutdown; never less often than a fifth of the loss
//! window).
//!
//! What must be durable, and why a batch a second is enough: the stored `last_seen_at_ms`
//! is what *another* instance sees. Loss is judged by the leader from the later of the
//! stored time and the syncs that reached the leader itself (`Signals::contact`), so on
//! one instance the batch changes nothing; with several instances on PostgreSQL a node
//! syncing with a follower reaches the leader's view at most one flush (plus its write)
//! late, well inside the 4 s loss window (a node syncing every second looks at most
//! ~2 s silent). A crash loses at most one flush of heartbeats, which a new leader's
//! grace period (one loss window before any loss is declared) already covers. The
//! node's fencing does not depend on this write: the sync reads the node (status and
//! epoch) before answering, and the batch's compare-and-set skips a node that was
//! declared lost or re-registered meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_store::{Heartbeat, Store};
use gantry_types::NodeId;
use gantry_types::node::HardwareSample;

use crate::state::AppState;

/// How often the heartbeats noted are written (or a fifth of the loss window, when
/// shorter: tests shorten the window).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Heartbeats per write of a flush.
const FLUSH_CHUNK: usize = 1_000;

/// The latest heartbeat per node, not yet written.
#[derive(Default)]
pub struct Heartbeats {
    pending: Mutex<HashMap<NodeId, Heartbeat>>,
}

impl Heartbeats {
    /// Notes a heartbeat of `node` under `lease_epoch` at `now_ms` (and its sample).
    pub fn note(&self, node: NodeId, lease_epoch: i64, now_ms: i64, sample: Option<HardwareSample>) {
        let mut pending = self.pending.lock().expect("heartbeats poisoned");
        let beat =
            pending.entry(node).or_insert_with(|| Heartbeat { node, lease_epoch, seen_at_ms: now_ms, sample: None });
        // A newer epoch (the node re-registered) replaces what the old one noted.
        if lease_epoch != beat.lease_epoch {
            *beat = Heartbeat { node, lease_epoch, seen_at_ms: now_ms, sample: None };
        }
        beat.seen_at_ms = beat.seen_at_ms.max(now_ms);
        if sample.is_some() {
            beat.sample = sample;
        }
    }

    /// Writes what is pending in one batch. On failure the batch is logged and
    /// dropped: the nodes' next syncs note newer heartbeats within a second.
    pub async fn flush(&self, store: &dyn Store) {
        let beats: Vec<Heartbeat> = {
            let mut pending = self.pending.lock().expect("heartbeats poisoned");
            pending.drain().map(|(_, b)| b).collect()
        };
        if beats.is_empty() {
            return;
        }
        // In chunks, so a large fleet's batch does not hold SQLite's writer (or
        // PostgreSQL's row locks) for long in front of the other writes.
        for chunk in beats.chunks(FLUSH_CHUNK) {
            if let Err(e) = store.node_heartbeats(chunk).await {
                tracing::warn!(error = %crate::error::chain(&e), nodes = chunk.len(), "could not write heartbeats");
            }
        }
    }
}

/// Flushes every [`FLUSH_EVERY`] (at most a fifth of the loss window) until aborted (spawned by `background::spawn`, on every
/// instance: each holds the heartbeats of the nodes that sync with it).
pub async fn run_flusher(state: Arc<AppState>) {
    let every = FLUSH_EVERY.min(state.scheduling.timing.node_lost_after / 5);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A sync still under way here is contact now, however long its writes take:
        // the leader on another instance sees only what is written, and a sync to a
        // follower whose run reports wait seconds behind a placement batch would
        // otherwise look like silence there (seen in `gantry bench failover`: an agent
        // that failed over to a busy follower right after the kill was declared lost).
        let now = crate::state::now_ms();
        for (node, epoch) in state.signals.syncs_in_progress() {
            state.heartbeats.note(node, epoch, now, None);
        }
        state.heartbeats.flush(state.store.as_ref()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_heartbeat_per_node_and_epoch_is_kept() {
        let h = Heartbeats::default();
        let node = NodeId::new();
        let sample = HardwareSample { cpu_load: 1.0, ram_free_gb: 2.0, storage_free_gb: 3.0, gpus: vec![] };
        h.note(node, 1, 100, Some(sample.clone()));
        h.note(node, 1, 90, None);
        let beat = |h: &Heartbeats| h.pending.lock().unwrap().get(&node).cloned().unwrap();
        assert_eq!(beat(&h), Heartbeat { node, lease_epoch: 1, seen_at_ms: 100, sample: Some(sample.clone()) });
        h.note(node, 2, 95, None);
        assert_eq!(beat(&h), Heartbeat { node, lease_epoch: 2, seen_at_ms: 95, sample: None }, "new epoch");
    }
}
