//! `/metrics` scraped from a live server: the text passes a real Prometheus parser
//! (`promtool check metrics`, which also lints it), values move when work happens (submit → request counter, jobs gauge, placement
//! histogram, runs finished, billing), labels are route templates and never raw paths
//! or accounts, and a scrape reads only memory (the gauges come from a background
//! refresh). Also: the operator kit's alert rules pass `promtool check rules`.
//!
//! promtool comes from Debian's `prometheus` package. `.ci/run` installs it and sets
//! `GANTRY_REQUIRE_PROMTOOL=1`, so CI fails rather than skips without it; a local run
//! without promtool skips only those checks, saying so.

use std::path::Path;
use std::time::Duration;

use gantry_server::ServerConfig;
use gantry_test_harness::prom::{Sample, promtool, run_promtool, samples, value};
use gantry_test_harness::{TestContext, batch_job, fast, wait_for};
use gantry_types::job::JobStatus;
use gantry_types::permissions::Preset;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn scrape_text(ctx: &TestContext) -> String {
    let resp = reqwest::get(format!("{}/metrics", ctx.base_url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    resp.text().await.unwrap()
}

async fn scrape(ctx: &TestContext) -> Vec<Sample> {
    samples(&scrape_text(ctx).await)
}

fn fast_gpu_prices(config: &mut ServerConfig) {
    fast(config);
    // Terminal job statuses are recounted every 15th refresh: 1.5 s here.
    config.metrics_refresh_every = Duration::from_millis(100);
    config.billing.gpu_prices = vec![("NVIDIA RTX 4090".into(), 36_000_000)];
}

#[tokio::test]
async fn a_live_scrape_parses_and_moves_with_work() {
    work_moves_metrics(TestContext::start_with(fast_gpu_prices).await).await;
}

#[tokio::test]
async fn a_live_scrape_on_postgres() {
    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (_, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    work_moves_metrics(
        TestContext::start_with(|c| {
            fast_gpu_prices(c);
            c.database_url = Some(url);
        })
        .await,
    )
    .await;
}

async fn work_moves_metrics(ctx: TestContext) {
    let promtool = promtool();
    let user = ctx.new_account(Preset::Consumer).await;
    let before = scrape(&ctx).await;
    let created = |s: &[Sample]| {
        value(s, "gantry_http_requests_total", &[("route", "/v1/jobs"), ("method", "POST"), ("status", "201")])
    };
    assert_eq!(created(&before), 0.0);

    // No node yet: the job waits, and the gauges (refreshed in the background) show it.
    let job = user.create_job(&batch_job("metered")).await.unwrap();
    let queued = wait_for("the jobs gauge to count the pending job", WAIT, || async {
        let s = scrape(&ctx).await;
        (value(&s, "gantry_jobs", &[("status", "PENDING")]) == 1.0).then_some(s)
    })
    .await;
    assert_eq!(created(&queued), 1.0, "the submission is counted under its route template");
    assert!(
        value(&queued, "gantry_http_request_duration_seconds_count", &[("route", "/v1/jobs"), ("method", "POST")])
            >= 1.0
    );
    let age = wait_for("the oldest pending job to age", WAIT, || async {
        let s = scrape(&ctx).await;
        let age = value(&s, "gantry_pending_jobs_oldest_age_seconds", &[]);
        (age > 0.0).then_some(age)
    })
    .await;
    assert!(age < 60.0, "{age}");

    // A path with an id is labelled by its template, an unknown path as "unmatched":
    // neither the id nor the raw path reaches the exposition.
    user.get_job(job.uuid).await.unwrap();
    let raw = reqwest::get(format!("{}/no/such/path/{}", ctx.base_url, job.uuid)).await.unwrap();
    assert_eq!(raw.status(), 404);
    let text = scrape_text(&ctx).await;
    assert!(!text.contains(&job.uuid.to_string()), "a raw id leaked into /metrics");
    assert!(!text.contains("/no/such/path"), "a raw path leaked into /metrics");
    assert!(!text.contains(&user.me().await.unwrap().uuid.to_string()), "an account leaked into /metrics");
    let s = scrape(&ctx).await;
    assert_eq!(
        value(&s, "gantry_http_requests_total", &[("route", "/v1/jobs/{uuid}"), ("method", "GET"), ("status", "200")]),
        1.0
    );
    assert_eq!(value(&s, "gantry_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0);

    // A node with a GPU arrives: the job is placed (placement histogram), runs, and
    // finishes (runs finished, billing); the node and GPU gauges follow.
    let nodes = ctx.sim_nodes(1, "2xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let done = wait_for("the run to finish and be counted", WAIT, || async {
        let s = scrape(&ctx).await;
        (value(&s, "gantry_job_runs_finished_total", &[("outcome", "completed")]) == 1.0
            && value(&s, "gantry_jobs", &[("status", "PENDING")]) == 0.0
            && value(&s, "gantry_billing_charged_usd_total", &[]) > 0.0)
            .then_some(s)
    })
    .await;
    assert!(value(&done, "gantry_placement_latency_seconds_count", &[]) >= 1.0);
    assert!(value(&done, "gantry_scheduler_pass_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(
        value(&done, "gantry_job_runs_finished_total", &[("outcome", "failed")]),
        0.0,
        "every outcome is exported"
    );
    assert!(value(&done, "gantry_store_commits_total", &[]) >= 1.0);
    assert!(value(&done, "gantry_store_writes_total", &[]) >= value(&done, "gantry_store_commits_total", &[]));
    if ctx.store().backend() == "sqlite" {
        assert_eq!(
            value(&done, "gantry_store_commit_duration_seconds_count", &[]),
            value(&done, "gantry_store_commits_total", &[]),
            "every SQLite commit is timed"
        );
    }
    let gpus = wait_for("the node gauges", WAIT, || async {
        let s = scrape(&ctx).await;
        (value(&s, "gantry_nodes", &[("status", "ONLINE")]) == 1.0
            && value(&s, "gantry_jobs", &[("status", "COMPLETED")]) == 1.0)
            .then_some(s)
    })
    .await;
    assert_eq!(
        value(&gpus, "gantry_node_gpus", &[("state", "free")]) + value(&gpus, "gantry_node_gpus", &[("state", "used")]),
        2.0
    );

    // The whole exposition passes promtool's parser and linter.
    if let Some(promtool) = &promtool {
        run_promtool(promtool, &["check", "metrics"], &scrape_text(&ctx).await).await;
    }
    nodes.stop().await;
}

/// A scrape encodes memory only: with the background refresh made rare, a new job
/// does not show in the gauges until a refresh runs, however often `/metrics` is
/// read (a scrape that counted jobs itself would see it at once).
#[tokio::test]
async fn a_scrape_never_reads_the_jobs_table() {
    let ctx = TestContext::start_with(|c| c.metrics_refresh_every = Duration::from_secs(3600)).await;
    let user = ctx.new_account(Preset::Consumer).await;
    // The first refresh runs at start; wait until it has.
    wait_for("the first refresh", WAIT, || async {
        (value(&scrape(&ctx).await, "gantry_metrics_gauges_refreshed_timestamp_seconds", &[]) > 0.0).then_some(())
    })
    .await;
    for i in 0..3 {
        user.create_job(&batch_job(&format!("queued {i}"))).await.unwrap();
    }
    for _ in 0..5 {
        assert_eq!(value(&scrape(&ctx).await, "gantry_jobs", &[("status", "PENDING")]), 0.0);
    }
    ctx.server().refresh_metrics().await.unwrap();
    assert_eq!(value(&scrape(&ctx).await, "gantry_jobs", &[("status", "PENDING")]), 3.0);
}

/// Runs ended by the control plane are told apart: a lost node's run counts as
/// `node_lost`, not as a plain failure.
#[tokio::test]
async fn runs_of_a_lost_node_count_as_node_lost() {
    let ctx = TestContext::start_fast().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let mut body = batch_job("long");
    body["parameters"]["parameters"]["env"] = json!({"GANTRY_SIM_DURATION_MS": "600000"});
    let job = user.create_job(&body).await.unwrap();
    wait_for("the job to run", WAIT, || async {
        user.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Running)
    })
    .await;
    nodes.kill(0);
    wait_for("the lost node's run to be counted", WAIT, || async {
        let s = scrape(&ctx).await;
        (value(&s, "gantry_job_runs_finished_total", &[("outcome", "node_lost")]) == 1.0
            && value(&s, "gantry_nodes", &[("status", "LOST")]) == 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(value(&scrape(&ctx).await, "gantry_job_runs_finished_total", &[("outcome", "failed")]), 0.0);
}

/// `deploy/prometheus/alerts.yml` passes `promtool check rules`, and every metric the
/// rules and the Grafana dashboard use is one the server or the agent exports.
#[tokio::test]
async fn the_operator_kit_refers_to_real_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/gantry.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 6), "the dashboard has its panels");

    let ctx = TestContext::start().await;
    scrape_text(&ctx).await; // so that the request families have a series
    let exported = scrape_text(&ctx).await;
    let agent_families = [
        "gantry_agent_container_starts_total",
        "gantry_agent_image_pull_duration_seconds",
        "gantry_agent_sync_duration_seconds",
        "gantry_agent_gpu_utilization_ratio",
        "gantry_agent_gpu_memory_used_bytes",
        "gantry_agent_gpu_memory_total_bytes",
        "gantry_agent_gpu_temperature_celsius",
    ];
    for text in [&rules, &dashboard] {
        for name in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("gantry_"))
        {
            let base = ["_bucket", "_count", "_sum"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
            assert!(
                exported.contains(&format!("# TYPE {base} "))
                    || exported.contains(&format!("# TYPE {name} "))
                    || agent_families.contains(&base),
                "the operator kit refers to {name}, which nothing exports"
            );
        }
    }
    if let Some(promtool) = promtool() {
        let path = root.join("deploy/prometheus/alerts.yml");
        run_promtool(&promtool, &["check", "rules", path.to_str().unwrap()], "").await;
    }
}
