//! Upstream fidelity (issue 16): what clients written for the upstream API send and
//! read, through the signed client against a real server: cooking with the override
//! shapes upstream clients use, upstream's recipe uuids, simulated nodes that behave
//! like real ones, range filters, lenient HTTP edge cases, and the job's mirror of its
//! run's container access tokens.

use gantry_client::{Client, query};
use gantry_test_harness::{TestContext, batch_job};
use gantry_types::RecipeId;
use gantry_types::job::Job;
use gantry_types::permissions::Preset;
use gantry_types::recipe::catalogue::{DEV_BOX_UUID, HELLO_GPU_UUID};
use serde_json::json;

fn seed(uuid: &str) -> RecipeId {
    uuid.parse().unwrap()
}

fn titles(jobs: &[Job]) -> Vec<String> {
    let mut t: Vec<String> = jobs.iter().map(|j| j.title.clone()).collect();
    t.sort();
    t
}

async fn consumer(ctx: &TestContext) -> Client {
    ctx.new_account(Preset::Consumer).await
}

#[tokio::test]
async fn cooking_with_upstream_shaped_overrides_supplies_inputs() {
    let ctx = TestContext::start().await;
    let user = consumer(&ctx).await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIupstream you@host";

    // The override inside the job shape satisfies the required `sshkey` input.
    let job = user
        .cook_recipe(seed(DEV_BOX_UUID), &json!({"parameters": {"parameters": {"sshkey": key}}}))
        .await
        .expect("upstream-shaped sshkey override cooks");
    assert_eq!(job.parameters.parameters.sshkey.as_deref(), Some(key));

    // `{"parameters": {"env": ...}}`: an env override of an input's target is that input's
    // value (its default does not overwrite it).
    let job = user
        .cook_recipe(seed(HELLO_GPU_UUID), &json!({"parameters": {"env": {"MESSAGE": "from upstream"}}}))
        .await
        .expect("flattened env override cooks");
    let env = job.parameters.parameters.env.clone().unwrap_or_default();
    assert_eq!(env.get("MESSAGE").map(String::as_str), Some("from upstream"));

    // Mixed: Gantry's `inputs` wins over the override of the same target (documented).
    let job = user
        .cook_recipe(
            seed(DEV_BOX_UUID),
            &json!({"parameters": {"parameters": {"sshkey": key}}, "inputs": {"sshkey": "ssh-ed25519 BBBB input"}}),
        )
        .await
        .unwrap();
    assert_eq!(job.parameters.parameters.sshkey.as_deref(), Some("ssh-ed25519 BBBB input"));

    // Nothing supplies it: still the 400 naming the input.
    let err = user.cook_recipe(seed(DEV_BOX_UUID), &json!({"parameters": {"parameters": {"sshkey": ""}}})).await;
    let err = err.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::BAD_REQUEST));
    assert!(err.to_string().contains("inputs.sshkey"), "{err}");
}

#[tokio::test]
async fn min_filters_mean_at_least_and_pairs_stay_ranges() {
    let ctx = TestContext::start().await;
    let user = consumer(&ctx).await;
    for gb in [8, 16, 32] {
        let mut body = batch_job(&format!("s{gb}"));
        body["min_storage_gb"] = json!(gb);
        body["min_ram_gb"] = json!(gb);
        body["min_vram_gb"] = json!(gb);
        user.create_job(&body).await.unwrap();
    }
    for key in ["filter[min_storage_gb]", "filter[min_ram_gb]", "filter[min_vram_gb]"] {
        let p = user.list_jobs(&query(&[(key, "16")])).await.unwrap();
        assert_eq!(titles(&p.data), ["s16", "s32"], "{key}=16 means at least 16");
        let p = user.list_jobs(&query(&[(key, "8,16")])).await.unwrap();
        assert_eq!(titles(&p.data), ["s16", "s8"], "{key}=8,16 is a range");
        let p = user.list_jobs(&query(&[(key, ",8")])).await.unwrap();
        assert_eq!(titles(&p.data), ["s8"], "{key}=,8 is at most 8");
    }
    // cpu_count stays exact.
    let p = user.list_jobs(&query(&[("filter[cpu_count]", "2")])).await.unwrap();
    assert_eq!(p.total, 3);
}
