//! The fake runtime behind simulated nodes: first-class code with a contract, used by
//! the tests, the benchmarks and demos that want no Docker. Simulated nodes are how
//! people try Gantry without GPUs and how clients are tested, so a simulated run looks
//! to a client like a real one.
//!
//! Contract: a started run is RUNNING at once. A BATCH run exits after
//! `GANTRY_SIM_DURATION_MS` (from the job's env; default 100) with exit code
//! `GANTRY_SIM_EXIT_CODE` (default 0); a PERSISTENT run (no run timeout) stays RUNNING
//! until stopped (cancel, timeout, node loss) unless `GANTRY_SIM_DURATION_MS` is set.
//! `GANTRY_SIM_PREPARE_MS` (default 0) keeps it PREPARING first, to exercise start
//! timeouts. For gang jobs, `GANTRY_SIM_FAIL_RANK=R` makes only the run with
//! `GANTRY_NODE_RANK=R` exit with code 1 after `GANTRY_SIM_FAIL_AFTER_MS` (default 50),
//! while the others keep their normal duration. A stop request ends a run as `Stopped`
//! at once. It prints one log line when it starts and one when it exits, and with
//! `GANTRY_SIM_OUTPUT_EVERY_MS=N` a numbered line (`simulated output 1`, ...) every N
//! ms while it runs (for trying log viewers and followers).
//!
//! Published `ports` are real loopback listeners that answer while the run is RUNNING
//! (see [`listen`]), reported as the run's `node_urls`. The run's
//! `CONTAINER_ACCESS_TOKEN` comes from the control plane, as for any run. With a relay
//! ([`FakeRuntime::with_relay`]) each listener is published there too, and the run's
//! `node_urls` name the relay's host and public ports, as on a Docker node behind NAT.

mod listen;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gantry_types::JobRunId;
use gantry_types::protocol::RunSpec;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::runtime::{ContainerRuntime, ContainerState, Observed, RuntimeError};

struct FakeContainer {
    state: ContainerState,
    logs: String,
    ready_at: Instant,
    /// `None`: runs until stopped (a PERSISTENT run without a simulated duration).
    exits_at: Option<Instant>,
    exit_code: i32,
    /// Listeners behind its ports, open while it runs.
    ports: Option<listen::SimPorts>,
}

impl FakeContainer {
    fn end(&mut self, state: ContainerState) {
        self.state = state;
        self.ports = None;
    }
}

/// In-memory containers with timed exits.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    containers: Arc<Mutex<HashMap<JobRunId, FakeContainer>>>,
    changed: Arc<Notify>,
    relay: Option<Arc<gantry_relay::node::Publisher>>,
}

fn env_ms(spec: &RunSpec, key: &str, default: u64) -> u64 {
    spec.env.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl FakeRuntime {
    /// A runtime whose runs' ports `relay` carries (an agent with `--relay`).
    pub fn with_relay(relay: Arc<gantry_relay::node::Publisher>) -> Self {
        Self { relay: Some(relay), ..Self::default() }
    }

    /// Closes `run`'s public ports at the relay, if any (in the background: the relay
    /// closes them and their connections as soon as it hears).
    fn unpublish(&self, run: JobRunId) {
        if let Some(relay) = self.relay.clone() {
            tokio::spawn(async move { relay.unpublish(&run.to_string()).await });
        }
    }

    /// Publishes `ports` at the relay; `node_urls` then name the relay (a port the
    /// relay refuses is left out, as a real node reports only what it published).
    async fn carry(&self, run: JobRunId, ports: &mut listen::SimPorts, allowed_ips: &[String]) {
        let Some(relay) = &self.relay else { return };
        let mut urls = Vec::new();
        for ((container_port, target), url) in ports.targets.iter().zip(&ports.urls) {
            match relay.publish(&run.to_string(), *container_port, *target, allowed_ips).await {
                Ok(carried) => urls.push(gantry_types::job_run::NodeUrl {
                    hostname: carried.host,
                    port: carried.port,
                    ..url.clone()
                }),
                Err(e) => {
                    tracing::warn!(%run, container_port, error = %gantry_relay::chain(&e), "relay refused a port")
                }
            }
        }
        ports.urls = urls;
    }

    /// Advances containers whose time has come.
    fn tick(&self, now: Instant) -> bool {
        let mut changed = false;
        for (run, c) in self.containers.lock().expect("fake runtime poisoned").iter_mut() {
            if c.state == ContainerState::Preparing && now >= c.ready_at {
                c.state = ContainerState::Running;
                changed = true;
            }
            if c.state == ContainerState::Running && c.exits_at.is_some_and(|at| now >= at) {
                c.end(ContainerState::Exited { code: c.exit_code });
                self.unpublish(*run);
                c.logs.push_str(&format!("simulated run exited with code {}\n", c.exit_code));
                changed = true;
            }
        }
        changed
    }
}

impl FakeRuntime {
    /// Appends a numbered line to `run`'s output every `every` while it runs.
    async fn print_every(self, run: JobRunId, every: Duration) {
        let mut printed = 0u64;
        loop {
            tokio::time::sleep(every).await;
            {
                let mut containers = self.containers.lock().expect("fake runtime poisoned");
                let Some(c) = containers.get_mut(&run).filter(|c| !c.state.is_final()) else { return };
                if c.state != ContainerState::Running {
                    continue;
                }
                printed += 1;
                c.logs.push_str(&format!("simulated output {printed}\n"));
            }
            self.changed.notify_one();
        }
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn start(&self, run: JobRunId, spec: &RunSpec, _epoch: i64) -> Result<(), RuntimeError> {
        let now = Instant::now();
        let prepare = Duration::from_millis(env_ms(spec, "GANTRY_SIM_PREPARE_MS", 0));
        let persistent = spec.max_timeout_run_ms.is_none() && !spec.env.contains_key("GANTRY_SIM_DURATION_MS");
        let mut duration = (!persistent).then(|| Duration::from_millis(env_ms(spec, "GANTRY_SIM_DURATION_MS", 100)));
        let mut exit_code = spec.env.get("GANTRY_SIM_EXIT_CODE").and_then(|v| v.parse().ok()).unwrap_or(0);
        if spec.env.contains_key("GANTRY_SIM_FAIL_RANK")
            && spec.env.get("GANTRY_SIM_FAIL_RANK") == spec.env.get("GANTRY_NODE_RANK")
        {
            duration = Some(Duration::from_millis(env_ms(spec, "GANTRY_SIM_FAIL_AFTER_MS", 50)));
            exit_code = 1;
        }
        if self.containers.lock().expect("fake runtime poisoned").contains_key(&run) {
            return Ok(());
        }
        let mut ports = listen::SimPorts::open(run, &spec.ports).await;
        self.carry(run, &mut ports, &spec.allowed_ips).await;
        {
            let mut containers = self.containers.lock().expect("fake runtime poisoned");
            if containers.contains_key(&run) {
                return Ok(());
            }
            containers.insert(
                run,
                FakeContainer {
                    state: if prepare.is_zero() { ContainerState::Running } else { ContainerState::Preparing },
                    logs: format!("simulated run of {}:{} started\n", spec.image, spec.tag),
                    ready_at: now + prepare,
                    exits_at: duration.map(|d| now + prepare + d),
                    exit_code,
                    ports: Some(ports),
                },
            );
        }
        if let Some(every) = spec.env.get("GANTRY_SIM_OUTPUT_EVERY_MS").and_then(|v| v.parse::<u64>().ok()) {
            tokio::spawn(self.clone().print_every(run, Duration::from_millis(every.max(10))));
        }
        // Wake the agent when this container becomes ready and when it exits.
        let me = self.clone();
        tokio::spawn(async move {
            for at in [Some(now + prepare), duration.map(|d| now + prepare + d)].into_iter().flatten() {
                tokio::time::sleep_until(at).await;
                if me.tick(Instant::now()) {
                    me.changed.notify_one();
                }
            }
        });
        self.changed.notify_one();
        Ok(())
    }

    async fn stop(&self, run: JobRunId) -> Result<(), RuntimeError> {
        if let Some(c) = self.containers.lock().expect("fake runtime poisoned").get_mut(&run)
            && !c.state.is_final()
        {
            c.end(ContainerState::Stopped);
            c.logs.push_str("simulated run stopped\n");
            self.unpublish(run);
        }
        self.changed.notify_one();
        Ok(())
    }

    async fn remove(&self, run: JobRunId) -> Result<(), RuntimeError> {
        self.containers.lock().expect("fake runtime poisoned").remove(&run);
        self.unpublish(run);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Observed>, RuntimeError> {
        self.tick(Instant::now());
        let mut containers = self.containers.lock().expect("fake runtime poisoned");
        Ok(containers
            .iter_mut()
            .map(|(run, c)| {
                let mut o = Observed::new(*run, c.state.clone(), std::mem::take(&mut c.logs));
                if c.state == ContainerState::Running {
                    o.node_urls = c.ports.as_ref().map(|p| p.urls.clone()).unwrap_or_default();
                }
                o
            })
            .collect())
    }

    async fn changed(&self) {
        self.changed.notified().await
    }
}
