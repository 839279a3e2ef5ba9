//! Billing on PostgreSQL. A posting is one database transaction: the transaction row
//! goes first with `ON CONFLICT (idempotency_key) DO NOTHING`; a concurrent posting
//! with the same key waits on the unique index until the first commits, then inserts
//! nothing and reports `false`. Read-modify-write updates lock the row
//! (`SELECT ... FOR UPDATE`).

use async_trait::async_trait;
use gantry_types::billing::{
    ConsumerProfile, ConsumerProfileFilter, CreditPurchaseStatus, LedgerTransaction, UpdateConsumerProfileRequest,
};
use gantry_types::list::Paging;
use gantry_types::{AccountId, NodeId};
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::{PgStore, db, insert, record, write_error};
use crate::billing::{
    BillingStore, ENTRY_COLUMNS, EntryRow, PROFILE_COLUMNS, PURCHASE_COLUMNS, ProfileRow, PurchaseRow, ledger_subject,
    order, patched, purchase_statuses, purchase_subject,
};
use crate::events::NewEventRow;
use crate::sql::row::insert_sql;
use crate::sql::{Placeholders, RUN_COLUMNS, RunRow, Subject};
use crate::{CreditPurchaseRecord, LedgerPosting, Page, PurchaseKey, RunRecord, StoreResult};

/// Inserts a posting's rows inside `tx`; `false` when its key was posted before.
async fn post(tx: &mut Transaction<'static, Postgres>, posting: &LedgerPosting) -> StoreResult<bool> {
    let inserted = sqlx::query(
        "INSERT INTO ledger_transactions (uuid, idempotency_key, created_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(posting.uuid.to_string())
    .bind(posting.idempotency_key.clone())
    .bind(posting.created_at_ms)
    .execute(&mut **tx)
    .await
    .map_err(write_error("ledger post", || ledger_subject(posting)))?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    let rows = posting.rows();
    let text = |f: fn(&EntryRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let opt = |f: fn(&EntryRow) -> Option<String>| rows.iter().map(f).collect::<Vec<Option<String>>>();
    let sql = format!(
        "INSERT INTO ledger_entries ({ENTRY_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[])"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(text(|e| e.uuid.clone()))
        .bind(text(|e| e.transaction_uuid.clone()))
        .bind(text(|e| e.account_uuid.clone()))
        .bind(rows.iter().map(|e| e.amount_micros).collect::<Vec<i64>>())
        .bind(text(|e| e.kind.clone()))
        .bind(opt(|e| e.run_uuid.clone()))
        .bind(opt(|e| e.node_uuid.clone()))
        .bind(opt(|e| e.memo.clone()))
        .bind(rows.iter().map(|e| e.created_at_ms).collect::<Vec<i64>>())
        .execute(&mut **tx)
        .await
        .map_err(write_error("ledger post", || ledger_subject(posting)))?;
    Ok(true)
}

/// [`post`], then its `balance.changed` events (the event lock last, held briefly):
/// whether it posted, and the newest event id to publish after COMMIT.
async fn post_with_events(
    tx: &mut Transaction<'static, Postgres>,
    posting: &LedgerPosting,
) -> StoreResult<(bool, i64)> {
    if !post(tx, posting).await? {
        return Ok((false, 0));
    }
    let id = super::events::append(tx, &NewEventRow::balance(posting)?).await?;
    Ok((true, id))
}

#[async_trait]
impl BillingStore for PgStore {
    async fn consumer_profile_ensure(&self, p: &ConsumerProfile) -> StoreResult<ConsumerProfile> {
        let r = ProfileRow::new(p);
        let account = p.account_uuid;
        let account_uuid = r.account_uuid.clone();
        insert(insert_sql::<ProfileRow>(Placeholders::Dollar, " ON CONFLICT (account_uuid) DO NOTHING"), r)
            .execute(&self.pool)
            .await
            .map_err(write_error("consumer profile ensure", || Subject::account(account)))?;
        self.wrote();
        let sql = format!("SELECT {PROFILE_COLUMNS} FROM consumer_profiles WHERE account_uuid = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account_uuid)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("consumer profile ensure"))?;
        row.as_ref()
            .map(record::<ProfileRow>)
            .transpose()?
            .ok_or_else(|| crate::StoreError::MissingReference { what: format!("account {account}") })
    }

    async fn consumer_profile_list(
        &self,
        account: Option<AccountId>,
        filter: &ConsumerProfileFilter,
        paging: Paging,
    ) -> StoreResult<Page<ConsumerProfile>> {
        let condition = "($1::text IS NULL OR account_uuid = $1) \
             AND (cardinality($2::text[]) = 0 OR uuid = ANY($2)) \
             AND (cardinality($3::text[]) = 0 OR account_uuid = ANY($3)) \
             AND ($4::bool IS NULL OR is_compute_billing_enabled = $4)";
        let scope = account.map(|a| a.to_string());
        let uuids: Vec<String> = filter.uuids.iter().map(|u| u.to_string()).collect();
        let accounts: Vec<String> = filter.account_uuids.iter().map(|u| u.to_string()).collect();
        let mut tx = self.pool.begin().await.map_err(db("consumer profile list"))?;
        let total: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM consumer_profiles WHERE {condition}")))
                .bind(&scope)
                .bind(&uuids)
                .bind(&accounts)
                .bind(filter.is_compute_billing_enabled)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("consumer profile list"))?;
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM consumer_profiles WHERE {condition} {} LIMIT $5 OFFSET $6",
            order(paging.newest_first)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&scope)
            .bind(&uuids)
            .bind(&accounts)
            .bind(filter.is_compute_billing_enabled)
            .bind(i64::from(paging.limit))
            .bind(i64::try_from(paging.offset()).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("consumer profile list"))?;
        tx.commit().await.map_err(db("consumer profile list"))?;
        let items = rows.iter().map(record::<ProfileRow>).collect::<StoreResult<_>>()?;
        Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
    }

    async fn consumer_profile_list_all(&self) -> StoreResult<Vec<ConsumerProfile>> {
        let sql = format!("SELECT {PROFILE_COLUMNS} FROM consumer_profiles ORDER BY created_at_ms, uuid");
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db("consumer profile list"))?;
        rows.iter().map(record::<ProfileRow>).collect()
    }

    async fn consumer_profile_update(
        &self,
        account: Option<AccountId>,
        id: gantry_types::ConsumerProfileId,
        patch: &UpdateConsumerProfileRequest,
        now_ms: i64,
    ) -> StoreResult<Option<ConsumerProfile>> {
        let mut tx = self.pool.begin().await.map_err(db("consumer profile update"))?;
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM consumer_profiles WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2) \
             FOR UPDATE"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("consumer profile update"))?;
        let Some(current) = row.as_ref().map(record::<ProfileRow>).transpose()? else { return Ok(None) };
        let after = patched(current, patch, now_ms);
        let r = ProfileRow::new(&after);
        sqlx::query(
            "UPDATE consumer_profiles SET is_active = $2, is_compute_billing_enabled = $3, allowed_region_codes = $4, \
             updated_at_ms = $5, max_pending_jobs = $6, max_stored_job_bytes = $7, rate_limit_rps = $8 WHERE uuid = $1",
        )
        .bind(r.uuid)
        .bind(r.is_active)
        .bind(r.is_compute_billing_enabled)
        .bind(r.allowed_region_codes)
        .bind(now_ms)
        .bind(r.max_pending_jobs)
        .bind(r.max_stored_job_bytes)
        .bind(r.rate_limit_rps)
        .execute(&mut *tx)
        .await
        .map_err(db("consumer profile update"))?;
        tx.commit().await.map_err(db("consumer profile update"))?;
        self.wrote();
        Ok(Some(after))
    }

    async fn ledger_post(&self, posting: &LedgerPosting) -> StoreResult<bool> {
        let mut tx = self.begin_write("ledger post").await?;
        let (posted, id) = post_with_events(&mut tx, posting).await?;
        tx.commit().await.map_err(db("ledger post"))?;
        self.wrote();
        self.published(id);
        Ok(posted)
    }

    async fn ledger_post_many(&self, postings: &[LedgerPosting]) -> StoreResult<Vec<bool>> {
        if postings.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write("ledger post many").await?;
        let mut posted = Vec::with_capacity(postings.len());
        let mut new_events = Vec::new();
        for posting in postings {
            let done = post(&mut tx, posting).await?;
            if done {
                new_events.push(NewEventRow::balance(posting)?);
            }
            posted.push(done);
        }
        // The events last, in one statement: the event lock is held only from here
        // to COMMIT, as in `post_with_events`.
        let new_events: Vec<NewEventRow> = new_events.into_iter().flatten().collect();
        let id = super::events::append(&mut tx, &new_events).await?;
        tx.commit().await.map_err(db("ledger post many"))?;
        self.wrote();
        self.published(id);
        Ok(posted)
    }

    async fn ledger_balance(&self, account: AccountId) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE(SUM(amount_micros), 0)::bigint FROM ledger_entries WHERE account_uuid = $1")
            .bind(account.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(db("ledger balance"))
    }

    async fn ledger_balances(&self) -> StoreResult<Vec<(AccountId, i64)>> {
        let rows = sqlx::query(
            "SELECT account_uuid, SUM(amount_micros)::bigint FROM ledger_entries GROUP BY account_uuid ORDER BY account_uuid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("ledger balances"))?;
        rows.iter()
            .map(|r| {
                let a: String = r.try_get(0).map_err(db("ledger balances"))?;
                let m: i64 = r.try_get(1).map_err(db("ledger balances"))?;
                let id = a.parse().map_err(|_| crate::StoreError::Corrupt {
                    table: "ledger_entries",
                    detail: format!("bad account uuid {a:?}"),
                })?;
                Ok((id, m))
            })
            .collect()
    }

    async fn ledger_list(&self, account: Option<AccountId>, paging: Paging) -> StoreResult<Page<LedgerTransaction>> {
        let scope = account.map(|a| a.to_string());
        let mut tx = self.pool.begin().await.map_err(db("ledger list"))?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE ($1::text IS NULL OR account_uuid = $1)")
                .bind(&scope)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("ledger list"))?;
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE ($1::text IS NULL OR account_uuid = $1) {} LIMIT $2 OFFSET $3",
            order(paging.newest_first)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&scope)
            .bind(i64::from(paging.limit))
            .bind(i64::try_from(paging.offset()).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("ledger list"))?;
        tx.commit().await.map_err(db("ledger list"))?;
        let items = rows.iter().map(record::<EntryRow>).collect::<StoreResult<_>>()?;
        Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
    }

    async fn ledger_node_earnings(&self, node: NodeId, owner: AccountId) -> StoreResult<(i64, u64)> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(amount_micros), 0)::bigint, COUNT(*) FROM ledger_entries \
             WHERE node_uuid = $1 AND account_uuid = $2 AND kind = 'RUN_CHARGE' AND amount_micros >= 0",
        )
        .bind(node.to_string())
        .bind(owner.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(db("node earnings"))?;
        let sum: i64 = row.try_get(0).map_err(db("node earnings"))?;
        let count: i64 = row.try_get(1).map_err(db("node earnings"))?;
        Ok((sum, u64::try_from(count).unwrap_or(0)))
    }

    async fn run_list_unbilled(&self, since_ms: i64, limit: u32) -> StoreResult<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE ended_at_ms >= $1 AND started_at_ms IS NOT NULL \
             AND hourly_rate_usd IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.idempotency_key = 'run:' || job_runs.uuid) \
             ORDER BY ended_at_ms, uuid LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("unbilled runs"))?;
        rows.iter().map(record::<RunRow>).collect()
    }

    async fn credit_purchase_create(&self, p: &CreditPurchaseRecord) -> StoreResult<()> {
        let r = PurchaseRow::new(p);
        let (id, account) = (p.purchase.uuid, p.purchase.consumer_account_uuid);
        insert(insert_sql::<PurchaseRow>(Placeholders::Dollar, ""), r)
            .execute(&self.pool)
            .await
            .map_err(write_error("credit purchase create", || purchase_subject(id, account)))?;
        self.wrote();
        Ok(())
    }

    async fn credit_purchase_list(
        &self,
        account: Option<AccountId>,
        statuses: &[CreditPurchaseStatus],
        paging: Paging,
    ) -> StoreResult<Page<CreditPurchaseRecord>> {
        let condition = "($1::text IS NULL OR account_uuid = $1) AND (cardinality($2::text[]) = 0 OR status = ANY($2))";
        let scope = account.map(|a| a.to_string());
        let statuses = purchase_statuses(statuses);
        let mut tx = self.pool.begin().await.map_err(db("credit purchase list"))?;
        let total: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM credit_purchases WHERE {condition}")))
                .bind(&scope)
                .bind(&statuses)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("credit purchase list"))?;
        let sql = format!(
            "SELECT {PURCHASE_COLUMNS} FROM credit_purchases WHERE {condition} {} LIMIT $3 OFFSET $4",
            order(paging.newest_first)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&scope)
            .bind(&statuses)
            .bind(i64::from(paging.limit))
            .bind(i64::try_from(paging.offset()).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("credit purchase list"))?;
        tx.commit().await.map_err(db("credit purchase list"))?;
        let items = rows.iter().map(record::<PurchaseRow>).collect::<StoreResult<_>>()?;
        Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
    }

    async fn credit_purchase_fetch(
        &self,
        account: Option<AccountId>,
        key: &PurchaseKey,
    ) -> StoreResult<Option<CreditPurchaseRecord>> {
        let (column, value) = match key {
            PurchaseKey::Uuid(id) => ("uuid", id.to_string()),
            PurchaseKey::Session(s) => ("checkout_session_id", s.clone()),
        };
        let sql = format!(
            "SELECT {PURCHASE_COLUMNS} FROM credit_purchases WHERE {column} = $1 AND ($2::text IS NULL OR account_uuid = $2)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(value)
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("credit purchase fetch"))?;
        row.as_ref().map(record::<PurchaseRow>).transpose()
    }

    async fn credit_purchase_set_provider_state(
        &self,
        id: gantry_types::CreditPurchaseId,
        state: &str,
        now_ms: i64,
    ) -> StoreResult<Option<CreditPurchaseRecord>> {
        let sql = format!(
            "UPDATE credit_purchases SET provider_state = $2, updated_at_ms = $3 WHERE uuid = $1 RETURNING {PURCHASE_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(state)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("credit purchase provider state"))?;
        self.wrote();
        row.as_ref().map(record::<PurchaseRow>).transpose()
    }

    async fn credit_purchase_settle(
        &self,
        id: gantry_types::CreditPurchaseId,
        to: CreditPurchaseStatus,
        now_ms: i64,
        credit: Option<&LedgerPosting>,
    ) -> StoreResult<Option<CreditPurchaseRecord>> {
        let mut tx = self.pool.begin().await.map_err(db("credit purchase settle"))?;
        let completed = (to == CreditPurchaseStatus::Completed).then_some(now_ms);
        let sql = format!(
            "UPDATE credit_purchases SET status = $2, updated_at_ms = $3, completed_at_ms = $4 \
             WHERE uuid = $1 AND status = 'PENDING' RETURNING {PURCHASE_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(to.as_str())
            .bind(now_ms)
            .bind(completed)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("credit purchase settle"))?;
        let Some(after) = row.as_ref().map(record::<PurchaseRow>).transpose()? else { return Ok(None) };
        let mut id = 0;
        if let Some(posting) = credit {
            id = post_with_events(&mut tx, posting).await?.1;
        }
        tx.commit().await.map_err(db("credit purchase settle"))?;
        self.wrote();
        self.published(id);
        Ok(Some(after))
    }
}
