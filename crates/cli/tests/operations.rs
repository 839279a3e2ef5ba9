//! Running Gantry as a service, black-box through the binary: `gantry version`,
//! `/healthz`'s version, backups taken under load and restored, the data-dir lock
//! that keeps restore off a live store, and `gantry admin migrate --dry-run`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gantry_test_harness::{batch_job, wait_for};
use serde_json::Value;
use tokio::process::Command;

mod common;

use common::{GANTRY, client, create_key, start_server};

async fn gantry(args: &[&str]) -> std::process::Output {
    Command::new(GANTRY).args(args).env("RUST_LOG", "warn").output().await.unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn version_prints_the_build_facts_and_healthz_carries_the_version() {
    let out = gantry(&["version", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["schema_version"], gantry_store::migrate::newest_version());
    assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    assert!(v["build_date"].as_str().is_some_and(|d| d.ends_with('Z')), "{v}");
    assert!(v["features"].is_array() && v["store_backends"][0] == "sqlite", "{v}");
    let out = gantry(&["version"]).await;
    assert!(text(&out).contains("schema version:"), "{}", text(&out));
    let out = gantry(&["--version"]).await;
    let line = text(&out);
    assert!(line.starts_with(&format!("gantry {}", env!("CARGO_PKG_VERSION"))) && line.contains("schema"), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(dir.path()).await;
    let health: Value = reqwest::get(format!("{url}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["backend"], "sqlite");
    assert_eq!(health["instance"].as_str().map(str::len), Some(32), "{health}");
    let out = gantry(&["admin", "healthcheck", "--url", &url]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = gantry(&["admin", "healthcheck", "--url", "http://127.0.0.1:9"]).await;
    assert!(!out.status.success() && text(&out).contains("unreachable"), "{}", text(&out));
}

#[tokio::test]
async fn a_backup_under_submit_load_restores_every_job_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(dir.path()).await;
    let key = create_key(dir.path(), "consumer").await;
    let api = client(&url, &key);
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..8)
        .map(|i| {
            let (api, acknowledged, stop) = (api.clone(), acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let job = api.create_job(&batch_job(&format!("load {i}-{n}"))).await.expect("submit");
                    acknowledged.lock().unwrap().push(job.uuid);
                    n += 1;
                }
            })
        })
        .collect();
    wait_for("some acknowledged jobs", Duration::from_secs(30), || {
        let n = acknowledged.lock().unwrap().len();
        async move { (n >= 100).then_some(()) }
    })
    .await;
    let before: Vec<_> = acknowledged.lock().unwrap().clone();
    let out_dir = tempfile::tempdir().unwrap();
    let backup = out_dir.path().join("gantry.backup");
    let data = dir.path().to_str().unwrap();
    let out = gantry(&["admin", "backup", "--data-dir", data, "--out", backup.to_str().unwrap()]).await;
    assert!(out.status.success(), "backup failed: {}", text(&out));
    let during = acknowledged.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    for s in submitters {
        s.await.unwrap();
    }
    assert!(during > before.len(), "the load kept going while the backup ran");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600, "the backup holds the key");
    let again = gantry(&["admin", "backup", "--data-dir", data, "--out", backup.to_str().unwrap()]).await;
    assert!(!again.status.success() && text(&again).contains("exists"), "{}", text(&again));

    // The live data dir cannot be restored over: the server holds its lock.
    let out = gantry(&["admin", "restore", "--from", backup.to_str().unwrap(), "--data-dir", data, "--force"]).await;
    assert!(!out.status.success() && text(&out).contains("in use by a running gantry server"), "{}", text(&out));

    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    let target_str = target.to_str().unwrap();
    let out = gantry(&["admin", "restore", "--from", backup.to_str().unwrap(), "--data-dir", target_str]).await;
    assert!(out.status.success(), "restore failed: {}", text(&out));
    // A second restore would replace a store: only with --force.
    let out = gantry(&["admin", "restore", "--from", backup.to_str().unwrap(), "--data-dir", target_str]).await;
    assert!(!out.status.success() && text(&out).contains("--force"), "{}", text(&out));

    // The restored server serves every job acknowledged before the backup began, to
    // the same key (the server key travelled with the store).
    let (_restored_server, restored_url) = start_server(&target).await;
    let api = client(&restored_url, &key);
    for id in &before {
        api.get_job(*id).await.unwrap_or_else(|e| panic!("job {id}, acknowledged before the backup, is missing: {e}"));
    }
    let total = api.list_jobs(&[]).await.unwrap().total as usize;
    assert!(total >= before.len() && total <= during, "{total} restored, {} before, {during} after", before.len());
}

#[tokio::test]
async fn migrate_dry_run_lists_nothing_on_a_current_store_and_restore_checks_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap();
    // A fresh data dir: a start would apply every migration.
    let out = gantry(&["admin", "migrate", "--dry-run", "--json", "--data-dir", data_str]).await;
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["pending"].as_array().unwrap().len(), gantry_store::migrate::SQLITE.len());
    assert!(!data.join("gantry.db").exists(), "a dry run creates nothing");
    let out = gantry(&["admin", "migrate", "--data-dir", data_str]).await;
    assert!(out.status.success() && text(&out).contains("Applied"), "{}", text(&out));
    let out = gantry(&["admin", "migrate", "--dry-run", "--data-dir", data_str]).await;
    assert!(text(&out).contains("nothing to apply"), "{}", text(&out));

    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a tar").unwrap();
    let other = dir.path().join("other");
    let out =
        gantry(&["admin", "restore", "--from", junk.to_str().unwrap(), "--data-dir", other.to_str().unwrap()]).await;
    assert!(!out.status.success() && text(&out).contains("gantry backup"), "{}", text(&out));
    assert!(!other.join("gantry.db").exists());
}

#[tokio::test]
async fn the_server_tells_systemd_when_it_is_ready_and_when_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut server = Command::new(GANTRY)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), socket.recv(&mut buf))
        .await
        .expect("READY=1 within 30 s")
        .unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // Ready means serving: /healthz answers at the address in STATUS.
    let addr = ready.lines().find_map(|l| l.strip_prefix("STATUS=serving on ")).expect("STATUS names the address");
    assert!(reqwest::get(format!("http://{addr}/healthz")).await.unwrap().status().is_success());
    let pid = server.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf)).await.expect("STOPPING=1").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1"));
    assert!(server.wait().await.unwrap().success());
}

#[tokio::test]
async fn under_journald_log_lines_carry_no_timestamp_of_their_own() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let run = |stream_matches: bool| {
        let log = dir.path().join(format!("stderr-{stream_matches}"));
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        // systemd names the stream it connected; a stale variable names another one.
        let stream = if stream_matches { format!("{}:{}", meta.dev(), meta.ino()) } else { "1:1".into() };
        let out = std::process::Command::new(GANTRY)
            .args(["admin", "migrate", "--data-dir"])
            .arg(dir.path().join(format!("data-{stream_matches}")))
            .env("JOURNAL_STREAM", stream)
            .env("RUST_LOG", "info")
            .stderr(file)
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::read_to_string(log).unwrap()
    };
    let stale = run(false);
    let first = stale.lines().next().unwrap_or_default();
    assert!(first.starts_with("20"), "a stale JOURNAL_STREAM keeps timestamps: {stale}");
    // Where the journal socket exists the events go there natively; here (CI, no
    // systemd) the fallback is text without a timestamp and without colour.
    if !Path::new("/run/systemd/journal/socket").exists() {
        let journal = run(true);
        let first = journal.lines().next().unwrap_or_default();
        assert!(first.trim_start().starts_with("INFO") && !journal.contains('\u{1b}'), "{journal}");
    }
}
