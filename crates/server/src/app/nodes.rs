//! Nodes: registration, the sync protocol (heartbeat + reports + desired state), the
//! node view, and drain.
//!
//! Fencing: a node's runs are granted under its `lease_epoch`. When the node is
//! declared lost its runs fail and, when it registers again, it gets a new epoch; a
//! sync carrying the old epoch is answered `fenced`, so a node that comes back from a
//! partition stops the containers nobody wants any more instead of running them
//! twice.

use std::collections::HashMap;
use std::time::Duration;

use gantry_store::{NodeRecord, RunFilter, RunRecord};
use gantry_types::job::{Job, JobStatus};
use gantry_types::job_run::JobRunStatus;
use gantry_types::node::{Node, NodeDrive, NodeGpu, NodeRam, NodeStatus, RegisterNodeRequest};
use gantry_types::protocol::{DesiredAction, DesiredRun, DesiredState, Registration, RunSpec, SyncRequest};
use gantry_types::{AccountId, FieldError, NodeId, Timestamp};

use crate::app::error::AppError;
use crate::app::runs::{self, ACTIVE};
use crate::signals::NodeState;
use crate::state::{AppState, now_ms};

/// How often an idle agent syncs (its heartbeat), ms; the loss detector allows
/// several missed syncs before declaring a node lost.
pub const SYNC_INTERVAL_MS: u64 = 1_000;
/// Longest long-poll a sync may ask for.
pub const MAX_WAIT_MS: u64 = 25_000;

/// Registers a node (new, or an agent re-attaching to its node).
pub async fn register(
    state: &AppState,
    account: AccountId,
    req: RegisterNodeRequest,
) -> Result<Registration, AppError> {
    let mut errors = Vec::new();
    let inventory = req.inventory.unwrap_or_default();
    if let Some(code) = &req.region_code
        && !gantry_types::region::is_region_code(code)
    {
        errors.push(FieldError::new("region_code", format!("unknown region code {code:?}")));
    }
    errors.extend(gantry_types::limits::check_inventory(&inventory));
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let now = now_ms();
    let existing = match req.node_uuid {
        Some(id) => {
            Some(state.store.node_fetch(Some(account), id).await?.ok_or_else(|| AppError::not_found("node", id))?)
        }
        None => None,
    };
    // An agent re-attaching to an ONLINE node keeps its epoch (its runs stay valid); a
    // node that was declared lost starts a new epoch, fencing everything before.
    let lease_epoch = match &existing {
        Some(n) if n.status == NodeStatus::Online => n.lease_epoch,
        Some(n) => n.lease_epoch + 1,
        None => 1,
    };
    let gpu_models = inventory.gpus.iter().map(|g| state.caches.gpus.resolve(&g.name)).collect();
    let record = NodeRecord {
        uuid: req.node_uuid.unwrap_or_else(NodeId::new),
        account_uuid: account,
        name: req.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "node".into()),
        region_code: req.region_code,
        labels: req.labels,
        hostname: req.hostname,
        inventory,
        gpu_models,
        status: NodeStatus::Online,
        is_draining: existing.as_ref().is_some_and(|n| n.is_draining),
        lease_epoch,
        last_seen_at_ms: now,
        latest_sample: None,
        created_at_ms: existing.as_ref().map_or(now, |n| n.created_at_ms),
        updated_at_ms: now,
    };
    state.store.node_upsert(&record).await?;
    state.signals.bump(record.uuid);
    state.signals.capacity_changed(record.uuid);
    let active = active_runs_on(state, vec![record.uuid]).await?;
    Ok(Registration { lease_epoch, node: view(record, &active) })
}

/// The active runs on `nodes` (what a node view needs), read with one filtered query
/// rather than every active run of the cluster.
pub async fn active_runs_on(state: &AppState, nodes: Vec<NodeId>) -> Result<Vec<RunRecord>, AppError> {
    if nodes.is_empty() {
        return Ok(vec![]);
    }
    let filter = RunFilter { job_uuids: vec![], statuses: ACTIVE.to_vec(), node_uuids: nodes };
    let paging = gantry_types::list::Paging { page: 1, limit: u32::MAX, newest_first: false };
    Ok(state.store.run_list(None, &filter, paging).await?.items)
}

/// The node object; `active` are the active runs (to mark GPUs in use and free capacity).
pub fn view(n: NodeRecord, active: &[RunRecord]) -> Node {
    let mine: Vec<&RunRecord> = active.iter().filter(|r| r.run.node_uuid == n.uuid).collect();
    let free = crate::app::capacity::free(&n, &mine);
    let sample = n.latest_sample.clone();
    let gpus = n
        .inventory
        .gpus
        .iter()
        .zip(n.gpu_models.iter().chain(std::iter::repeat(&None)))
        .zip(&free.gpu_in_use)
        .map(|((g, model), &in_use)| {
            let sampled =
                sample.as_ref().and_then(|s| s.gpus.iter().find(|x| x.index == g.index)).map(|x| x.vram_free_gb);
            NodeGpu {
                name: g.name.clone(),
                vram_gb_available: sampled.unwrap_or(if in_use { 0.0 } else { g.vram_gb }),
                vram_gb_max: g.vram_gb,
                index: g.index,
                uuid: g.uuid.clone(),
                gpu_registry_uuid: *model,
                in_use,
            }
        })
        .collect();
    Node {
        object: "node".into(),
        id: n.uuid,
        uuid: n.uuid,
        name: n.name,
        reputation: 50,
        status: n.status,
        is_draining: n.is_draining,
        region_code: n.region_code,
        labels: n.labels,
        hostname: n.hostname,
        cpus: n.inventory.cpus.clone(),
        gpus,
        rams: vec![NodeRam { memory_gb_available: free.ram_gb.max(0.0), memory_gb_max: n.inventory.ram_gb }],
        hard_drives: vec![NodeDrive {
            name: "jobs".into(),
            available_capacity_gb: free.storage_gb.max(0.0),
            max_capacity_gb: n.inventory.storage_gb,
        }],
        ram_total: n.inventory.ram_gb,
        last_seen_at: Some(Timestamp(n.last_seen_at_ms)),
        latest_hardware_event: sample.as_ref().map(|smp| {
            gantry_types::node::NodeHardwareEvent::from_sample(n.uuid, &n.inventory, smp, n.last_seen_at_ms)
        }),
        lease_epoch: n.lease_epoch,
        account_uuid: n.account_uuid,
        earnings: None,
        created_at: Timestamp(n.created_at_ms),
        updated_at: Timestamp(n.updated_at_ms),
    }
}

/// Drains (no new runs; running ones finish) or undrains a node.
pub async fn set_draining(
    state: &AppState,
    scope: Option<AccountId>,
    id: NodeId,
    draining: bool,
) -> Result<Node, AppError> {
    let node = state
        .store
        .node_set_draining(scope, id, draining, now_ms())
        .await?
        .ok_or_else(|| AppError::not_found("node", id))?;
    state.signals.capacity_changed(node.uuid);
    let active = active_runs_on(state, vec![node.uuid]).await?;
    Ok(view(node, &active))
}

/// Whether a sync counts as the node's contact from its arrival, before its node is
/// read: only for a node `account` owns (a key scoped to no account: any) that was
/// last read ONLINE under the epoch the sync claims (see [`sync`]).
fn heard_on_arrival(last_read: Option<NodeState>, account: Option<AccountId>, claimed_epoch: i64) -> bool {
    last_read.is_some_and(|s| {
        account.is_none_or(|a| a == s.account) && s.status == NodeStatus::Online && s.lease_epoch == claimed_epoch
    })
}

/// One sync: heartbeat, apply reports, wait for a change if asked, return desired state.
pub async fn sync(
    state: &AppState,
    account: Option<AccountId>,
    id: NodeId,
    req: SyncRequest,
) -> Result<DesiredState, AppError> {
    // Heard when it arrived, not once the read below is done: that read can wait
    // behind hundreds of others (every node's desired state changed at once, as when
    // a burst of jobs is placed), and the node was alive all along.
    let arrived = now_ms();
    // And heard for as long as it waits, when its node is one this caller owns, last
    // read ONLINE under the epoch the sync claims: the node read below can queue
    // behind thousands (right after a burst of placements, every placed node's next
    // sync carries reports, which always read), and a node whose sync waits past the
    // loss window would be declared lost while its sync sits in this server (the
    // likely cause of 2,790 nodes lost at once in a burst, `gantry bench node-loss
    // --nodes 10000`). Only a known owner and epoch count, so no key can keep another
    // account's node, or an old registration, alive; the read below still decides
    // what the sync may do.
    let waiting = heard_on_arrival(state.caches.node_states.last_read(id), account, req.lease_epoch)
        .then(|| state.signals.syncing(id, req.lease_epoch, arrived));
    if let Some(sample) = &req.sample {
        let errors = gantry_types::limits::check_sample(sample);
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
    }
    // What fences the sync: the node's owner, status and epoch. An idle sync under the
    // epoch the cache names takes them from the cache (`NodeStateCache`: why that is
    // safe); a sync with reports, or any doubt, reads the node.
    let read_at = state.signals.version(id);
    let in_scope = |s: &NodeState| account.is_none_or(|a| a == s.account);
    let cached = state.caches.node_states.get(id, read_at).filter(|s| {
        req.runs.is_empty() && in_scope(s) && s.status == NodeStatus::Online && s.lease_epoch == req.lease_epoch
    });
    let (node_state, mut record) = match cached {
        Some(s) => (s, None),
        None => {
            let node = state.store.node_fetch(account, id).await?.ok_or_else(|| AppError::not_found("node", id))?;
            let s = NodeState { account: node.account_uuid, status: node.status, lease_epoch: node.lease_epoch };
            state.caches.node_states.put(id, read_at, s);
            (s, Some(node))
        }
    };
    let epoch = node_state.lease_epoch;
    // Heard from now, and for as long as its writes take (see `Signals::syncing`).
    let busy = (node_state.status == NodeStatus::Online && epoch == req.lease_epoch)
        .then(|| state.signals.syncing(id, epoch, arrived));
    // The read is done: from here `busy` says whether the node is heard.
    drop(waiting);
    if node_state.status != NodeStatus::Online || epoch != req.lease_epoch {
        return Ok(DesiredState {
            node_uuid: id,
            lease_epoch: epoch,
            fenced: true,
            version: state.signals.version(id),
            runs: vec![],
            sync_interval_ms: SYNC_INTERVAL_MS,
            relay_token: None,
            relay: None,
        });
    }
    // Written with the others' in about a second (`crate::heartbeats`: why that is
    // enough); the status and epoch just read are what fences this sync.
    state.heartbeats.note(id, req.lease_epoch, now_ms(), req.sample.clone());
    for report in &req.runs {
        runs::observe(state, id, report).await?;
    }
    drop(busy);
    let wait = req.wait_ms.unwrap_or(0).min(MAX_WAIT_MS);
    if let Some(known) = req.desired_version
        && known == state.signals.version(id)
        && wait > 0
    {
        state.signals.wait_change(id, known, Duration::from_millis(wait)).await;
    }
    // The desired runs change only with the node's version (every change that affects
    // them bumps it), so a node syncing without news gets the cached list instead of a
    // rebuild that reads each of its runs' jobs.
    let version = state.signals.version(id);
    // Building the answer reads each run's job: heard meanwhile, as for the writes.
    let _answering = state.signals.answering(id, epoch);
    let runs = match state.caches.desired.get(id, version) {
        Some(runs) => runs,
        None => {
            let node = match record.take() {
                Some(node) => node,
                None => state.store.node_fetch(account, id).await?.ok_or_else(|| AppError::not_found("node", id))?,
            };
            let runs = desired_runs(state, &node).await?;
            state.caches.desired.put(id, version, runs.clone());
            runs
        }
    };
    Ok(DesiredState {
        node_uuid: id,
        lease_epoch: epoch,
        fenced: false,
        version,
        runs,
        sync_interval_ms: SYNC_INTERVAL_MS,
        relay_token: req.want_relay_token.then(|| state.relays.issuer.issue(&id.to_string(), now_ms())),
        relay: state.relays.offer.clone(),
    })
}

/// The runs a node should hold: its active runs, each to RUN, or to STOP when its
/// job is being cancelled, was ended by the control plane, or a gang sibling failed.
async fn desired_runs(state: &AppState, node: &NodeRecord) -> Result<Vec<DesiredRun>, AppError> {
    let mine = active_runs_on(state, vec![node.uuid]).await?;
    let mut jobs: HashMap<gantry_types::JobId, Option<Job>> = HashMap::new();
    let mut out = Vec::with_capacity(mine.len());
    for r in mine {
        let job = match jobs.get(&r.run.job_uuid) {
            Some(cached) => cached.clone(),
            None => {
                let fetched = state.store.job_fetch(None, r.run.job_uuid).await?;
                jobs.insert(r.run.job_uuid, fetched.clone());
                fetched
            }
        };
        let Some(job) = job else { continue };
        let siblings = if r.run.gang_size > 1 { state.store.run_list_for_job(job.uuid).await? } else { vec![] };
        let sibling_failed = siblings.iter().any(|s| {
            s.run.attempt == r.run.attempt
                && s.run.uuid != r.run.uuid
                && s.run.status.is_terminal()
                && s.run.status != JobRunStatus::Completed
        });
        let keep = matches!(job.status, JobStatus::Assigned | JobStatus::Running) && !sibling_failed;
        let action = if keep { DesiredAction::Run } else { DesiredAction::Stop };
        // Gang peers by rank, as the addresses their nodes advertise.
        let mut peers: Vec<&RunRecord> = siblings.iter().filter(|s| s.run.attempt == r.run.attempt).collect();
        peers.sort_by_key(|s| s.run.rank);
        let mut peer_hosts = Vec::with_capacity(peers.len());
        for p in peers {
            let host = state.store.node_fetch(None, p.run.node_uuid).await?.and_then(|n| n.hostname);
            peer_hosts.push(host.unwrap_or_else(|| p.run.node_uuid.to_string()));
        }
        let spec = run_spec(state, &job, &r, node, &peer_hosts)?;
        out.push(DesiredRun { run_uuid: r.run.uuid, job_uuid: job.uuid, action, spec });
    }
    Ok(out)
}

/// The container a run needs: the job's parameters with secrets decrypted (only the
/// node running it receives them) and the variables Gantry injects.
fn run_spec(
    state: &AppState,
    job: &Job,
    run: &RunRecord,
    node: &NodeRecord,
    peer_hosts: &[String],
) -> Result<RunSpec, AppError> {
    let mut params = job.parameters.parameters.clone();
    params
        .map_secrets(|s| state.secrets.decrypt(s))
        .map_err(|e| AppError::internal(format!("cannot decrypt a registry secret of job {}: {e}", job.uuid)))?;
    let _ = params.map_env(|v| Ok::<_, ()>(crate::app::jobs::open_env(state, v)));
    let gpu_uuids: Vec<String> = run
        .run
        .gpu_indices
        .iter()
        .filter_map(|i| node.inventory.gpus.iter().find(|g| g.index == *i).map(|g| g.uuid.clone()))
        .collect();
    let mut env = params.env.clone().unwrap_or_default();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("GANTRY_JOB_UUID", job.uuid.to_string());
    set("GANTRY_RUN_UUID", run.run.uuid.to_string());
    set("GANTRY_NODE_RANK", run.run.rank.to_string());
    set("GANTRY_NODE_COUNT", run.run.gang_size.to_string());
    if let Some(token) = run.run.container_access_tokens.first() {
        set("CONTAINER_ACCESS_TOKEN", token.token.clone());
    }
    if let Some(key) = &params.sshkey {
        set("SSH_PUBKEY", key.clone());
    }
    if !gpu_uuids.is_empty() {
        set("NVIDIA_VISIBLE_DEVICES", gpu_uuids.join(","));
        let ordinals: Vec<String> = (0..gpu_uuids.len()).map(|i| i.to_string()).collect();
        set("CUDA_VISIBLE_DEVICES", ordinals.join(","));
    }
    if run.run.gang_size > 1 {
        set("GANTRY_PEERS", peer_hosts.join(","));
        if let Some(master) = peer_hosts.first() {
            set("MASTER_ADDR", master.clone());
        }
        set("MASTER_PORT", "29500".into());
    }
    Ok(RunSpec {
        image: params.image.clone(),
        tag: params.tag.clone().unwrap_or_else(|| "latest".into()),
        registry_host: params.host.clone(),
        registry_user: params.user.clone(),
        registry_secret: params.secret.clone(),
        env,
        ports: params.ports.clone().unwrap_or_else(|| vec![22]),
        allowed_ips: params.allowed_ips.clone().unwrap_or_default(),
        volumes: params.volumes.clone().unwrap_or_default(),
        gpu_indices: run.run.gpu_indices.clone(),
        gpu_uuids,
        cpu: run.cpu,
        ram_gb: run.ram_gb,
        max_timeout_run_ms: job.max_timeout_run_ms,
        max_timeout_start_ms: Some(job.max_timeout_start_ms),
        account_uuid: Some(job.account_uuid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_known_owner_under_the_known_epoch_is_heard_before_the_read() {
        let owner = AccountId::new();
        let read = |status| Some(NodeState { account: owner, status, lease_epoch: 7 });
        assert!(heard_on_arrival(read(NodeStatus::Online), Some(owner), 7));
        assert!(heard_on_arrival(read(NodeStatus::Online), None, 7), "a key scoped to no account");
        assert!(!heard_on_arrival(read(NodeStatus::Online), Some(AccountId::new()), 7), "another account's key");
        assert!(!heard_on_arrival(read(NodeStatus::Online), Some(owner), 6), "an old registration");
        assert!(!heard_on_arrival(read(NodeStatus::Lost), Some(owner), 7), "a node last read LOST");
        assert!(!heard_on_arrival(None, Some(owner), 7), "a node never read here");
    }
}
