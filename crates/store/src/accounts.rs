//! Accounts: who owns keys, jobs, nodes, recipes and money.

use async_trait::async_trait;
use gantry_types::AccountId;

use crate::StoreError;
use crate::StoreResult;
use crate::sql::parse_uuid;
use crate::sql::row::IntoRecord;
use crate::sql::row::row;

/// An account.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountRecord {
    /// ID.
    pub uuid: AccountId,
    /// Display name.
    pub name: String,
    /// Contact email.
    pub email: Option<String>,
    /// Creation time, epoch ms.
    pub created_at_ms: i64,
}

row! {
    /// An account's columns.
    #[derive(Debug)]
    pub(crate) struct AccountRow in "accounts" (read, write) {
        uuid: String,
        name: String,
        email: Option<String>,
        created_at_ms: i64,
    }
}

impl AccountRow {
    /// The columns of `a`.
    pub(crate) fn new(a: &AccountRecord) -> Self {
        Self { uuid: a.uuid.to_string(), name: a.name.clone(), email: a.email.clone(), created_at_ms: a.created_at_ms }
    }
}

impl IntoRecord for AccountRow {
    type Record = AccountRecord;

    /// Parses the uuid.
    fn into_record(self) -> StoreResult<AccountRecord> {
        let uuid = parse_uuid(&self.uuid).map_err(|detail| StoreError::Corrupt { table: "accounts", detail })?;
        Ok(AccountRecord {
            uuid: AccountId(uuid),
            name: self.name,
            email: self.email,
            created_at_ms: self.created_at_ms,
        })
    }
}

/// Accounts in the store.
#[async_trait]
pub trait AccountStore {
    /// Creates an account.
    async fn account_create(&self, account: &AccountRecord) -> StoreResult<()>;
    /// Fetches an account.
    async fn account_fetch(&self, id: AccountId) -> StoreResult<Option<AccountRecord>>;
}
