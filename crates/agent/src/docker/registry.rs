//! Which registries a job may make the node pull from (issue 15 item 11).
//!
//! A pull is a request the node's daemon makes on a job's behalf, from inside the
//! operator's network. A registry `host` on a loopback, link-local (cloud metadata
//! services live at 169.254.169.254), private or shared address would let any
//! tenant probe the operator's own services, so such hosts are refused unless the
//! operator allows them (`gantry agent --allow-private-registries`; the tests, whose
//! registry listens on loopback, do). Names are resolved and refused when any
//! address they resolve to is such an address; a name that does not resolve is left
//! to the pull, which then fails as unreachable.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// How long a registry name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

pub use gantry_auth::is_internal;

/// `host[:port]` → (host, port); `[v6]:port` and bare IPv6 understood.
fn split_host(registry: &str) -> (&str, u16) {
    if let Some(rest) = registry.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(443));
    }
    if registry.matches(':').count() > 1 {
        return (registry, 443); // a bare IPv6 address
    }
    match registry.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(443)),
        None => (registry, 443),
    }
}

/// Refuses `registry` (as [`super::pull::registry_of`] gives it) when it is on an
/// internal address; the reason says how the operator allows it.
pub async fn check_public(registry: &str) -> Result<(), String> {
    if registry == "docker.io" {
        return Ok(());
    }
    let (host, port) = split_host(registry);
    let refuse = |ip: IpAddr| {
        Err(format!(
            "registry {registry} is on a loopback, link-local or private address ({ip}), which this node does not pull from \
             (the node operator can allow it with gantry agent --allow-private-registries)"
        ))
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_internal(ip) { refuse(ip) } else { Ok(()) };
    }
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return refuse(Ipv6Addr::LOCALHOST.into());
    }
    let Ok(Ok(addresses)) = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await else {
        return Ok(());
    };
    for address in addresses {
        if is_internal(address.ip()) {
            return refuse(address.ip());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "172.32.0.1", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn registries_on_internal_addresses_are_refused() {
        for registry in ["127.0.0.1:5000", "localhost:5000", "[::1]:5000", "169.254.169.254", "10.0.0.5"] {
            let reason = check_public(registry).await.unwrap_err();
            assert!(reason.contains("--allow-private-registries"), "{registry}: {reason}");
        }
        assert!(check_public("docker.io").await.is_ok());
        assert!(check_public("203.0.113.9:5000").await.is_ok());
        assert!(check_public("registry.invalid").await.is_ok(), "unresolvable names are left to the pull");
    }
}
