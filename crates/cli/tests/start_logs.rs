//! What the real binary logs while it starts: each thing once, and nothing that is
//! not news (an operator reads these lines on every start).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::GANTRY;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::process::{Child, Command};

/// Runs `command` (with `RUST_LOG=info`) until a stdout line starts with `ready`,
/// stops it, and returns everything it wrote to stderr.
async fn start_logs(mut command: Command, ready: &str) -> String {
    let mut child: Child = command
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gantry starts");
    let mut stderr = child.stderr.take().expect("piped");
    let collected = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("gantry exited before it was ready");
            if line.starts_with(ready) {
                return;
            }
        }
    })
    .await
    .expect("gantry is ready within 60 s");
    child.kill().await.expect("stop gantry");
    collected.await.expect("stderr reader")
}

#[tokio::test]
async fn gantry_dev_opens_its_store_once() {
    let dir = tempfile::tempdir().unwrap();
    // The first start creates the dev keys too: before, each key opened the store again.
    let mut dev = Command::new(GANTRY);
    dev.args(["dev", "--no-agent", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path());
    let logs = start_logs(dev, "Gantry is up").await;
    assert_eq!(logs.matches("opened SQLite store").count(), 1, "{logs}");
}

#[tokio::test]
async fn a_postgres_server_start_logs_no_notices() {
    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (name, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    // The second start meets the tables the first one created: that is when PostgreSQL
    // answered the idempotent bookkeeping with "already exists, skipping" notices.
    for _ in 0..2 {
        let mut server = Command::new(GANTRY);
        server.args(["server", "--listen", "127.0.0.1:0", "--database-url", &url, "--data-dir"]).arg(dir.path());
        let logs = start_logs(server, "gantry server listening on").await;
        assert!(logs.contains("connected to PostgreSQL store"), "{logs}");
        assert!(!logs.contains("skipping") && !logs.contains("notice"), "{logs}");
    }
    gantry_store::testsuite::scratch_pg::drop_database(&admin_url, &name).await;
}
