//! Defence in depth for the isolation between job networks: one rule of our own in
//! Docker's `DOCKER-USER` chain that drops traffic from any job network to any other
//! (`-s POOL -d POOL -j DROP`, POOL being the agent's `--network-pool`).
//!
//! Why: the isolation between accounts ([`super::network`]) rests on the daemon's
//! `DOCKER-ISOLATION-STAGE-*` rules, which it rewrites whenever a network is created
//! or removed, and libnetwork's rule handling is not safe under concurrent network
//! changes (moby/moby#25393). Under the test suite's churn of networks, one run saw a
//! container reach another account's container across networks. `DOCKER-USER` is
//! evaluated first in `FORWARD` and Docker never rewrites it, so this rule holds
//! whatever the daemon's own chains look like at that moment.
//!
//! It costs nothing legitimate: jobs never talk to each other by container address
//! (inter-container traffic is off even within an account's network; gang members
//! use their published ports), a job's traffic to its gateway and the node is
//! `INPUT`, and the agent's port proxies reach containers from the host (`OUTPUT`).
//!
//! It needs `iptables` and root (or CAP_NET_ADMIN). An agent without them (e.g. a
//! non-root agent in the `docker` group) logs a warning once and relies on Docker's
//! rules alone. The rule is left in place when the agent stops: it only ever drops
//! traffic that should not exist.

use ipnet::Ipv4Net;
use tokio::process::Command;

/// The rule's arguments after the chain: `-s POOL -d POOL -j DROP`.
fn rule(pool: Ipv4Net) -> Vec<String> {
    let pool = pool.to_string();
    ["-s", &pool, "-d", &pool, "-j", "DROP"].iter().map(|s| s.to_string()).collect()
}

/// Makes sure the rule is in `DOCKER-USER` (inserted first when missing). An error
/// says why it could not (no iptables, not permitted, no such chain).
pub async fn isolate_pool(pool: Ipv4Net) -> Result<(), String> {
    let run = |action: &str| {
        let mut cmd = Command::new("iptables");
        cmd.args(["-w", action, "DOCKER-USER"]).args(rule(pool));
        cmd
    };
    let present = run("-C").output().await.map_err(|e| format!("cannot run iptables: {e}"))?;
    if present.status.success() {
        return Ok(());
    }
    let inserted = run("-I").output().await.map_err(|e| format!("cannot run iptables: {e}"))?;
    if inserted.status.success() {
        return Ok(());
    }
    Err(format!("iptables -I DOCKER-USER failed: {}", String::from_utf8_lossy(&inserted.stderr).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_drops_pool_to_pool_only() {
        let pool: Ipv4Net = "10.213.0.0/16".parse().unwrap();
        assert_eq!(rule(pool), ["-s", "10.213.0.0/16", "-d", "10.213.0.0/16", "-j", "DROP"]);
    }
}
