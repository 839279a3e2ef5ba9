//! The billing reconciler: every activation
//!
//! - charges every run that ended without its charge posted (the charge is normally
//!   posted by whoever ends the run; this sweep covers a failure or a restart in
//!   between, and the store's unique key per run makes it exactly once);
//! - when billing is enforced, stops the jobs of every billed consumer whose
//!   available balance (posted minus what running runs have used) is at or below
//!   zero: each such job is cancelled with a `status_reason` saying why, its nodes
//!   stop the containers, and the runs' charges are posted as they end.
//!
//! Like the other reconcilers it rereads everything from the store each time, so a
//! restart loses nothing (the first sweep after a start looks at every ended run).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use gantry_types::AccountId;
use gantry_types::money::format_usd;

use crate::app::error::AppError;
use crate::app::ledger::{accrued, charge_run};
use crate::state::{AppState, now_ms};

/// Most unbilled runs charged per activation.
const SWEEP_LIMIT: u32 = 500;

/// How far back each sweep after the first looks for ended runs.
const SWEEP_WINDOW_MS: i64 = 60_000;

/// Runs activations until aborted.
pub async fn run(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.scheduling.timing.billing_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since = 0;
    loop {
        tick.tick().await;
        match activate(&state, since).await {
            Ok(next) => since = next,
            Err(e) if super::leader::fenced(&state, &e) => {}
            Err(e) => tracing::warn!(error = %crate::app::error::chain(&e), "billing pass failed"),
        }
    }
}

/// One activation; returns where the next sweep starts.
pub async fn activate(state: &AppState, since_ms: i64) -> Result<i64, AppError> {
    let now = now_ms();
    let unbilled = state.store.run_list_unbilled(since_ms, SWEEP_LIMIT).await?;
    for run in &unbilled {
        if charge_run(state, run).await? {
            tracing::info!(run = %run.run.uuid, "charged a run the billing sweep found unbilled");
        }
    }
    // A full sweep may have left more behind: start from the same point next time.
    let next = if unbilled.len() as u32 == SWEEP_LIMIT { since_ms } else { now - SWEEP_WINDOW_MS };
    if state.billing.config.enforce {
        stop_accounts_at_zero(state, now).await?;
    }
    Ok(next)
}

async fn stop_accounts_at_zero(state: &AppState, now: i64) -> Result<(), AppError> {
    let active = state.store.run_list_active_brief().await?;
    if active.is_empty() {
        return Ok(());
    }
    let mut jobs_of: HashMap<AccountId, BTreeSet<gantry_types::JobId>> = HashMap::new();
    for r in &active {
        jobs_of.entry(r.run.account_uuid).or_default().insert(r.run.job_uuid);
    }
    let exempt: BTreeSet<AccountId> = state
        .store
        .consumer_profile_list_all()
        .await?
        .into_iter()
        .filter(|p| !p.is_compute_billing_enabled)
        .map(|p| p.account_uuid)
        .collect();
    for (account, jobs) in jobs_of {
        if exempt.contains(&account) {
            continue;
        }
        let available = state.store.ledger_balance(account).await? - accrued(&active, account, now);
        if available > 0 {
            continue;
        }
        let reason = format!(
            "stopped: the account's balance reached zero (available {} USD); add credit and submit again",
            format_usd(available)
        );
        for job in jobs {
            let after = crate::app::jobs::cancel(state, None, job, Some(reason.clone())).await?;
            tracing::debug!(%account, job = %after.uuid, "stopping a job: balance reached zero");
        }
    }
    Ok(())
}
