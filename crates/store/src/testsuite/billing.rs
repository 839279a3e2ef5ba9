//! Conformance checks for billing: consumer profiles (one per account, scoped
//! updates), the double-entry ledger (balanced, idempotent per key, atomic), the
//! sweep of unbilled runs, node earnings, and credit purchases (settled once).

use std::sync::Arc;

use gantry_types::billing::{
    ConsumerProfile, ConsumerProfileFilter, CreditPurchase, CreditPurchaseStatus, LedgerKind,
    UpdateConsumerProfileRequest,
};
use gantry_types::job_run::JobRunStatus;
use gantry_types::list::Paging;
use gantry_types::{AccountId, Timestamp};

use super::cluster::{new_job, new_node, place, run_record, status_change};
use super::{StoreFixture, T0, new_account, oldest_first};
use crate::{CreditPurchaseRecord, LedgerPosting, PLATFORM_ACCOUNT, PurchaseKey, Store, StoreError};

fn profile(account: AccountId, at: i64) -> ConsumerProfile {
    ConsumerProfile {
        object: "consumer_profile".into(),
        uuid: gantry_types::ConsumerProfileId::new(),
        account_uuid: account,
        is_active: true,
        is_compute_billing_enabled: true,
        allowed_region_codes: vec![],
        max_pending_jobs: None,
        max_stored_job_bytes: None,
        rate_limit_rps: None,
        render_user_id: None,
        created_at: Timestamp(at),
        updated_at: Timestamp(at),
        deleted_at: None,
    }
}

fn credit(account: AccountId, micros: i64, at: i64) -> LedgerPosting {
    LedgerPosting::new(LedgerKind::Credit, &[(account, micros)], at)
}

/// The sum over every account's balance, the platform's included.
async fn ledger_sum(store: &dyn Store) -> i64 {
    store.ledger_balances().await.expect("balances").iter().map(|b| b.1).sum()
}

/// One profile per account however often it is ensured; updates patch only the
/// given fields and are scoped; an unknown account is a missing reference.
pub async fn consumer_profile_ensure_update_and_scope(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let first = store.consumer_profile_ensure(&profile(a, T0)).await.unwrap();
    let again = store.consumer_profile_ensure(&profile(a, T0 + 5)).await.unwrap();
    assert_eq!(first, again, "the first profile stays");
    let pb = store.consumer_profile_ensure(&profile(b, T0 + 1)).await.unwrap();
    assert!(matches!(
        store.consumer_profile_ensure(&profile(AccountId::new(), T0)).await,
        Err(StoreError::MissingReference { .. })
    ));

    let mine =
        store.consumer_profile_list(Some(a), &ConsumerProfileFilter::default(), Paging::default()).await.unwrap();
    assert_eq!((mine.total, mine.items), (1, vec![first.clone()]));
    let all = store.consumer_profile_list(None, &ConsumerProfileFilter::default(), oldest_first(50)).await.unwrap();
    assert_eq!(all.items, vec![first.clone(), pb.clone()]);
    let by_uuid = ConsumerProfileFilter { uuids: vec![pb.uuid], ..Default::default() };
    assert_eq!(store.consumer_profile_list(None, &by_uuid, Paging::default()).await.unwrap().items, vec![pb.clone()]);
    let not_billed = ConsumerProfileFilter { is_compute_billing_enabled: Some(false), ..Default::default() };
    assert_eq!(store.consumer_profile_list(None, &not_billed, Paging::default()).await.unwrap().total, 0);

    let patch = UpdateConsumerProfileRequest {
        allowed_region_codes: Some(vec!["eu-west-1".into(), "us-east-1".into()]),
        is_compute_billing_enabled: Some(false),
        is_active: None,
        ..Default::default()
    };
    assert_eq!(store.consumer_profile_update(Some(b), first.uuid, &patch, T0 + 9).await.unwrap(), None);
    let after = store.consumer_profile_update(Some(a), first.uuid, &patch, T0 + 9).await.unwrap().unwrap();
    assert_eq!(after.allowed_region_codes, ["eu-west-1", "us-east-1"]);
    assert!(!after.is_compute_billing_enabled && after.is_active);
    assert_eq!((after.created_at, after.updated_at), (first.created_at, Timestamp(T0 + 9)));
    let listed = store.consumer_profile_list_all().await.unwrap();
    assert_eq!(listed, vec![after, pb]);
}

/// Credits move the account and the platform in opposite directions; a repeated
/// idempotency key posts nothing; an unknown account posts nothing at all.
pub async fn ledger_post_balances_and_is_idempotent(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    assert_eq!(store.ledger_balance(a).await.unwrap(), 0);
    let grant = credit(a, 25_000_000, T0 + 1).with_key("grant-1".into()).with_memo(Some("welcome".into()));
    assert!(store.ledger_post(&grant).await.unwrap());
    assert!(!store.ledger_post(&credit(a, 25_000_000, T0 + 2).with_key("grant-1".into())).await.unwrap());
    assert!(store.ledger_post(&credit(b, 1_500_000, T0 + 3)).await.unwrap());
    // An adjustment between two accounts needs no platform side.
    let fix = LedgerPosting::new(LedgerKind::Adjustment, &[(a, -500_000), (b, 500_000)], T0 + 4);
    assert_eq!(fix.sides().len(), 2);
    assert!(store.ledger_post(&fix).await.unwrap());

    assert_eq!(store.ledger_balance(a).await.unwrap(), 24_500_000);
    assert_eq!(store.ledger_balance(b).await.unwrap(), 2_000_000);
    assert_eq!(store.ledger_balance(PLATFORM_ACCOUNT).await.unwrap(), -26_500_000);
    assert_eq!(ledger_sum(store).await, 0);

    let missing = credit(AccountId::new(), 1, T0 + 5);
    assert!(matches!(store.ledger_post(&missing).await, Err(StoreError::MissingReference { .. })));
    assert_eq!(ledger_sum(store).await, 0, "nothing of the failed posting remains");
    assert_eq!(store.ledger_balance(PLATFORM_ACCOUNT).await.unwrap(), -26_500_000);

    let mine = store.ledger_list(Some(a), Paging::default()).await.unwrap();
    assert_eq!(mine.total, 2);
    assert_eq!(mine.items.iter().map(|e| e.amount_micros).collect::<Vec<_>>(), [-500_000, 25_000_000], "newest first");
    assert_eq!(mine.items[1].memo.as_deref(), Some("welcome"));
    assert_eq!(mine.items[1].transaction_uuid, grant.uuid);
    assert!(mine.items.iter().all(|e| e.account_uuid == a));
    let everyone = store.ledger_list(None, oldest_first(50)).await.unwrap();
    assert_eq!(everyone.total, 6);
    assert_eq!(everyone.items.iter().map(|e| e.amount_micros).sum::<i64>(), 0);
}

/// Ended runs that ran and have no charge are found; a charge takes them out of the
/// sweep; earnings sum the owner's side per node.
pub async fn run_list_unbilled_and_node_earnings(store: &dyn Store) {
    let (consumer, owner) = (new_account(store, "Consumer").await, new_account(store, "Owner").await);
    let node = new_node(store, owner, T0, 0).await;
    let mut runs = Vec::new();
    for i in 0..4 {
        let job = new_job(store, consumer, T0 + 1 + i, 0).await;
        let mut run = run_record(&job, &node, 0, 0, T0 + 10);
        if i == 3 {
            run.run.hourly_rate_usd = None; // placed before billing existed
        }
        assert!(place(store, job.uuid, std::slice::from_ref(&run), T0 + 10).await);
        runs.push(run.run.uuid);
    }
    // Run 0 ran and ended; run 1 ended without running (not billable); run 2 runs;
    // run 3 ran and ended but has no quoted rate (not billable).
    let running = status_change(&[JobRunStatus::Assigned], JobRunStatus::Running, T0 + 1000);
    for i in [0, 2, 3] {
        store.run_update(runs[i], &running).await.unwrap().unwrap();
    }
    let end = status_change(&[JobRunStatus::Running, JobRunStatus::Assigned], JobRunStatus::Completed, T0 + 4600);
    let ended = store.run_update(runs[0], &end).await.unwrap().unwrap();
    store.run_update(runs[1], &end).await.unwrap().unwrap();
    store.run_update(runs[3], &end).await.unwrap().unwrap();
    assert_eq!(ended.run.duration_ms, Some(3600));

    let unbilled = store.run_list_unbilled(0, 100).await.unwrap();
    assert_eq!(unbilled.iter().map(|r| r.run.uuid).collect::<Vec<_>>(), [runs[0]]);
    assert!(store.run_list_unbilled(T0 + 4601, 100).await.unwrap().is_empty(), "ended before the window");

    let charge = LedgerPosting::new(LedgerKind::RunCharge, &[(consumer, -1000), (owner, 800)], T0 + 4601)
        .for_run(runs[0], node.uuid);
    assert!(store.ledger_post(&charge).await.unwrap());
    assert!(store.run_list_unbilled(0, 100).await.unwrap().is_empty());
    assert_eq!(store.ledger_node_earnings(node.uuid, owner).await.unwrap(), (800, 1));
    assert_eq!(store.ledger_node_earnings(node.uuid, consumer).await.unwrap(), (0, 0));
    assert_eq!(store.ledger_balance(PLATFORM_ACCOUNT).await.unwrap(), 200);
    assert_eq!(ledger_sum(store).await, 0);
}

fn purchase(
    account: AccountId,
    profile: gantry_types::ConsumerProfileId,
    micros: i64,
    at: i64,
) -> CreditPurchaseRecord {
    let uuid = gantry_types::CreditPurchaseId::new();
    CreditPurchaseRecord {
        purchase: CreditPurchase {
            object: "compute_ledger_credit_purchase".into(),
            uuid,
            amount: micros as f64 / 1e6,
            amount_micros: micros,
            currency: "USD".into(),
            checkout_session_id: format!("cs_manual_{}", uuid.0.simple()),
            status: CreditPurchaseStatus::Pending,
            consumer_profile_uuid: profile,
            consumer_account_uuid: account,
            render_user_id: None,
            memo: Some("top-up".into()),
            completed_at: None,
            created_at: Timestamp(at),
            updated_at: Timestamp(at),
        },
        provider: "manual".into(),
        provider_state: "open".into(),
        redirect_url: Some("https://console.example/done".into()),
        cancel_url: None,
    }
}

/// A purchase is settled once: the first settle credits, later ones change nothing;
/// reads are scoped; a session id is unique.
pub async fn credit_purchase_settles_once(store: &dyn Store) {
    let (a, b) = (new_account(store, "A").await, new_account(store, "B").await);
    let p = store.consumer_profile_ensure(&profile(a, T0)).await.unwrap();
    let rec = purchase(a, p.uuid, 10_000_000, T0 + 1);
    store.credit_purchase_create(&rec).await.unwrap();
    let mut dup = purchase(a, p.uuid, 1, T0 + 2);
    dup.purchase.checkout_session_id = rec.purchase.checkout_session_id.clone();
    assert!(matches!(store.credit_purchase_create(&dup).await, Err(StoreError::Conflict { .. })));
    let by_session = PurchaseKey::Session(rec.purchase.checkout_session_id.clone());
    assert_eq!(store.credit_purchase_fetch(Some(a), &by_session).await.unwrap(), Some(rec.clone()));
    assert_eq!(store.credit_purchase_fetch(Some(b), &by_session).await.unwrap(), None);

    let paid = store.credit_purchase_set_provider_state(rec.purchase.uuid, "paid", T0 + 3).await.unwrap().unwrap();
    assert_eq!(paid.provider_state, "paid");
    let posting = credit(a, 10_000_000, T0 + 4).with_key(format!("purchase:{}", rec.purchase.uuid));
    let done = store
        .credit_purchase_settle(rec.purchase.uuid, CreditPurchaseStatus::Completed, T0 + 4, Some(&posting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.purchase.status, done.purchase.completed_at),
        (CreditPurchaseStatus::Completed, Some(Timestamp(T0 + 4)))
    );
    let again = credit(a, 10_000_000, T0 + 5);
    assert_eq!(
        store
            .credit_purchase_settle(rec.purchase.uuid, CreditPurchaseStatus::Expired, T0 + 5, Some(&again))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.ledger_balance(a).await.unwrap(), 10_000_000, "credited exactly once");

    let pending =
        store.credit_purchase_list(Some(a), &[CreditPurchaseStatus::Pending], Paging::default()).await.unwrap();
    assert_eq!(pending.total, 0);
    let all = store.credit_purchase_list(None, &[], Paging::default()).await.unwrap();
    assert_eq!(all.items.iter().map(|r| r.purchase.uuid).collect::<Vec<_>>(), [rec.purchase.uuid]);
}

/// Many runs end at once and every actor charges every run, concurrently: each run
/// is charged exactly once, so the consumer's balance is exactly minus the sum of
/// the charges and the ledger still sums to zero.
pub async fn ledger_concurrent_charges(fixture: &mut dyn StoreFixture) {
    const RUNS: usize = 40;
    const ACTORS: usize = 4;
    let store = fixture.store();
    let (consumer, owner) = (new_account(&*store, "Consumer").await, new_account(&*store, "Owner").await);
    assert!(store.ledger_post(&credit(consumer, 1_000_000, T0)).await.unwrap());
    let node = new_node(&*store, owner, T0, 0).await;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let job = new_job(&*store, consumer, T0 + 1 + i as i64, 0).await;
        let run = run_record(&job, &node, 0, 0, T0 + 100);
        assert!(place(&*store, job.uuid, std::slice::from_ref(&run), T0 + 100).await);
        runs.push(run.run.uuid);
    }
    let tasks: Vec<_> = (0..ACTORS * RUNS)
        .map(|i| {
            let store = Arc::clone(&store);
            let run = runs[i % RUNS];
            let amount = 1000 + (i % RUNS) as i64;
            tokio::spawn(async move {
                let posting =
                    LedgerPosting::new(LedgerKind::RunCharge, &[(consumer, -amount), (owner, amount / 2)], T0 + 200)
                        .for_run(run, node.uuid);
                store.ledger_post(&posting).await
            })
        })
        .collect();
    let mut posted = 0;
    for t in tasks {
        posted += usize::from(t.await.expect("task").expect("post"));
    }
    assert_eq!(posted, RUNS, "each run charged by exactly one actor");
    let charges: i64 = (0..RUNS as i64).map(|i| 1000 + i).sum();
    assert_eq!(store.ledger_balance(consumer).await.unwrap(), 1_000_000 - charges);
    let earned: i64 = (0..RUNS as i64).map(|i| (1000 + i) / 2).sum();
    assert_eq!(store.ledger_node_earnings(node.uuid, owner).await.unwrap(), (earned, RUNS as u64));
    assert_eq!(ledger_sum(&*store).await, 0);
}

/// The ledger and profiles survive a restart.
pub async fn billing_survives_reopen(fixture: &mut dyn StoreFixture) {
    let store = fixture.store();
    let a = new_account(&*store, "A").await;
    let p = store.consumer_profile_ensure(&profile(a, T0)).await.unwrap();
    assert!(store.ledger_post(&credit(a, 42, T0 + 1)).await.unwrap());
    drop(store);
    fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.ledger_balance(a).await.unwrap(), 42);
    assert_eq!(store.consumer_profile_list_all().await.unwrap(), vec![p]);
}
