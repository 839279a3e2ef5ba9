//! Job runs (API.md §4.4): one execution of a job on one node. A job has one run per
//! attempt and, for gang jobs, one per node of the gang.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AccountId, JobId, JobRunId, NodeId};
use crate::job::ContainerAccessToken;
use crate::time::Timestamp;

/// A run's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobRunStatus {
    /// Placed on a node; the node has not started preparing yet.
    Assigned,
    /// The node pulls the image and creates the container.
    Preparing,
    /// The container runs.
    Running,
    /// Exited 0.
    Completed,
    /// Exited non-zero, timed out, or its node was lost (see `status_reason`).
    Failed,
    /// Stopped by a cancel.
    Cancelled,
}

impl JobRunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobRunStatus; 6] =
        [Self::Assigned, Self::Preparing, Self::Running, Self::Completed, Self::Failed, Self::Cancelled];

    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assigned => "ASSIGNED",
            Self::Preparing => "PREPARING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the wire spelling, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// A terminal run never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A published port (API.md §4.4 NodeUrl).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeUrl {
    /// `ssh` for port 22, else the container port as a string.
    pub description: String,
    /// Host to connect to.
    pub hostname: String,
    /// External port.
    pub port: u16,
    /// Always `tcp`.
    pub protocol: String,
    /// Always false (plain TCP).
    pub tls: bool,
}

/// The job_run object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRun {
    /// Always `job_run`.
    pub object: String,
    /// The run's ID.
    pub uuid: JobRunId,
    /// Its job.
    pub job_uuid: JobId,
    /// The job as it was when the run was created (secrets redacted).
    pub job_snapshot: serde_json::Value,
    /// Where it runs.
    pub node_uuid: NodeId,
    /// Lifecycle state.
    pub status: JobRunStatus,
    /// Why it is in that state, for people.
    pub status_reason: Option<String>,
    /// When the container started running, epoch ms.
    pub started_at_ms: Option<i64>,
    /// When the run ended, epoch ms.
    pub ended_at_ms: Option<i64>,
    /// Billable time so far (RUNNING to end), ms.
    pub duration_ms: Option<i64>,
    /// Container exit code, once exited.
    pub exit_code: Option<i32>,
    /// Published ports; empty until the container is reachable.
    pub node_urls: Vec<NodeUrl>,
    /// The container's access token(s).
    pub container_access_tokens: Vec<ContainerAccessToken>,
    /// Price quoted at placement, USD per hour (null until pricing exists).
    pub hourly_rate_usd: Option<f64>,
    /// 0 for the first attempt, 1 for the first retry, ...
    pub attempt: u32,
    /// Position in a gang (0-based); 0 for single-node jobs.
    pub rank: u32,
    /// Gang size (the job's `max_node_count`).
    pub gang_size: u32,
    /// GPU device indices assigned on the node.
    pub gpu_indices: Vec<u32>,
    /// The node's lease epoch when the run was assigned (fencing).
    pub lease_epoch: i64,
    /// Owner of the job.
    pub account_uuid: AccountId,
    /// Container output (only in `GET /v1/job-runs/{uuid}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
    /// Created (= assigned).
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}
