//! Billing records shared by both backends (migration 0005): consumer profiles, the
//! double-entry ledger and credit purchases.
//!
//! **The ledger balances by construction.** A [`LedgerPosting`] is built from the
//! sides the caller names (a consumer pays, an operator earns, an account is
//! credited) and always gets one more side on [`PLATFORM_ACCOUNT`] that makes the
//! sum zero: the platform is the counterparty of money entering (credits) and keeps
//! what is left of a charge after the operator's share. So the sum over every entry
//! in the store is zero at all times, and a test checks it.
//!
//! **A run is charged once.** Its posting carries the idempotency key `run:<uuid>`,
//! unique in `ledger_transactions`; a second posting with that key (a retry, a
//! concurrent reconciler) is a no-op reported as `false`, inside the same database
//! transaction as the entries, so no charge is lost or doubled.

use async_trait::async_trait;
use gantry_types::billing::{
    ConsumerProfile, ConsumerProfileFilter, CreditPurchase, CreditPurchaseStatus, LedgerKind, LedgerTransaction,
    UpdateConsumerProfileRequest,
};
use gantry_types::list::Paging;
use gantry_types::money::{CURRENCY, micros_to_usd};
use gantry_types::{
    AccountId, ConsumerProfileId, CreditPurchaseId, JobRunId, LedgerEntryId, LedgerTransactionId, NodeId, Timestamp,
};

use crate::sql::row::IntoRecord;
use crate::sql::row::{Columns, row};
use crate::sql::{Subject, json_list};
use crate::{Page, RunRecord, StoreError, StoreResult};

/// The platform's own account (created by migration 0005; the nil uuid, which
/// `AccountId::new` never produces).
pub const PLATFORM_ACCOUNT: AccountId = AccountId(uuid::Uuid::nil());

/// The idempotency key of a run's charge.
pub fn run_charge_key(run: JobRunId) -> String {
    format!("run:{run}")
}

/// One account's side of a posting.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerSide {
    /// The entry's ID.
    pub uuid: LedgerEntryId,
    /// Whose balance moves.
    pub account: AccountId,
    /// Micro-USD; positive adds to the balance.
    pub amount_micros: i64,
}

/// A balanced ledger transaction, ready to post (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerPosting {
    /// The transaction's ID.
    pub uuid: LedgerTransactionId,
    /// What it is.
    pub kind: LedgerKind,
    /// Unique when set: a second posting with the same key is refused (not an error).
    pub idempotency_key: Option<String>,
    /// The run billed.
    pub run_uuid: Option<JobRunId>,
    /// The node the run used.
    pub node_uuid: Option<NodeId>,
    /// Free text.
    pub memo: Option<String>,
    /// When, epoch ms.
    pub created_at_ms: i64,
    sides: Vec<LedgerSide>,
}

impl LedgerPosting {
    /// A posting of `sides` plus the platform's balancing side (omitted when the named
    /// sides already sum to zero).
    pub fn new(kind: LedgerKind, sides: &[(AccountId, i64)], created_at_ms: i64) -> Self {
        let mut all: Vec<LedgerSide> = sides
            .iter()
            .map(|&(account, amount_micros)| LedgerSide { uuid: LedgerEntryId::new(), account, amount_micros })
            .collect();
        let sum: i64 = sides.iter().map(|s| s.1).sum();
        if sum != 0 {
            all.push(LedgerSide { uuid: LedgerEntryId::new(), account: PLATFORM_ACCOUNT, amount_micros: -sum });
        }
        Self {
            uuid: LedgerTransactionId::new(),
            kind,
            idempotency_key: None,
            run_uuid: None,
            node_uuid: None,
            memo: None,
            created_at_ms,
            sides: all,
        }
    }

    /// Sets the idempotency key.
    pub fn with_key(mut self, key: String) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Sets the run and node (run charges); also the key `run:<uuid>`.
    pub fn for_run(mut self, run: JobRunId, node: NodeId) -> Self {
        self.run_uuid = Some(run);
        self.node_uuid = Some(node);
        self.idempotency_key = Some(run_charge_key(run));
        self
    }

    /// Sets the memo.
    pub fn with_memo(mut self, memo: Option<String>) -> Self {
        self.memo = memo;
        self
    }

    /// Every side, the platform's included; they sum to zero.
    pub fn sides(&self) -> &[LedgerSide] {
        &self.sides
    }

    /// The entry rows.
    pub(crate) fn rows(&self) -> Vec<EntryRow> {
        self.sides
            .iter()
            .map(|s| EntryRow {
                uuid: s.uuid.to_string(),
                transaction_uuid: self.uuid.to_string(),
                account_uuid: s.account.to_string(),
                amount_micros: s.amount_micros,
                kind: self.kind.as_str().to_string(),
                run_uuid: self.run_uuid.map(|r| r.to_string()),
                node_uuid: self.node_uuid.map(|n| n.to_string()),
                memo: self.memo.clone(),
                created_at_ms: self.created_at_ms,
            })
            .collect()
    }
}

/// A credit purchase as stored: the wire object plus the provider's bookkeeping.
#[derive(Clone, Debug, PartialEq)]
pub struct CreditPurchaseRecord {
    /// The wire object.
    pub purchase: CreditPurchase,
    /// Which payment provider handles it (`manual`, ...).
    pub provider: String,
    /// The provider's own state word (manual: `open`, `paid`, `expired`).
    pub provider_state: String,
    /// Redirect after payment.
    pub redirect_url: Option<String>,
    /// Redirect after cancel.
    pub cancel_url: Option<String>,
}

/// How a credit purchase is looked up.
#[derive(Clone, Debug, PartialEq)]
pub enum PurchaseKey {
    /// By its uuid.
    Uuid(CreditPurchaseId),
    /// By the provider's checkout session id.
    Session(String),
}

// --- Rows ---

/// Columns of a profile (see [`ProfileRow`]).
pub(crate) const PROFILE_COLUMNS: &str = ProfileRow::LIST;

/// Columns of an entry (see [`EntryRow`]).
pub(crate) const ENTRY_COLUMNS: &str = EntryRow::LIST;

/// Columns of a purchase (see [`PurchaseRow`]).
pub(crate) const PURCHASE_COLUMNS: &str = PurchaseRow::LIST;

fn corrupt(table: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt { table, detail }
}

fn parse<T: std::str::FromStr>(table: &'static str, what: &str, text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| corrupt(table)(format!("bad {what} {text:?}")))
}

row! {
    /// A profile row.
    #[derive(Debug)]
    pub(crate) struct ProfileRow in "consumer_profiles" (read, write) {
        uuid: String,
        account_uuid: String,
        is_active: bool,
        is_compute_billing_enabled: bool,
        allowed_region_codes: String,
        created_at_ms: i64,
        updated_at_ms: i64,
        max_pending_jobs: Option<i64>,
        max_stored_job_bytes: Option<i64>,
        rate_limit_rps: Option<f64>,
    }
}

impl ProfileRow {
    pub fn new(p: &ConsumerProfile) -> Self {
        Self {
            uuid: p.uuid.to_string(),
            account_uuid: p.account_uuid.to_string(),
            is_active: p.is_active,
            is_compute_billing_enabled: p.is_compute_billing_enabled,
            allowed_region_codes: json_list(&p.allowed_region_codes),
            created_at_ms: p.created_at.0,
            updated_at_ms: p.updated_at.0,
            max_pending_jobs: p.max_pending_jobs.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            max_stored_job_bytes: p.max_stored_job_bytes.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            rate_limit_rps: p.rate_limit_rps,
        }
    }
}

impl IntoRecord for ProfileRow {
    type Record = ConsumerProfile;

    fn into_record(self) -> StoreResult<ConsumerProfile> {
        const T: &str = "consumer_profiles";
        Ok(ConsumerProfile {
            object: "consumer_profile".into(),
            uuid: parse(T, "uuid", &self.uuid)?,
            account_uuid: parse(T, "account uuid", &self.account_uuid)?,
            is_active: self.is_active,
            is_compute_billing_enabled: self.is_compute_billing_enabled,
            allowed_region_codes: serde_json::from_str(&self.allowed_region_codes)
                .map_err(|e| corrupt(T)(format!("allowed_region_codes: {e}")))?,
            max_pending_jobs: self.max_pending_jobs.map(|v| u64::try_from(v).unwrap_or(0)),
            max_stored_job_bytes: self.max_stored_job_bytes.map(|v| u64::try_from(v).unwrap_or(0)),
            rate_limit_rps: self.rate_limit_rps,
            render_user_id: None,
            created_at: Timestamp(self.created_at_ms),
            updated_at: Timestamp(self.updated_at_ms),
            deleted_at: None,
        })
    }
}

/// The profile after `patch` (fields not in the patch are kept).
pub(crate) fn patched(mut p: ConsumerProfile, patch: &UpdateConsumerProfileRequest, now_ms: i64) -> ConsumerProfile {
    if let Some(v) = patch.is_active {
        p.is_active = v;
    }
    if let Some(v) = patch.is_compute_billing_enabled {
        p.is_compute_billing_enabled = v;
    }
    if let Some(v) = &patch.allowed_region_codes {
        p.allowed_region_codes = v.clone();
    }
    if let Some(v) = patch.max_pending_jobs {
        p.max_pending_jobs = v;
    }
    if let Some(v) = patch.max_stored_job_bytes {
        p.max_stored_job_bytes = v;
    }
    if let Some(v) = patch.rate_limit_rps {
        p.rate_limit_rps = v;
    }
    p.updated_at = Timestamp(now_ms);
    p
}

row! {
    /// An entry row.
    #[derive(Debug)]
    pub(crate) struct EntryRow in "ledger_entries" (read, write) {
        uuid: String,
        transaction_uuid: String,
        account_uuid: String,
        amount_micros: i64,
        kind: String,
        run_uuid: Option<String>,
        node_uuid: Option<String>,
        memo: Option<String>,
        created_at_ms: i64,
    }
}

impl IntoRecord for EntryRow {
    type Record = LedgerTransaction;

    fn into_record(self) -> StoreResult<LedgerTransaction> {
        const T: &str = "ledger_entries";
        Ok(LedgerTransaction {
            object: "compute_ledger_transaction".into(),
            uuid: parse(T, "uuid", &self.uuid)?,
            transaction_uuid: parse(T, "transaction uuid", &self.transaction_uuid)?,
            account_uuid: parse(T, "account uuid", &self.account_uuid)?,
            kind: LedgerKind::parse(&self.kind).ok_or_else(|| corrupt(T)(format!("bad kind {:?}", self.kind)))?,
            amount: micros_to_usd(self.amount_micros),
            amount_micros: self.amount_micros,
            currency: CURRENCY.into(),
            job_run_uuid: self.run_uuid.as_deref().map(|r| parse(T, "run uuid", r)).transpose()?,
            node_uuid: self.node_uuid.as_deref().map(|n| parse(T, "node uuid", n)).transpose()?,
            memo: self.memo,
            created_at: Timestamp(self.created_at_ms),
        })
    }
}

row! {
    /// A purchase row.
    #[derive(Debug)]
    pub(crate) struct PurchaseRow in "credit_purchases" (read, write) {
        uuid: String,
        account_uuid: String,
        profile_uuid: String,
        amount_micros: i64,
        status: String,
        provider: String,
        checkout_session_id: String,
        provider_state: String,
        redirect_url: Option<String>,
        cancel_url: Option<String>,
        memo: Option<String>,
        completed_at_ms: Option<i64>,
        created_at_ms: i64,
        updated_at_ms: i64,
    }
}

impl PurchaseRow {
    pub fn new(r: &CreditPurchaseRecord) -> Self {
        let p = &r.purchase;
        Self {
            uuid: p.uuid.to_string(),
            account_uuid: p.consumer_account_uuid.to_string(),
            profile_uuid: p.consumer_profile_uuid.to_string(),
            amount_micros: p.amount_micros,
            status: p.status.as_str().into(),
            provider: r.provider.clone(),
            checkout_session_id: p.checkout_session_id.clone(),
            provider_state: r.provider_state.clone(),
            redirect_url: r.redirect_url.clone(),
            cancel_url: r.cancel_url.clone(),
            memo: p.memo.clone(),
            completed_at_ms: p.completed_at.map(|t| t.0),
            created_at_ms: p.created_at.0,
            updated_at_ms: p.updated_at.0,
        }
    }
}

impl IntoRecord for PurchaseRow {
    type Record = CreditPurchaseRecord;

    fn into_record(self) -> StoreResult<CreditPurchaseRecord> {
        const T: &str = "credit_purchases";
        Ok(CreditPurchaseRecord {
            purchase: CreditPurchase {
                object: "compute_ledger_credit_purchase".into(),
                uuid: parse(T, "uuid", &self.uuid)?,
                amount: micros_to_usd(self.amount_micros),
                amount_micros: self.amount_micros,
                currency: CURRENCY.into(),
                checkout_session_id: self.checkout_session_id,
                status: CreditPurchaseStatus::parse(&self.status)
                    .ok_or_else(|| corrupt(T)(format!("bad status {:?}", self.status)))?,
                consumer_profile_uuid: parse(T, "profile uuid", &self.profile_uuid)?,
                consumer_account_uuid: parse(T, "account uuid", &self.account_uuid)?,
                render_user_id: None,
                memo: self.memo,
                completed_at: self.completed_at_ms.map(Timestamp),
                created_at: Timestamp(self.created_at_ms),
                updated_at: Timestamp(self.updated_at_ms),
            },
            provider: self.provider,
            provider_state: self.provider_state,
            redirect_url: self.redirect_url,
            cancel_url: self.cancel_url,
        })
    }
}

/// `ORDER BY` of a list, by direction.
pub(crate) fn order(newest_first: bool) -> &'static str {
    if newest_first { "ORDER BY created_at_ms DESC, uuid DESC" } else { "ORDER BY created_at_ms ASC, uuid ASC" }
}

/// A JSON array of the wire spellings, for `IN (SELECT value FROM json_each(..))`
/// (SQLite) and `= ANY(..)` (PostgreSQL); empty = no constraint.
pub(crate) fn purchase_statuses(statuses: &[CreditPurchaseStatus]) -> Vec<String> {
    statuses.iter().map(|s| s.as_str().to_string()).collect()
}

/// What a posting is about, for `Conflict`/`MissingReference` messages.
pub(crate) fn ledger_subject(posting: &LedgerPosting) -> Subject {
    let accounts: Vec<String> = posting.sides().iter().map(|s| s.account.to_string()).collect();
    Subject {
        row: format!("ledger transaction {}", posting.uuid),
        unique: posting.idempotency_key.as_ref().map(|k| format!("ledger transaction {k}")),
        reference: Some(format!("one of the accounts {}", accounts.join(", "))),
    }
}

/// What a purchase insert is about.
pub(crate) fn purchase_subject(id: CreditPurchaseId, account: AccountId) -> Subject {
    Subject {
        row: format!("credit purchase {id}"),
        unique: Some("credit purchase with that checkout session".into()),
        reference: Some(format!("account {account}")),
    }
}

/// Billing in the store: consumer profiles, the ledger, credit purchases. Money is
/// integer micro-USD. Ledger postings are balanced by construction (see
/// [`LedgerPosting`]), so the sum over all entries is always zero.
#[async_trait]
pub trait BillingStore {
    /// Inserts `profile` unless its account already has one; returns the account's
    /// profile either way (concurrent callers all get the same one).
    /// `MissingReference` if the account does not exist.
    async fn consumer_profile_ensure(&self, profile: &ConsumerProfile) -> StoreResult<ConsumerProfile>;
    /// Lists profiles in scope matching `filter`, by (created_at, uuid).
    async fn consumer_profile_list(
        &self,
        account: Option<AccountId>,
        filter: &ConsumerProfileFilter,
        paging: Paging,
    ) -> StoreResult<Page<ConsumerProfile>>;
    /// Every profile, unpaged (the scheduler's region allowlists).
    async fn consumer_profile_list_all(&self) -> StoreResult<Vec<ConsumerProfile>>;
    /// Applies the fields present in `patch`; the profile after, or `None` when it does
    /// not exist in scope.
    async fn consumer_profile_update(
        &self,
        account: Option<AccountId>,
        id: ConsumerProfileId,
        patch: &UpdateConsumerProfileRequest,
        now_ms: i64,
    ) -> StoreResult<Option<ConsumerProfile>>;
    /// Posts a transaction and all its entries atomically. `Ok(false)` when its
    /// idempotency key was already posted (nothing changes: the charge happened once).
    /// `MissingReference` when an entry names an unknown account (nothing is posted).
    async fn ledger_post(&self, posting: &LedgerPosting) -> StoreResult<bool>;
    /// [`BillingStore::ledger_post`] for many transactions in ONE database
    /// transaction: per posting, in the order given, whether it was posted (`false`:
    /// its idempotency key was posted already). An error posts nothing.
    async fn ledger_post_many(&self, postings: &[LedgerPosting]) -> StoreResult<Vec<bool>>;
    /// The sum of an account's entries, micro-USD (0 for an account without any).
    async fn ledger_balance(&self, account: AccountId) -> StoreResult<i64>;
    /// Every account's balance that has entries (the platform's included).
    async fn ledger_balances(&self) -> StoreResult<Vec<(AccountId, i64)>>;
    /// Entries in scope, by (created_at, uuid), newest first unless `paging` says otherwise.
    async fn ledger_list(&self, account: Option<AccountId>, paging: Paging) -> StoreResult<Page<LedgerTransaction>>;
    /// What `owner` earned from run charges on `node`: (micro-USD, entries).
    async fn ledger_node_earnings(&self, node: NodeId, owner: AccountId) -> StoreResult<(i64, u64)>;
    /// Runs that ran (started_at set) at a quoted rate (hourly_rate_usd set; runs from
    /// before billing have none), ended at or after `ended_since_ms`, and have no charge
    /// posted yet, oldest end first, at most `limit`.
    async fn run_list_unbilled(&self, ended_since_ms: i64, limit: u32) -> StoreResult<Vec<RunRecord>>;
    /// Creates a purchase; `Conflict` on a duplicate uuid or checkout session id.
    async fn credit_purchase_create(&self, purchase: &CreditPurchaseRecord) -> StoreResult<()>;
    /// Purchases in scope (statuses empty = all), by (created_at, uuid).
    async fn credit_purchase_list(
        &self,
        account: Option<AccountId>,
        statuses: &[CreditPurchaseStatus],
        paging: Paging,
    ) -> StoreResult<Page<CreditPurchaseRecord>>;
    /// One purchase in scope.
    async fn credit_purchase_fetch(
        &self,
        account: Option<AccountId>,
        key: &PurchaseKey,
    ) -> StoreResult<Option<CreditPurchaseRecord>>;
    /// Records the provider's state word (manual provider: what an operator decided).
    async fn credit_purchase_set_provider_state(
        &self,
        id: CreditPurchaseId,
        provider_state: &str,
        now_ms: i64,
    ) -> StoreResult<Option<CreditPurchaseRecord>>;
    /// Moves a PENDING purchase to `to` (compare-and-set) and, in the same
    /// transaction, posts `credit` when given. `None` when it is not PENDING (someone
    /// settled it first: nothing is posted) or does not exist.
    async fn credit_purchase_settle(
        &self,
        id: CreditPurchaseId,
        to: CreditPurchaseStatus,
        now_ms: i64,
        credit: Option<&LedgerPosting>,
    ) -> StoreResult<Option<CreditPurchaseRecord>>;
}
