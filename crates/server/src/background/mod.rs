//! Background reconcilers: the scheduler (pending jobs → placements), the
//! lifecycle keeper (timeouts, lost nodes) and billing (charges, stop at zero).
//!
//! Each is a loop that runs on a timer *and* when signalled, rereads what it needs
//! from the store on every activation (so a restart loses nothing: all state is in
//! the store), is idempotent, and never retries inside an activation: the next
//! activation is the retry. Errors are logged and counted, never fatal.

pub mod billing;
pub mod lifecycle;
pub mod scheduler;

use std::sync::Arc;
use std::time::Duration;

use crate::state::AppState;

/// Timing of the reconcilers (shortened in tests).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Scheduler pass at least this often, even without a signal.
    pub schedule_every: Duration,
    /// Lifecycle pass period.
    pub lifecycle_every: Duration,
    /// A node silent this long is declared lost.
    pub node_lost_after: Duration,
    /// Only PENDING jobs at least this old can have passed their assignment deadline
    /// (the API's minimum `max_timeout_assign_ms`), so the sweep reads only those.
    /// Tests that insert jobs with shorter deadlines set it to zero.
    pub assign_sweep_min_age: Duration,
    /// Billing pass period: charge ended runs, stop accounts at zero.
    pub billing_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            schedule_every: Duration::from_millis(500),
            lifecycle_every: Duration::from_millis(500),
            node_lost_after: Duration::from_secs(5),
            assign_sweep_min_age: Duration::from_millis(gantry_types::validate::MIN_TIMEOUT_ASSIGN_MS as u64),
            billing_every: Duration::from_secs(1),
        }
    }
}

/// Starts the reconcilers; they stop when the returned handles are aborted.
pub fn spawn(state: Arc<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(scheduler::run(state.clone())),
        tokio::spawn(lifecycle::run(state.clone())),
        tokio::spawn(billing::run(state)),
    ]
}
