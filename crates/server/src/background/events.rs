//! The event log's own loop: follows the log as it grows (counting
//! `gantry_events_total{type}` and handing new events to the webhook outbox) and
//! applies retention (deleting events older than `--event-retention-hours`, once at
//! start and then hourly).
//!
//! It wakes on the store's event watch (the commit that appended events) and on a
//! fallback timer (another server process may append to a shared PostgreSQL). Its
//! position starts at the newest event when the store was opened: counters count
//! what was appended since; the webhook outbox keeps its own durable position.

use std::sync::Arc;
use std::time::Duration;

use crate::app::events::FALLBACK_POLL;
use crate::metrics::TypeLabel;
use crate::state::{AppState, now_ms};

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Events read per step.
const BATCH: u32 = 1000;

/// The shortest time between two reads: counting need not follow every commit, and
/// under load one read then covers many commits.
const COALESCE: Duration = Duration::from_millis(250);

/// Runs until aborted.
pub async fn run(state: Arc<AppState>) {
    let mut watch = state.store.event_watch();
    // The newest id when the store was opened: counting starts there, with no race
    // against writes that follow the start.
    let mut after = *watch.borrow();
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            prune(&state).await;
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
        }
        watch.borrow_and_update();
        match state.store.event_list_types(after, BATCH).await {
            Ok(events) => {
                for (_, t) in &events {
                    state.metrics.events.get_or_create(&TypeLabel { event_type: t.as_str() }).inc();
                }
                if let Some((last, _)) = events.last() {
                    after = *last;
                }
                if events.len() == BATCH as usize {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the event log failed"),
        }
        tokio::time::sleep(COALESCE).await;
        tokio::select! {
            _ = watch.changed() => {}
            _ = tokio::time::sleep(FALLBACK_POLL) => {}
        }
    }
}

async fn prune(state: &AppState) {
    let retention = i64::try_from(state.events.retention.as_millis()).unwrap_or(i64::MAX);
    match state.store.event_prune(now_ms().saturating_sub(retention)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "deleted events older than the retention"),
        Err(e) => tracing::warn!(error = %e, "event retention failed"),
    }
}
