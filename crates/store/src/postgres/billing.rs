//! Billing on PostgreSQL. A posting is one database transaction: the transaction row
//! goes first with `ON CONFLICT (idempotency_key) DO NOTHING`; a concurrent posting
//! with the same key waits on the unique index until the first commits, then inserts
//! nothing and reports `false`. Read-modify-write updates lock the row
//! (`SELECT ... FOR UPDATE`).

use gantry_types::billing::{
    ConsumerProfile, ConsumerProfileFilter, CreditPurchaseStatus, LedgerTransaction, UpdateConsumerProfileRequest,
};
use gantry_types::list::Paging;
use gantry_types::{AccountId, NodeId};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::{PgStore, db, write_error};
use crate::billing::{
    ENTRY_COLUMNS, EntryRow, PROFILE_COLUMNS, PURCHASE_COLUMNS, ProfileRow, PurchaseRow, ledger_subject, order,
    patched, purchase_statuses, purchase_subject,
};
use crate::sql::{RUN_COLUMNS, Subject};
use crate::{CreditPurchaseRecord, LedgerPosting, Page, PurchaseKey, RunRecord, StoreResult};

fn profile(row: &PgRow) -> StoreResult<ConsumerProfile> {
    let get = || -> Result<ProfileRow, sqlx::Error> {
        Ok(ProfileRow {
            uuid: row.try_get(0)?,
            account_uuid: row.try_get(1)?,
            is_active: row.try_get(2)?,
            is_compute_billing_enabled: row.try_get(3)?,
            allowed_region_codes: row.try_get(4)?,
            created_at_ms: row.try_get(5)?,
            updated_at_ms: row.try_get(6)?,
        })
    };
    get().map_err(db("reading a consumer profile row"))?.into_profile()
}

fn entry(row: &PgRow) -> StoreResult<LedgerTransaction> {
    let get = || -> Result<EntryRow, sqlx::Error> {
        Ok(EntryRow {
            uuid: row.try_get(0)?,
            transaction_uuid: row.try_get(1)?,
            account_uuid: row.try_get(2)?,
            amount_micros: row.try_get(3)?,
            kind: row.try_get(4)?,
            run_uuid: row.try_get(5)?,
            node_uuid: row.try_get(6)?,
            memo: row.try_get(7)?,
            created_at_ms: row.try_get(8)?,
        })
    };
    get().map_err(db("reading a ledger entry row"))?.into_transaction()
}

fn purchase(row: &PgRow) -> StoreResult<CreditPurchaseRecord> {
    let get = || -> Result<PurchaseRow, sqlx::Error> {
        Ok(PurchaseRow {
            uuid: row.try_get(0)?,
            account_uuid: row.try_get(1)?,
            profile_uuid: row.try_get(2)?,
            amount_micros: row.try_get(3)?,
            status: row.try_get(4)?,
            provider: row.try_get(5)?,
            checkout_session_id: row.try_get(6)?,
            provider_state: row.try_get(7)?,
            redirect_url: row.try_get(8)?,
            cancel_url: row.try_get(9)?,
            memo: row.try_get(10)?,
            completed_at_ms: row.try_get(11)?,
            created_at_ms: row.try_get(12)?,
            updated_at_ms: row.try_get(13)?,
        })
    };
    get().map_err(db("reading a credit purchase row"))?.into_record()
}

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

pub(super) async fn profile_ensure(store: &PgStore, p: &ConsumerProfile) -> StoreResult<ConsumerProfile> {
    let r = ProfileRow::new(p);
    let account = p.account_uuid;
    let sql = format!(
        "INSERT INTO consumer_profiles ({PROFILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (account_uuid) DO NOTHING"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(r.uuid)
        .bind(r.account_uuid.clone())
        .bind(r.is_active)
        .bind(r.is_compute_billing_enabled)
        .bind(r.allowed_region_codes)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .execute(&store.pool)
        .await
        .map_err(write_error("consumer profile ensure", || Subject::account(account)))?;
    store.wrote();
    let sql = format!("SELECT {PROFILE_COLUMNS} FROM consumer_profiles WHERE account_uuid = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(r.account_uuid)
        .fetch_optional(&store.pool)
        .await
        .map_err(db("consumer profile ensure"))?;
    row.as_ref()
        .map(profile)
        .transpose()?
        .ok_or_else(|| crate::StoreError::MissingReference { what: format!("account {account}") })
}

pub(super) async fn profile_list(
    store: &PgStore,
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
    let mut tx = store.pool.begin().await.map_err(db("consumer profile list"))?;
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
    let items = rows.iter().map(profile).collect::<StoreResult<_>>()?;
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

pub(super) async fn profile_list_all(store: &PgStore) -> StoreResult<Vec<ConsumerProfile>> {
    let sql = format!("SELECT {PROFILE_COLUMNS} FROM consumer_profiles ORDER BY created_at_ms, uuid");
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&store.pool).await.map_err(db("consumer profile list"))?;
    rows.iter().map(profile).collect()
}

pub(super) async fn profile_update(
    store: &PgStore,
    account: Option<AccountId>,
    id: uuid::Uuid,
    patch: &UpdateConsumerProfileRequest,
    now_ms: i64,
) -> StoreResult<Option<ConsumerProfile>> {
    let mut tx = store.pool.begin().await.map_err(db("consumer profile update"))?;
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
    let Some(current) = row.as_ref().map(profile).transpose()? else { return Ok(None) };
    let after = patched(current, patch, now_ms);
    let r = ProfileRow::new(&after);
    sqlx::query(
        "UPDATE consumer_profiles SET is_active = $2, is_compute_billing_enabled = $3, allowed_region_codes = $4, \
         updated_at_ms = $5 WHERE uuid = $1",
    )
    .bind(r.uuid)
    .bind(r.is_active)
    .bind(r.is_compute_billing_enabled)
    .bind(r.allowed_region_codes)
    .bind(now_ms)
    .execute(&mut *tx)
    .await
    .map_err(db("consumer profile update"))?;
    tx.commit().await.map_err(db("consumer profile update"))?;
    store.wrote();
    Ok(Some(after))
}

pub(super) async fn ledger_post(store: &PgStore, posting: &LedgerPosting) -> StoreResult<bool> {
    let mut tx = store.pool.begin().await.map_err(db("ledger post"))?;
    let posted = post(&mut tx, posting).await?;
    tx.commit().await.map_err(db("ledger post"))?;
    store.wrote();
    Ok(posted)
}

pub(super) async fn ledger_balance(store: &PgStore, account: AccountId) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT COALESCE(SUM(amount_micros), 0)::bigint FROM ledger_entries WHERE account_uuid = $1")
        .bind(account.to_string())
        .fetch_one(&store.pool)
        .await
        .map_err(db("ledger balance"))
}

pub(super) async fn ledger_balances(store: &PgStore) -> StoreResult<Vec<(AccountId, i64)>> {
    let rows = sqlx::query(
        "SELECT account_uuid, SUM(amount_micros)::bigint FROM ledger_entries GROUP BY account_uuid ORDER BY account_uuid",
    )
    .fetch_all(&store.pool)
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

pub(super) async fn ledger_list(
    store: &PgStore,
    account: Option<AccountId>,
    paging: Paging,
) -> StoreResult<Page<LedgerTransaction>> {
    let scope = account.map(|a| a.to_string());
    let mut tx = store.pool.begin().await.map_err(db("ledger list"))?;
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
    let items = rows.iter().map(entry).collect::<StoreResult<_>>()?;
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

pub(super) async fn ledger_node_earnings(store: &PgStore, node: NodeId, owner: AccountId) -> StoreResult<(i64, u64)> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(amount_micros), 0)::bigint, COUNT(*) FROM ledger_entries \
         WHERE node_uuid = $1 AND account_uuid = $2 AND kind = 'RUN_CHARGE' AND amount_micros >= 0",
    )
    .bind(node.to_string())
    .bind(owner.to_string())
    .fetch_one(&store.pool)
    .await
    .map_err(db("node earnings"))?;
    let sum: i64 = row.try_get(0).map_err(db("node earnings"))?;
    let count: i64 = row.try_get(1).map_err(db("node earnings"))?;
    Ok((sum, u64::try_from(count).unwrap_or(0)))
}

pub(super) async fn run_list_unbilled(store: &PgStore, since_ms: i64, limit: u32) -> StoreResult<Vec<RunRecord>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM job_runs WHERE ended_at_ms >= $1 AND started_at_ms IS NOT NULL \
         AND hourly_rate_usd IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.idempotency_key = 'run:' || job_runs.uuid) \
         ORDER BY ended_at_ms, uuid LIMIT $2"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await
        .map_err(db("unbilled runs"))?;
    rows.iter().map(super::cluster::run_row).collect()
}

pub(super) async fn purchase_create(store: &PgStore, p: &CreditPurchaseRecord) -> StoreResult<()> {
    let r = PurchaseRow::new(p);
    let (id, account) = (p.purchase.uuid, p.purchase.consumer_account_uuid);
    let sql = format!(
        "INSERT INTO credit_purchases ({PURCHASE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(r.uuid)
        .bind(r.account_uuid)
        .bind(r.profile_uuid)
        .bind(r.amount_micros)
        .bind(r.status)
        .bind(r.provider)
        .bind(r.checkout_session_id)
        .bind(r.provider_state)
        .bind(r.redirect_url)
        .bind(r.cancel_url)
        .bind(r.memo)
        .bind(r.completed_at_ms)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .execute(&store.pool)
        .await
        .map_err(write_error("credit purchase create", || purchase_subject(id, account)))?;
    store.wrote();
    Ok(())
}

pub(super) async fn purchase_list(
    store: &PgStore,
    account: Option<AccountId>,
    statuses: &[CreditPurchaseStatus],
    paging: Paging,
) -> StoreResult<Page<CreditPurchaseRecord>> {
    let condition = "($1::text IS NULL OR account_uuid = $1) AND (cardinality($2::text[]) = 0 OR status = ANY($2))";
    let scope = account.map(|a| a.to_string());
    let statuses = purchase_statuses(statuses);
    let mut tx = store.pool.begin().await.map_err(db("credit purchase list"))?;
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
    let items = rows.iter().map(purchase).collect::<StoreResult<_>>()?;
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

pub(super) async fn purchase_fetch(
    store: &PgStore,
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
        .fetch_optional(&store.pool)
        .await
        .map_err(db("credit purchase fetch"))?;
    row.as_ref().map(purchase).transpose()
}

pub(super) async fn purchase_set_provider_state(
    store: &PgStore,
    id: uuid::Uuid,
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
        .fetch_optional(&store.pool)
        .await
        .map_err(db("credit purchase provider state"))?;
    store.wrote();
    row.as_ref().map(purchase).transpose()
}

pub(super) async fn purchase_settle(
    store: &PgStore,
    id: uuid::Uuid,
    to: CreditPurchaseStatus,
    now_ms: i64,
    credit: Option<&LedgerPosting>,
) -> StoreResult<Option<CreditPurchaseRecord>> {
    let mut tx = store.pool.begin().await.map_err(db("credit purchase settle"))?;
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
    let Some(after) = row.as_ref().map(purchase).transpose()? else { return Ok(None) };
    if let Some(posting) = credit {
        post(&mut tx, posting).await?;
    }
    tx.commit().await.map_err(db("credit purchase settle"))?;
    store.wrote();
    Ok(Some(after))
}
