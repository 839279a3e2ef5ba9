//! Deployment-wide settings: small named values that every control-plane instance
//! sharing the database must agree on, such as the check value that proves an
//! instance holds the key the database's secrets were encrypted with.
//!
//! Values are written once (`setting_insert_if_absent`) and never changed by the
//! server: the first instance to start sets them, every later one reads them. Two
//! instances starting at once both get the winner's value.
//!
//! Also which instance leads the background loops ([`DeploymentStore::try_lead`]).
//! On PostgreSQL the leader holds a session advisory lock on a connection of its
//! own: the database releases it when that session ends (the instance died, or its
//! connection did: server-side TCP keepalives are set short on it), and the holder
//! checks the session is alive before every activation of its loops. SQLite has one
//! instance (the data dir is locked), which always leads.

use async_trait::async_trait;

use crate::StoreResult;

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

    /// Tries to become the instance that runs the background loops; `None` while
    /// another instance is.
    async fn try_lead(&self) -> StoreResult<Option<Box<dyn Leadership>>>;
}

/// Being the leader: dropped, it gives the leadership up.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// Whether this instance still leads (on PostgreSQL, a round trip on the session
    /// holding the lock; an error or a slow answer is "no").
    async fn still_leading(&mut self) -> bool;
}

/// SQLite's leadership: the only instance always leads.
pub struct SoleInstance;

#[async_trait]
impl Leadership for SoleInstance {
    async fn still_leading(&mut self) -> bool {
        true
    }
}
