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
//! **Off the start path:** creating a network costs the daemon about 100 ms (bridge,
//! iptables rules), as much again as starting a cached container. So [`Networks`]
//! keeps one spare network made ahead of time: a run takes it at once and a new spare
//! is made in the background. Networks are therefore not named after runs; the run
//! holding one is the container attached to it (the container's network mode).
//!
//! Networks carry the owner label like containers; the runtime's orphan sweep removes
//! this owner's networks that no container uses and that the runtime did not hand out
//! or set aside itself (left by a crash, or by an earlier agent process).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;
use ipnet::Ipv4Net;

use super::spec::LABEL_OWNER;

/// Prefix length of a run's subnet: 16 addresses, of which the container needs one.
const RUN_PREFIX: u8 = 28;
/// Subnets tried before giving up (the pool is almost full, or not usable at all).
const ATTEMPTS: u32 = 64;
/// Prefix of every run network's name.
pub const NETWORK_PREFIX: &str = "gantry-net-";

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
            return Err(format!(
                "network pool {base} is smaller than one /{RUN_PREFIX}; give a /{RUN_PREFIX} or larger"
            ));
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

    /// Where the search for the network `name` starts.
    fn start(&self, name: &str) -> u32 {
        // FNV-1a: stable across processes, spreads neighbouring names.
        let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        hash % self.capacity()
    }
}

/// A fresh network name.
fn fresh_name() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{NETWORK_PREFIX}{}", hex::encode(bytes))
}

/// Creates the network `name` on a free /28 of `pool`.
async fn create(docker: &Docker, name: &str, owner: &str, pool: &NetworkPool) -> Result<(), String> {
    let labels = HashMap::from([(LABEL_OWNER.to_string(), owner.to_string())]);
    let options = HashMap::from([
        ("com.docker.network.bridge.enable_icc".to_string(), "false".to_string()),
        ("com.docker.network.bridge.enable_ip_masquerade".to_string(), "true".to_string()),
    ]);
    let start = pool.start(name);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS.min(pool.capacity()) {
        let subnet = pool.subnet(start + attempt);
        let request = NetworkCreateRequest {
            name: name.to_string(),
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
            Ok(_) => return Ok(()),
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

/// Removes the network `name`; one that is gone counts as removed.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    match docker.remove_network(name).await {
        Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The networks of `owner` (names).
async fn owned(docker: &Docker, owner: &str) -> Result<Vec<String>, DockerError> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_OWNER}={owner}")])]);
    let networks = docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await?;
    Ok(networks.into_iter().filter_map(|n| n.name.or(n.id)).collect())
}

/// Removes every network of `owner` except those `keep` names, skipping ones a container
/// still uses (the daemon refuses to remove those).
pub async fn sweep(docker: &Docker, owner: &str, keep: impl Fn(&str) -> bool) -> Result<(), DockerError> {
    for name in owned(docker, owner).await? {
        if keep(&name) {
            continue;
        }
        match docker.inspect_network(&name, None).await {
            Ok(n) if n.containers.as_ref().is_some_and(|c| !c.is_empty()) => continue,
            Ok(_) => {}
            Err(_) => continue,
        }
        match remove(docker, &name).await {
            Ok(()) => tracing::debug!(network = %name, "removed a network nothing uses"),
            Err(e) => tracing::debug!(network = %name, error = %e, "cannot remove an unused network yet"),
        }
    }
    Ok(())
}

/// The runtime's networks: the ones it handed to runs or set aside as the spare.
pub struct Networks {
    docker: Docker,
    owner: String,
    pool: NetworkPool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Names made or adopted by this runtime and not removed since (spare included).
    known: HashSet<String>,
    /// A network made ahead, no run's yet.
    spare: Option<String>,
    /// Whether a spare is being made.
    refilling: bool,
}

impl Networks {
    /// Networks of `owner` on `pool`; the first spare is made on the first [`Networks::take`].
    pub fn new(docker: Docker, owner: String, pool: NetworkPool) -> Arc<Self> {
        Arc::new(Self { docker, owner, pool, state: Mutex::default() })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("networks poisoned")
    }

    /// A network for a new run: the spare if there is one, else a new one. Either way
    /// a new spare is then made in the background.
    pub async fn take(self: &Arc<Self>) -> Result<String, String> {
        let spare = self.state().spare.take();
        let name = match spare {
            Some(name) => name,
            None => self.make().await?,
        };
        self.refill();
        Ok(name)
    }

    async fn make(&self) -> Result<String, String> {
        let name = fresh_name();
        // Known before it exists, so a sweep listing it meanwhile leaves it alone.
        self.state().known.insert(name.clone());
        match create(&self.docker, &name, &self.owner, &self.pool).await {
            Ok(()) => Ok(name),
            Err(e) => {
                self.state().known.remove(&name);
                Err(e)
            }
        }
    }

    fn refill(self: &Arc<Self>) {
        {
            let mut state = self.state();
            if state.spare.is_some() || state.refilling {
                return;
            }
            state.refilling = true;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let made = me.make().await;
            let mut state = me.state();
            state.refilling = false;
            match made {
                Ok(name) if state.spare.is_none() => state.spare = Some(name),
                Ok(extra) => drop(extra), // cannot happen (one refill at a time); the sweep takes it
                Err(e) => tracing::debug!(error = %e, "cannot make a spare run network; runs will make their own"),
            }
        });
    }

    /// Records a network found on an adopted container.
    pub fn adopt(&self, name: &str) {
        if name.starts_with(NETWORK_PREFIX) {
            self.state().known.insert(name.to_string());
        }
    }

    /// Removes a run's network once its container is gone.
    pub async fn release(&self, name: &str) -> Result<(), DockerError> {
        remove(&self.docker, name).await?;
        self.state().known.remove(name);
        Ok(())
    }

    /// Removes this owner's networks that the runtime does not know and no container uses.
    pub async fn sweep(&self) -> Result<(), DockerError> {
        sweep(&self.docker, &self.owner, |name| self.state().known.contains(name)).await
    }
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
        let name = fresh_name();
        assert!(name.starts_with(NETWORK_PREFIX));
        assert_ne!(name, fresh_name());
        assert_eq!(pool.start(&name), pool.start(&name), "stable");
        assert!(NetworkPool::new("10.0.0.0/29".parse().unwrap()).is_err());
        let one = NetworkPool::new("10.9.9.5/28".parse().unwrap()).unwrap();
        assert_eq!((one.capacity(), one.subnet(3).to_string()), (1, "10.9.9.0/28".to_string()));
    }
}
