//! State shared by every request: the store, the secret box, replay protection,
//! the API key cache and usage tracking.

use std::sync::Arc;

use gantry_auth::{NonceCache, SecretBox};
use gantry_store::Store;

use crate::config::ServerConfig;
use crate::key_cache::KeyCache;
use crate::usage::UsageTracker;

/// Everything a handler may use.
pub struct AppState {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// Encrypts and decrypts secrets at rest.
    pub secrets: SecretBox,
    /// Nonces seen inside the signature window.
    pub nonces: NonceCache,
    /// Recently used API keys, secrets decrypted.
    pub keys: KeyCache,
    /// Last-used times waiting to be written.
    pub usage: UsageTracker,
    /// Largest body accepted.
    pub max_body_bytes: usize,
}

impl AppState {
    /// Builds the state for a configured server.
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox, config: &ServerConfig) -> Self {
        Self {
            store,
            secrets,
            nonces: NonceCache::new(config.nonce_capacity),
            keys: KeyCache::default(),
            usage: UsageTracker::default(),
            max_body_bytes: config.max_body_bytes,
        }
    }
}

/// Wall-clock time, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
