//! One leader for the reconcilers: of the instances sharing a database, only the one
//! holding the store's leadership ([`gantry_store::DeploymentStore::try_lead`]) runs
//! the scheduler, lifecycle and billing loops and webhook delivery; the others serve the API and keep
//! trying to take over. On SQLite the only instance leads from the start.
//!
//! The leadership is a lease of [`LEASE_TTL`] in database time, renewed every
//! [`CHECK_EVERY`]; the leader stops its loops the moment a renewal fails (the lease
//! expired or was taken over, or the database is slow or gone), rather than act on
//! stale state. Each loop runs inside the lease's fence (`gantry_store::fence`): a
//! leader frozen past its lease (SIGSTOP, a stalled VM) that resumes mid-pass has its
//! writes refused by the store, because the instance that took over holds a newer
//! epoch; it then notices the failed renewal and steps down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gantry_store::deployment::Leadership;

use crate::state::AppState;

/// How often a follower tries to take over, and the leader renews its lease. A
/// follower's try is one unlocked read while the lease is held, so trying often is
/// cheap; it bounds how long after the lease's expiry a follower notices.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long a lease lasts without renewal: a leader silent this long (frozen, cut
/// off, killed) is replaced. Six renewals fit in it, so a slow one or two cost
/// nothing. It is most of the time a failover takes (kill -9 of the leader → the
/// first placement by the next one: between TTL − CHECK_EVERY and TTL + CHECK_EVERY,
/// plus one pass; `gantry bench failover` measures it), hence 3 s and not more:
/// issue 11 asks for a placement within 5 s of a leader's death.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

type LoopFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

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

/// Whether a loop's pass failed because its write was fenced (counted in
/// `gantry_leader_fenced_writes_total`): the lease is gone and the leader is about to
/// step down, which is expected, not an error to alarm on.
pub fn fenced(state: &AppState, e: &crate::app::error::AppError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if matches!(err.downcast_ref::<gantry_store::StoreError>(), Some(gantry_store::StoreError::Fenced { .. })) {
            state.metrics.fenced_writes.inc();
            tracing::warn!(error = %crate::app::error::chain(e), "write refused: the leader lease was lost");
            return true;
        }
        cur = err.source();
    }
    false
}

/// The first try to lead, made before the server reports ready so that `/healthz`
/// gives the role from the first answer (and the only SQLite instance schedules at once).
pub async fn first_try(state: &AppState) -> Option<Box<dyn Leadership>> {
    match state.store.try_lead(state.signals.instance(), LEASE_TTL).await {
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
            let fence = leadership.fence();
            state.scheduling.lease_epoch.store(fence.epoch, Ordering::Relaxed);
            let fenced = |f| tokio::spawn(gantry_store::fence::scope(fence, f));
            let loops = LeaderLoops(vec![
                fenced(Box::pin(super::scheduler::run(state.clone())) as LoopFuture),
                fenced(Box::pin(super::lifecycle::run(state.clone()))),
                fenced(Box::pin(super::billing::run(state.clone()))),
                // One instance delivers webhooks, so endpoints get their events in
                // order and an attempt is not made twice at once.
                fenced(Box::pin(super::webhooks::run_fanout(state.clone()))),
                fenced(Box::pin(super::webhooks::run_delivery(state.clone()))),
            ]);
            while leadership.still_leading().await {
                tokio::time::sleep(CHECK_EVERY).await;
            }
            drop(loops);
            state.scheduling.leading.store(false, Ordering::Relaxed);
            tracing::warn!(
                instance = state.signals.instance(),
                "lost the leadership (its lease could not be renewed); loops stopped, trying to lead again"
            );
        }
        tokio::time::sleep(CHECK_EVERY).await;
        next = first_try(&state).await;
    }
}
