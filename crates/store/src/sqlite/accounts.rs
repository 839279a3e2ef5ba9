//! Accounts on SQLite.

use async_trait::async_trait;
use gantry_types::AccountId;

use super::SqliteStore;
use super::rows::{self, write_error};
use crate::StoreResult;
use crate::accounts::{AccountRecord, AccountRow, AccountStore};
use crate::sql::row::{Columns, insert_sql};
use crate::sql::{Placeholders, Subject};

#[async_trait]
impl AccountStore for SqliteStore {
    async fn account_create(&self, account: &AccountRecord) -> StoreResult<()> {
        let (row, id) = (AccountRow::new(account), account.uuid);
        self.writer
            .write(move |conn| {
                rows::insert(conn, &insert_sql::<AccountRow>(Placeholders::Question, ""), &row)
                    .map(drop)
                    .map_err(write_error("account create", || Subject::account(id)))
            })
            .await
    }

    async fn account_fetch(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        self.read(move |conn| {
            let sql = format!("SELECT {} FROM accounts WHERE uuid = ?1", AccountRow::LIST);
            rows::one::<AccountRow>(conn, &sql, [id.to_string()], "account fetch")
        })
        .await
    }
}
