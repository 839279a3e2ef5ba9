//! Fencing: the writes of the leader's loops carry the epoch of the lease they were
//! started under, and the store refuses them once that lease is gone.
//!
//! Holding the leadership is a lease with an epoch in the database
//! ([`crate::DeploymentStore::try_lead`]). A leader can stop running without knowing
//! it (SIGSTOP, a long GC-like pause, a VM frozen) while its lease runs out and
//! another instance takes over with the next epoch. When the old one resumes, its
//! loops are mid-pass on stale state; fencing makes every write they attempt fail
//! instead of landing: a write transaction begun inside [`scope`] first checks, in
//! that same transaction, that the lease still has this epoch and has not expired
//! (PostgreSQL: `SELECT ... FOR KEY SHARE` on the lease row, so a takeover waits for the
//! transaction and a fenced write can never commit after a newer epoch). A refused
//! write is [`crate::StoreError::Fenced`], and writes nothing.
//!
//! The epoch travels as a tokio task-local rather than as a parameter of every
//! write: the leader runs each loop inside [`scope`], so every write the loop makes,
//! through whatever shared application code, is fenced, and the API handlers (not in
//! a scope) are not. A task a loop spawns does not inherit it: the one loop that
//! spawns writing tasks (webhook delivery, one task per attempt) wraps each in the
//! loop's [`scope`] itself. SQLite has one instance, which always leads: it ignores the fence.

use std::future::Future;

/// The lease a leader's loops run under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The lease's epoch: one more at every change of leader.
    pub epoch: i64,
}

tokio::task_local! {
    static FENCE: Fence;
}

/// Runs `f` with its store writes fenced by `fence`.
pub async fn scope<F: Future>(fence: Fence, f: F) -> F::Output {
    FENCE.scope(fence, f).await
}

/// The fence of the running task, if it runs inside [`scope`].
pub fn current() -> Option<Fence> {
    FENCE.try_with(|f| *f).ok()
}
