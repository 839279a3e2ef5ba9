//! Deployment-wide settings: small named values that every control-plane instance
//! sharing the database must agree on, such as the check value that proves an
//! instance holds the key the database's secrets were encrypted with.
//!
//! Values are written once (`setting_insert_if_absent`) and never changed by the
//! server: the first instance to start sets them, every later one reads them. Two
//! instances starting at once both get the winner's value.

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
}
