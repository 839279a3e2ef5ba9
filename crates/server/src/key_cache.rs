//! API keys with their secrets decrypted, cached for a few seconds.
//!
//! Every signed request needs its key's secret; reading and decrypting it from the
//! store each time would cost a database round trip per request. Entries expire after
//! [`TTL`], which bounds how long a key revoked by the admin CLI keeps working here; a
//! revoke through this server's API evicts at once, and through another instance's as
//! soon as its notification arrives (`crate::peers`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gantry_store::{ApiKeyRecord, StoreResult};

/// How long a cached key is trusted.
pub const TTL: Duration = Duration::from_secs(5);

/// A key ready for signature checks.
#[derive(Debug)]
pub struct CachedKey {
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The decrypted secret.
    pub secret: String,
    /// Parsed `allowed_ips`.
    pub allowed_ips: Vec<ipnet::IpNet>,
}

/// The cache.
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<String, (Instant, Arc<CachedKey>)>>,
}

impl KeyCache {
    /// The key for `public_key`: from the cache while fresh, else loaded with `load`.
    /// `Ok(None)` when no such key exists.
    pub async fn get<F, Fut>(&self, public_key: &str, load: F) -> StoreResult<Option<Arc<CachedKey>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<Option<CachedKey>>>,
    {
        if let Some((at, key)) = self.entries.read().expect("key cache poisoned").get(public_key)
            && at.elapsed() < TTL
        {
            return Ok(Some(key.clone()));
        }
        let Some(key) = load().await? else { return Ok(None) };
        let key = Arc::new(key);
        let mut entries = self.entries.write().expect("key cache poisoned");
        if entries.len() > 100_000 {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        entries.insert(public_key.to_string(), (Instant::now(), key.clone()));
        Ok(Some(key))
    }

    /// Forgets a key (after a revoke).
    pub fn evict(&self, public_key: &str) {
        self.entries.write().expect("key cache poisoned").remove(public_key);
    }

    /// Forgets every key (after revocations may have been missed).
    pub fn clear(&self) {
        self.entries.write().expect("key cache poisoned").clear();
    }
}
