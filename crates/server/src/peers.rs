//! Wake-ups between control-plane instances sharing one database (PostgreSQL
//! LISTEN/NOTIFY through [`gantry_store::NotifyStore`]): a placement made by one
//! instance wakes the agent long-polling on another at once, a job submitted on one
//! wakes the scheduler on whichever runs it, a key revoked on one is dropped from
//! every instance's cache, output stored by one reaches the log followers on all
//! (they read it from the store: the notification names only the run).
//!
//! Outgoing wake-ups are batched: whatever queued while the previous NOTIFY was in
//! flight goes in the next, grouped by topic, so a burst of placements costs a few
//! notifications, not one each. Each payload starts with this instance's id so it can
//! skip its own. They are hints (see `crate::signals`): a lost one costs latency; a
//! listener that reconnects assumes it missed some and wakes everything.

use std::collections::BTreeSet;
use std::sync::Arc;

use gantry_store::notify::MAX_PAYLOAD;
use gantry_store::{Notice, Topic};
use gantry_types::{JobRunId, NodeId};
use tokio::sync::mpsc;

use crate::signals::PeerWakeup;
use crate::state::AppState;

/// Listens to the other instances and tells them of this one's wake-ups, until the
/// store closes. Returns at once on a store without other instances (SQLite).
pub async fn run(state: Arc<AppState>) {
    let incoming = match state.store.listen().await {
        Ok(Some(rx)) => rx,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %crate::chain(&e), "cannot listen for other instances; relying on timers");
            return;
        }
    };
    let (tx, outgoing) = mpsc::unbounded_channel();
    state.signals.connect_peers(tx);
    let sender = tokio::spawn(send(state.clone(), outgoing));
    receive(&state, incoming).await;
    sender.abort();
}

async fn receive(state: &AppState, mut incoming: mpsc::Receiver<Notice>) {
    let me = state.signals.instance();
    while let Some(notice) = incoming.recv().await {
        match notice {
            Notice::Resync => {
                tracing::info!("reconnected to other instances' notifications; waking everything");
                state.signals.bump_all_local();
                state.signals.rebuild_scheduler_local();
                state.auth.keys.clear();
            }
            Notice::Message { topic, payload } => {
                let (from, items) = payload.split_once(' ').unwrap_or((payload.as_str(), ""));
                if from == me {
                    continue;
                }
                apply(state, topic, items);
            }
        }
    }
}

fn apply(state: &AppState, topic: Topic, items: &str) {
    let items = items.split(',').filter(|i| !i.is_empty());
    match topic {
        Topic::NodeDesired => items.filter_map(|i| i.parse::<NodeId>().ok()).for_each(|n| state.signals.bump_local(n)),
        // Without items: reread the queue; with node ids: those nodes' capacity changed.
        Topic::Schedule => {
            let mut nodes = items.filter_map(|i| i.parse::<NodeId>().ok()).peekable();
            if nodes.peek().is_none() {
                state.signals.wake_scheduler_local();
            }
            nodes.for_each(|n| state.signals.capacity_changed_local(n));
        }
        Topic::KeyRevoked => items.for_each(|k| state.auth.keys.evict(k)),
        Topic::Logs => {
            items.filter_map(|i| i.parse::<JobRunId>().ok()).for_each(|r| state.signals.logs_arrived_elsewhere(r))
        }
    }
}

async fn send(state: Arc<AppState>, mut outgoing: mpsc::UnboundedReceiver<PeerWakeup>) {
    let me = state.signals.instance().to_string();
    while let Some(first) = outgoing.recv().await {
        let mut nodes = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut capacity = BTreeSet::new();
        let mut logs = BTreeSet::new();
        let mut schedule = false;
        let mut next = Some(first);
        while let Some(wakeup) = next {
            match wakeup {
                PeerWakeup::Node(n) => {
                    nodes.insert(n.to_string());
                }
                PeerWakeup::Schedule => schedule = true,
                PeerWakeup::Capacity(n) => {
                    capacity.insert(n.to_string());
                }
                PeerWakeup::KeyRevoked(k) => {
                    keys.insert(k);
                }
                PeerWakeup::Logs(r) => {
                    logs.insert(r.to_string());
                }
            }
            next = outgoing.try_recv().ok();
        }
        let mut messages: Vec<(Topic, String)> = Vec::new();
        messages.extend(payloads(&me, &nodes).into_iter().map(|p| (Topic::NodeDesired, p)));
        messages.extend(payloads(&me, &keys).into_iter().map(|p| (Topic::KeyRevoked, p)));
        messages.extend(payloads(&me, &capacity).into_iter().map(|p| (Topic::Schedule, p)));
        messages.extend(payloads(&me, &logs).into_iter().map(|p| (Topic::Logs, p)));
        if schedule {
            messages.push((Topic::Schedule, me.clone()));
        }
        for (topic, payload) in messages {
            if let Err(e) = state.store.notify(topic, &payload).await {
                tracing::warn!(error = %crate::chain(&e), ?topic, "cannot notify other instances; they catch up on their timers");
            }
        }
    }
}

/// `"<instance> a,b,c"` payloads holding every item, each under [`MAX_PAYLOAD`].
fn payloads(me: &str, items: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for item in items {
        if !current.is_empty() && current.len() + 1 + item.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(me);
            current.push(' ');
        } else {
            current.push(',');
        }
        current.push_str(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_every_item_and_stay_under_the_limit() {
        let items: BTreeSet<String> = (0..1000).map(|i| format!("{:036}", i)).collect();
        let out = payloads("me", &items);
        assert!(out.len() > 1, "1000 uuids do not fit one notification");
        assert!(out.iter().all(|p| p.len() <= MAX_PAYLOAD && p.starts_with("me ")));
        let back: BTreeSet<String> = out.iter().flat_map(|p| p["me ".len()..].split(',').map(str::to_string)).collect();
        assert_eq!(back, items);
        assert!(payloads("me", &BTreeSet::new()).is_empty());
    }
}
