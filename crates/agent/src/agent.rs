//! The agent's reconcile loop.
//!
//! ```text
//! register ─▶ loop { observe runtime ─▶ sync (heartbeat + report + long-poll desired)
//!                    ─▶ start desired-but-absent, stop undesired-or-STOP, remove reported finals }
//! ```
//!
//! A report is considered delivered only once a sync carrying it succeeded, so a
//! lost response just means the same observation is sent again (the control plane
//! applies reports idempotently). While the control plane is unreachable the agent
//! keeps its containers running and retries with backoff. A `fenced` answer (the node
//! was declared lost meanwhile) stops every container and registers again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_client::{Client, ClientError};
use gantry_types::job_run::JobRunStatus;
use gantry_types::node::RegisterNodeRequest;
use gantry_types::protocol::{DesiredAction, DesiredState, ObservedRun, SyncRequest};
use gantry_types::{JobRunId, NodeId};
use tokio::sync::watch;

use crate::inventory::NodeDescription;
use crate::runtime::{ContainerRuntime, ContainerState, Observed};
use crate::state::{AgentState, StateFile};

/// Shortest time between two syncs that carry nothing but container output.
const LOG_BATCH: Duration = Duration::from_millis(200);

/// Longest wait before retrying a failed sync or registration: no longer than an
/// idle node's sync period, so a node whose control plane was away for a moment is
/// heard again well inside the 4 s loss window. With the 5 s cap it had, the waits
/// grew 0.1, 0.2, ... 3.2, 5 s: a node that failed a few syncs in a row (its
/// control plane restarting) could next try only after the window had passed, and
/// be declared lost although the control plane was back.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How an agent runs.
#[derive(Clone)]
pub struct AgentConfig {
    /// Display name of the node.
    pub name: String,
    /// Hardware, region, labels.
    pub description: NodeDescription,
    /// Address clients reach published ports on.
    pub hostname: Option<String>,
    /// Long-poll wait per sync, ms: also the heartbeat period when nothing happens.
    pub sync_wait_ms: u64,
    /// Where the agent remembers its node and log cursors across restarts (none for
    /// simulated nodes, which are new nodes on every start).
    pub state: Option<(StateFile, AgentState)>,
    /// Measures the host for heartbeats (real nodes); without one the sample is
    /// computed from what the held runs reserve (simulated nodes).
    pub probe: Option<Arc<crate::host::HostProbe>>,
}

/// One node's agent.
pub struct Agent<R: ContainerRuntime> {
    client: Client,
    runtime: Arc<R>,
    config: AgentConfig,
    node: Option<NodeId>,
    metrics: Option<Arc<crate::metrics::AgentMetrics>>,
    relay: Option<Arc<crate::relay::RelayLink>>,
}

/// Maps what the runtime observed to what the control plane records.
fn report(o: &Observed) -> ObservedRun {
    let (status, exit_code, reason) = match &o.state {
        ContainerState::Preparing => (JobRunStatus::Preparing, None, o.progress.clone()),
        ContainerState::Running => (JobRunStatus::Running, None, None),
        ContainerState::Exited { code: 0 } => (JobRunStatus::Completed, Some(0), None),
        ContainerState::Exited { code } => {
            (JobRunStatus::Failed, Some(*code), Some(format!("container exited with code {code}")))
        }
        ContainerState::Failed { reason } => (JobRunStatus::Failed, None, Some(reason.clone())),
        ContainerState::Stopped => (JobRunStatus::Cancelled, None, Some("container stopped on request".into())),
    };
    ObservedRun {
        run_uuid: o.run,
        status,
        exit_code,
        reason,
        node_urls: (!o.node_urls.is_empty()).then(|| o.node_urls.clone()),
        logs: (!o.new_logs.is_empty()).then(|| o.new_logs.clone()),
        image_size_bytes: o.image_size_bytes,
    }
}

/// A report without its output: what must be resent when it changes.
fn without_logs(r: &ObservedRun) -> ObservedRun {
    ObservedRun { logs: None, ..r.clone() }
}

impl<R: ContainerRuntime> Agent<R> {
    /// An agent that will register as a new node.
    pub fn new(client: Client, runtime: Arc<R>, config: AgentConfig) -> Self {
        let node = config.state.as_ref().and_then(|(_, s)| s.node_uuid);
        Self { client, runtime, config, node, metrics: None, relay: None }
    }

    /// Asks for relay tokens on every sync and hands them to `relay` (whose publisher
    /// the runtime must carry its ports with).
    pub fn with_relay(mut self, relay: Arc<crate::relay::RelayLink>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Records syncs and GPU samples in `metrics` (`gantry agent --metrics-listen`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::AgentMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The node's uuid, once registered.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    async fn register(&mut self) -> Result<i64, ClientError> {
        let req = RegisterNodeRequest {
            node_uuid: self.node,
            name: Some(self.config.name.clone()),
            region_code: self.config.description.region.clone(),
            labels: self.config.description.labels.clone(),
            hostname: self.config.hostname.clone(),
            inventory: Some(self.config.description.inventory.clone()),
        };
        let reg = match self.client.register_node(&req).await {
            // The control plane does not know the remembered node (its database was
            // reset, or this state directory came from elsewhere): become a new node.
            Err(e) if self.node.is_some() && e.status() == Some(gantry_client::StatusCode::NOT_FOUND) => {
                tracing::warn!(node = ?self.node, "the control plane does not know this node; registering as a new one");
                self.node = None;
                self.client.register_node(&RegisterNodeRequest { node_uuid: None, ..req }).await?
            }
            other => other?,
        };
        self.node = Some(reg.node.uuid);
        self.save_state(|s| s.node_uuid = Some(reg.node.uuid));
        tracing::debug!(node = %reg.node.uuid, epoch = reg.lease_epoch, "registered");
        Ok(reg.lease_epoch)
    }

    /// Updates and writes the persisted state, if the agent has one.
    fn save_state(&mut self, f: impl FnOnce(&mut AgentState)) {
        if let Some((file, state)) = self.config.state.as_mut() {
            let before = state.clone();
            f(state);
            if *state != before
                && let Err(e) = file.save(state)
            {
                tracing::warn!(error = %e, "cannot write the agent state file");
            }
        }
    }

    /// Runs until `stop` turns true. Never returns early on errors: it retries.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut epoch = None;
        let mut version: Option<u64> = None;
        // The specs of the runs the node was last told to hold (for its hardware sample).
        let mut held: Vec<gantry_types::protocol::RunSpec> = Vec::new();
        // Observations not yet acknowledged by a successful sync, newest per run.
        let mut unsent: HashMap<JobRunId, ObservedRun> = HashMap::new();
        // The last report delivered per run (without output).
        let mut delivered: HashMap<JobRunId, ObservedRun> = HashMap::new();
        // Output position of the newest observation per run, acknowledged on delivery.
        let mut cursors: HashMap<JobRunId, String> = HashMap::new();
        let mut last_sync = tokio::time::Instant::now() - LOG_BATCH;
        while !*stop.borrow() {
            let lease = match epoch {
                Some(e) => e,
                None => match self.register().await {
                    Ok(e) => {
                        epoch = Some(e);
                        version = None;
                        backoff = Duration::from_millis(100);
                        e
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register; retrying");
                        tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.changed() => {} }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let observed = match self.runtime.list().await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "runtime unavailable; syncing without observations");
                    Vec::new()
                }
            };
            for o in &observed {
                if let Some(c) = &o.log_cursor {
                    cursors.insert(o.run, c.clone());
                }
                let r = report(o);
                let merged = match unsent.remove(&o.run) {
                    // Keep output that was not delivered yet.
                    Some(mut prev) => {
                        let logs = [prev.logs.take(), r.logs.clone()].into_iter().flatten().collect::<String>();
                        ObservedRun { logs: (!logs.is_empty()).then_some(logs), ..r }
                    }
                    None => r,
                };
                if merged.logs.is_some() || delivered.get(&o.run) != Some(&without_logs(&merged)) {
                    unsent.insert(o.run, merged);
                }
            }
            let node = self.node.expect("registered");
            // Output alone is shipped in batches: a container printing without pause
            // would otherwise drive one sync (and one store write) per round trip. A
            // change of state is never held back.
            let only_output =
                !unsent.is_empty() && unsent.values().all(|r| delivered.get(&r.run_uuid) == Some(&without_logs(r)));
            if only_output && last_sync.elapsed() < LOG_BATCH {
                tokio::select! {
                    _ = tokio::time::sleep(LOG_BATCH - last_sync.elapsed()) => {},
                    _ = self.runtime.changed() => {},
                    _ = stop.changed() => {},
                }
                continue;
            }
            // With something to report, sync without waiting; otherwise long-poll for
            // new desired state, abandoning the wait when a container changes so the
            // change is reported at once. (A reporting sync is never abandoned, so a
            // busy node cannot starve its own heartbeats.)
            let long_poll = unsent.is_empty() && version.is_some();
            let sample = self.sample(&held);
            if let Some(m) = &self.metrics {
                let temperatures = self.config.probe.as_ref().map(|p| p.gpu_temperatures()).unwrap_or_default();
                m.observe_gpus(&sample, &self.config.description.inventory.gpus, &temperatures);
            }
            let req = SyncRequest {
                lease_epoch: lease,
                sample: Some(sample),
                runs: unsent.values().cloned().collect(),
                desired_version: version,
                wait_ms: Some(if long_poll { self.config.sync_wait_ms } else { 0 }),
                want_relay_token: self.relay.is_some(),
            };
            let sync_started = tokio::time::Instant::now();
            let result = if long_poll {
                tokio::select! {
                    r = self.client.sync_node(node, &req) => Some(r),
                    _ = self.runtime.changed() => None,
                    _ = stop.changed() => None,
                }
            } else {
                Some(self.client.sync_node(node, &req).await)
            };
            last_sync = tokio::time::Instant::now();
            if let (Some(m), Some(r)) = (&self.metrics, &result) {
                let labels = crate::metrics::SyncLabels {
                    outcome: if r.is_ok() { "ok" } else { "error" },
                    mode: if long_poll { "long_poll" } else { "report" },
                };
                m.syncs.get_or_create(&labels).observe(sync_started.elapsed().as_secs_f64());
            }
            let desired = match result {
                None => continue,
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "sync failed; containers keep running, retrying");
                    tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.changed() => {} }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            for r in &req.runs {
                delivered.insert(r.run_uuid, without_logs(r));
                if unsent.get(&r.run_uuid) == Some(r) {
                    unsent.remove(&r.run_uuid);
                }
            }
            // Output sent is output acknowledged: remember how far, for a restart.
            let acked: HashMap<JobRunId, String> =
                cursors.iter().filter(|(run, _)| !unsent.contains_key(run)).map(|(run, c)| (*run, c.clone())).collect();
            self.save_state(|s| s.log_cursors = acked);
            if desired.fenced {
                tracing::warn!(%node, "this node was declared lost; stopping its runs and registering again");
                for o in &observed {
                    let _ = self.runtime.stop(o.run).await;
                    let _ = self.runtime.remove(o.run).await;
                }
                unsent.clear();
                delivered.clear();
                cursors.clear();
                epoch = None;
                continue;
            }
            if let Some(relay) = &self.relay {
                relay.update(node, &desired);
            }
            version = Some(desired.version);
            held = desired.runs.iter().filter(|d| d.action == DesiredAction::Run).map(|d| d.spec.clone()).collect();
            self.converge(&desired, &observed, &mut delivered).await;
            cursors.retain(|run, _| delivered.contains_key(run) || observed.iter().any(|o| o.run == *run));
        }
    }

    /// What the node has left, as its heartbeat reports it: measured by the host probe
    /// on real nodes; on simulated ones, the inventory minus what the runs it holds
    /// reserve (their GPUs fully loaded and out of free VRAM).
    fn sample(&self, held: &[gantry_types::protocol::RunSpec]) -> gantry_types::node::HardwareSample {
        crate::host::sanitize_sample(self.measure(held))
    }

    fn measure(&self, held: &[gantry_types::protocol::RunSpec]) -> gantry_types::node::HardwareSample {
        if let Some(probe) = &self.config.probe {
            return probe.sample(held);
        }
        let inv = &self.config.description.inventory;
        let cores = inv.cores().max(1);
        let used_cpu: u32 = held.iter().map(|r| r.cpu).sum();
        let busy = |index: u32| held.iter().any(|r| r.gpu_indices.contains(&index));
        gantry_types::node::HardwareSample {
            cpu_load: (100.0 * f64::from(used_cpu.min(cores)) / f64::from(cores)).round(),
            ram_free_gb: (inv.ram_gb - held.iter().map(|r| r.ram_gb).sum::<f64>()).max(0.0),
            storage_free_gb: inv.storage_gb,
            gpus: inv
                .gpus
                .iter()
                .map(|g| gantry_types::node::GpuSample {
                    index: g.index,
                    load: if busy(g.index) { 100.0 } else { 0.0 },
                    vram_free_gb: if busy(g.index) { 0.0 } else { g.vram_gb },
                })
                .collect(),
        }
    }

    /// Starts, stops and removes containers until they match `desired`.
    async fn converge(
        &self,
        desired: &DesiredState,
        observed: &[Observed],
        delivered: &mut HashMap<JobRunId, ObservedRun>,
    ) {
        let reported_final = |run: &JobRunId, delivered: &HashMap<JobRunId, ObservedRun>| {
            delivered.get(run).is_some_and(|r| r.status.is_terminal())
        };
        let have: HashMap<JobRunId, &ContainerState> = observed.iter().map(|o| (o.run, &o.state)).collect();
        let wanted: HashMap<JobRunId, DesiredAction> = desired.runs.iter().map(|d| (d.run_uuid, d.action)).collect();
        for d in &desired.runs {
            match (d.action, have.get(&d.run_uuid)) {
                (DesiredAction::Run, None) if !reported_final(&d.run_uuid, delivered) => {
                    if let Err(e) = self.runtime.start(d.run_uuid, &d.spec, desired.lease_epoch).await {
                        tracing::warn!(run = %d.run_uuid, error = %e, "cannot start; will retry");
                    }
                }
                (DesiredAction::Stop, Some(state)) if !state.is_final() => {
                    let _ = self.runtime.stop(d.run_uuid).await;
                }
                _ => {}
            }
        }
        for (run, state) in have {
            let final_and_reported = state.is_final() && reported_final(&run, delivered);
            match wanted.get(&run) {
                // Not desired at all: an orphan (or a run the control plane already ended).
                None if !state.is_final() => {
                    let _ = self.runtime.stop(run).await;
                }
                None if final_and_reported => {
                    let _ = self.runtime.remove(run).await;
                    delivered.remove(&run);
                }
                _ => {}
            }
        }
    }
}
