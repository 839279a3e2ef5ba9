//! A restart of the only instance with a large store: `gantry bench restart` (a real
//! `gantry server` on SQLite, killed with SIGKILL, the store filled while it is down,
//! started again on the same port) at 10,000 jobs, held to issue 11's bounds for
//! 100,000: accepting signed requests within 2 s and placing a new job within 5 s of
//! the process's start. This test binary is a debug build, several times slower than
//! a release one, so a tenth of the jobs under the same bounds leaves it no slack it
//! does not need; `gantry bench restart --jobs 100000` (release) gives the figures at
//! full size (README, benchmarks).

mod common;

use serde_json::Value;
use tokio::process::Command;

use common::GANTRY;

#[tokio::test]
async fn a_restart_with_ten_thousand_jobs_accepts_within_2_s_and_schedules_within_5_s() {
    let out = Command::new(GANTRY)
        .args(["bench", "restart", "--jobs", "10000", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench restart failed: {stderr}");
    let f: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    eprintln!("{f}");
    assert_eq!(f["jobs"], 10_000);
    let ms = |phase: &str, k: &str| f[phase][k].as_i64().unwrap_or_else(|| panic!("no {phase}.{k} in {f}"));
    // The reference restart (empty store) placed its probe too, so both were measured.
    assert!(ms("empty", "scheduling_ms") > 0, "{f}");
    assert!(ms("full", "accepting_ms") <= 2_000, "accepting after {} ms: {f}", ms("full", "accepting_ms"));
    assert!(ms("full", "scheduling_ms") <= 5_000, "scheduling after {} ms: {f}", ms("full", "scheduling_ms"));
}
