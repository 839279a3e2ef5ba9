//! Billing on SQLite. Every write is one closure on the group-commit writer, so a
//! posting's transaction row and entries commit together (the closure runs inside
//! its own savepoint: an error undoes all of it), and postings are serialized, which
//! makes the idempotency check and the insert one atomic step.

use async_trait::async_trait;
use gantry_types::billing::{
    ConsumerProfile, ConsumerProfileFilter, CreditPurchaseStatus, LedgerTransaction, UpdateConsumerProfileRequest,
};
use gantry_types::list::Paging;
use gantry_types::{AccountId, NodeId};
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::rows::{self, db, write_error};
use crate::billing::{
    BillingStore, ENTRY_COLUMNS, EntryRow, PROFILE_COLUMNS, PURCHASE_COLUMNS, ProfileRow, PurchaseRow, ledger_subject,
    order, patched, purchase_statuses, purchase_subject,
};
use crate::events::NewEventRow;
use crate::sql::row::{FromRow, IntoRecord, ToRow, insert_sql};
use crate::sql::{Placeholders, RUN_COLUMNS, RunRow, Subject, json_list};
use crate::{CreditPurchaseRecord, LedgerPosting, Page, PurchaseKey, RunRecord, StoreResult};

fn profile_where(conn: &Connection, condition: &str, p: impl rusqlite::Params) -> StoreResult<Option<ConsumerProfile>> {
    let sql = format!("SELECT {PROFILE_COLUMNS} FROM consumer_profiles WHERE {condition}");
    rows::one::<ProfileRow>(conn, &sql, p, "consumer profile read")
}

fn purchase_where(
    conn: &Connection,
    condition: &str,
    p: impl rusqlite::Params,
) -> StoreResult<Option<CreditPurchaseRecord>> {
    let sql = format!("SELECT {PURCHASE_COLUMNS} FROM credit_purchases WHERE {condition}");
    rows::one::<PurchaseRow>(conn, &sql, p, "credit purchase read")
}

/// Inserts a posting's rows; `false` when its key was posted before.
fn post(conn: &Connection, posting: &LedgerPosting) -> StoreResult<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO ledger_transactions (uuid, idempotency_key, created_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![posting.uuid.to_string(), posting.idempotency_key, posting.created_at_ms]))
        .map_err(write_error("ledger post", || ledger_subject(posting)))?;
    if inserted == 0 {
        return Ok(false);
    }
    let sql = insert_sql::<EntryRow>(Placeholders::Question, "");
    let mut stmt = conn.prepare_cached(&sql).map_err(db("ledger post"))?;
    for e in posting.rows() {
        e.with_sqlite_params(|params| stmt.execute(params))
            .map_err(write_error("ledger post", || ledger_subject(posting)))?;
    }
    for change in NewEventRow::balance(posting)? {
        super::events::append(conn, &change)?;
    }
    Ok(true)
}

fn key_condition(key: &PurchaseKey) -> (&'static str, String) {
    match key {
        PurchaseKey::Uuid(id) => ("uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)", id.to_string()),
        PurchaseKey::Session(s) => ("checkout_session_id = ?1 AND (?2 IS NULL OR account_uuid = ?2)", s.clone()),
    }
}

#[async_trait]
impl BillingStore for SqliteStore {
    async fn consumer_profile_ensure(&self, profile: &ConsumerProfile) -> StoreResult<ConsumerProfile> {
        let r = ProfileRow::new(profile);
        let account = profile.account_uuid;
        self.writer
            .write(move |conn| {
                let sql = insert_sql::<ProfileRow>(Placeholders::Question, " ON CONFLICT (account_uuid) DO NOTHING");
                rows::insert(conn, &sql, &r)
                    .map_err(write_error("consumer profile ensure", || Subject::account(account)))?;
                profile_where(conn, "account_uuid = ?1", [account.to_string()])?
                    .ok_or_else(|| crate::StoreError::MissingReference { what: format!("account {account}") })
            })
            .await
    }

    async fn consumer_profile_list(
        &self,
        account: Option<AccountId>,
        filter: &ConsumerProfileFilter,
        paging: Paging,
    ) -> StoreResult<Page<ConsumerProfile>> {
        let scope = account.map(|a| a.to_string());
        let uuids = json_list(&filter.uuids.iter().map(|u| u.to_string()).collect::<Vec<_>>());
        let accounts = json_list(&filter.account_uuids.iter().map(|u| u.to_string()).collect::<Vec<_>>());
        let billing = filter.is_compute_billing_enabled;
        self.read(move |conn| {
            let condition = "(?1 IS NULL OR account_uuid = ?1) \
                     AND (json_array_length(?2) = 0 OR uuid IN (SELECT value FROM json_each(?2))) \
                     AND (json_array_length(?3) = 0 OR account_uuid IN (SELECT value FROM json_each(?3))) \
                     AND (?4 IS NULL OR is_compute_billing_enabled = ?4)";
            let tx = conn.unchecked_transaction().map_err(db("consumer profile list"))?;
            let total: i64 = tx
                .query_row(
                    &format!("SELECT COUNT(*) FROM consumer_profiles WHERE {condition}"),
                    params![scope, uuids, accounts, billing],
                    |r| r.get(0),
                )
                .map_err(db("consumer profile list"))?;
            let sql = format!(
                "SELECT {PROFILE_COLUMNS} FROM consumer_profiles WHERE {condition} {} LIMIT ?5 OFFSET ?6",
                order(paging.newest_first)
            );
            let rows = tx
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    let offset = i64::try_from(paging.offset()).unwrap_or(i64::MAX);
                    s.query_map(params![scope, uuids, accounts, billing, paging.limit, offset], |r| {
                        ProfileRow::from_row(r)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db("consumer profile list"))?;
            let items = rows.into_iter().map(ProfileRow::into_record).collect::<StoreResult<_>>()?;
            Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
        })
        .await
    }

    async fn consumer_profile_list_all(&self) -> StoreResult<Vec<ConsumerProfile>> {
        self.read(|conn| {
            let sql = format!("SELECT {PROFILE_COLUMNS} FROM consumer_profiles ORDER BY created_at_ms, uuid");
            let rows = conn
                .prepare_cached(&sql)
                .and_then(|mut s| s.query_map([], |r| ProfileRow::from_row(r))?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db("consumer profile list"))?;
            rows.into_iter().map(ProfileRow::into_record).collect()
        })
        .await
    }

    async fn consumer_profile_update(
        &self,
        account: Option<AccountId>,
        id: gantry_types::ConsumerProfileId,
        patch: &UpdateConsumerProfileRequest,
        now_ms: i64,
    ) -> StoreResult<Option<ConsumerProfile>> {
        let (id, scope, patch) = (id.to_string(), account.map(|a| a.to_string()), patch.clone());
        self.writer
            .write(move |conn| {
                // Read and write inside one writer op: nothing else writes in between.
                let Some(current) =
                    profile_where(conn, "uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)", params![id, scope])?
                else {
                    return Ok(None);
                };
                let after = patched(current, &patch, now_ms);
                let r = ProfileRow::new(&after);
                conn.prepare_cached(
                    "UPDATE consumer_profiles SET is_active = ?2, is_compute_billing_enabled = ?3, \
                     allowed_region_codes = ?4, updated_at_ms = ?5, max_pending_jobs = ?6, \
                     max_stored_job_bytes = ?7, rate_limit_rps = ?8 WHERE uuid = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        r.uuid,
                        r.is_active,
                        r.is_compute_billing_enabled,
                        r.allowed_region_codes,
                        now_ms,
                        r.max_pending_jobs,
                        r.max_stored_job_bytes,
                        r.rate_limit_rps
                    ])
                })
                .map_err(db("consumer profile update"))?;
                Ok(Some(after))
            })
            .await
    }

    async fn ledger_post(&self, posting: &LedgerPosting) -> StoreResult<bool> {
        let posting = posting.clone();
        self.writer.write(move |conn| post(conn, &posting)).await
    }

    async fn ledger_post_many(&self, postings: &[LedgerPosting]) -> StoreResult<Vec<bool>> {
        if postings.is_empty() {
            return Ok(Vec::new());
        }
        let postings = postings.to_vec();
        // One op of the group commit (one savepoint): all of them or none.
        self.writer.write(move |conn| postings.iter().map(|p| post(conn, p)).collect()).await
    }

    async fn ledger_balance(&self, account: AccountId) -> StoreResult<i64> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT COALESCE(SUM(amount_micros), 0) FROM ledger_entries WHERE account_uuid = ?1")
                .and_then(|mut s| s.query_row([account.to_string()], |r| r.get(0)))
                .map_err(db("ledger balance"))
        })
        .await
    }

    async fn ledger_balances(&self) -> StoreResult<Vec<(AccountId, i64)>> {
        self.read(|conn| {
            let rows: Vec<(String, i64)> = conn
                .prepare_cached(
                    "SELECT account_uuid, SUM(amount_micros) FROM ledger_entries GROUP BY account_uuid \
                         ORDER BY account_uuid",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db("ledger balances"))?;
            rows.into_iter()
                .map(|(a, m)| {
                    let id = a.parse().map_err(|_| crate::StoreError::Corrupt {
                        table: "ledger_entries",
                        detail: format!("bad account uuid {a:?}"),
                    })?;
                    Ok((id, m))
                })
                .collect()
        })
        .await
    }

    async fn ledger_list(&self, account: Option<AccountId>, paging: Paging) -> StoreResult<Page<LedgerTransaction>> {
        let scope = account.map(|a| a.to_string());
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(db("ledger list"))?;
            let total: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM ledger_entries WHERE (?1 IS NULL OR account_uuid = ?1)",
                    [&scope],
                    |r| r.get(0),
                )
                .map_err(db("ledger list"))?;
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE (?1 IS NULL OR account_uuid = ?1) {} \
                     LIMIT ?2 OFFSET ?3",
                order(paging.newest_first)
            );
            let offset = i64::try_from(paging.offset()).unwrap_or(i64::MAX);
            let rows = tx
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(params![scope, paging.limit, offset], |r| EntryRow::from_row(r))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db("ledger list"))?;
            let items = rows.into_iter().map(EntryRow::into_record).collect::<StoreResult<_>>()?;
            Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
        })
        .await
    }

    async fn ledger_node_earnings(&self, node: NodeId, owner: AccountId) -> StoreResult<(i64, u64)> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT COALESCE(SUM(amount_micros), 0), COUNT(*) FROM ledger_entries \
                     WHERE node_uuid = ?1 AND account_uuid = ?2 AND kind = 'RUN_CHARGE' AND amount_micros >= 0",
            )
            .and_then(|mut s| {
                s.query_row([node.to_string(), owner.to_string()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            })
            .map(|(m, n)| (m, u64::try_from(n).unwrap_or(0)))
            .map_err(db("node earnings"))
        })
        .await
    }

    async fn run_list_unbilled(&self, since_ms: i64, limit: u32) -> StoreResult<Vec<RunRecord>> {
        self
            .read(move |conn| {
                let sql = format!(
                    "SELECT {RUN_COLUMNS} FROM job_runs WHERE ended_at_ms >= ?1 AND started_at_ms IS NOT NULL \
                     AND hourly_rate_usd IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.idempotency_key = 'run:' || job_runs.uuid) \
                     ORDER BY ended_at_ms, uuid LIMIT ?2"
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![since_ms, limit], |r| RunRow::from_row(r))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(db("unbilled runs"))?;
                rows.into_iter().map(RunRow::into_record).collect()
            })
            .await
    }

    async fn credit_purchase_create(&self, purchase: &CreditPurchaseRecord) -> StoreResult<()> {
        let r = PurchaseRow::new(purchase);
        let (id, account) = (purchase.purchase.uuid, purchase.purchase.consumer_account_uuid);
        self.writer
            .write(move |conn| {
                rows::insert(conn, &insert_sql::<PurchaseRow>(Placeholders::Question, ""), &r)
                    .map(drop)
                    .map_err(write_error("credit purchase create", || purchase_subject(id, account)))
            })
            .await
    }

    async fn credit_purchase_list(
        &self,
        account: Option<AccountId>,
        statuses: &[CreditPurchaseStatus],
        paging: Paging,
    ) -> StoreResult<Page<CreditPurchaseRecord>> {
        let scope = account.map(|a| a.to_string());
        let statuses = json_list(&purchase_statuses(statuses));
        self.read(move |conn| {
            let condition = "(?1 IS NULL OR account_uuid = ?1) \
                     AND (json_array_length(?2) = 0 OR status IN (SELECT value FROM json_each(?2)))";
            let tx = conn.unchecked_transaction().map_err(db("credit purchase list"))?;
            let total: i64 = tx
                .query_row(
                    &format!("SELECT COUNT(*) FROM credit_purchases WHERE {condition}"),
                    params![scope, statuses],
                    |r| r.get(0),
                )
                .map_err(db("credit purchase list"))?;
            let sql = format!(
                "SELECT {PURCHASE_COLUMNS} FROM credit_purchases WHERE {condition} {} LIMIT ?3 OFFSET ?4",
                order(paging.newest_first)
            );
            let offset = i64::try_from(paging.offset()).unwrap_or(i64::MAX);
            let rows = tx
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(params![scope, statuses, paging.limit, offset], |r| PurchaseRow::from_row(r))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db("credit purchase list"))?;
            let items = rows.into_iter().map(PurchaseRow::into_record).collect::<StoreResult<_>>()?;
            Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
        })
        .await
    }

    async fn credit_purchase_fetch(
        &self,
        account: Option<AccountId>,
        key: &PurchaseKey,
    ) -> StoreResult<Option<CreditPurchaseRecord>> {
        let (condition, value) = key_condition(key);
        let scope = account.map(|a| a.to_string());
        self.read(move |conn| purchase_where(conn, condition, params![value, scope])).await
    }

    async fn credit_purchase_set_provider_state(
        &self,
        id: gantry_types::CreditPurchaseId,
        state: &str,
        now_ms: i64,
    ) -> StoreResult<Option<CreditPurchaseRecord>> {
        let (id, state) = (id.to_string(), state.to_string());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE credit_purchases SET provider_state = ?2, updated_at_ms = ?3 WHERE uuid = ?1",
                )
                .and_then(|mut s| s.execute(params![id, state, now_ms]))
                .map_err(db("credit purchase provider state"))?;
                purchase_where(conn, "uuid = ?1", [id])
            })
            .await
    }

    async fn credit_purchase_settle(
        &self,
        id: gantry_types::CreditPurchaseId,
        to: CreditPurchaseStatus,
        now_ms: i64,
        credit: Option<&LedgerPosting>,
    ) -> StoreResult<Option<CreditPurchaseRecord>> {
        let (id, credit) = (id.to_string(), credit.cloned());
        self.writer
            .write(move |conn| {
                let completed = (to == CreditPurchaseStatus::Completed).then_some(now_ms);
                let changed = conn
                    .prepare_cached(
                        "UPDATE credit_purchases SET status = ?2, updated_at_ms = ?3, completed_at_ms = ?4 \
                         WHERE uuid = ?1 AND status = 'PENDING'",
                    )
                    .and_then(|mut s| s.execute(params![id, to.as_str(), now_ms, completed]))
                    .map_err(db("credit purchase settle"))?;
                if changed == 0 {
                    return Ok(None);
                }
                if let Some(posting) = &credit {
                    post(conn, posting)?;
                }
                purchase_where(conn, "uuid = ?1", [id])
            })
            .await
    }
}
