//! The event log as callers read it: who sees what, where a reader may resume, and
//! waiting for what comes next without polling.
//!
//! **Tenancy.** Every event belongs to one account (a job's and its runs' owner, a
//! node's operator, the account whose balance moved), and a caller reads its own
//! account's events: consumers see their jobs, runs and balance; operators (node
//! keys) see their nodes. A run placed on an operator's node belongs to the job's
//! owner, not to the operator: a tenant's job is not the operator's news. A key
//! holding `jobs.read.all` (the admin preset) reads every account's events. No new
//! permission is needed: an account's own events tell nothing its keys could not
//! already read.
//!
//! **Resuming.** `after=N` returns exactly the events with ids above N, in id order
//! (the store guarantees ids become visible in commit order). An `N` below the
//! retention horizon is refused with 410 Gone, since the events in between are deleted
//! and a silent gap would be worse than an error.
//!
//! **Waiting.** [`wait`] reads, and when nothing is there, sleeps on the store's event
//! watch (woken by the commit that appends the next event in this process), with a
//! fallback timer for events appended by another server process on the same
//! database.

use std::time::Duration;

use gantry_types::AccountId;
use gantry_types::event::{Event, EventType};
use gantry_types::permissions::{Scope, scope_for};

use crate::app::caller::Caller;
use crate::app::error::AppError;
use crate::state::AppState;

/// Longest a JSON long-poll may wait.
pub const MAX_WAIT_MS: u64 = 60_000;

/// Most events in one JSON response (and the default).
pub const MAX_LIMIT: u32 = 500;

/// Default events per JSON response.
pub const DEFAULT_LIMIT: u32 = 100;

/// How often a waiting reader looks without being woken (events committed by
/// another server process on the same database wake nobody here).
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// What a reader asks for.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Events with ids above this one.
    pub after: i64,
    /// Only these types (empty: all).
    pub types: Vec<EventType>,
    /// At most this many.
    pub limit: u32,
}

/// The accounts whose events `caller` reads: its own, or every one with `jobs.read.all`.
pub fn scope(caller: &Caller) -> Option<AccountId> {
    match scope_for(&caller.key.record.permissions, "jobs", "read") {
        Some(Scope::All) => None,
        _ => Some(caller.account()),
    }
}

/// The newest event id now (where a reader that wants only new events starts).
pub async fn newest(state: &AppState) -> Result<i64, AppError> {
    Ok(state.store.event_horizon().await?.last_id)
}

/// Refuses to resume from inside the deleted prefix of the log.
pub async fn check_resume(state: &AppState, after: i64) -> Result<(), AppError> {
    let horizon = state.store.event_horizon().await?;
    if after < horizon.pruned_through {
        return Err(AppError::Gone {
            message: format!(
                "events up to id {} were deleted (older than the retention); the events after {after} cannot be \
                 replayed: re-read the current state, then resume with after={}",
                horizon.pruned_through, horizon.pruned_through
            ),
        });
    }
    Ok(())
}

/// The events after `query.after` in scope, waiting up to `wait` for the first one.
pub async fn wait(
    state: &AppState,
    scope: Option<AccountId>,
    query: &EventQuery,
    wait: Duration,
) -> Result<Vec<Event>, AppError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut watch = state.store.event_watch();
    loop {
        // Marked seen before reading, so a commit after the read still wakes us.
        watch.borrow_and_update();
        let events = state.store.event_list(scope, query.after, &query.types, query.limit).await?;
        let now = tokio::time::Instant::now();
        if !events.is_empty() || now >= deadline {
            return Ok(events);
        }
        let nap = FALLBACK_POLL.min(deadline - now);
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return Err(AppError::internal("the store's event watch closed"));
                }
            }
            _ = tokio::time::sleep(nap) => {}
        }
    }
}
