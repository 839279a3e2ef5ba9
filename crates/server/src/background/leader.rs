//! One leader for the reconcilers: of the instances sharing a database, only the one
//! holding the store's leadership ([`gantry_store::DeploymentStore::try_lead`]) runs
//! the scheduler, lifecycle and billing loops and webhook delivery; the others serve the API and keep
//! trying to take over. On SQLite the only instance leads from the start.
//!
//! The leader checks its hold every [`CHECK_EVERY`] and stops its loops the moment
//! the check fails (the database session holding the lock is gone or slow to answer),
//! so two instances run the loops at once for at most about that long. There is no
//! fencing of each write by a lease epoch yet: an instance paused mid-pass keeps its
//! lock while paused (its session stays open), so nobody takes over meanwhile, but a
//! leader cut off from the database could finish a pass it had started.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gantry_store::deployment::Leadership;

use crate::state::AppState;

/// How often a follower tries to take over, and the leader checks it still leads.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Aborts the loops it holds when dropped: losing the leadership, or the whole task
/// being aborted at shutdown, stops them.
struct LeaderLoops(Vec<tokio::task::JoinHandle<()>>);

impl Drop for LeaderLoops {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// The first try to lead, made before the server reports ready so that `/healthz`
/// gives the role from the first answer (and the only SQLite instance schedules at once).
pub async fn first_try(state: &AppState) -> Option<Box<dyn Leadership>> {
    match state.store.try_lead().await {
        Ok(leadership) => leadership,
        Err(e) => {
            tracing::warn!(error = %crate::chain(&e), "cannot reach the store to take the leadership");
            None
        }
    }
}

/// Runs the leader's loops while holding the leadership (starting with `first`, the
/// result of [`first_try`]), and takes it whenever it is free.
pub async fn run(state: Arc<AppState>, first: Option<Box<dyn Leadership>>) {
    let mut next = first;
    loop {
        if let Some(mut leadership) = next.take() {
            *state.scheduling.leading_since.lock().expect("leading_since poisoned") = std::time::Instant::now();
            state.scheduling.leading.store(true, Ordering::Relaxed);
            tracing::info!(
                instance = state.signals.instance(),
                "leading: running the scheduler, lifecycle and billing loops"
            );
            let loops = LeaderLoops(vec![
                tokio::spawn(super::scheduler::run(state.clone())),
                tokio::spawn(super::lifecycle::run(state.clone())),
                tokio::spawn(super::billing::run(state.clone())),
                // One instance delivers webhooks, so endpoints get their events in
                // order and an attempt is not made twice at once.
                tokio::spawn(super::webhooks::run_fanout(state.clone())),
                tokio::spawn(super::webhooks::run_delivery(state.clone())),
            ]);
            while leadership.still_leading().await {
                tokio::time::sleep(CHECK_EVERY).await;
            }
            drop(loops);
            state.scheduling.leading.store(false, Ordering::Relaxed);
            tracing::warn!(
                instance = state.signals.instance(),
                "lost the leadership (its database session failed a check); loops stopped, trying to lead again"
            );
        }
        tokio::time::sleep(CHECK_EVERY).await;
        next = first_try(&state).await;
    }
}
