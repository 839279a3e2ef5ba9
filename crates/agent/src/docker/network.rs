//! One Docker network per run, so jobs on one node cannot reach each other.
//!
//! On Docker's default bridge every container can open every other container's ports
//! at its bridge address, whatever the owners' `allowed_ips` say. So each run gets a
//! bridge network of its own, made before its container and removed with it:
//!
//! - **Between runs:** Docker's isolation rules (`DOCKER-ISOLATION-STAGE-*`) drop
//!   traffic between two bridge networks, so a container cannot reach another run's
//!   container at any of its addresses. Inter-container traffic on the network itself
//!   is off too (`enable_icc=false`), so nothing changes if a second container ever
//!   joins a run's network.
//! - **Outbound:** the network is a normal NATed bridge (`enable_ip_masquerade`), so
//!   a job reaches the internet and whatever the node can route to.
//! - **Inbound:** nothing is published by Docker. A run's ports are reachable from
//!   outside only through the agent's port proxy ([`crate::proxy`]), which applies the
//!   run's `allowed_ips` to every source, other jobs on the node included (they come
//!   from their own network's address).
//!
//! Why per run and not per account: the agent is told runs, not accounts, and with
//! inter-container traffic off an account's runs could not talk over a shared
//! network anyway, so a shared one would only add bookkeeping. Gang jobs reach each
//! other through their published ports, as they do across nodes.
//!
//! **Addresses:** Docker's default address pools hold about 30 networks, far fewer
//! than the runs a CPU node may hold. Each run's network therefore takes a small
//! subnet (a /28) of the node's pool (`--network-pool`, default `10.213.0.0/16`:
//! 4,096 runs). The search starts at a place derived from the run's id and moves on
//! when the daemon says the subnet is taken (by another run, another agent sharing
//! the daemon, or anything else), so agents need no coordination.
//!
//! Networks carry the owner and run labels like containers; the runtime's orphan
//! sweep removes the ones no run claims.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;
use gantry_types::JobRunId;
use ipnet::Ipv4Net;

use super::spec::{LABEL_OWNER, LABEL_RUN};

/// Prefix length of a run's subnet: 16 addresses, of which the container needs one.
const RUN_PREFIX: u8 = 28;
/// Subnets tried before giving up (the pool is almost full, or not usable at all).
const ATTEMPTS: u32 = 64;

/// The name of a run's network.
pub fn network_name(run: JobRunId) -> String {
    format!("gantry-net-{run}")
}

/// Where run networks take their subnets from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPool {
    base: Ipv4Net,
}

impl Default for NetworkPool {
    fn default() -> Self {
        Self { base: "10.213.0.0/16".parse().expect("a valid network") }
    }
}

impl NetworkPool {
    /// A pool of `base`, which must hold at least one /28.
    pub fn new(base: Ipv4Net) -> Result<Self, String> {
        if base.prefix_len() > RUN_PREFIX {
            return Err(format!("network pool {base} is smaller than one /{RUN_PREFIX}; give a /{RUN_PREFIX} or larger"));
        }
        Ok(Self { base: base.trunc() })
    }

    /// How many run networks fit.
    pub fn capacity(&self) -> u32 {
        1 << (RUN_PREFIX - self.base.prefix_len())
    }

    /// The `index`-th subnet (modulo the capacity).
    pub fn subnet(&self, index: u32) -> Ipv4Net {
        let index = index % self.capacity();
        let start = u32::from(self.base.network()) + (index << (32 - RUN_PREFIX));
        Ipv4Net::new(Ipv4Addr::from(start), RUN_PREFIX).expect("prefix within range")
    }

    /// Where the search for `run` starts.
    fn start(&self, run: JobRunId) -> u32 {
        let bytes = run.to_string();
        // FNV-1a: stable across processes, spreads neighbouring ids.
        let hash = bytes.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        hash % self.capacity()
    }
}

/// Makes the run's network if it does not exist yet; returns its name.
pub async fn ensure(docker: &Docker, run: JobRunId, owner: &str, pool: &NetworkPool) -> Result<String, String> {
    let name = network_name(run);
    match docker.inspect_network(&name, None).await {
        Ok(_) => return Ok(name),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(e) => return Err(format!("cannot look up the run's network: {e}")),
    }
    let labels = HashMap::from([(LABEL_OWNER.to_string(), owner.to_string()), (LABEL_RUN.to_string(), run.to_string())]);
    let options = HashMap::from([
        ("com.docker.network.bridge.enable_icc".to_string(), "false".to_string()),
        ("com.docker.network.bridge.enable_ip_masquerade".to_string(), "true".to_string()),
    ]);
    let start = pool.start(run);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS.min(pool.capacity()) {
        let subnet = pool.subnet(start + attempt);
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            options: Some(options.clone()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig { subnet: Some(subnet.to_string()), ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => return Ok(name),
            Err(DockerError::DockerResponseServerError { message, .. }) if message.contains("overlaps") => {
                last = message;
            }
            Err(e) => return Err(format!("cannot create the run's network: {e}")),
        }
    }
    Err(format!(
        "cannot create the run's network: no free /{RUN_PREFIX} in the node's network pool {} after {ATTEMPTS} tries ({last})",
        pool.base
    ))
}

/// Removes the run's network; one that is gone counts as removed.
pub async fn remove(docker: &Docker, run: JobRunId) -> Result<(), DockerError> {
    match docker.remove_network(&network_name(run)).await {
        Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the networks of `owner` whose run `keep` does not claim (left by a crash
/// between creating a network and removing it). One still in use stays.
pub async fn sweep(docker: &Docker, owner: &str, keep: impl Fn(JobRunId) -> bool) -> Result<(), DockerError> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_OWNER}={owner}")])]);
    let networks = docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await?;
    for network in networks {
        let run = network.labels.as_ref().and_then(|l| l.get(LABEL_RUN)).and_then(|r| r.parse::<JobRunId>().ok());
        if run.is_some_and(&keep) {
            continue;
        }
        if let Some(name) = network.name.or(network.id) {
            match docker.remove_network(&name).await {
                Ok(()) => tracing::debug!(network = %name, "removed a network no run claims"),
                Err(e) => tracing::debug!(network = %name, error = %e, "cannot remove an unclaimed network yet"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_tile_the_pool() {
        let pool = NetworkPool::new("10.213.0.0/16".parse().unwrap()).unwrap();
        assert_eq!(pool.capacity(), 4096);
        assert_eq!(pool.subnet(0).to_string(), "10.213.0.0/28");
        assert_eq!(pool.subnet(1).to_string(), "10.213.0.16/28");
        assert_eq!(pool.subnet(4095).to_string(), "10.213.255.240/28");
        assert_eq!(pool.subnet(4096), pool.subnet(0), "wraps around");
        let run = JobRunId::new();
        assert_eq!(pool.start(run), pool.start(run), "stable");
        assert!(NetworkPool::new("10.0.0.0/29".parse().unwrap()).is_err());
        let one = NetworkPool::new("10.9.9.5/28".parse().unwrap()).unwrap();
        assert_eq!((one.capacity(), one.subnet(3).to_string()), (1, "10.9.9.0/28".to_string()));
    }
}
