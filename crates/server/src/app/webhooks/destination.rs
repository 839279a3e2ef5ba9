//! Where webhooks may not go: loopback, private, link-local, shared and unspecified
//! addresses (`gantry_auth::is_internal`, the same rule the agent applies to
//! registries), unless the server runs with `--webhooks-allow-private`.
//!
//! Checked twice: when an endpoint is created (its name is resolved then, and a name
//! that does not resolve is refused too), and on every delivery, after DNS, by the
//! HTTP client's resolver ([`GuardedResolver`]): a name that resolved to a public
//! address at creation may point inside later (DNS rebinding), and the flag may have
//! been turned off since. Redirects are not followed and no proxy is used, so the
//! connection goes only to an address that was checked.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gantry_auth::is_internal;

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The refusal, saying how an operator allows it.
fn refusal(host: &str, ip: IpAddr) -> String {
    format!(
        "{host} is a loopback, private or link-local address ({ip}); webhooks are not delivered there \
         (an operator can allow it with gantry server --webhooks-allow-private)"
    )
}

/// Names that are internal by definition, refused without asking DNS.
fn internal_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// Resolves `host:port` (an IP literal needs no DNS), refusing internal addresses
/// unless `allow_private`. `Err` is a sentence for the caller.
pub async fn resolve_checked(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !allow_private && is_internal(ip) {
            return Err(refusal(host, ip));
        }
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if !allow_private && internal_name(host) {
        return Err(refusal(host, std::net::Ipv6Addr::LOCALHOST.into()));
    }
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let addrs: Vec<SocketAddr> = match lookup {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => return Err(format!("{host} does not resolve ({e})")),
        Err(_) => return Err(format!("{host} did not resolve within {}s", RESOLVE_TIMEOUT.as_secs())),
    };
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
        return Err(refusal(host, bad.ip()));
    }
    Ok(addrs)
}

/// The webhook client's resolver: [`resolve_checked`] at connection time.
pub struct GuardedResolver {
    /// `--webhooks-allow-private`.
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (host, allow) = (name.as_str().to_owned(), self.allow_private);
        Box::pin(async move {
            // Port 0: the client puts the URL's port in.
            let addrs = resolve_checked(&host, 0, allow).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_destinations_are_refused_unless_allowed() {
        for host in ["127.0.0.1", "::1", "localhost", "api.localhost"] {
            let e = resolve_checked(host, 80, false).await.unwrap_err();
            assert!(e.contains("--webhooks-allow-private"), "{host}: {e}");
        }
        assert!(resolve_checked("127.0.0.1", 80, true).await.is_ok());
        let e = resolve_checked("hooks.invalid", 80, false).await.unwrap_err();
        assert!(e.contains("hooks.invalid"), "{e}");
    }

    #[tokio::test]
    async fn the_connection_time_resolver_refuses_too() {
        use reqwest::dns::Resolve;
        let guarded = GuardedResolver { allow_private: false };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(guarded.resolve(name).await.is_err());
    }
}
