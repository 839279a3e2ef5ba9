//! Failover under load, small: `gantry bench failover` (three real `gantry server`
//! processes on one PostgreSQL database, simulated nodes spread over them, jobs
//! submitted round-robin across the instances, the leader killed with SIGKILL
//! mid-run) at a few nodes and tens of jobs a second, its figures asserted: a new
//! leader places within the bound, and nothing acknowledged is lost, no attempt runs
//! twice, no node is over-committed, no agent is declared lost.
//!
//! The bench is the program under test here as much as the servers are: what it
//! reports is what an operator would be told, so the test holds it to the same
//! properties, and checks that the run really had work on both sides of the kill.

mod common;

use serde_json::Value;
use tokio::process::Command;

use common::GANTRY;

/// Kill → first placement by the new leader: issue 11's target is 5 s (the lease TTL
/// of 3 s, a follower's check period of 0.5 s and the new leader's first pass fit in
/// it; 2.9–3.6 s measured here), plus 1 s for a loaded CI machine.
const TAKEOVER_BOUND_MS: i64 = 6_000;

#[tokio::test]
async fn killing_the_leader_under_load_loses_doubles_and_overcommits_nothing() {
    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (database, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    let out = Command::new(GANTRY)
        .args(["bench", "failover", "--database-url", &url, "--json"])
        .args(["--nodes", "3", "--cores", "64", "--rate", "20", "--seconds", "8", "--kill-after", "3"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    gantry_store::testsuite::scratch_pg::drop_database(&admin_url, &database).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failover failed: {stderr}");
    let f: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    eprintln!("{f}");
    let n = |k: &str| f[k].as_i64().unwrap_or_else(|| panic!("no {k} in {f}"));

    // Work on both sides of the kill, or the properties below say nothing.
    assert!(n("acknowledged") >= 100, "too few jobs acknowledged: {f}");
    assert!(n("runs_after_kill") > 0, "nothing placed after the kill: {f}");
    let took = n("kill_to_first_placement_ms");
    assert!((0..=TAKEOVER_BOUND_MS).contains(&took), "takeover took {took} ms: {f}");

    assert_eq!(n("acknowledged_lost"), 0, "acknowledged jobs lost: {f}");
    assert_eq!(n("double_runs"), 0, "an attempt ran twice: {f}");
    assert_eq!(n("overcommitted_nodes"), 0, "a node was over-committed: {f}");
    assert_eq!(n("agents_lost"), 0, "an agent was declared lost: {f}");
    assert_eq!(n("runs_ended"), 0, "a run was ended (its node taken for lost?): {f}");
}
