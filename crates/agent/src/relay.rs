//! The agent's link to a relay (issue 14): which relay, with which token.
//!
//! An agent whose ports a relay carries (`gantry agent --relay HOST:PORT`, or
//! `--relay auto` for the relay the control plane offers) asks for a relay token on
//! every sync (`want_relay_token`); each answer's token and relay become the newest
//! [`Grant`], which the tunnel task (`gantry_relay::node::run`) uses on its next
//! (re)connect and to renew its open tunnel before the relay closes it at the old
//! token's expiry. The node names itself by its node uuid, which the token is bound to.
//! The runtimes publish runs' ports through the link's [`Publisher`].

use std::sync::Arc;

use gantry_relay::node::{Grant, Publisher, RelayAddr};
use gantry_types::NodeId;
use gantry_types::protocol::DesiredState;
use tokio::sync::watch;

/// One agent's relay: the tunnel's publisher and where its grants come from.
pub struct RelayLink {
    fixed: Option<String>,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    grants: watch::Sender<Option<Grant>>,
    publisher: Arc<Publisher>,
}

impl std::fmt::Debug for RelayLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLink").field("fixed", &self.fixed).finish_non_exhaustive()
    }
}

/// The host of a relay's `HOST:PORT` (what its certificate must name).
pub fn relay_host(addr: &str) -> Result<&str, String> {
    addr.rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("relay {addr:?}: give HOST:PORT of the relay's tunnel listener, or auto"))
}

/// `HOST:PORT` as a relay address, the certificate name being HOST.
pub fn relay_addr(addr: &str, tls: Arc<tokio_rustls::rustls::ClientConfig>) -> Result<RelayAddr, String> {
    let host = relay_host(addr)?;
    Ok(RelayAddr { addr: addr.to_string(), server_name: host.to_string(), tls })
}

impl RelayLink {
    /// A link to the relay at `fixed` (`HOST:PORT`), or to the one the control plane
    /// offers when `None`; its tunnel task runs until `stop`. Errors when `fixed` is
    /// not `HOST:PORT`.
    pub fn start(
        fixed: Option<String>,
        tls: Arc<tokio_rustls::rustls::ClientConfig>,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, String> {
        if let Some(addr) = &fixed {
            relay_addr(addr, tls.clone())?;
        }
        let (grants, receiver) = watch::channel(None);
        let publisher = Arc::new(Publisher::default());
        tokio::spawn(gantry_relay::node::run(receiver, publisher.clone(), stop));
        Ok(Arc::new(Self { fixed, tls, grants, publisher }))
    }

    /// Carries the runs' ports (for the runtime).
    pub fn publisher(&self) -> Arc<Publisher> {
        self.publisher.clone()
    }

    /// Takes a sync answer's relay token (and offered relay) as the newest grant.
    pub fn update(&self, node: NodeId, desired: &DesiredState) {
        let Some(token) = desired.relay_token.clone() else { return };
        let Some(addr) = self.fixed.clone().or_else(|| desired.relay.clone()) else {
            tracing::warn!("--relay auto, but the control plane offers no relay");
            return;
        };
        let relay = match relay_addr(&addr, self.tls.clone()) {
            Ok(relay) => relay,
            Err(e) => {
                tracing::warn!(error = %e, "the offered relay is unusable");
                return;
            }
        };
        let hello = gantry_relay::Hello { version: gantry_relay::PROTOCOL_VERSION, node: node.to_string(), token };
        // The tunnel task reads the newest grant when it (re)connects, moves to
        // another relay, or renews its open tunnel's token before that expires (it
        // decides when: not on every sync).
        self.grants.send_replace(Some(Grant { relay, hello }));
    }
}
