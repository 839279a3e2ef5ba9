//! Background reconcilers: the scheduler (pending jobs → placements), the
//! lifecycle keeper (timeouts, lost nodes) and billing (charges, stop at zero); and
//! [`spawn`], the one place every background loop of the server is started (the
//! reconcilers and the usage and GPU-registry flushers).
//!
//! Each is a loop that runs on a timer *and* when signalled, rereads what it needs
//! from the store on every activation (so a restart loses nothing: all state is in
//! the store), is idempotent, and never retries inside an activation: the next
//! activation is the retry. Errors are logged and counted, never fatal.

pub mod billing;
pub mod events;
pub mod leader;
pub mod lifecycle;
pub mod lost_runs;
pub mod model;
pub mod placing;
pub mod scheduler;
pub mod webhooks;

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
            node_lost_after: Duration::from_secs(4),
            assign_sweep_min_age: Duration::from_millis(gantry_types::validate::MIN_TIMEOUT_ASSIGN_MS as u64),
            billing_every: Duration::from_secs(1),
        }
    }
}

/// Every background loop of a running server. Dropping it does not stop them;
/// [`Loops::stop`] does.
pub struct Loops {
    handles: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl Loops {
    /// Aborts every loop (at shutdown, after the listener stopped).
    pub fn stop(self) {
        for (_, handle) in self.handles {
            handle.abort();
        }
    }
}

/// Starts every background loop of the server (`leadership`: what
/// [`leader::first_try`] got): the place to look for what runs on
/// its own. The reconcilers (scheduler, lifecycle, billing: on the leader only, see
/// [`leader`]), three flushers of
/// in-memory state (API key usage and node heartbeats to the store; the GPU registry
/// from it), and the
/// wake-ups exchanged with other instances on the same database (`crate::peers`).
pub fn spawn(state: Arc<AppState>, leadership: Option<Box<dyn gantry_store::deployment::Leadership>>) -> Loops {
    if leadership.is_some() {
        state.scheduling.leading.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let handles = vec![
        ("event log", tokio::spawn(events::run(state.clone()))),
        ("leader's reconcilers", tokio::spawn(leader::run(state.clone(), leadership))),
        ("usage flusher", tokio::spawn(crate::usage::run_flusher(state.clone()))),
        ("heartbeat flusher", tokio::spawn(crate::heartbeats::run_flusher(state.clone()))),
        ("gpu registry refresher", tokio::spawn(crate::app::gpu_registry::run_refresher(state.clone()))),
        ("peer notifications", tokio::spawn(crate::peers::run(state))),
    ];
    Loops { handles }
}
