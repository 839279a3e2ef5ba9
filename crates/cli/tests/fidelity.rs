//! The binary's upstream-fidelity commands (issue 16): `gantry admin recipes import`
//! publishing a recipe under upstream's uuid while the server runs, cooked through the
//! signed client by that uuid.

use gantry_types::RecipeId;
use serde_json::{Value, json};
use tokio::process::Command;

mod common;

use common::{GANTRY, client, create_key, start_server};

const UPSTREAM_UUID: &str = "01a0114e-0000-7000-8000-00000000abcd";

fn recipe_file(dir: &std::path::Path, name: &str, title: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.json"));
    // The shape GET /v1/job-recipes/{uuid} returns (read-only fields are ignored).
    let body = json!([{
        "object": "job_recipe", "uuid": UPSTREAM_UUID, "name": name, "is_owner": false,
        "created_at": "2025-01-01T00:00:00Z", "visibility": "PUBLIC", "is_official": true,
        "payload": {"title": title, "task": "PERSISTENT", "max_timeout_run_ms": null, "gpu_count": 1,
                    "parameters": {"type": "docker", "parameters": {"image": "busybox", "ports": [22, 8080]}}},
        "input_schema": [{"key": "sshkey", "type": "string", "required": true, "target": "sshkey"}]
    }]);
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

#[tokio::test]
async fn admin_recipes_import_keeps_the_files_uuid_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    let import = |file: &std::path::Path| {
        let mut cmd = Command::new(GANTRY);
        cmd.args(["admin", "recipes", "import", "--json", "--data-dir"]).arg(dir.path()).arg(file);
        cmd
    };
    let out = import(&recipe_file(dir.path(), "imported", "first")).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed[0]["uuid"], UPSTREAM_UUID);

    // A consumer cooks it by the hard-coded uuid, upstream-style.
    let user = client(&url, &key);
    let id: RecipeId = UPSTREAM_UUID.parse().unwrap();
    let job = user.cook_recipe(id, &json!({"parameters": {"parameters": {"sshkey": "ssh-ed25519 AAAA k"}}})).await;
    let job = job.expect("the imported recipe cooks by its uuid");
    assert_eq!((job.title.as_str(), job.source_recipe_uuid.as_deref()), ("first", Some(UPSTREAM_UUID)));
    let recipe = user.get_recipe(id).await.unwrap();
    assert!(recipe.is_official && !recipe.is_owner);

    // Importing again replaces (same uuid, new fields); a bad file says which field.
    let out = import(&recipe_file(dir.path(), "imported", "second")).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(user.get_recipe(id).await.unwrap().payload.title, "second");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, json!({"name": "x", "uuid": "nope", "payload": {"title": "t"}}).to_string()).unwrap();
    let out = import(&bad).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("uuid"), "{err}");
}
