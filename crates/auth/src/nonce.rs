//! Replay protection: each (public key, nonce) is accepted once while its timestamp is inside the
//! freshness window, in bounded memory.
//!
//! A replay carries the original signed timestamp, so a nonce only has to be remembered while
//! [`check_timestamp`](crate::check_timestamp) would still accept that timestamp. Entries are
//! therefore grouped in 60 s buckets keyed by `ts / 60000` and whole buckets are dropped once they
//! are older than `now - MAX_CLOCK_SKEW_MS - 60 s`. (Upstream mentions nonces being tracked for
//! 24 h; with a ±5 min timestamp rule that buys nothing.)
//!
//! Under memory pressure the oldest bucket is dropped early and a *floor* is raised: any later
//! request whose timestamp falls in or before a dropped bucket is refused with
//! [`NonceError::WindowShrunk`]. Forgetting a nonce can therefore never let its replay through;
//! the cost is that, during a flood, honest requests signed in the evicted minute are refused
//! until clients re-sign with a fresh time. Size `max_entries` above the peak number of requests
//! in about six minutes.
//!
//! Entries are 64-bit keyed hashes (a per-cache random SipHash key, so nobody can precompute
//! colliding nonces); a chance collision refuses an honest request, it never admits a replay.
//! The map is split into 16 mutex-guarded shards by that hash so concurrent requests rarely
//! wait for each other.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::MAX_CLOCK_SKEW_MS;

const BUCKET_MS: i64 = 60_000;
const SHARDS: usize = 16;

/// Why a nonce was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// This public key already used this nonce within the replay window.
    #[error("nonce already used with this API key; sign every request, retries included, with a fresh nonce")]
    Replayed,
    /// The request's timestamp is older than what the cache can still vouch for, because its
    /// time bucket was evicted under memory pressure or has expired.
    #[error("request timestamp is older than the server's replay window; re-sign the request with the current time")]
    WindowShrunk,
}

/// Thread-safe, bounded memory of recently used (public key, nonce) pairs.
pub struct NonceCache {
    hasher: RandomState,
    shards: [Mutex<Shard>; SHARDS],
    max_entries: usize,
    /// Sum of the shards' entry counts; only steers eviction, so it may lag briefly.
    total: AtomicUsize,
    /// Lets one thread evict at a time; others carry on instead of queueing behind it.
    evicting: Mutex<()>,
}

#[derive(Default)]
struct Shard {
    buckets: BTreeMap<i64, HashSet<u64>>,
    /// Highest bucket ever dropped from this shard; requests at or below it are refused.
    floor: Option<i64>,
}

impl Shard {
    /// Drops every bucket at or below `bucket` and raises the floor; returns entries removed.
    fn drop_through(&mut self, bucket: i64) -> usize {
        let kept = self.buckets.split_off(&(bucket.saturating_add(1)));
        let dropped = std::mem::replace(&mut self.buckets, kept);
        if let Some(&last) = dropped.keys().next_back() {
            self.floor = Some(self.floor.map_or(last, |floor| floor.max(last)));
        }
        dropped.values().map(HashSet::len).sum()
    }
}

impl std::fmt::Debug for NonceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCache")
            .field("len", &self.total.load(Ordering::Relaxed))
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl NonceCache {
    /// A cache holding about `max_entries` nonces at most (at least 1). Concurrent inserts may
    /// overshoot by a few entries until the next insert evicts.
    pub fn new(max_entries: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            max_entries: max_entries.max(1),
            total: AtomicUsize::new(0),
            evicting: Mutex::new(()),
        }
    }

    /// Records `nonce` for `public_key` at signed time `ts_ms`, refusing it if already seen.
    ///
    /// Call after [`check_timestamp`](crate::check_timestamp) has accepted `ts_ms` against the
    /// same `now_ms`. A timestamp already outside the window (older than
    /// `now - MAX_CLOCK_SKEW_MS - 60 s`) or at or below an evicted bucket is refused with
    /// [`NonceError::WindowShrunk`], since the cache could not vouch for it.
    pub fn check_and_insert(&self, public_key: &str, nonce: &str, ts_ms: i64, now_ms: i64) -> Result<(), NonceError> {
        let hash = self.hasher.hash_one((public_key, nonce));
        let bucket = ts_ms.div_euclid(BUCKET_MS);
        let oldest_kept = now_ms.saturating_sub(MAX_CLOCK_SKEW_MS).saturating_sub(BUCKET_MS).div_euclid(BUCKET_MS);
        let total = {
            let mut shard = self.lock_shard((hash % SHARDS as u64) as usize);
            let expired = shard.drop_through(oldest_kept - 1);
            self.total.fetch_sub(expired, Ordering::Relaxed);
            if bucket < oldest_kept || shard.floor.is_some_and(|floor| bucket <= floor) {
                return Err(NonceError::WindowShrunk);
            }
            // A replay lands in its original bucket, but look in all of them: upstream calls
            // nonces single-use, and a live shard holds only about seven buckets.
            if shard.buckets.values().any(|seen| seen.contains(&hash)) {
                return Err(NonceError::Replayed);
            }
            shard.buckets.entry(bucket).or_default().insert(hash);
            // Counted under the shard lock so an eviction can never subtract it first.
            self.total.fetch_add(1, Ordering::Relaxed) + 1
        };
        if total > self.max_entries {
            self.evict_oldest();
        }
        Ok(())
    }

    /// Number of nonces currently remembered.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|index| self.lock_shard(index).buckets.values().map(HashSet::len).sum::<usize>()).sum()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the globally oldest bucket (in every shard) until the cache is within bounds.
    fn evict_oldest(&self) {
        // Never hold a shard lock while taking another one: each shard is locked on its own.
        let Ok(_evicting) = self.evicting.try_lock() else {
            return;
        };
        while self.total.load(Ordering::Relaxed) > self.max_entries {
            let oldest = (0..SHARDS).filter_map(|index| self.lock_shard(index).buckets.keys().next().copied()).min();
            let Some(oldest) = oldest else {
                return;
            };
            for index in 0..SHARDS {
                let removed = self.lock_shard(index).drop_through(oldest);
                self.total.fetch_sub(removed, Ordering::Relaxed);
            }
        }
    }

    fn lock_shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a shard half-updated in a way that admits
        // replays (insertions are single HashSet operations), so keep serving.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `nonce` has the shape the server accepts: 8 to 64 characters of `[A-Za-z0-9_-]`.
/// Upstream clients send 32 lower-case hex characters.
pub fn nonce_is_well_formed(nonce: &str) -> bool {
    (8..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const NOW: i64 = 1_706_918_400_000;

    #[test]
    fn replay_is_refused_and_other_keys_are_independent() {
        let cache = NonceCache::new(1000);
        assert_eq!(cache.check_and_insert("pk_a", "n1", NOW, NOW), Ok(()));
        assert_eq!(cache.check_and_insert("pk_a", "n1", NOW, NOW + 10), Err(NonceError::Replayed));
        // Reusing a nonce with another timestamp is refused too: nonces are single-use.
        assert_eq!(cache.check_and_insert("pk_a", "n1", NOW - 120_000, NOW), Err(NonceError::Replayed));
        assert_eq!(cache.check_and_insert("pk_b", "n1", NOW, NOW), Ok(()));
        assert_eq!(cache.check_and_insert("pk_a", "n2", NOW, NOW), Ok(()));
        // The hash must separate the two fields.
        assert_eq!(cache.check_and_insert("pk_a|n", "1", NOW, NOW), Ok(()));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn old_buckets_expire() {
        let cache = NonceCache::new(10_000);
        cache.check_and_insert("pk", "old", NOW - MAX_CLOCK_SKEW_MS, NOW).unwrap();
        cache.check_and_insert("pk", "new", NOW, NOW).unwrap();
        assert_eq!(cache.len(), 2);
        // Ten minutes later, touching every shard expires the old entries.
        let later = NOW + 10 * 60_000;
        // Expiry happens per shard on insert; 1000 random keys touch all 16 shards.
        for index in 0..1000 {
            cache.check_and_insert("pk", &format!("fresh{index}"), later, later).unwrap();
        }
        assert_eq!(cache.len(), 1000);
        // A timestamp that old is refused rather than remembered.
        assert_eq!(cache.check_and_insert("pk", "old", NOW - MAX_CLOCK_SKEW_MS, later), Err(NonceError::WindowShrunk));
    }

    #[test]
    fn inside_window_entries_survive_expiry() {
        let cache = NonceCache::new(1000);
        let ts = NOW - MAX_CLOCK_SKEW_MS;
        cache.check_and_insert("pk", "edge", ts, NOW).unwrap();
        // Still within skew of a slightly later clock: must still be remembered.
        assert_eq!(cache.check_and_insert("pk", "edge", ts, NOW + 59_000), Err(NonceError::Replayed));
    }

    #[test]
    fn memory_is_bounded_and_evicted_window_is_refused() {
        let cache = NonceCache::new(100);
        let old_minute = NOW - 3 * 60_000;
        for index in 0..60 {
            cache.check_and_insert("pk", &format!("old{index}"), old_minute, NOW).unwrap();
        }
        for index in 0..60 {
            cache.check_and_insert("pk", &format!("new{index}"), NOW, NOW).unwrap();
        }
        // The 101st entry pushed out the whole oldest bucket.
        assert_eq!(cache.len(), 60);
        assert!(cache.len() <= 100);
        // Replaying an evicted nonce is refused even though the cache forgot it.
        assert_eq!(cache.check_and_insert("pk", "old0", old_minute, NOW), Err(NonceError::WindowShrunk));
        // A never-seen nonce with an older timestamp is refused only where the cache forgot
        // something (its shard's floor rose); a shard that lost nothing can still vouch for it.
        let shard = (cache.hasher.hash_one(("pk", "unseen")) % SHARDS as u64) as usize;
        let forgot = cache.lock_shard(shard).floor.is_some();
        let expected = if forgot { Err(NonceError::WindowShrunk) } else { Ok(()) };
        assert_eq!(cache.check_and_insert("pk", "unseen", old_minute - 60_000, NOW), expected);
        // Newer buckets keep working and still detect replays.
        assert_eq!(cache.check_and_insert("pk", "new0", NOW, NOW), Err(NonceError::Replayed));
        assert_eq!(cache.check_and_insert("pk", "later", NOW + 60_000, NOW), Ok(()));
    }

    #[test]
    fn concurrent_inserts_accept_each_nonce_once() {
        let cache = Arc::new(NonceCache::new(100_000));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cache = Arc::clone(&cache);
                // Every thread tries the same 2000 nonces; exactly one insert of each may win.
                std::thread::spawn(move || {
                    (0..2000)
                        .filter(|index| cache.check_and_insert("pk", &format!("n{index}"), NOW, NOW).is_ok())
                        .count()
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|thread| thread.join().unwrap()).sum();
        assert_eq!(accepted, 2000);
        assert_eq!(cache.len(), 2000);
    }

    #[test]
    fn concurrent_inserts_stay_bounded() {
        let cache = Arc::new(NonceCache::new(500));
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for index in 0..1000 {
                        let ts = NOW - 240_000 + index * 240;
                        let _ = cache.check_and_insert("pk", &format!("{thread}-{index}"), ts, NOW);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(cache.len() <= 500 + 8, "len {}", cache.len());
    }

    #[test]
    fn nonce_shapes() {
        assert!(nonce_is_well_formed("a1b2c3d4e5f6a7b8"));
        assert!(nonce_is_well_formed(&"0".repeat(32)));
        assert!(nonce_is_well_formed("AZaz09_-"));
        assert!(nonce_is_well_formed(&"x".repeat(64)));
        assert!(!nonce_is_well_formed("short"));
        assert!(!nonce_is_well_formed(&"x".repeat(65)));
        assert!(!nonce_is_well_formed("has space"));
        assert!(!nonce_is_well_formed("nonce|with|pipes"));
        assert!(!nonce_is_well_formed("ééééééé"));
    }
}
