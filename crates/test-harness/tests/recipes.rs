//! Job recipes through the signed client: the seeded official recipes, create and
//! its validation, cooking and each merge rule, inputs, visibility between accounts,
//! admin-only `is_official`, fork, delete, secrets, and a cooked job running to
//! completion on a simulated node.

use std::time::Duration;

use gantry_client::{Client, ClientError, query};
use gantry_test_harness::{TestContext, wait_for};
use gantry_types::RecipeId;
use gantry_types::job::{Job, JobStatus, JobTask};
use gantry_types::permissions::Preset;
use gantry_types::recipe::catalogue::{DEV_BOX_UUID, HELLO_GPU_UUID, HTTP_SERVICE_UUID, LLAMA_CPP_UUID};
use gantry_types::recipe::{JobRecipe, RecipeVisibility};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn template() -> Value {
    json!({
        "title": "trainer", "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 2, "gpu_count": 1,
        "min_vram_gb": 16, "gpu_name": "RTX 4090",
        "parameters": {"type": "docker", "parameters": {
            "image": "registry.example.com/team/trainer", "tag": "v3", "ports": [22, 8080],
            "env": {"EPOCHS": "3", "LR": "0.1", "MODE": "full"}
        }}
    })
}

async fn create(client: &Client, name: &str, visibility: &str) -> JobRecipe {
    let body = json!({"name": name, "visibility": visibility, "payload": template(),
                      "description": "trains", "quickstart_md": "# go"});
    client.create_recipe(&body).await.expect("create recipe")
}

fn status(e: &ClientError) -> StatusCode {
    e.status().unwrap_or_else(|| panic!("no status: {e}"))
}

fn fields(e: &ClientError) -> Vec<String> {
    match e {
        ClientError::Api { body, .. } => body.error.details.iter().map(|d| d.field.clone()).collect(),
        other => panic!("expected an API error, got {other}"),
    }
}

fn seed(uuid: &str) -> RecipeId {
    uuid.parse().unwrap()
}

fn env(job: &Job) -> Value {
    json!(job.parameters.parameters.env)
}

#[tokio::test]
async fn official_recipes_are_seeded_once_and_listed_to_everyone() {
    let mut ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let raw = user.send_raw(Method::GET, "/v1/job-recipes", &query(&[("filter[is_official]", "true")]), None).await;
    let body = raw.unwrap().body;
    assert_eq!((body["page"].as_u64(), body["limit"].as_u64(), body["total"].as_u64()), (Some(1), Some(20), Some(4)));
    let first = &body["data"][0];
    for field in [
        "object",
        "created_at",
        "updated_at",
        "name",
        "description",
        "visibility",
        "payload",
        "is_official",
        "last_used_at",
        "uuid",
        "quickstart_md",
        "input_schema",
        "thumbnail_url",
        "is_owner",
        "forked_from_recipe_uuid",
    ] {
        assert!(first.get(field).is_some(), "recipe lacks {field}: {first}");
    }
    assert_eq!(first["object"], "job_recipe");
    let oldest = user.list_recipes(&query(&[("filter[is_official]", "true"), ("sort", "created_at")])).await.unwrap();
    let uuids: Vec<String> = oldest.data.iter().map(|r| r.uuid.to_string()).collect();
    assert_eq!(uuids, [DEV_BOX_UUID, HELLO_GPU_UUID, HTTP_SERVICE_UUID, LLAMA_CPP_UUID]);
    assert!(oldest.data.iter().all(|r| r.is_official && !r.is_owner && r.visibility == RecipeVisibility::Public));
    let dev_box = user.get_recipe(seed(DEV_BOX_UUID)).await.unwrap();
    assert_eq!(
        (dev_box.payload.task, dev_box.payload.parameters.parameters.ports.clone()),
        (JobTask::Persistent, Some(vec![22]))
    );
    assert!(dev_box.input_schema.iter().any(|i| i.key == "sshkey" && i.required && i.target == "sshkey"));
    let http = user.get_recipe(seed(HTTP_SERVICE_UUID)).await.unwrap();
    assert_eq!(http.payload.parameters.parameters.ports, Some(vec![8080]));
    assert_eq!(user.list_recipes(&query(&[("filter[is_official]", "false")])).await.unwrap().total, 0);

    // Seeding again at the next start inserts nothing and keeps an operator's edit.
    let admin = ctx.new_account(Preset::Admin).await;
    admin.update_recipe(seed(HELLO_GPU_UUID), &json!({"description": "ours now"})).await.unwrap();
    ctx.restart().await;
    let again = user.list_recipes(&query(&[("filter[is_official]", "true")])).await.unwrap();
    assert_eq!(again.total, 4);
    assert_eq!(user.get_recipe(seed(HELLO_GPU_UUID)).await.unwrap().description.as_deref(), Some("ours now"));
    // A node key has no recipe permissions: told so, not shown an empty list.
    let node = ctx.new_account(Preset::Node).await;
    assert_eq!(status(&node.list_recipes(&[]).await.unwrap_err()), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn create_validates_the_payload_like_a_job_and_names_fields() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let recipe = create(&user, "mine", "PRIVATE").await;
    assert_eq!((recipe.is_owner, recipe.visibility, recipe.is_official), (true, RecipeVisibility::Private, false));
    assert_eq!(recipe.payload.max_timeout_assign_ms, 300000, "the template is stored with defaults applied");
    assert_eq!(user.get_recipe(recipe.uuid).await.unwrap(), recipe);

    let mut bad = template();
    bad["max_timeout_run_ms"] = json!(10);
    bad["gpu_name"] = json!("RTX 9999");
    bad["parameters"]["parameters"]["ports"] = json!([0]);
    let body = json!({"name": "", "visibility": "HIDDEN", "payload": bad,
                      "input_schema": [{"key": "x", "type": "colour"}]});
    let e = user.create_recipe(&body).await.unwrap_err();
    assert_eq!(status(&e), StatusCode::BAD_REQUEST);
    let mut f = fields(&e);
    f.sort();
    assert_eq!(
        f,
        [
            "input_schema[0].type",
            "name",
            "payload.gpu_name",
            "payload.max_timeout_run_ms",
            "payload.parameters.parameters.ports[0]",
            "visibility"
        ]
    );
    let e = user.create_recipe(&json!({"name": "no payload"})).await.unwrap_err();
    assert_eq!(fields(&e), ["payload"]);
    assert_eq!(
        user.list_recipes(&query(&[("filter[is_owner]", "true")])).await.unwrap().total,
        1,
        "nothing half-written"
    );
}

#[tokio::test]
async fn cooking_applies_each_merge_rule_and_records_the_recipe() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let recipe = create(&user, "trainer", "PRIVATE").await;

    // `{}` and no body at all cook the template as it is.
    let plain = user.cook_recipe(recipe.uuid, &json!({})).await.unwrap();
    assert_eq!(plain.status, JobStatus::Pending);
    assert_eq!(plain.source_recipe_uuid.as_deref(), Some(recipe.uuid.to_string().as_str()));
    assert_eq!((plain.title.as_str(), plain.task, plain.cpu_count), ("trainer", JobTask::Batch, 2));
    assert_eq!(plain.parameters, recipe.payload.parameters);
    assert_eq!(plain.gpu_name.as_deref(), Some("RTX 4090"));
    let path = format!("/v1/job-recipes/{}/cook", recipe.uuid);
    let raw = user.send_raw(Method::POST, &path, &[], None).await.unwrap();
    assert_eq!(raw.status, StatusCode::CREATED);
    assert_eq!(raw.body["title"], "trainer");

    // Top-level fields replace; null removes; a BATCH template becomes PERSISTENT.
    let top = user
        .cook_recipe(
            recipe.uuid,
            &json!({"title": "serve", "task": "PERSISTENT", "max_timeout_run_ms": null,
                                            "cpu_count": 8, "gpu_name": null, "allowed_region_codes": ["eu-west-1"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        (top.title.as_str(), top.task, top.max_timeout_run_ms, top.cpu_count),
        ("serve", JobTask::Persistent, None, 8)
    );
    assert_eq!((top.gpu_name.clone(), top.allowed_region_codes.clone()), (None, vec!["eu-west-1".to_string()]));
    assert_eq!((top.gpu_count, top.min_vram_gb), (1, 16.0), "fields not sent stay the template's");

    // parameters.parameters merges key by key: tag and ports replaced, image kept.
    let params = user
        .cook_recipe(recipe.uuid, &json!({"parameters": {"parameters": {"tag": "v4", "ports": [9000]}}}))
        .await
        .unwrap();
    let d = &params.parameters.parameters;
    assert_eq!(
        (d.image.as_str(), d.tag.as_deref(), d.ports.clone()),
        ("registry.example.com/team/trainer", Some("v4"), Some(vec![9000]))
    );
    assert_eq!(env(&params), json!({"EPOCHS": "3", "LR": "0.1", "MODE": "full"}), "env untouched");

    // env merges key by key: set, add, and null removes.
    let e = user
        .cook_recipe(
            recipe.uuid,
            &json!({"parameters": {"parameters": {"env": {"LR": "0.01", "SEED": "7", "MODE": null}}}}),
        )
        .await
        .unwrap();
    assert_eq!(env(&e), json!({"EPOCHS": "3", "LR": "0.01", "SEED": "7"}));
    assert_eq!(e.parameters.parameters.tag.as_deref(), Some("v3"));

    // Every cooked job names its recipe; filter[source_recipe_uuid] finds them.
    let cooked = user.list_jobs(&query(&[("filter[source_recipe_uuid]", &recipe.uuid.to_string())])).await.unwrap();
    assert_eq!(cooked.total, 5);
    assert!(user.get_recipe(recipe.uuid).await.unwrap().last_used_at.is_some());
}

#[tokio::test]
async fn a_cook_that_breaks_validation_is_a_400_naming_the_field_and_creates_nothing() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let recipe = create(&user, "trainer", "PRIVATE").await;
    for (body, field) in [
        (json!({"max_timeout_run_ms": 5}), "max_timeout_run_ms"),
        (json!({"task": "PERSISTENT"}), "max_timeout_run_ms"),
        (json!({"gpu_name": "RTX 9999"}), "gpu_name"),
        (json!({"gpu_registry_uuid": "0198ac1c-7063-4be8-bb94-57a5bd83548e"}), "gpu_name"),
        (json!({"cpu_count": "four"}), "cpu_count"),
        (json!({"parameters": {"parameters": {"ports": [70000]}}}), "parameters.parameters.ports[0]"),
        (json!({"parameters": {"parameters": {"image": ""}}}), "parameters.parameters.image"),
        (json!({"parameters": {"parameters": {"env": {"X": 1}}}}), "parameters.parameters.env.X"),
        (json!({"parameters": "docker"}), "parameters"),
        (json!({"allowed_region_codes": ["mars-1"]}), "allowed_region_codes[0]"),
    ] {
        let e = user.cook_recipe(recipe.uuid, &body).await.unwrap_err();
        assert_eq!(status(&e), StatusCode::BAD_REQUEST, "{body}");
        assert!(fields(&e).contains(&field.to_string()), "{body}: {:?} lacks {field}", fields(&e));
    }
    assert_eq!(user.list_jobs(&[]).await.unwrap().total, 0);
    let unknown = user.cook_recipe(RecipeId::new(), &json!({})).await.unwrap_err();
    assert_eq!(status(&unknown), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn inputs_are_required_checked_and_land_on_their_targets() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let dev_box = seed(DEV_BOX_UUID);
    let e = user.cook_recipe(dev_box, &json!({})).await.unwrap_err();
    assert_eq!((status(&e), fields(&e)), (StatusCode::BAD_REQUEST, vec!["inputs.sshkey".to_string()]));
    let e = user.cook_recipe(dev_box, &json!({"inputs": {"sshkey": "ssh-ed25519 AAAA me", "shell": "zsh"}})).await;
    assert_eq!(fields(&e.unwrap_err()), ["inputs.shell"]);
    let e = user.cook_recipe(dev_box, &json!({"inputs": {"sshkey": 42}})).await.unwrap_err();
    assert_eq!(fields(&e), ["inputs.sshkey"]);
    let job = user.cook_recipe(dev_box, &json!({"inputs": {"sshkey": "ssh-ed25519 AAAA me"}})).await.unwrap();
    assert_eq!(job.parameters.parameters.sshkey.as_deref(), Some("ssh-ed25519 AAAA me"));
    assert_eq!((job.task, job.parameters.parameters.ports.clone()), (JobTask::Persistent, Some(vec![22])));

    // A recipe's own schema: defaults, typed values, options, env targets.
    let body = json!({"name": "inputs", "payload": template(), "input_schema": [
        {"key": "epochs", "type": "integer", "default_value": 10, "target": "env.EPOCHS"},
        {"key": "mode", "options": [{"label": "Full", "value": "full"}, {"label": "Quick", "value": "quick"}],
         "target": "env.MODE"},
        {"key": "tag", "target": "tag"},
    ]});
    let recipe = user.create_recipe(&body).await.unwrap();
    let job = user.cook_recipe(recipe.uuid, &json!({"inputs": {"mode": "quick", "tag": "v9"}})).await.unwrap();
    assert_eq!(env(&job), json!({"EPOCHS": "10", "LR": "0.1", "MODE": "quick"}));
    assert_eq!(job.parameters.parameters.tag.as_deref(), Some("v9"));
    let e = user.cook_recipe(recipe.uuid, &json!({"inputs": {"mode": "slow", "epochs": "many"}})).await.unwrap_err();
    let mut f = fields(&e);
    f.sort();
    assert_eq!(f, ["inputs.epochs", "inputs.mode"]);
}

#[tokio::test]
async fn another_accounts_private_and_archived_recipes_are_not_found() {
    let ctx = TestContext::start().await;
    let (alice, bob) = (ctx.new_account(Preset::Consumer).await, ctx.new_account(Preset::Consumer).await);
    let recipe = create(&alice, "alice's", "PRIVATE").await;
    assert_eq!(status(&bob.get_recipe(recipe.uuid).await.unwrap_err()), StatusCode::NOT_FOUND);
    assert_eq!(status(&bob.cook_recipe(recipe.uuid, &json!({})).await.unwrap_err()), StatusCode::NOT_FOUND);
    assert_eq!(status(&bob.fork_recipe(recipe.uuid, None).await.unwrap_err()), StatusCode::NOT_FOUND);
    let patch = bob.update_recipe(recipe.uuid, &json!({"name": "mine now"})).await.unwrap_err();
    assert_eq!(status(&patch), StatusCode::NOT_FOUND);
    assert_eq!(status(&bob.delete_recipe(recipe.uuid).await.unwrap_err()), StatusCode::NOT_FOUND);
    let listed = bob.list_recipes(&query(&[("filter[uuid]", &recipe.uuid.to_string())])).await.unwrap();
    assert_eq!(listed.total, 0);

    // Made PUBLIC, Bob sees and cooks it but may not change it.
    alice.update_recipe(recipe.uuid, &json!({"visibility": "PUBLIC"})).await.unwrap();
    let seen = bob.get_recipe(recipe.uuid).await.unwrap();
    assert!(!seen.is_owner);
    let job = bob.cook_recipe(recipe.uuid, &json!({})).await.unwrap();
    assert_eq!(bob.get_job(job.uuid).await.unwrap().uuid, job.uuid, "the job is Bob's");
    assert_eq!(status(&alice.get_job(job.uuid).await.unwrap_err()), StatusCode::NOT_FOUND);
    let patch = bob.update_recipe(recipe.uuid, &json!({"name": "mine now"})).await.unwrap_err();
    assert_eq!(status(&patch), StatusCode::FORBIDDEN);
    assert_eq!(status(&bob.delete_recipe(recipe.uuid).await.unwrap_err()), StatusCode::FORBIDDEN);
    let others = bob.list_recipes(&query(&[("filter[is_owner]", "false"), ("filter[is_official]", "false")])).await;
    assert_eq!(others.unwrap().data.iter().map(|r| r.uuid).collect::<Vec<_>>(), [recipe.uuid]);

    // ARCHIVED: gone for Bob, still Alice's to see and cook.
    alice.update_recipe(recipe.uuid, &json!({"visibility": "ARCHIVED"})).await.unwrap();
    assert_eq!(status(&bob.get_recipe(recipe.uuid).await.unwrap_err()), StatusCode::NOT_FOUND);
    assert_eq!(status(&bob.cook_recipe(recipe.uuid, &json!({})).await.unwrap_err()), StatusCode::NOT_FOUND);
    assert_eq!(bob.list_recipes(&query(&[("filter[is_official]", "false")])).await.unwrap().total, 0);
    assert_eq!(alice.get_recipe(recipe.uuid).await.unwrap().visibility, RecipeVisibility::Archived);
    alice.cook_recipe(recipe.uuid, &json!({})).await.unwrap();
}

#[tokio::test]
async fn only_admins_set_is_official_or_change_official_recipes() {
    let ctx = TestContext::start().await;
    let (user, admin) = (ctx.new_account(Preset::Consumer).await, ctx.new_account(Preset::Admin).await);
    let body = json!({"name": "official?", "payload": template(), "is_official": true});
    let e = user.create_recipe(&body).await.unwrap_err();
    assert_eq!(status(&e), StatusCode::FORBIDDEN);
    assert!(e.to_string().contains("is_official"), "{e}");
    let mine = create(&user, "mine", "PRIVATE").await;
    let e = user.update_recipe(mine.uuid, &json!({"is_official": true})).await.unwrap_err();
    assert_eq!(status(&e), StatusCode::FORBIDDEN);
    assert!(!user.get_recipe(mine.uuid).await.unwrap().is_official);
    // Sending the value it already has is no change, so it is allowed.
    user.update_recipe(mine.uuid, &json!({"is_official": false, "name": "renamed"})).await.unwrap();
    let e = user.update_recipe(seed(HELLO_GPU_UUID), &json!({"name": "hijacked"})).await.unwrap_err();
    assert_eq!(status(&e), StatusCode::FORBIDDEN);
    assert_eq!(status(&user.delete_recipe(seed(HELLO_GPU_UUID)).await.unwrap_err()), StatusCode::FORBIDDEN);

    let official = admin.create_recipe(&body).await.unwrap();
    assert!(official.is_official);
    // An admin marks a user's PRIVATE recipe official: now everyone sees it.
    admin.update_recipe(mine.uuid, &json!({"is_official": true})).await.unwrap();
    let other = ctx.new_account(Preset::Consumer).await;
    assert!(other.get_recipe(mine.uuid).await.unwrap().is_official);
    assert_eq!(
        status(&user.update_recipe(mine.uuid, &json!({"is_official": false})).await.unwrap_err()),
        StatusCode::FORBIDDEN
    );
    // Admins retire a seed by archiving it.
    let archived = admin.update_recipe(seed(HELLO_GPU_UUID), &json!({"visibility": "ARCHIVED"})).await.unwrap();
    assert_eq!(archived.visibility, RecipeVisibility::Archived);
    assert_eq!(status(&user.get_recipe(seed(HELLO_GPU_UUID)).await.unwrap_err()), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn fork_copies_without_secrets_and_delete_leaves_forks_and_jobs() {
    let ctx = TestContext::start().await;
    let (alice, bob) = (ctx.new_account(Preset::Consumer).await, ctx.new_account(Preset::Consumer).await);
    let mut payload = template();
    payload["parameters"]["parameters"]["host"] = json!("registry.example.com");
    payload["parameters"]["parameters"]["user"] = json!("bot");
    payload["parameters"]["parameters"]["secret"] = json!("alice-registry-token");
    let body = json!({"name": "private image", "visibility": "PUBLIC", "payload": payload});
    let original = alice.create_recipe(&body).await.unwrap();
    assert_eq!(original.payload.parameters.parameters.secret.as_deref(), Some("********"));
    let stored = ctx
        .store()
        .recipe_fetch(gantry_store::RecipeViewer { account: alice_id(&alice).await, sees_all: true }, original.uuid);
    let stored = stored.await.unwrap().unwrap();
    let sealed = stored.payload.parameters.parameters.secret.clone().unwrap();
    assert_ne!(sealed, "alice-registry-token");
    assert_eq!(ctx.secrets().decrypt(&sealed).unwrap(), "alice-registry-token");
    // Sending the redacted value back keeps the stored secret.
    let mut edited = original.payload.clone();
    edited.title = "renamed".into();
    alice.update_recipe(original.uuid, &json!({"payload": edited})).await.unwrap();
    let again = ctx
        .store()
        .recipe_fetch(gantry_store::RecipeViewer { account: alice_id(&alice).await, sees_all: true }, original.uuid);
    let again = again.await.unwrap().unwrap();
    assert_eq!(
        ctx.secrets().decrypt(again.payload.parameters.parameters.secret.as_ref().unwrap()).unwrap(),
        "alice-registry-token"
    );

    // Bob's cook of the same image uses the credentials (never shown); another image drops them.
    let job = bob.cook_recipe(original.uuid, &json!({})).await.unwrap();
    assert_eq!(job.parameters.parameters.secret.as_deref(), Some("********"));
    let stored_job = ctx.store().job_fetch(None, job.uuid).await.unwrap().unwrap();
    let job_secret = stored_job.parameters.parameters.secret.unwrap();
    assert_eq!(ctx.secrets().decrypt(&job_secret).unwrap(), "alice-registry-token");
    let other_image = bob
        .cook_recipe(
            original.uuid,
            &json!({"parameters": {"parameters": {"image": "registry.example.com/team/other"}}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (other_image.parameters.parameters.secret.clone(), other_image.parameters.parameters.user.clone()),
        (None, None)
    );

    let fork = bob.fork_recipe(original.uuid, Some(&json!({"name": "bob's trainer"}))).await.unwrap();
    assert_eq!((fork.is_owner, fork.visibility, fork.is_official), (true, RecipeVisibility::Private, false));
    assert_eq!((fork.name.as_str(), fork.forked_from_recipe_uuid), ("bob's trainer", Some(original.uuid)));
    assert_eq!(
        (fork.payload.parameters.parameters.secret.clone(), fork.payload.parameters.parameters.user.clone()),
        (None, None)
    );
    assert_eq!(fork.payload.title, "renamed");
    let forks = bob.list_recipes(&query(&[("filter[forked_from_recipe_uuid]", &original.uuid.to_string())])).await;
    assert_eq!(forks.unwrap().total, 1);
    let from_fork = bob.cook_recipe(fork.uuid, &json!({})).await.unwrap();
    assert_eq!(from_fork.source_recipe_uuid, Some(fork.uuid.to_string()));
    let e = bob.fork_recipe(original.uuid, Some(&json!({"visibility": "SECRET"}))).await.unwrap_err();
    assert_eq!(fields(&e), ["visibility"]);

    let deleted = alice.delete_recipe(original.uuid).await.unwrap();
    assert_eq!(deleted.uuid, original.uuid);
    assert_eq!(status(&alice.get_recipe(original.uuid).await.unwrap_err()), StatusCode::NOT_FOUND);
    assert_eq!(status(&alice.delete_recipe(original.uuid).await.unwrap_err()), StatusCode::NOT_FOUND);
    assert_eq!(bob.get_recipe(fork.uuid).await.unwrap().forked_from_recipe_uuid, Some(original.uuid));
    assert_eq!(bob.get_job(job.uuid).await.unwrap().source_recipe_uuid, Some(original.uuid.to_string()));
}

async fn alice_id(client: &Client) -> gantry_types::AccountId {
    client.me().await.unwrap().uuid
}

#[tokio::test]
async fn a_cooked_job_is_scheduled_on_a_simulated_node_and_completes() {
    let ctx = TestContext::start_fast().await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA GeForce RTX 4090:24,region=eu-west-1").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let body = json!({"inputs": {"message": "hi from a recipe"},
                      "parameters": {"parameters": {"env": {"GANTRY_SIM_DURATION_MS": "50"}}}});
    let job = user.cook_recipe(seed(HELLO_GPU_UUID), &body).await.unwrap();
    assert_eq!(env(&job), json!({"GANTRY_SIM_DURATION_MS": "50", "MESSAGE": "hi from a recipe"}));
    let done = wait_for("the cooked job to complete", Duration::from_secs(20), || async {
        user.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Completed)
    })
    .await;
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    assert_eq!(done.source_recipe_uuid.as_deref(), Some(HELLO_GPU_UUID));
    assert!(user.get_recipe(seed(HELLO_GPU_UUID)).await.unwrap().last_used_at.is_some());
    nodes.stop().await;
}

#[tokio::test]
async fn concurrent_patches_of_different_fields_all_land() {
    let ctx = TestContext::start().await;
    let user = ctx.new_account(Preset::Consumer).await;
    let recipe = create(&user, "racy", "PRIVATE").await;
    let patches = [
        json!({"name": "renamed"}),
        json!({"description": "new description"}),
        json!({"quickstart_md": "new quickstart"}),
        json!({"thumbnail_url": "https://example.com/t.png"}),
        json!({"visibility": "PUBLIC"}),
        json!({"input_schema": [{"key": "n", "type": "integer"}]}),
    ];
    let tasks: Vec<_> = patches
        .into_iter()
        .map(|p| {
            let user = user.clone();
            tokio::spawn(async move { user.update_recipe(recipe.uuid, &p).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("each patch succeeds");
    }
    let after = user.get_recipe(recipe.uuid).await.unwrap();
    assert_eq!(after.name, "renamed");
    assert_eq!(after.description.as_deref(), Some("new description"));
    assert_eq!(after.quickstart_md.as_deref(), Some("new quickstart"));
    assert_eq!(after.thumbnail_url.as_deref(), Some("https://example.com/t.png"));
    assert_eq!(after.visibility, RecipeVisibility::Public);
    assert_eq!(after.input_schema.len(), 1);
    assert_eq!(after.payload, recipe.payload, "no patch touched the payload");
    assert!(after.updated_at > recipe.updated_at);
}
