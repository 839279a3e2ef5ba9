//! Metering and the ledger: charging runs, balances, credits, and the payment check
//! at submission.
//!
//! A run is billed from RUNNING to its end (`started_at_ms`..`ended_at_ms`; time
//! spent ASSIGNED or PREPARING is free) at the `hourly_rate_usd` quoted when it was
//! placed, pro-rated by the millisecond and rounded down to the micro-USD. The charge
//! is posted when the run ends (by whoever ended it) and, should that fail or the
//! server stop in between, by the billing reconciler's sweep; the store's unique key
//! per run makes every attempt after the first a no-op. The consumer pays; the node's
//! owner earns `operator_share` of it; the platform keeps the rest.

use gantry_store::{LedgerPosting, Page, RunRecord};
use gantry_types::billing::{Balance, LedgerKind, LedgerTransaction, NodeEarnings};
use gantry_types::job_run::JobRunStatus;
use gantry_types::list::Paging;
use gantry_types::money::{CURRENCY, charge_for, micros_to_usd, share_of, usd_to_micros};
use gantry_types::{AccountId, NodeId};

use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// The rate a run was placed at, micro-USD per hour (0 when none was quoted).
pub fn run_rate(run: &RunRecord) -> i64 {
    run.run.hourly_rate_usd.map_or(0, usd_to_micros)
}

/// Posts the charge of an ended run (idempotent). Returns whether this call posted it.
pub async fn charge_run(state: &AppState, run: &RunRecord) -> Result<bool, AppError> {
    // A run placed before billing existed has no quoted rate: nothing to charge.
    let Some(span) = billed_span(run) else {
        return Ok(false);
    };
    let Some(node) = state.store.node_fetch(None, run.run.node_uuid).await? else {
        return Err(AppError::internal(format!("run {} is on unknown node {}", run.run.uuid, run.run.node_uuid)));
    };
    let (posting, charge) = run_charge(state, run, span, node.account_uuid);
    let posted = state.store.ledger_post(&posting).await?;
    if posted {
        state.metrics.charged(charge);
    }
    Ok(posted)
}

/// Charges a run that just ended, logging rather than failing the caller: the
/// reconciler's sweep retries what did not post.
pub async fn charge_ended(state: &AppState, run: &RunRecord) {
    if run.run.status.is_terminal()
        && let Err(e) = charge_run(state, run).await
    {
        tracing::warn!(run = %run.run.uuid, error = %crate::app::error::chain(&e), "charging an ended run failed; the billing sweep retries");
    }
}

/// [`charge_ended`] for many runs that ended together (a mass node loss): one read
/// of their nodes and one write for all their charges. Logs rather than fails, as
/// [`charge_ended`] does.
pub async fn charge_ended_many(state: &AppState, runs: &[RunRecord]) {
    let runs: Vec<(&RunRecord, (i64, i64))> = runs
        .iter()
        .filter(|r| r.run.status.is_terminal())
        .filter_map(|r| billed_span(r).map(|span| (r, span)))
        .collect();
    if runs.is_empty() {
        return;
    }
    let outcome = async {
        let mut nodes: Vec<NodeId> = runs.iter().map(|(r, _)| r.run.node_uuid).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let owners: std::collections::HashMap<NodeId, AccountId> =
            state.store.node_fetch_many(&nodes).await?.into_iter().map(|n| (n.uuid, n.account_uuid)).collect();
        // A run on an unknown node is left to the sweep, which reports it.
        let (postings, charges): (Vec<LedgerPosting>, Vec<i64>) = runs
            .iter()
            .filter_map(|(r, span)| owners.get(&r.run.node_uuid).map(|owner| run_charge(state, r, *span, *owner)))
            .unzip();
        let posted = state.store.ledger_post_many(&postings).await?;
        for (charge, _) in charges.into_iter().zip(posted).filter(|(_, posted)| *posted) {
            state.metrics.charged(charge);
        }
        Ok::<_, AppError>(())
    };
    if let Err(e) = outcome.await {
        tracing::warn!(runs = runs.len(), error = %crate::app::error::chain(&e), "charging ended runs failed; the billing sweep retries");
    }
}

/// The (start, end) a run is billed for, when it has a charge to post: it ran,
/// ended, and was quoted a rate (a run placed before billing existed was not).
fn billed_span(run: &RunRecord) -> Option<(i64, i64)> {
    match (run.run.started_at_ms, run.run.ended_at_ms, run.run.hourly_rate_usd) {
        (Some(started), Some(ended), Some(_)) => Some((started, ended)),
        _ => None,
    }
}

/// The posting of a run billed for `(started, ended)` on a node of `owner`, and
/// what it charges.
fn run_charge(
    state: &AppState,
    run: &RunRecord,
    (started, ended): (i64, i64),
    owner: AccountId,
) -> (LedgerPosting, i64) {
    let charge = charge_for(run_rate(run), ended - started);
    let earned = share_of(charge, state.billing.config.operator_share_ppm);
    let posting =
        LedgerPosting::new(LedgerKind::RunCharge, &[(run.run.account_uuid, -charge), (owner, earned)], now_ms())
            .for_run(run.run.uuid, run.run.node_uuid)
            .with_memo(Some(format!("{} ms at {} USD/h", ended - started, micros_to_usd(run_rate(run)))));
    (posting, charge)
}

/// What running runs of `account` have used so far and not yet been charged.
pub fn accrued(active: &[RunRecord], account: AccountId, now: i64) -> i64 {
    active
        .iter()
        .filter(|r| r.run.account_uuid == account && r.run.status == JobRunStatus::Running)
        .filter_map(|r| r.run.started_at_ms.map(|s| charge_for(run_rate(r), now.saturating_sub(s))))
        .fold(0_i64, |sum, c| sum.checked_add(c).unwrap_or(i64::MAX))
}

/// An account's balance (available = posted minus accrued usage).
pub async fn balance(state: &AppState, account: AccountId) -> Result<Balance, AppError> {
    let posted = state.store.ledger_balance(account).await?;
    let active = state.store.run_list_active_brief().await?;
    let used = accrued(&active, account, now_ms());
    let available = posted.checked_sub(used).ok_or_else(|| {
        AppError::internal(format!("balance of {account} out of range: posted {posted}, accrued {used}"))
    })?;
    Ok(Balance {
        object: "account_balance".into(),
        account_uuid: account,
        available_balance: micros_to_usd(available),
        currency: CURRENCY.into(),
        available_balance_micros: available,
        posted_balance_micros: posted,
        accrued_usage_micros: used,
    })
}

/// Grants `micros` (> 0) of credit to an account (operators; the platform is the
/// counterparty). `idempotency_key` makes a retried grant a no-op.
pub async fn credit(
    store: &dyn gantry_store::Store,
    account: AccountId,
    micros: i64,
    memo: Option<String>,
    idempotency_key: Option<String>,
) -> Result<bool, AppError> {
    if micros <= 0 {
        return Err(AppError::field("amount", "must be greater than 0"));
    }
    if store.account_fetch(account).await?.is_none() {
        return Err(AppError::not_found("account", account));
    }
    // Balances stay within what every client reads exactly (and far from the
    // database's 64-bit sums): a credit that would pass that is refused, not wrapped.
    let posted = store.ledger_balance(account).await?;
    if posted.checked_add(micros).is_none_or(|b| b > gantry_types::num::MAX_SAFE_INTEGER) {
        return Err(AppError::field(
            "amount",
            format!(
                "would take the balance past {} USD",
                gantry_types::money::format_usd(gantry_types::num::MAX_SAFE_INTEGER)
            ),
        ));
    }
    let mut posting = LedgerPosting::new(LedgerKind::Credit, &[(account, micros)], now_ms()).with_memo(memo);
    if let Some(key) = idempotency_key {
        posting = posting.with_key(key);
    }
    Ok(store.ledger_post(&posting).await?)
}

/// The ledger lines in scope.
pub async fn list(
    state: &AppState,
    scope: Option<AccountId>,
    paging: Paging,
) -> Result<Page<LedgerTransaction>, AppError> {
    Ok(state.store.ledger_list(scope, paging).await?)
}

/// What a node earned its owner.
pub async fn node_earnings(state: &AppState, node: NodeId, owner: AccountId) -> Result<NodeEarnings, AppError> {
    let (micros, runs) = state.store.ledger_node_earnings(node, owner).await?;
    Ok(NodeEarnings {
        total_usd: micros_to_usd(micros),
        total_micros: micros,
        currency: CURRENCY.into(),
        billed_runs: runs,
    })
}

/// At submission: refuse (403) an inactive consumer and, when billing is enforced
/// for them, refuse (402) a job whose cheapest matching offer's hour the available
/// balance cannot pay. Returns the consumer's profile (its quotas apply next).
pub async fn admit(
    state: &AppState,
    account: AccountId,
    spec: &gantry_types::job::JobSpec,
) -> Result<gantry_types::billing::ConsumerProfile, AppError> {
    let profile = crate::app::profiles::cached(state, account).await?;
    if !profile.is_active {
        return Err(AppError::Forbidden {
            code: "consumer_profile_inactive",
            message: format!("consumer profile {} is inactive; an operator can reactivate it", profile.uuid),
        });
    }
    if !state.billing.config.enforce || !profile.is_compute_billing_enabled {
        return Ok(profile);
    }
    let quote = crate::app::offers::cheapest_quote(state, spec, &profile.allowed_region_codes).await?;
    let available = balance(state, account).await?.available_balance_micros;
    if available < quote {
        return Err(AppError::PaymentRequired {
            message: format!(
                "insufficient balance: {} USD available, but one hour of the cheapest matching offer costs {} USD; \
                 add credit (POST /v1/compute/ledger/credit-purchases) and submit again",
                gantry_types::money::format_usd(available),
                gantry_types::money::format_usd(quote)
            ),
        });
    }
    Ok(profile)
}
