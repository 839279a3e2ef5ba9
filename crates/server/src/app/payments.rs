//! Credit purchases (API.md §4.12) through a [`PaymentProvider`].
//!
//! Upstream sells credit through Stripe Checkout: create a purchase, pay on the
//! session's page, then reconcile by `checkout_session_id`. Gantry keeps that flow
//! and puts the payment processor behind a trait: [`ManualProvider`] (shipped) has no
//! payment page; an operator settles each purchase by hand (`PUT
//! /v1/compute/ledger/credit-purchases/{uuid}/settle`, after being paid by invoice or
//! transfer), which records the provider's verdict and reconciles. A card processor
//! implements the same two calls: open a checkout, and tell a session's outcome.
//!
//! Reconciling is idempotent: only a PENDING purchase changes, by compare-and-set,
//! and the credit is posted in the same store transaction (keyed `purchase:<uuid>`),
//! so a purchase is credited once however many reconciles race.

use async_trait::async_trait;
use gantry_store::{CreditPurchaseRecord, LedgerPosting, Page, PurchaseKey};
use gantry_types::billing::{
    CheckoutSession, CreateCreditPurchaseRequest, CreditPurchase, CreditPurchaseCreated, CreditPurchaseStatus,
    LedgerKind, parse_amount,
};
use gantry_types::list::Paging;
use gantry_types::money::{CURRENCY, micros_to_usd};
use gantry_types::{AccountId, FieldError, Timestamp};

use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// A payment session as the provider opened it.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkout {
    /// The session id clients reconcile with.
    pub session_id: String,
    /// Where the buyer pays, if the provider has a page.
    pub url: Option<String>,
    /// The provider's own state word, stored with the purchase.
    pub provider_state: String,
}

/// What the provider says about a session now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Not paid yet.
    Unpaid,
    /// Paid: credit it.
    Paid,
    /// Will never be paid.
    Expired,
}

/// A payment processor.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Its name, stored with each purchase.
    fn name(&self) -> &'static str;
    /// Opens a checkout for a new purchase (not yet stored).
    async fn open_checkout(&self, purchase: &CreditPurchase, success_url: Option<&str>) -> Result<Checkout, AppError>;
    /// The outcome of a stored purchase's session.
    async fn outcome(&self, purchase: &CreditPurchaseRecord) -> Result<PaymentOutcome, AppError>;
}

/// Settled by an operator: no payment page; the stored provider state (`open`,
/// `paid`, `expired`) is the operator's verdict.
pub struct ManualProvider;

#[async_trait]
impl PaymentProvider for ManualProvider {
    fn name(&self) -> &'static str {
        "manual"
    }

    async fn open_checkout(&self, purchase: &CreditPurchase, _: Option<&str>) -> Result<Checkout, AppError> {
        Ok(Checkout {
            session_id: format!("cs_manual_{}", purchase.uuid.simple()),
            url: None,
            provider_state: "open".into(),
        })
    }

    async fn outcome(&self, purchase: &CreditPurchaseRecord) -> Result<PaymentOutcome, AppError> {
        Ok(match purchase.provider_state.as_str() {
            "paid" => PaymentOutcome::Paid,
            "expired" => PaymentOutcome::Expired,
            _ => PaymentOutcome::Unpaid,
        })
    }
}

fn check_url(field: &str, url: &Option<String>, errors: &mut Vec<FieldError>) {
    if let Some(u) = url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        errors.push(FieldError::new(field, format!("must be an http(s) URL, got {u:?}")));
    }
}

/// Creates a PENDING purchase and opens its checkout.
pub async fn create(
    state: &AppState,
    account: AccountId,
    req: CreateCreditPurchaseRequest,
) -> Result<CreditPurchaseCreated, AppError> {
    let mut errors = Vec::new();
    let amount = parse_amount("amount", req.amount.as_ref()).map_err(|e| errors.push(e)).ok();
    check_url("redirect_url", &req.redirect_url, &mut errors);
    check_url("cancel_url", &req.cancel_url, &mut errors);
    let (Some(amount), true) = (amount, errors.is_empty()) else { return Err(errors.into()) };
    let profile = crate::app::profiles::ensure(state, account).await?;
    let now = now_ms();
    let mut purchase = CreditPurchase {
        object: "compute_ledger_credit_purchase".into(),
        uuid: uuid::Uuid::now_v7(),
        amount: micros_to_usd(amount),
        amount_micros: amount,
        currency: CURRENCY.into(),
        checkout_session_id: String::new(),
        status: CreditPurchaseStatus::Pending,
        consumer_profile_uuid: profile.uuid,
        consumer_account_uuid: account,
        render_user_id: None,
        memo: req.memo.filter(|m| !m.trim().is_empty()),
        completed_at: None,
        created_at: Timestamp(now),
        updated_at: Timestamp(now),
    };
    let checkout = state.billing.payments.open_checkout(&purchase, req.redirect_url.as_deref()).await?;
    purchase.checkout_session_id = checkout.session_id.clone();
    let record = CreditPurchaseRecord {
        purchase: purchase.clone(),
        provider: state.billing.payments.name().into(),
        provider_state: checkout.provider_state.clone(),
        redirect_url: req.redirect_url.clone(),
        cancel_url: req.cancel_url.clone(),
    };
    state.store.credit_purchase_create(&record).await?;
    let session = session(&record, checkout.url.clone());
    Ok(CreditPurchaseCreated {
        created_at: purchase.created_at,
        session_id: checkout.session_id,
        session_url: checkout.url,
        submitted_amount: purchase.amount,
        checkout_session: session,
        purchase,
    })
}

fn session(r: &CreditPurchaseRecord, url: Option<String>) -> CheckoutSession {
    let p = &r.purchase;
    let (payment_status, status) = match p.status {
        CreditPurchaseStatus::Pending => ("unpaid", "open"),
        CreditPurchaseStatus::Completed => ("paid", "complete"),
        CreditPurchaseStatus::Expired => ("unpaid", "expired"),
    };
    CheckoutSession {
        id: p.checkout_session_id.clone(),
        object: "checkout.session".into(),
        provider: r.provider.clone(),
        currency: CURRENCY.into(),
        mode: "payment".into(),
        payment_status: payment_status.into(),
        status: status.into(),
        amount_total: p.amount_micros,
        client_reference_id: p.uuid.to_string(),
        url,
        success_url: r.redirect_url.clone(),
        cancel_url: r.cancel_url.clone(),
    }
}

/// Purchases in scope.
pub async fn list(
    state: &AppState,
    scope: Option<AccountId>,
    statuses: &[CreditPurchaseStatus],
    paging: Paging,
) -> Result<Page<CreditPurchase>, AppError> {
    let page = state.store.credit_purchase_list(scope, statuses, paging).await?;
    Ok(Page { items: page.items.into_iter().map(|r| r.purchase).collect(), total: page.total })
}

/// The purchase behind a session, reconciled with the provider if still PENDING.
pub async fn reconcile(
    state: &AppState,
    scope: Option<AccountId>,
    session_id: &str,
) -> Result<CreditPurchase, AppError> {
    let key = PurchaseKey::Session(session_id.to_string());
    let record = state.store.credit_purchase_fetch(scope, &key).await?.ok_or_else(|| AppError::NotFound {
        message: format!("no credit purchase with checkout_session_id {session_id:?}"),
    })?;
    settle_with_provider(state, record).await
}

async fn settle_with_provider(state: &AppState, record: CreditPurchaseRecord) -> Result<CreditPurchase, AppError> {
    if record.purchase.status != CreditPurchaseStatus::Pending {
        return Ok(record.purchase);
    }
    let now = now_ms();
    let p = &record.purchase;
    let settled = match state.billing.payments.outcome(&record).await? {
        PaymentOutcome::Unpaid => return Ok(record.purchase),
        PaymentOutcome::Paid => {
            let credit = LedgerPosting::new(LedgerKind::Credit, &[(p.consumer_account_uuid, p.amount_micros)], now)
                .with_key(format!("purchase:{}", p.uuid))
                .with_memo(Some(format!("credit purchase {}", p.checkout_session_id)));
            state.store.credit_purchase_settle(p.uuid, CreditPurchaseStatus::Completed, now, Some(&credit)).await?
        }
        PaymentOutcome::Expired => {
            state.store.credit_purchase_settle(p.uuid, CreditPurchaseStatus::Expired, now, None).await?
        }
    };
    match settled {
        Some(after) => Ok(after.purchase),
        // Someone else settled it meanwhile: report what they decided.
        None => Ok(state
            .store
            .credit_purchase_fetch(None, &PurchaseKey::Uuid(p.uuid))
            .await?
            .map(|r| r.purchase)
            .unwrap_or_else(|| p.clone())),
    }
}

/// Operators, manual provider: records that a purchase was paid (or will not be),
/// then reconciles it.
pub async fn settle_manually(
    state: &AppState,
    id: uuid::Uuid,
    outcome: Option<&str>,
) -> Result<CreditPurchase, AppError> {
    let word = match outcome {
        Some("paid") => "paid",
        Some("expired") => "expired",
        other => return Err(AppError::field("outcome", format!("must be \"paid\" or \"expired\", got {other:?}"))),
    };
    let current = state
        .store
        .credit_purchase_fetch(None, &PurchaseKey::Uuid(id))
        .await?
        .ok_or_else(|| AppError::not_found("credit purchase", id))?;
    if current.provider != "manual" {
        return Err(AppError::field(
            "outcome",
            format!("purchase {id} is paid through {}, not settled by hand", current.provider),
        ));
    }
    if current.purchase.status != CreditPurchaseStatus::Pending {
        return Ok(current.purchase);
    }
    let after = state
        .store
        .credit_purchase_set_provider_state(id, word, now_ms())
        .await?
        .ok_or_else(|| AppError::not_found("credit purchase", id))?;
    settle_with_provider(state, after).await
}
