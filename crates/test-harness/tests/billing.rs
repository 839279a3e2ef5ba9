//! Metering and balances through the API, with simulated nodes: runs charged to the
//! millisecond at the rate quoted at placement, node owners' earnings, the ledger
//! summing to zero across every account and the platform, the 402 refusal, the stop
//! at zero balance, and credit purchases settled by hand.

use std::time::Duration;

use gantry_client::{Client, ClientError, query};
use gantry_server::ServerConfig;
use gantry_test_harness::{TestContext, fast, wait_for};
use gantry_types::billing::{CreditPurchaseStatus, LedgerKind, LedgerTransaction};
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::list::ListResponse;
use gantry_types::money::{charge_for, share_of, usd_to_micros};
use gantry_types::node::Node;
use gantry_types::permissions::Preset;
use gantry_types::{AccountId, JobId};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// Prices chosen so that a run of a few hundred ms costs a readable amount: one
/// RTX 4090 is 36 USD/h = 10 micro-USD per ms; cores and RAM are 3.6 USD/h each.
fn priced(config: &mut ServerConfig) {
    fast(config);
    config.billing.gpu_prices = vec![("NVIDIA RTX 4090".into(), 36_000_000)];
    config.billing.default_gpu_price = 72_000_000;
    config.billing.cpu_core_price = 3_600_000;
    config.billing.ram_gb_price = 3_600_000;
    config.billing.operator_share_ppm = 750_000;
}

fn job(title: &str, sim_ms: u64) -> Value {
    json!({"title": title, "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1, "gpu_count": 1,
           "gpu_name": "RTX 4090", "min_ram_gb": 2,
           "parameters": {"type": "docker", "parameters": {"image": "busybox",
               "env": {"GANTRY_SIM_DURATION_MS": sim_ms.to_string()}}}})
}

async fn wait_status(client: &Client, id: JobId, want: JobStatus) -> Job {
    wait_for(&format!("job {id} to be {}", want.as_str()), WAIT, || async {
        client.get_job(id).await.ok().filter(|j| j.status == want)
    })
    .await
}

async fn runs_of(client: &Client, id: JobId) -> Vec<JobRun> {
    let q = query(&[("filter[job_uuid]", &id.to_string())]);
    let list: ListResponse<JobRun> = client.send(reqwest::Method::GET, "/v1/job-runs", &q, None).await.unwrap();
    list.data
}

/// Every ledger line the client may see, all pages.
async fn all_lines(client: &Client) -> Vec<LedgerTransaction> {
    let mut lines = Vec::new();
    for page in 1u64.. {
        let q = query(&[("limit", "50"), ("page", &page.to_string()), ("sort", "created_at")]);
        let resp = client.list_ledger_transactions(&q).await.unwrap();
        let got = resp.data.len();
        lines.extend(resp.data);
        if got == 0 || lines.len() as u64 >= resp.total {
            break;
        }
    }
    lines
}

async fn credit(ctx: &TestContext, account: AccountId, micros: i64) {
    gantry_server::admin::credit(ctx.store().as_ref(), account, micros, Some("test credit".into()), None)
        .await
        .unwrap();
}

async fn node_list(client: &Client) -> Vec<Node> {
    let list: ListResponse<Node> = client.send(reqwest::Method::GET, "/v1/nodes", &[], None).await.unwrap();
    list.data
}

#[tokio::test]
async fn runs_are_charged_to_the_millisecond_owners_earn_and_the_ledger_sums_to_zero() {
    metering(TestContext::start_with(priced).await).await;
}

#[tokio::test]
async fn metering_on_postgres() {
    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (_, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    metering(
        TestContext::start_with(|c| {
            priced(c);
            c.database_url = Some(url);
        })
        .await,
    )
    .await;
}

async fn metering(ctx: TestContext) {
    let nodes = ctx.sim_nodes(2, "2xNVIDIA RTX 4090:24,region=eu-west-1,cpus=8,ram=32").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let me = user.me().await.unwrap().uuid;
    credit(&ctx, me, 50_000_000).await;

    // Four runs of different lengths, running at once and ending close together.
    let mut jobs = Vec::new();
    for (i, ms) in [150u64, 250, 250, 400].into_iter().enumerate() {
        jobs.push(user.create_job(&job(&format!("metered {i}"), ms)).await.unwrap().uuid);
    }
    for id in &jobs {
        wait_status(&user, *id, JobStatus::Completed).await;
    }
    // 1 GPU (36) + 1 core (3.6) + 2 GB (7.2) = 46.8 USD/h, quoted at placement.
    let expected_rate = 46_800_000;
    let mut charges = Vec::new();
    for id in &jobs {
        let run = runs_of(&user, *id).await.remove(0);
        assert_eq!(run.hourly_rate_usd.map(usd_to_micros), Some(expected_rate), "{run:?}");
        let (started, ended) = (run.started_at_ms.unwrap(), run.ended_at_ms.unwrap());
        assert_eq!(run.duration_ms, Some(ended - started), "billable time is RUNNING to end");
        charges.push((run.uuid, run.node_uuid, charge_for(expected_rate, ended - started)));
    }
    // The charges are posted when the runs end; the sweep would catch any that were not.
    let lines = wait_for("every run charged", WAIT, || async {
        let lines = all_lines(&user).await;
        (lines.iter().filter(|l| l.kind == LedgerKind::RunCharge).count() == jobs.len()).then_some(lines)
    })
    .await;
    for (run, node, charge) in &charges {
        let line = lines.iter().find(|l| l.job_run_uuid == Some(*run)).expect("a line per run");
        assert_eq!((line.amount_micros, line.node_uuid), (-charge, Some(*node)), "{line:?}");
        assert!(*charge > 0);
    }
    let total: i64 = charges.iter().map(|c| c.2).sum();
    let balance = user.balance(me).await.unwrap();
    assert_eq!(
        (balance.posted_balance_micros, balance.available_balance_micros),
        (50_000_000 - total, 50_000_000 - total)
    );
    assert_eq!(balance.currency, "USD");

    // The node owner sees its earnings per node (its share of each charge); others do not.
    for node in node_list(&nodes.client).await {
        let seen = nodes.client.get_node(node.uuid).await.unwrap();
        let mine: Vec<i64> = charges.iter().filter(|c| c.1 == node.uuid).map(|c| share_of(c.2, 750_000)).collect();
        let earned = seen.earnings.expect("the owner sees earnings");
        assert_eq!((earned.total_micros, earned.billed_runs), (mine.iter().sum(), mine.len() as u64), "{node:?}");
    }
    let admin = ctx.new_account(Preset::Admin).await;
    let any_node = node_list(&nodes.client).await.remove(0);
    assert!(admin.get_node(any_node.uuid).await.unwrap().earnings.is_none(), "an operator is not the owner");

    // Every entry of every account and the platform sums to zero.
    let everything = all_lines(&admin).await;
    // The credit (consumer, platform) and each charge (consumer, owner, platform).
    assert_eq!(everything.len(), 2 + 3 * jobs.len());
    assert_eq!(everything.iter().map(|l| l.amount_micros).sum::<i64>(), 0);
    assert!(everything.iter().any(|l| l.account_uuid == gantry_store::PLATFORM_ACCOUNT));
    nodes.stop().await;
}

#[tokio::test]
async fn balances_are_private_and_amounts_are_checked() {
    let ctx = TestContext::start_with(priced).await;
    let (alice, bob) = (ctx.new_account(Preset::Consumer).await, ctx.new_account(Preset::Consumer).await);
    let bob_id = bob.me().await.unwrap().uuid;
    let err = alice.balance(bob_id).await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::NOT_FOUND), "{err}");
    let err = alice.balance(AccountId::new()).await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::NOT_FOUND));
    let fresh = bob.balance(bob_id).await.unwrap();
    assert_eq!((fresh.available_balance, fresh.available_balance_micros), (0.0, 0));

    for bad in [json!(-5), json!("abc"), json!(0), json!("1.0000001"), Value::Null] {
        let err = alice.create_credit_purchase(&json!({"amount": bad})).await.unwrap_err();
        let ClientError::Api { status, body } = &err else { panic!("{err}") };
        assert_eq!(*status, reqwest::StatusCode::BAD_REQUEST);
        assert_eq!(body.error.details[0].field, "amount", "{bad}: {err}");
    }
    let lines = alice.list_ledger_transactions(&query(&[("filter[kind]", "CREDIT")])).await.unwrap_err();
    assert_eq!(lines.status(), Some(reqwest::StatusCode::BAD_REQUEST));
}

#[tokio::test]
async fn credit_purchases_are_settled_by_an_operator_and_credited_once() {
    let ctx = TestContext::start_with(priced).await;
    let user = ctx.new_account(Preset::Consumer).await;
    let me = user.me().await.unwrap().uuid;
    let created = user
        .create_credit_purchase(&json!({"amount": 25, "redirect_url": "https://console.example/ok", "memo": "top-up"}))
        .await
        .unwrap();
    let p = &created.purchase;
    assert_eq!((p.status, p.amount_micros, p.consumer_account_uuid), (CreditPurchaseStatus::Pending, 25_000_000, me));
    assert!(created.session_id.starts_with("cs_manual_"));
    assert_eq!(created.checkout_session.id, created.session_id);
    // Not paid yet: reconcile leaves it PENDING.
    let still = user.reconcile_credit_purchase(&created.session_id).await.unwrap();
    assert_eq!(still.status, CreditPurchaseStatus::Pending);
    let err = user.settle_credit_purchase(p.uuid, "paid").await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::FORBIDDEN));
    let other = ctx.new_account(Preset::Consumer).await;
    let err = other.reconcile_credit_purchase(&created.session_id).await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::NOT_FOUND));

    let admin = ctx.new_account(Preset::Admin).await;
    let err = admin.settle_credit_purchase(p.uuid, "maybe").await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::BAD_REQUEST));
    let settled = admin.settle_credit_purchase(p.uuid, "paid").await.unwrap();
    assert_eq!(settled.status, CreditPurchaseStatus::Completed);
    assert!(settled.completed_at.is_some());
    // Settling or reconciling again changes nothing.
    admin.settle_credit_purchase(p.uuid, "expired").await.unwrap();
    let again = user.reconcile_credit_purchase(&created.session_id).await.unwrap();
    assert_eq!(again.status, CreditPurchaseStatus::Completed);
    assert_eq!(user.balance(me).await.unwrap().posted_balance_micros, 25_000_000);
    let listed = user.list_credit_purchases(&query(&[("filter[status]", "COMPLETED")])).await.unwrap();
    assert_eq!(listed.data.iter().map(|p| p.uuid).collect::<Vec<_>>(), [p.uuid]);

    // A second purchase that is never paid expires without credit.
    let unpaid = user.create_credit_purchase(&json!({"amount": "7.5"})).await.unwrap();
    let expired = admin.settle_credit_purchase(unpaid.purchase.uuid, "expired").await.unwrap();
    assert_eq!(expired.status, CreditPurchaseStatus::Expired);
    assert_eq!(user.balance(me).await.unwrap().posted_balance_micros, 25_000_000);
}

fn enforced(config: &mut ServerConfig) {
    priced(config);
    config.billing.enforce = true;
}

#[tokio::test]
async fn with_enforcement_a_job_that_cannot_pay_an_hour_is_refused_with_402() {
    let ctx = TestContext::start_with(enforced).await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let me = user.me().await.unwrap().uuid;
    // One hour of this job on the cheapest matching offer is 46.8 USD.
    credit(&ctx, me, 46_799_999).await;
    let err = user.create_job(&job("too poor", 100)).await.unwrap_err();
    let ClientError::Api { status, body } = &err else { panic!("{err}") };
    assert_eq!(*status, reqwest::StatusCode::PAYMENT_REQUIRED);
    assert_eq!(body.error.code, "payment_required");
    assert!(body.error.message.contains("46.800000 USD"), "{}", body.error.message);
    assert!(user.list_jobs(&[]).await.unwrap().data.is_empty(), "nothing was created");

    credit(&ctx, me, 1).await;
    let ok = user.create_job(&job("just enough", 50)).await.unwrap();
    wait_status(&user, ok.uuid, JobStatus::Completed).await;

    // An operator exempts a consumer from billing: then a zero balance is fine.
    let broke = ctx.new_account(Preset::Consumer).await;
    let profile = broke.list_consumer_profiles(&[]).await.unwrap().data.remove(0);
    assert!(broke.create_job(&job("refused", 50)).await.is_err());
    let admin = ctx.new_account(Preset::Admin).await;
    let changed =
        admin.update_consumer_profile(profile.uuid, &json!({"is_compute_billing_enabled": false})).await.unwrap();
    assert!(!changed.is_compute_billing_enabled);
    broke.create_job(&job("exempt", 50)).await.unwrap();
    nodes.stop().await;
}

#[tokio::test]
async fn with_enforcement_running_jobs_stop_when_the_balance_reaches_zero() {
    let ctx = TestContext::start_with(enforced).await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let me = user.me().await.unwrap().uuid;
    credit(&ctx, me, 47_000_000).await;
    let long = user.create_job(&job("long", 600_000)).await.unwrap();
    wait_status(&user, long.uuid, JobStatus::Running).await;
    // An operator's correction leaves about 3 s of this job's time (46.8 USD/h = 13 micro-USD/ms).
    let fix = gantry_store::LedgerPosting::new(LedgerKind::Adjustment, &[(me, -47_000_000 + 39_000)], 0);
    assert!(ctx.store().ledger_post(&fix).await.unwrap());

    let stopped = wait_status(&user, long.uuid, JobStatus::Cancelled).await;
    let reason = stopped.status_reason.unwrap_or_default();
    assert!(reason.contains("balance reached zero"), "{reason}");
    let run = runs_of(&user, long.uuid).await.remove(0);
    assert_eq!(run.status, JobRunStatus::Cancelled);
    let billed = run.duration_ms.unwrap();
    assert!(billed >= 2_000, "it ran until the money ran out: {billed} ms");
    let balance = wait_for("the stopped run charged", WAIT, || async {
        let lines = all_lines(&user).await;
        lines.iter().any(|l| l.job_run_uuid == Some(run.uuid)).then_some(())?;
        user.balance(me).await.ok()
    })
    .await;
    let charge = charge_for(46_800_000, billed);
    assert_eq!(balance.posted_balance_micros, 39_000 - charge);
    assert!(balance.posted_balance_micros <= 0, "{balance:?}");
    // And a new job is refused now.
    let err = user.create_job(&job("again", 50)).await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::PAYMENT_REQUIRED));
    nodes.stop().await;
}

#[tokio::test]
async fn the_billing_sweep_charges_a_run_that_ended_without_its_charge() {
    let ctx = TestContext::start_with(priced).await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let me = user.me().await.unwrap().uuid;
    let long = user.create_job(&job("crash in between", 600_000)).await.unwrap();
    wait_status(&user, long.uuid, JobStatus::Running).await;
    let run = runs_of(&user, long.uuid).await.remove(0);
    // The run ends in the store without going through the code that charges it, as
    // after a crash between the two writes.
    let end = gantry_store::RunUpdate {
        from: vec![JobRunStatus::Running],
        to: JobRunStatus::Failed,
        reason: Some("ended behind billing's back".into()),
        now_ms: run.started_at_ms.unwrap() + 1234,
        exit_code: None,
        node_urls: None,
        image_size_bytes: None,
    };
    let ended = ctx.store().run_update(run.uuid, &end).await.unwrap().unwrap();
    assert_eq!(ended.run.duration_ms, Some(1234));
    let line = wait_for("the sweep to charge the run", WAIT, || async {
        all_lines(&user).await.into_iter().find(|l| l.job_run_uuid == Some(run.uuid))
    })
    .await;
    assert_eq!(line.amount_micros, -charge_for(46_800_000, 1234));
    assert_eq!(user.balance(me).await.unwrap().posted_balance_micros, line.amount_micros);
    // Charging again (another sweep, another server) posts nothing more.
    let rec = ctx.store().run_fetch(None, run.uuid).await.unwrap().unwrap();
    assert!(!ctx.server().charge_run(&rec).await.unwrap());
    assert_eq!(all_lines(&user).await.iter().filter(|l| l.job_run_uuid == Some(run.uuid)).count(), 1);
    nodes.stop().await;
}
