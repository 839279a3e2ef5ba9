//! One Docker network per account on the node, so jobs of different accounts cannot
//! reach each other, without making a network on a run's start path.
//!
//! On Docker's default bridge every container can open every other container's ports
//! at its bridge address, whatever the owners' `allowed_ips` say. So the runs of each
//! account (the [`Tenant`]) on this node share a bridge network of the account's own:
//!
//! - **Between accounts:** Docker's isolation rules (`DOCKER-ISOLATION-STAGE-*`) drop
//!   traffic between two bridge networks, so a container cannot reach another
//!   account's container at any of its addresses.
//! - **Within an account:** inter-container traffic on the network is off
//!   (`enable_icc=false`), so two runs of one account cannot reach each other by
//!   address either: sharing the network shares nothing but the subnet. Gang jobs
//!   reach each other through their published ports, as they do across nodes.
//! - **Outbound:** the network is a normal NATed bridge (`enable_ip_masquerade`), so
//!   a job reaches the internet and whatever the node can route to.
//! - **Inbound:** nothing is published by Docker. A run's ports are reachable from
//!   outside only through the agent's port proxy ([`crate::proxy`]), which applies the
//!   run's `allowed_ips` to every source, other jobs on the node included (they come
//!   from their own network's address).
//!
//! **Why per account and not per run:** making a bridge network costs the daemon
//! about 100 ms (bridge, iptables rules, under the daemon's network lock) and removing
//! one about as much; done for every run, that work sat on or next to each start
//! (`gantry bench agent`: +199 ms over a plain `docker run`). An account's network is
//! made on its first run on the node and then reused, so a start only attaches a
//! container to a bridge that exists. The isolation between accounts is the same as
//! with one network per run. What remains is Docker's own price for any user-defined
//! network over the default bridge: it sets up its embedded DNS resolver in each
//! container's namespace (iptables rules run in the namespace), which plain
//! `docker run` showed at about 50 to 140 ms more per start on Docker 20.10 on a
//! loaded 2-core machine (the same `docker run` with and without `--network`).
//!
//! **Off the start path:** [`Networks`] also keeps one spare network made ahead of
//! time, so even an account's first run on the node takes a network at once (a new
//! spare is then made in the background). Networks are therefore not named after
//! accounts; which account holds one is kept in memory, and rebuilt after a restart
//! from the account label of the containers attached to it.
//!
//! **Lifetime:** a network whose last run is gone stays for [`Networks::idle_after`]
//! (the agent's `--network-idle-secs`, default 10 minutes), so an account submitting
//! one job after another keeps its network, and is then removed by the runtime's
//! periodic rescan ([`Networks::expire`]). On agent start the sweep removes every
//! network of this owner that no adopted container uses (accounts with no runs).
//! A network taken from the pool when it is full first expires every idle one.
//!
//! **Addresses:** Docker's default address pools hold about 30 networks, far fewer
//! than the accounts a node may serve. Each network therefore takes a /26 of the
//! node's pool (`--network-pool`, default `10.213.0.0/16`: 1,024 networks), and holds
//! at most [`RUNS_PER_NETWORK`] runs (an account with more runs on the node gets a
//! second network). The search starts at a place derived from the network's name and
//! moves on when the daemon says the subnet is taken (by another network, another
//! agent sharing the daemon, or anything else), so agents need no coordination.
//!
//! Networks carry the owner label like containers; the runtime's orphan sweep removes
//! this owner's networks that no container uses and that the runtime did not hand out
//! or set aside itself (left by a crash, or by an earlier agent process).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;
use gantry_types::{AccountId, JobRunId};
use ipnet::Ipv4Net;

use super::spec::LABEL_OWNER;

/// Prefix length of a network's subnet: 64 addresses, of which the network address,
/// the broadcast address and the gateway are not the containers'.
const NET_PREFIX: u8 = 26;
/// Most runs on one network (its 61 container addresses, less a margin); an account
/// with more runs on the node gets another network.
pub const RUNS_PER_NETWORK: usize = 56;
const _: () = assert!(RUNS_PER_NETWORK + 3 <= 1 << (32 - NET_PREFIX), "a network's subnet holds its runs");
/// How long a network without runs is kept for its account by default.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);
/// Subnets tried before giving up (the pool is almost full, or not usable at all).
const ATTEMPTS: u32 = 64;
/// Prefix of every network's name.
pub const NETWORK_PREFIX: &str = "gantry-net-";

/// Where the networks take their subnets from.
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
        if base.prefix_len() > NET_PREFIX {
            return Err(format!(
                "network pool {base} is smaller than one /{NET_PREFIX}; give a /{NET_PREFIX} or larger (a /16 holds 1,024 networks)"
            ));
        }
        Ok(Self { base: base.trunc() })
    }

    /// The pool's address range.
    pub fn base(&self) -> Ipv4Net {
        self.base
    }

    /// How many networks fit.
    pub fn capacity(&self) -> u32 {
        1 << (NET_PREFIX - self.base.prefix_len())
    }

    /// The `index`-th subnet (modulo the capacity).
    pub fn subnet(&self, index: u32) -> Ipv4Net {
        let index = index % self.capacity();
        let start = u32::from(self.base.network()) + (index << (32 - NET_PREFIX));
        Ipv4Net::new(Ipv4Addr::from(start), NET_PREFIX).expect("prefix within range")
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

/// Creates the network `name` on a free /26 of `pool`, made as every job network is
/// (inter-container traffic off, NATed outbound). Public for `gantry bench agent`,
/// whose "docker run with the same isolation" reference attaches to such a network.
pub async fn create(docker: &Docker, name: &str, owner: &str, pool: &NetworkPool) -> Result<(), String> {
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
            Err(e) => return Err(format!("cannot create the job's network: {e}")),
        }
    }
    Err(format!(
        "cannot create the job's network: no free /{NET_PREFIX} in the node's network pool {} after {ATTEMPTS} tries ({last})",
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

/// Who shares a network: the runs of one account. A run whose spec names no account
/// (sent by a server from before accounts were sent) is a tenant of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tenant {
    /// The runs of this account.
    Account(AccountId),
    /// This run alone.
    Run(JobRunId),
}

impl Tenant {
    /// The tenant of `run`, whose job belongs to `account` when known.
    pub fn of(account: Option<AccountId>, run: JobRunId) -> Self {
        account.map_or(Self::Run(run), Self::Account)
    }
}

/// The networks of this owner: per tenant, the ones holding its runs (or idle, kept
/// for its next run), and the spare.
pub struct Networks {
    docker: Docker,
    owner: String,
    pool: NetworkPool,
    idle_after: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Names made or adopted by this runtime and not removed since (spare included).
    known: HashSet<String>,
    /// The networks of each tenant.
    tenants: HashMap<Tenant, Vec<TenantNetwork>>,
    /// A network made ahead, no tenant's yet.
    spare: Option<String>,
    /// Whether a spare is being made.
    refilling: bool,
}

struct TenantNetwork {
    name: String,
    runs: HashSet<JobRunId>,
    /// Since when no run holds it.
    idle_since: Option<Instant>,
}

impl State {
    /// A network of `tenant` with room for one more run, which then holds it.
    fn join(&mut self, tenant: Tenant, run: JobRunId) -> Option<String> {
        let nets = self.tenants.get_mut(&tenant)?;
        if let Some(n) = nets.iter_mut().find(|n| n.runs.contains(&run)) {
            return Some(n.name.clone());
        }
        let n = nets.iter_mut().find(|n| n.runs.len() < RUNS_PER_NETWORK)?;
        n.runs.insert(run);
        n.idle_since = None;
        Some(n.name.clone())
    }

    fn add(&mut self, tenant: Tenant, run: JobRunId, name: String) {
        let runs = HashSet::from([run]);
        self.tenants.entry(tenant).or_default().push(TenantNetwork { name, runs, idle_since: None });
    }
}

impl Networks {
    /// Networks of `owner` on `pool`, each kept for [`DEFAULT_IDLE`] once unused; the
    /// first spare is made on the first [`Networks::take`].
    pub fn new(docker: Docker, owner: String, pool: NetworkPool) -> Arc<Self> {
        Self::with_idle(docker, owner, pool, DEFAULT_IDLE)
    }

    /// As [`Networks::new`], keeping an unused network for `idle_after`.
    pub fn with_idle(docker: Docker, owner: String, pool: NetworkPool, idle_after: Duration) -> Arc<Self> {
        Arc::new(Self { docker, owner, pool, idle_after, state: Mutex::default() })
    }

    /// How long a network without runs is kept for its tenant.
    pub fn idle_after(&self) -> Duration {
        self.idle_after
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("networks poisoned")
    }

    /// The network for `run` of `tenant`: the tenant's own if it has one with room
    /// (no daemon call at all), else the spare, else a new one; a spare taken is
    /// replaced in the background.
    pub async fn take(self: &Arc<Self>, tenant: Tenant, run: JobRunId) -> Result<String, String> {
        let spare = {
            let mut state = self.state();
            if let Some(name) = state.join(tenant, run) {
                return Ok(name);
            }
            state.spare.take()
        };
        let name = match spare {
            Some(name) => name,
            None => match self.make().await {
                Ok(name) => name,
                // The pool may be full of idle networks: free them, then try once more.
                Err(e) if self.has_idle() => {
                    tracing::debug!(error = %e, "no network made; removing idle ones first");
                    self.expire_after(Duration::ZERO).await;
                    self.make().await?
                }
                Err(e) => return Err(e),
            },
        };
        // Another run of the tenant may have got a network meanwhile: use that one.
        let theirs = {
            let mut state = self.state();
            let theirs = state.join(tenant, run);
            if theirs.is_none() {
                state.add(tenant, run, name.clone());
            }
            theirs
        };
        let name = match theirs {
            Some(theirs) => {
                self.put_back(name).await;
                theirs
            }
            None => name,
        };
        self.refill();
        Ok(name)
    }

    /// A network made but not needed: the spare, or removed.
    async fn put_back(&self, name: String) {
        {
            let mut state = self.state();
            if state.spare.is_none() {
                state.spare = Some(name);
                return;
            }
        }
        if remove(&self.docker, &name).await.is_ok() {
            self.state().known.remove(&name);
        }
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
                Err(e) => tracing::debug!(error = %e, "cannot make a spare network; runs will make their own"),
            }
        });
    }

    /// Records the network `name` of an adopted container of `run` (of `tenant`).
    pub fn adopt(&self, tenant: Tenant, run: JobRunId, name: &str) {
        if !name.starts_with(NETWORK_PREFIX) {
            return;
        }
        let mut state = self.state();
        state.known.insert(name.to_string());
        let nets = state.tenants.entry(tenant).or_default();
        match nets.iter_mut().find(|n| n.name == name) {
            Some(n) => {
                n.runs.insert(run);
                n.idle_since = None;
            }
            None => nets.push(TenantNetwork { name: name.to_string(), runs: HashSet::from([run]), idle_since: None }),
        }
    }

    /// `run` no longer holds a network (its container is gone). The network stays
    /// for its tenant; [`Networks::expire`] removes it once idle long enough.
    pub fn release(&self, run: JobRunId) {
        let mut state = self.state();
        for n in state.tenants.values_mut().flatten() {
            if n.runs.remove(&run) && n.runs.is_empty() {
                n.idle_since = Some(Instant::now());
            }
        }
    }

    fn has_idle(&self) -> bool {
        self.state().tenants.values().flatten().any(|n| n.runs.is_empty())
    }

    /// Removes the networks idle for [`Networks::idle_after`] (the runtime's rescan
    /// calls it).
    pub async fn expire(&self) {
        self.expire_after(self.idle_after).await;
    }

    async fn expire_after(&self, idle: Duration) {
        let now = Instant::now();
        let expired: Vec<String> = {
            let mut state = self.state();
            let mut expired = Vec::new();
            for nets in state.tenants.values_mut() {
                nets.retain(|n| {
                    let done = n.runs.is_empty() && n.idle_since.is_some_and(|t| now.duration_since(t) >= idle);
                    if done {
                        expired.push(n.name.clone());
                    }
                    !done
                });
            }
            state.tenants.retain(|_, nets| !nets.is_empty());
            expired
        };
        for name in expired {
            // Unknown from now on either way: one the daemon would not remove yet is
            // left to the sweep, which removes this owner's unknown unused networks.
            match remove(&self.docker, &name).await {
                Ok(()) => tracing::debug!(network = %name, "removed an idle network"),
                Err(e) => tracing::debug!(network = %name, error = %e, "cannot remove an idle network yet"),
            }
            self.state().known.remove(&name);
        }
    }

    /// The network names per tenant with their run counts (tests and diagnostics).
    pub fn held(&self) -> Vec<(Tenant, String, usize)> {
        let state = self.state();
        let mut out: Vec<_> = state
            .tenants
            .iter()
            .flat_map(|(t, nets)| nets.iter().map(move |n| (*t, n.name.clone(), n.runs.len())))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
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
        assert_eq!(pool.capacity(), 1024);
        assert_eq!(pool.subnet(0).to_string(), "10.213.0.0/26");
        assert_eq!(pool.subnet(1).to_string(), "10.213.0.64/26");
        assert_eq!(pool.subnet(1023).to_string(), "10.213.255.192/26");
        assert_eq!(pool.subnet(1024), pool.subnet(0), "wraps around");
        let name = fresh_name();
        assert!(name.starts_with(NETWORK_PREFIX));
        assert_ne!(name, fresh_name());
        assert_eq!(pool.start(&name), pool.start(&name), "stable");
        assert!(NetworkPool::new("10.0.0.0/27".parse().unwrap()).is_err());
        let one = NetworkPool::new("10.9.9.5/26".parse().unwrap()).unwrap();
        assert_eq!((one.capacity(), one.subnet(3).to_string()), (1, "10.9.9.0/26".to_string()));
    }

    #[test]
    fn a_tenant_shares_its_network_until_it_is_full() {
        let (a, b) = (Tenant::Account(AccountId::new()), Tenant::Account(AccountId::new()));
        let mut state = State::default();
        let first = JobRunId::new();
        assert_eq!(state.join(a, first), None, "no network yet");
        state.add(a, first, "net-a".into());
        let mut runs = vec![first];
        for _ in 1..RUNS_PER_NETWORK {
            let run = JobRunId::new();
            assert_eq!(state.join(a, run).as_deref(), Some("net-a"));
            runs.push(run);
        }
        assert_eq!(state.join(a, first).as_deref(), Some("net-a"), "a run asking again keeps its network");
        assert_eq!(state.join(a, JobRunId::new()), None, "full: the account needs a second network");
        assert_eq!(state.join(b, JobRunId::new()), None, "another account never gets it");
        assert_eq!(Tenant::of(None, first), Tenant::Run(first));
    }
}
