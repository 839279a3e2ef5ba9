//! The container runtime seen by the agent: start, stop, list. Implementations: the
//! Docker one ([`crate::docker::DockerRuntime`]) and the fake one behind simulated
//! nodes ([`crate::fake::FakeRuntime`]).

use async_trait::async_trait;
use gantry_types::JobRunId;
use gantry_types::protocol::RunSpec;

/// What a run's container is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Pulling the image / creating the container.
    Preparing,
    /// Running.
    Running,
    /// Exited by itself.
    Exited {
        /// Exit code.
        code: i32,
    },
    /// Could not be started (the reason says why: bad credentials, missing image...).
    Failed {
        /// For people.
        reason: String,
    },
    /// Stopped on request.
    Stopped,
}

impl ContainerState {
    /// Exited, failed or stopped.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Exited { .. } | Self::Failed { .. } | Self::Stopped)
    }
}

/// One container the runtime knows.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The run it belongs to.
    pub run: JobRunId,
    /// Its state.
    pub state: ContainerState,
    /// Output produced since the last [`ContainerRuntime::list`].
    pub new_logs: String,
    /// Position in the container's output that `new_logs` reaches (the runtime's
    /// own format), persisted once delivered so a restarted agent resumes there.
    pub log_cursor: Option<String>,
    /// What preparation is doing ("pulling ...: 12.0 MB of 80.0 MB").
    pub progress: Option<String>,
    /// Published ports, once reachable.
    pub node_urls: Vec<gantry_types::job_run::NodeUrl>,
    /// Size of the run's image, once present.
    pub image_size_bytes: Option<i64>,
}

impl Observed {
    /// An observation with nothing but a state and output.
    pub fn new(run: JobRunId, state: ContainerState, new_logs: String) -> Self {
        Self { run, state, new_logs, log_cursor: None, progress: None, node_urls: vec![], image_size_bytes: None }
    }
}

/// Errors of a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime (e.g. the Docker daemon) cannot be reached right now.
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
}

/// A container runtime. Calls are idempotent: starting a run that exists or stopping
/// one that is gone is not an error, so the agent can simply reconcile.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Starts the container of `run`, granted under lease `epoch` (pull, create,
    /// start); progress shows in `list`.
    async fn start(&self, run: JobRunId, spec: &RunSpec, epoch: i64) -> Result<(), RuntimeError>;
    /// Stops the container of `run` (SIGTERM, grace, SIGKILL); it then lists as `Stopped`.
    async fn stop(&self, run: JobRunId) -> Result<(), RuntimeError>;
    /// Forgets a finished run whose outcome the control plane has recorded.
    async fn remove(&self, run: JobRunId) -> Result<(), RuntimeError>;
    /// Every container this node holds, with output since the previous call.
    async fn list(&self) -> Result<Vec<Observed>, RuntimeError>;
    /// Resolves when something changed (a container exited), so the agent reports
    /// at once instead of at its next sync.
    async fn changed(&self);
}
