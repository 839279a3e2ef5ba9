//! Who is calling: the verified API key, with its account and permissions.
//!
//! The HTTP extractor (`crate::signed`) builds a [`Caller`] once the signature checks
//! out; the application layer only ever sees this value, so its permission rule
//! (`.own` scopes to the caller's account, `.all` to every account) lives here and not
//! in the transport.

use std::sync::Arc;

use gantry_types::AccountId;
use gantry_types::permissions::{Scope, scope_for};

use crate::app::error::AppError;
use crate::key_cache::CachedKey;

/// Who signed a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key used.
    pub key: Arc<CachedKey>,
}

impl Caller {
    /// The key's account.
    pub fn account(&self) -> AccountId {
        self.key.record.account_uuid
    }

    /// The account filter a (resource, action) may use: `Some(own account)` for
    /// `.own`, `None` (every account) for `.all`; forbidden when the key lacks it.
    pub fn require(&self, resource: &str, action: &str) -> Result<Option<AccountId>, AppError> {
        match scope_for(&self.key.record.permissions, resource, action) {
            Some(Scope::All) => Ok(None),
            Some(Scope::Own) => Ok(Some(self.account())),
            None => Err(AppError::Forbidden {
                code: "missing_permission",
                message: format!(
                    "this API key lacks the permission {resource}.{action}.own; create a key with it (e.g. the consumer preset)"
                ),
            }),
        }
    }
}
