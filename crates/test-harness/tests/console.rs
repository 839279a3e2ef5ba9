//! The web console in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against a real server with a simulated node. Signs in (and fails to with a
//! wrong pair), submits a job from the form and watches it complete with its log line,
//! submits a PERSISTENT job and cancels it, sees a field error, creates and revokes a key,
//! signs out; checks the Content-Security-Policy, that the first load stays under 150 KB and
//! touches no other origin, and that a 390-px phone screen needs no sideways scrolling.
//!
//! Skips with a message when chromium or chromedriver is absent; CI sets
//! `GANTRY_REQUIRE_CHROMIUM=1`. With `GANTRY_CONSOLE_SCREENSHOTS=docs/console` (relative to
//! the workspace root) it saves a 1280×800 PNG of each page there.

use std::path::PathBuf;
use std::time::Duration;

use gantry_client::Client;
use gantry_test_harness::webdriver::Browser;
use gantry_test_harness::{TestContext, wait_for};
use gantry_types::permissions::Preset;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const FIRST_LOAD_BUDGET: u64 = 150 * 1024;

async fn shot(browser: &Browser, name: &str) {
    let Ok(dir) = std::env::var("GANTRY_CONSOLE_SCREENSHOTS") else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    // Let layout settle after the last update before the picture.
    browser
        .execute("return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));", json!([]))
        .await;
    std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await).expect("write screenshot");
}

/// Every input, select and textarea on the page has a label.
async fn assert_labelled(browser: &Browser, page: &str) {
    let script = "return [...document.querySelectorAll('input, select, textarea')]
                    .filter((e) => !e.labels.length && !e.getAttribute('aria-label')).map((e) => e.name || e.id);";
    assert_eq!(browser.execute(script, json!([])).await, json!([]), "unlabelled inputs on {page}");
}

async fn sign_in(browser: &Browser, client: &Client) {
    let creds = client.credentials();
    browser.fill("input[name=public_key]", &creds.public_key).await;
    browser.fill("input[name=secret_key]", &creds.secret_key).await;
    browser.click("form.signin button[type=submit]").await;
    browser.find("#sign-out").await;
}

async fn sign_out(browser: &Browser) {
    browser.click("#sign-out").await;
    browser.find("input[name=public_key]").await;
    let stored = browser.execute("return sessionStorage.length;", json!([])).await;
    assert_eq!(stored, json!(0), "sign-out leaves nothing in sessionStorage");
}

/// The first load: the page and its assets carry the policy, the bytes fit the budget.
async fn check_first_load(ctx: &TestContext, browser: &Browser) {
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", ctx.base_url)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    for part in
        ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part:?}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("http"), "CSP {csp:?}");
    // What the browser fetched to show the sign-in page: all same-origin, within budget.
    let entries = browser
        .execute(
            "return [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]
               .map((e) => ({name: e.name, bytes: e.encodedBodySize, kind: e.initiatorType}));",
            json!([]),
        )
        .await;
    let entries = entries.as_array().unwrap();
    assert!(entries.len() >= 3, "the page, its stylesheet and scripts: {entries:?}");
    let mut total = 0;
    for e in entries {
        let name = e["name"].as_str().unwrap();
        assert!(name.starts_with(&ctx.base_url), "a request to another origin: {name}");
        total += e["bytes"].as_u64().unwrap();
    }
    assert!(total > 10_000 && total <= FIRST_LOAD_BUDGET, "first load transferred {total} bytes");
    eprintln!("console first load: {total} bytes in {} requests", entries.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_in_a_real_browser() {
    let Some(browser) = Browser::start().await else { return };
    let ctx = TestContext::start_fast().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let nodes = ctx.sim_nodes(1, "2xNVIDIA RTX 4090:24,region=us-east-1").await;
    let _ = user.create_job(&gantry_test_harness::batch_job("made by the CLI")).await.unwrap();

    browser.goto(&format!("{}/", ctx.base_url)).await;
    browser.find("input[name=public_key]").await;
    browser.set_viewport(1280, 800).await;
    check_first_load(&ctx, &browser).await;
    shot(&browser, "sign-in").await;

    // A wrong pair: a clear message, still on the sign-in form.
    browser.fill("input[name=public_key]", &user.credentials().public_key).await;
    browser.fill("input[name=secret_key]", "sk_not_the_secret").await;
    // By keyboard: Tab reaches the button, which shows its focus, and Enter submits.
    browser.keys("input[name=secret_key]", "\u{E004}").await;
    let focus = browser
        .execute(
            "const e = document.activeElement; return [e.textContent, e.matches(':focus-visible'), getComputedStyle(e).outlineStyle];",
            json!([]),
        )
        .await;
    assert_eq!(focus, json!(["Sign in", true, "solid"]), "Tab moves to a visibly focused Sign in button");
    browser.keys("form.signin button[type=submit]", "\u{E007}").await;
    browser.wait_text("#signin-msg", "not accepted", WAIT).await;
    sign_in(&browser, &user).await;
    let stored =
        browser.execute("return [document.cookie, localStorage.length, sessionStorage.length];", json!([])).await;
    assert_eq!(stored, json!(["", 0, 1]), "the pair is in sessionStorage only, never a cookie");
    // Anything the policy blocks from here on (an inline style, a foreign request) is recorded.
    let watch = "window.cspViolations = []; document.addEventListener('securitypolicyviolation', \
                 (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));";
    browser.execute(watch, json!([])).await;
    browser.wait_text("#jobs-list", "made by the CLI", WAIT).await;
    // The list is live: a job made elsewhere appears without a reload.
    user.create_job(&gantry_test_harness::batch_job("arrived live")).await.unwrap();
    browser.wait_text("#jobs-list", "arrived live", WAIT).await;
    assert_labelled(&browser, "jobs").await;
    shot(&browser, "jobs").await;

    // A bad value: the API's field error appears next to its input.
    browser.goto(&format!("{}/#/jobs/new", ctx.base_url)).await;
    browser.fill("#new-job input[name=title]", "from the console – café").await;
    browser.fill("#new-job input[name=cpu_count]", "-3").await;
    browser.click("#new-job button[type=submit]").await;
    let error = browser.wait_text("#new-job [data-field=cpu_count] ~ .field-error", "cpu_count", WAIT).await;
    assert!(!error.is_empty());
    assert_labelled(&browser, "new job").await;
    shot(&browser, "new-job").await;

    // A BATCH job from the form runs on the simulated node to COMPLETED, its log visible.
    browser.fill("#new-job input[name=cpu_count]", "2").await;
    browser.fill("#new-job input[name=gpu_count]", "1").await;
    browser.fill("#new-job textarea[name=env]", "GANTRY_SIM_DURATION_MS=1500").await;
    browser.click("#new-job button[type=submit]").await;
    browser.wait_text("#job-head", "COMPLETED", WAIT).await;
    browser.wait_text("#logs", "simulated run of ubuntu:latest started", WAIT).await;
    browser.wait_text("#logs", "exited with code 0", WAIT).await;
    let listed = user.list_jobs(&[]).await.unwrap();
    assert!(listed.data.iter().any(|j| j.title == "from the console – café" && j.cpu_count == 2 && j.gpu_count == 1));
    shot(&browser, "job").await;

    // A PERSISTENT job, cancelled with a reason.
    browser.goto(&format!("{}/#/jobs/new", ctx.base_url)).await;
    browser.fill("#new-job input[name=title]", "a service").await;
    browser.select("#new-job select[name=task]", "PERSISTENT").await;
    browser.fill("#new-job input[name=ports]", "22, 8080").await;
    browser.fill("#new-job textarea[name=env]", "GANTRY_SIM_OUTPUT_EVERY_MS=20").await;
    browser.click("#new-job button[type=submit]").await;
    browser.wait_text("#job-head", "RUNNING", WAIT).await;
    browser.wait_text("table", "ssh -p", WAIT).await;
    let running = user.list_jobs(&gantry_client::query(&[("filter[status]", "RUNNING")])).await.unwrap().data;
    let token = running.iter().find(|j| j.title == "a service").unwrap().container_access_tokens[0].token.clone();
    browser.click("#reveal-token").await;
    assert_eq!(browser.text("code.token").await, token, "the revealed token is the job's");
    shot(&browser, "job-running").await;
    // The followed log stays at the bottom while lines arrive, until the reader scrolls up.
    browser.wait_text("#logs", "simulated output 60\n", WAIT).await;
    let at_bottom =
        "const l = document.getElementById('logs'); return l.scrollTop + l.clientHeight >= l.scrollHeight - 8;";
    let overflowing = "const l = document.getElementById('logs'); return l.scrollHeight > l.clientHeight;";
    assert_eq!(browser.execute(overflowing, json!([])).await, json!(true));
    assert_eq!(browser.execute(at_bottom, json!([])).await, json!(true), "the log follows its end");
    browser
        .execute_async(
            "const l = document.getElementById('logs'); l.scrollTop = 0; \
             await new Promise((r) => l.addEventListener('scroll', r, {once: true}));",
            json!([]),
        )
        .await;
    let lines = |text: String| text.lines().count();
    let seen = lines(browser.text("#logs").await);
    wait_for("more log lines", WAIT, || async { (lines(browser.text("#logs").await) > seen + 20).then_some(()) }).await;
    let top = browser.execute("return document.getElementById('logs').scrollTop;", json!([])).await;
    assert_eq!(top, json!(0), "scrolled up, the reader stays where they are");
    browser.fill("#cancel-reason", "done with it").await;
    browser.click("#cancel-form button[type=submit]").await;
    browser.wait_text("#job-head", "CANCELLED", WAIT).await;
    browser.wait_text("#job-head", "done with it", WAIT).await;

    // A job no node can take: pending, and the page says why.
    let big = user
        .create_job(&json!({"title": "too big", "task": "PERSISTENT", "gpu_count": 8,
        "parameters": {"type": "docker", "parameters": {"image": "ubuntu"}}}))
        .await
        .unwrap();
    browser.goto(&format!("{}/#/jobs/{}", ctx.base_url, big.uuid)).await;
    browser.wait_text("#status-reason", "Why pending", WAIT).await;
    user.cancel_job(big.uuid, "test over").await.unwrap();

    // From a recipe: its inputs as fields (a select for options), cooked into a job.
    let recipe = user.create_recipe(&json!({"name": "trainer", "payload": {
        "title": "trainer", "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 1,
        "parameters": {"type": "docker", "parameters": {"image": "registry.example.com/team/trainer", "tag": "v3",
            "env": {"EPOCHS": "3", "MODE": "full"}}}},
        "input_schema": [
            {"key": "epochs", "type": "integer", "default_value": 10, "target": "env.EPOCHS"},
            {"key": "mode", "options": [{"label": "Full", "value": "full"}, {"label": "Quick", "value": "quick"}], "target": "env.MODE"}]}))
        .await.unwrap();
    browser.goto(&format!("{}/#/jobs/new?recipe={}", ctx.base_url, recipe.uuid)).await;
    browser.fill("#cook-form input[name=in-epochs]", "7").await;
    browser.select("#cook-form select[name=in-mode]", "quick").await;
    browser.click("#cook-form button[type=submit]").await;
    browser.wait_text("#job-head", "trainer", WAIT).await;
    let rid = recipe.uuid.to_string();
    let cooked = user.list_jobs(&gantry_client::query(&[("filter[source_recipe_uuid]", rid.as_str())])).await.unwrap();
    let env = cooked.data[0].parameters.parameters.env.clone().unwrap_or_default();
    assert_eq!((env["EPOCHS"].as_str(), env["MODE"].as_str()), ("7", "quick"));

    // The browser's canonical JSON and query are the Rust client's, byte for byte.
    let body =
        json!({"z": 1, "é": "日本 😀 \u{7f} \"q\"\n", "a": {"b": [1.5, 2.0, -0.0, 1e21, null, true]}, "A": "tab\t"});
    let pairs = [("tag", "b c"), ("filter[x]", "1,2"), ("é", "~*'()!"), ("a", "")];
    let ours = browser.execute_async(
        "const m = await import('/console/js/api.js'); return [m.canonicalJson(arguments[0]), m.canonicalQuery(arguments[1])];",
        json!([body, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>()]),
    ).await;
    let style = gantry_auth::JsonStyle { ascii: true, js_numbers: true };
    assert_eq!(ours[0], json!(gantry_auth::canonical_json(&body, style)));
    let owned: Vec<(String, String)> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(ours[1], json!(gantry_auth::canonical_query(&owned)));

    // A key: created (the secret shown once), then revoked.
    browser.goto(&format!("{}/#/keys", ctx.base_url)).await;
    browser.fill("#new-key input[name=name]", "laptop").await;
    browser.click("#new-key button[type=submit]").await;
    let secret = browser.wait_text("#new-secret-key", "sk_", WAIT).await;
    let public = browser.text("#new-public-key").await;
    let made = ctx.client(public.clone(), secret.trim().to_owned());
    made.me().await.expect("the secret the console showed works");
    assert_labelled(&browser, "keys").await;
    shot(&browser, "keys").await;
    browser.click(&format!("button[data-revoke='{public}']")).await;
    browser.accept_dialog().await;
    wait_for("the key to be revoked", WAIT, || async { made.me().await.is_err().then_some(()) }).await;
    browser.wait_text("#keys-list", "REVOKED", WAIT).await;

    for (page, ready, name) in [
        ("#/offers", "#offers-list table", "offers"),
        ("#/billing", "#billing", "billing"),
        ("#/recipes", "#recipes-list table", "recipes"),
    ] {
        browser.goto(&format!("{}/{page}", ctx.base_url)).await;
        browser.find(ready).await;
        assert_labelled(&browser, name).await;
        shot(&browser, name).await;
    }

    // A phone: the jobs page fits 390 px without sideways scrolling.
    browser.goto(&format!("{}/#/jobs", ctx.base_url)).await;
    browser.find("#jobs-list table").await;
    browser.set_viewport(390, 844).await;
    let width = browser.execute("return document.documentElement.scrollWidth;", json!([])).await;
    let inner = browser.execute("return window.innerWidth;", json!([])).await;
    assert!(width.as_u64() <= inner.as_u64(), "page {width} px wide in a {inner} px window");
    shot(&browser, "jobs-phone").await;
    browser.set_viewport(1280, 800).await;
    let violations = browser.execute("return window.cspViolations;", json!([])).await;
    assert_eq!(violations, json!([]), "the console never trips its own Content-Security-Policy");
    sign_out(&browser).await;

    // The operator's view: nodes with inventory and drain.
    sign_in(&browser, &nodes.client).await;
    browser.goto(&format!("{}/#/nodes", ctx.base_url)).await;
    browser.wait_text("#nodes-list", "sim-0", WAIT).await;
    browser.wait_text("#nodes-list", "NVIDIA RTX 4090", WAIT).await;
    shot(&browser, "nodes").await;
    browser.click("#nodes-list article button").await;
    browser.wait_text("#nodes-list", "DRAINING", WAIT).await;
    sign_out(&browser).await;

    browser.quit().await;
    nodes.stop().await;
    ctx.shutdown().await;
}

/// An account with 10,000 jobs: the jobs page reads one server page (25 rows in the DOM,
/// the total from the envelope) and shows it as fast as for a small account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jobs_page_pages_through_10000_jobs() {
    const JOBS: usize = 10_000;
    let Some(browser) = Browser::start().await else { return };
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let account = user.me().await.unwrap().account_uuid;
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        futures_util::future::join_all(chunk.iter().map(|i| {
            let body = gantry_test_harness::batch_job(&format!("bulk {i}"));
            let ctx = &ctx;
            async move { ctx.insert_job(account, body).await }
        }))
        .await;
    }
    browser.goto(&format!("{}/", ctx.base_url)).await;
    let started = std::time::Instant::now();
    sign_in(&browser, &user).await;
    browser.wait_text("#jobs-list", &format!("({JOBS} in all)"), WAIT).await;
    let shown = started.elapsed();
    let rows = browser.execute("return document.querySelectorAll('#jobs-list tbody tr').length;", json!([])).await;
    assert_eq!(rows, json!(25), "one page of rows, never the whole account");
    browser.click("#jobs-list .pager button:last-child").await;
    browser.wait_text("#jobs-list", "Page 2 of 400", WAIT).await;
    eprintln!("jobs page with {JOBS} jobs shown {shown:?} after pressing Sign in");
    assert!(shown < Duration::from_secs(5), "the first page took {shown:?}");
    browser.quit().await;
    ctx.shutdown().await;
}
