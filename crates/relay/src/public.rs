//! The relay's public ports: one per (node, run, published port), bound on the
//! relay's address from its port range when the node's agent publishes the port.
//!
//! A port stays bound while its run is published, also while the node's tunnel is
//! down (its connections are then refused at once), so a node that reconnects keeps
//! its runs' `node_urls`. Unpublishing a run closes its ports and every connection
//! through them. Asking again for a published (run, port) returns the same public
//! port; a `want`ed port (what a restarted relay handed out before) is taken when free.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::edge::Tunnels;
use crate::port::{PortLimits, Route, serve_port};
use crate::{Reply, Request};

type Key = (String, String, u16);

struct Allocation {
    public_port: u16,
    task: tokio::task::JoinHandle<()>,
}

/// The public ports of one relay.
pub struct PublicPorts {
    public_host: String,
    bind: IpAddr,
    first: u16,
    last: u16,
    tunnels: Tunnels,
    limits: PortLimits,
    ports: Mutex<HashMap<Key, Allocation>>,
}

impl PublicPorts {
    /// Ports `first..=last` on `bind`, reached by users at `public_host`, carried over
    /// `tunnels`, each bounded by `limits`.
    pub fn new(
        public_host: impl Into<String>,
        bind: IpAddr,
        (first, last): (u16, u16),
        tunnels: Tunnels,
        limits: PortLimits,
    ) -> Self {
        Self { public_host: public_host.into(), bind, first, last, tunnels, limits, ports: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Allocation>> {
        self.ports.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request of `node`'s agent.
    pub fn handle(&self, node: &str, request: Request) -> Reply {
        match request {
            Request::Publish { run, port, allowed, want } => match self.publish(node, &run, port, &allowed, want) {
                Ok(public) => Reply {
                    ok: true,
                    public_port: Some(public),
                    public_host: Some(self.public_host.clone()),
                    error: None,
                },
                Err(error) => Reply { ok: false, public_port: None, public_host: None, error: Some(error) },
            },
            Request::Unpublish { run } => {
                self.unpublish(node, &run);
                Reply { ok: true, public_port: None, public_host: None, error: None }
            }
            // The tunnel's own business (crate::edge answers it before it gets here).
            Request::Renew { .. } => Reply {
                ok: false,
                public_port: None,
                public_host: None,
                error: Some("a renewal is answered by the tunnel, not the public ports".into()),
            },
        }
    }

    /// The public port carrying `run`'s `port` on `node`, bound now unless it is
    /// already; `Err` says why not (bad `allowed`, range full).
    pub fn publish(
        &self,
        node: &str,
        run: &str,
        port: u16,
        allowed: &[String],
        want: Option<u16>,
    ) -> Result<u16, String> {
        let key = (node.to_string(), run.to_string(), port);
        if let Some(existing) = self.lock().get(&key) {
            return Ok(existing.public_port);
        }
        let allowed = allowed
            .iter()
            .map(|a| {
                a.parse::<ipnet::IpNet>()
                    .or_else(|_| a.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("allowed_ips: {a:?} is not an address or CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut ports = self.lock();
        if let Some(existing) = ports.get(&key) {
            return Ok(existing.public_port);
        }
        let taken: std::collections::HashSet<u16> = ports.values().map(|a| a.public_port).collect();
        let candidates =
            want.filter(|w| (self.first..=self.last).contains(w)).into_iter().chain(self.first..=self.last);
        for candidate in candidates.filter(|p| !taken.contains(p)) {
            let Ok(socket) = std::net::TcpListener::bind((self.bind, candidate)) else { continue };
            socket.set_nonblocking(true).map_err(|e| format!("cannot serve a public port: {e}"))?;
            let listener =
                tokio::net::TcpListener::from_std(socket).map_err(|e| format!("cannot serve a public port: {e}"))?;
            let route = Route { node: node.to_string(), run: run.to_string(), port, allowed };
            let task = serve_port(listener, Arc::new(route), self.tunnels.clone(), self.limits);
            ports.insert(key, Allocation { public_port: candidate, task });
            tracing::info!(node, run, port, public_port = candidate, "public port open");
            return Ok(candidate);
        }
        Err(format!("the relay's port range {}-{} is full", self.first, self.last))
    }

    /// Closes every public port of `run` on `node` and the connections through them.
    pub fn unpublish(&self, node: &str, run: &str) {
        self.lock().retain(|(n, r, _), allocation| {
            let keep = n != node || r != run;
            if !keep {
                allocation.task.abort();
                tracing::info!(node, run, public_port = allocation.public_port, "public port closed");
            }
            keep
        });
    }

    /// The runs with a published port, each once.
    pub fn published_runs(&self) -> Vec<String> {
        let runs: std::collections::BTreeSet<String> = self.lock().keys().map(|(_, run, _)| run.clone()).collect();
        runs.into_iter().collect()
    }

    /// Closes every public port of `run`, whichever node published it (when a run
    /// ended, no node should carry it), and the connections through them.
    pub fn unpublish_run(&self, run: &str) {
        self.lock().retain(|(node, r, _), allocation| {
            let keep = r != run;
            if !keep {
                allocation.task.abort();
                tracing::info!(node, run, public_port = allocation.public_port, "public port closed: the run ended");
            }
            keep
        });
    }

    /// The public port of `run`'s `port` on `node`, when published.
    pub fn public_port(&self, node: &str, run: &str, port: u16) -> Option<u16> {
        self.lock().get(&(node.to_string(), run.to_string(), port)).map(|a| a.public_port)
    }
}

impl Drop for PublicPorts {
    fn drop(&mut self) {
        for (_, allocation) in self.lock().drain() {
            allocation.task.abort();
        }
    }
}
