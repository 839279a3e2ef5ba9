//! `last_used_at` of API keys. Writing it on every request would double the write
//! load of the hot path; instead requests note the time in memory and a background
//! task writes the latest time per key every few seconds (and at shutdown). The
//! field is therefore accurate to [`FLUSH_EVERY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_store::Store;
use gantry_types::ApiKeyId;

use crate::state::AppState;

/// How often last-used times are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Pending last-used times.
#[derive(Default)]
pub struct UsageTracker {
    pending: Mutex<HashMap<ApiKeyId, i64>>,
}

impl UsageTracker {
    /// Notes that `key` signed a request at `now_ms`.
    pub fn record(&self, key: ApiKeyId, now_ms: i64) {
        let mut pending = self.pending.lock().expect("usage poisoned");
        let at = pending.entry(key).or_insert(now_ms);
        *at = (*at).max(now_ms);
    }

    /// Writes what is pending; on failure it is dropped (the field is best effort
    /// and the next request notes a newer time anyway).
    pub async fn flush(&self, store: &dyn Store) {
        let uses: Vec<(ApiKeyId, i64)> = {
            let mut pending = self.pending.lock().expect("usage poisoned");
            pending.drain().collect()
        };
        if uses.is_empty() {
            return;
        }
        if let Err(e) = store.api_key_touch(&uses).await {
            tracing::warn!(error = %crate::error::chain(&e), "could not record API key usage");
        }
    }
}

/// Flushes periodically until aborted (spawned by `background::spawn`).
pub async fn run_flusher(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tick.tick().await;
        state.auth.usage.flush(state.store.as_ref()).await;
    }
}
