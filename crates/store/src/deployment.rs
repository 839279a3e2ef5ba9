//! Deployment-wide settings: small named values that every control-plane instance
//! sharing the database must agree on, such as the check value that proves an
//! instance holds the key the database's secrets were encrypted with.
//!
//! Values are written once (`setting_insert_if_absent`) and never changed by the
//! server: the first instance to start sets them, every later one reads them. Two
//! instances starting at once both get the winner's value.
//!
//! Also which instance leads the background loops ([`DeploymentStore::try_lead`]).
//! On PostgreSQL the leader holds a lease: a row (`leader_lease`) naming the holder,
//! an epoch (one more at every change of holder) and an expiry in database time, so
//! the instances' clocks do not matter. The holder renews it every second; one that
//! cannot (paused, cut off from the database) loses it when it expires and another
//! instance takes it with the next epoch. The loops' writes are fenced by that epoch
//! ([`crate::fence`]). A session advisory lock, the earlier design, could not do
//! this: a process frozen with SIGSTOP keeps its TCP session, and so its lock,
//! forever. SQLite has one instance (the data dir is locked), which always leads.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreResult;
use crate::fence::Fence;

/// The name of the server key's check value (see the server's `keyfile` module).
pub const KEY_CHECK: &str = "secret_key_check";

/// Deployment settings in the store.
#[async_trait]
pub trait DeploymentStore {
    /// Stores `value` under `name` unless a value is there already, and returns the
    /// stored value (the existing one, or `value`).
    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> StoreResult<String>;

    /// The value stored under `name`, if any.
    async fn setting_fetch(&self, name: &str) -> StoreResult<Option<String>>;

    /// One round trip to the database (`/healthz` asks it: an instance whose
    /// database does not answer is not healthy).
    async fn ping(&self) -> StoreResult<()>;

    /// Tries to become the instance that runs the background loops, as `instance`,
    /// for `ttl` unless renewed; `None` while another instance holds an unexpired
    /// lease. Each success has a new, higher epoch.
    async fn try_lead(&self, instance: &str, ttl: Duration) -> StoreResult<Option<Box<dyn Leadership>>>;
}

/// Being the leader: dropped, it gives the leadership up.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// Renews the lease; whether this instance still leads (on PostgreSQL an error,
    /// a slow answer, or a lease that already expired is "no", for good: lead again
    /// with [`DeploymentStore::try_lead`]).
    async fn still_leading(&mut self) -> bool;

    /// The fence the loops run under while this lease is held.
    fn fence(&self) -> Fence;
}

/// SQLite's leadership: the only instance always leads.
pub struct SoleInstance;

#[async_trait]
impl Leadership for SoleInstance {
    async fn still_leading(&mut self) -> bool {
        true
    }

    fn fence(&self) -> Fence {
        Fence { epoch: 1 }
    }
}
