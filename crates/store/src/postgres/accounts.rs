//! Accounts on PostgreSQL.

use async_trait::async_trait;
use gantry_types::AccountId;
use sqlx::AssertSqlSafe;

use super::{PgStore, db, insert, record, write_error};
use crate::StoreResult;
use crate::accounts::{AccountRecord, AccountRow, AccountStore};
use crate::sql::row::{Columns, insert_sql};
use crate::sql::{Placeholders, Subject};

#[async_trait]
impl AccountStore for PgStore {
    async fn account_create(&self, account: &AccountRecord) -> StoreResult<()> {
        insert(insert_sql::<AccountRow>(Placeholders::Dollar, ""), AccountRow::new(account))
            .execute(&self.pool)
            .await
            .map_err(write_error("account create", || Subject::account(account.uuid)))?;
        self.wrote();
        Ok(())
    }

    async fn account_fetch(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {} FROM accounts WHERE uuid = $1", AccountRow::LIST);
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("account fetch"))?;
        row.as_ref().map(record::<AccountRow>).transpose()
    }
}
