//! The one way this crate takes a lock: a poisoned mutex is recovered, not spread.
//!
//! A mutex is poisoned when a thread panicked while holding it. The store's mutexes
//! guard plain data that is consistent between any two statements of their holders
//! (a pool's idle connections), so the data is still good after such a panic;
//! turning the poison into a second panic would only take the rest of the server
//! down with the first. Every lock in the crate goes through [`lock`].

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering the guard if a panicking holder poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
