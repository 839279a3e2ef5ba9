//! The binary's upstream-fidelity commands (issue 16): `gantry admin recipes import`
//! publishing a recipe under upstream's uuid while the server runs, cooked through the
//! signed client by that uuid; `gantry dev` with pretended GPUs and the credential
//! variable families upstream clients read; `gantry agent --port-range` confining the
//! Docker node's published ports.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use gantry_client::{Client, Credentials};
use gantry_test_harness::wait_for;
use gantry_types::RecipeId;
use gantry_types::job::JobStatus;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

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

/// Starts `gantry dev` on a free port; returns it, everything it printed up to its
/// exports, and the exported variables.
async fn start_dev(data_dir: &std::path::Path, extra: &[&str]) -> (Child, String, BTreeMap<String, String>) {
    let mut child = Command::new(GANTRY)
        .args(["dev", "--listen", "127.0.0.1:0", "--no-demo", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gantry dev starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let printed = tokio::time::timeout(Duration::from_secs(60), async {
        let mut printed = String::new();
        loop {
            let line = lines.next_line().await.unwrap().expect("gantry dev exited before printing its exports");
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("Then try") {
                return printed;
            }
        }
    })
    .await
    .expect("gantry dev prints its exports within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let first = printed.lines().next().unwrap_or_default();
    assert!(first.starts_with("Web console: http://127.0.0.1:"), "the console's URL comes first: {printed}");
    let vars = printed
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (child, printed, vars)
}

#[tokio::test]
async fn gantry_dev_pretends_gpus_and_prints_upstream_credential_families() {
    let image = gantry_test_harness::docker::test_image().await;
    // Without GPUs and without the flag: it says how to use it.
    let plain = tempfile::tempdir().unwrap();
    let (no_gpus, printed, _) = start_dev(plain.path(), &[]).await;
    assert!(printed.contains("gantry dev --fake-gpus"), "{printed}");
    drop(no_gpus);

    let dir = tempfile::tempdir().unwrap();
    let (_dev, printed, vars) = start_dev(dir.path(), &["--fake-gpus", "1xNVIDIA RTX 4090:24"]).await;
    assert!(!printed.contains("No NVIDIA GPU found"), "{printed}");
    for family in ["GANTRY", "ZER", "DISPERSED"] {
        for suffix in ["API_BASE_URL", "PUBLIC_KEY", "SECRET_KEY"] {
            assert!(vars.contains_key(&format!("{family}_{suffix}")), "{family}_{suffix} missing: {printed}");
        }
        assert_eq!(vars[&format!("{family}_SECRET_KEY")], vars["GANTRY_SECRET_KEY"]);
    }
    assert_eq!(vars["DISPERSED_API"], vars["GANTRY_API_BASE_URL"]);

    // An upstream client configured from the ZER_* family.
    let user = Client::new(Credentials {
        base_url: vars["ZER_API_BASE_URL"].clone(),
        public_key: vars["ZER_PUBLIC_KEY"].clone(),
        secret_key: vars["ZER_SECRET_KEY"].clone(),
    });
    let me = user.me().await.unwrap();
    assert!(me.email.as_deref().is_some_and(|e| e.contains('@')), "{me:?}");

    // A GPU job places on the dev node's pretended GPU and runs.
    let body = json!({"title": "gpu on dev", "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1,
                      "gpu_count": 1, "gpu_name": "RTX 4090",
                      "parameters": {"type": "docker", "parameters": {"image": image, "ports": [],
                          "env": {"SCRIPT": "echo gpus=$NVIDIA_VISIBLE_DEVICES"}}}});
    let job = user.create_job(&body).await.unwrap();
    let done = wait_for("the GPU job to finish", Duration::from_secs(90), || async {
        user.get_job(job.uuid).await.ok().filter(|j| matches!(j.status, JobStatus::Completed | JobStatus::Failed))
    })
    .await;
    let run = user.runs_of_job(job.uuid).await.unwrap().remove(0);
    assert_eq!(done.status, JobStatus::Completed, "{:?}", run.status_reason);
    assert_eq!(run.gpu_indices.len(), 1);
    let logs = user.get_job_run(run.uuid).await.unwrap().logs.unwrap_or_default();
    assert!(logs.contains("gpus=") && !logs.contains("gpus=\n"), "{logs}");
}

/// The first of `len` consecutive loopback ports that are all free right now.
fn free_range(len: u16) -> u16 {
    let mut base = 40_000 + (std::process::id() % 2_000) as u16 * 10;
    loop {
        let all_free = (base..base + len).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base;
        }
        base += len;
    }
}

#[tokio::test]
async fn the_docker_agents_port_range_confines_published_ports() {
    let image = gantry_test_harness::docker::test_image().await;
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(&dir.path().join("server")).await;
    let node_key = create_key(&dir.path().join("server"), "node").await;
    let consumer = client(&url, &create_key(&dir.path().join("server"), "consumer").await);
    let first = free_range(8);
    let range = format!("{first}-{}", first + 7);
    let bad = Command::new(GANTRY).args(["agent", "--port-range", "9-1", "--print-inventory"]).output().await.unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("A-B"));
    let _agent = Command::new(GANTRY)
        .args(["agent", "--bind", "127.0.0.1", "--advertise-host", "127.0.0.1", "--stop-grace-secs", "1"])
        .args(["--sync-wait-ms", "300", "--fake-gpus", "cpus=2,ram=4", "--port-range", &range, "--state-dir"])
        .arg(dir.path().join("agent"))
        .env("GANTRY_API_BASE_URL", &url)
        .env("GANTRY_PUBLIC_KEY", node_key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", node_key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("gantry agent starts");

    let script = "mkdir -p /www && echo in-range > /www/index.html && httpd -p 8080 -h /www && sleep 600";
    let body = json!({
        "title": "ranged", "task": "PERSISTENT", "max_timeout_run_ms": null, "cpu_count": 1, "gpu_count": 0,
        "parameters": {"type": "docker", "parameters": {"image": image, "env": {"SCRIPT": script},
            "ports": [22, 8080], "allowed_ips": ["127.0.0.1/32"]}}
    });
    let job = consumer.create_job(&body).await.unwrap();
    let run = wait_for("a RUNNING run with two node_urls", Duration::from_secs(60), || async {
        let run = consumer.runs_of_job(job.uuid).await.ok()?.into_iter().next()?;
        (run.status == gantry_types::job_run::JobRunStatus::Running && run.node_urls.len() == 2).then_some(run)
    })
    .await;
    for u in &run.node_urls {
        assert!((first..=first + 7).contains(&u.port), "{} outside {range}", u.port);
    }
    let http = run.node_urls.iter().find(|u| u.description == "8080").unwrap().port;
    let page = wait_for("the service behind the ranged port", Duration::from_secs(30), || async {
        reqwest::get(format!("http://127.0.0.1:{http}/")).await.ok()?.text().await.ok()
    })
    .await;
    assert_eq!(page, "in-range\n");
    consumer.cancel_job(job.uuid, "done").await.unwrap();
    wait_for("the job to be cancelled", Duration::from_secs(30), || async {
        consumer.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Cancelled)
    })
    .await;
}
