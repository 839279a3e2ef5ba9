//! Jobs: the create request as clients send it, and the job object as the API returns
//! it (create-job.txt; API.md §4.1-§4.3, §4.5).
//!
//! Requests are deserialized leniently (every field optional, integral floats accepted)
//! and then checked by [`crate::validate`], so that a bad body gets one 400 listing every
//! offending field instead of serde's first complaint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AccountId, JobId};
use crate::num;
use crate::time::Timestamp;

/// A job's lifecycle state. `CANCELLING` is Gantry's (and the upstream console's)
/// state for "cancel requested, containers still stopping".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for a node.
    Pending,
    /// Placed on a node; the container is being prepared.
    Assigned,
    /// The container runs.
    Running,
    /// Cancel requested; containers are being stopped.
    Cancelling,
    /// Finished successfully.
    Completed,
    /// Cancelled by its owner.
    Cancelled,
    /// Failed (see `status_reason`).
    Failed,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 7] = [
        Self::Pending,
        Self::Assigned,
        Self::Running,
        Self::Cancelling,
        Self::Completed,
        Self::Cancelled,
        Self::Failed,
    ];

    /// The wire spelling (`PENDING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Assigned => "ASSIGNED",
            Self::Running => "RUNNING",
            Self::Cancelling => "CANCELLING",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses the wire spelling, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// A terminal job never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }
}

/// BATCH runs to completion under `max_timeout_run_ms`; PERSISTENT runs until cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobTask {
    /// A job that runs to completion.
    Batch,
    /// A service that runs until cancelled.
    Persistent,
}

impl JobTask {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batch => "BATCH",
            Self::Persistent => "PERSISTENT",
        }
    }

    /// Parses the wire spelling, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Batch, Self::Persistent].into_iter().find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}

/// The `parameters` block of a job: `{"type": "docker", "parameters": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobParameters {
    /// Always `docker` (the only runtime upstream knows).
    #[serde(rename = "type")]
    pub kind: String,
    /// What to run.
    pub parameters: DockerParameters,
}

/// Docker parameters (API.md §4.1). Empty strings sent for optional fields are
/// normalised to absent; absent fields are not echoed back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DockerParameters {
    /// Image name, possibly with a registry host (`ghcr.io/org/img`).
    pub image: String,
    /// Image tag; `latest` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Private registry host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Registry user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Registry password or token. Stored encrypted; responses show it redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Upstream field of unknown meaning; stored and echoed as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imagesrc: Option<String>,
    /// SSH public key, delivered to the container as `SSH_PUBKEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sshkey: Option<String>,
    /// Source addresses/CIDRs allowed to reach the published ports; empty = anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<Vec<String>>,
    /// Container ports to publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    /// Environment passed verbatim to the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Image file trees mounted into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
}

/// An image whose file tree is mounted at `mount`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    /// Image name.
    pub image: String,
    /// Absolute path inside the container.
    pub mount: String,
    /// Registry host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Registry password or token. Stored encrypted; responses show it redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Image tag; `latest` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Registry user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A per-container access token (API.md §6.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerAccessToken {
    /// The token the container receives as `CONTAINER_ACCESS_TOKEN`.
    pub token: String,
}

/// The job object (API.md §4.3), field order as upstream's example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Always `job`.
    pub object: String,
    /// When the job was created.
    pub created_at: Timestamp,
    /// When the job last changed.
    pub updated_at: Timestamp,
    /// Lifecycle state.
    pub status: JobStatus,
    /// BATCH or PERSISTENT.
    pub task: JobTask,
    /// Title given at creation.
    pub title: String,
    /// CPU cores required.
    pub cpu_count: i64,
    /// GPUs required.
    pub gpu_count: i64,
    /// RAM required, GB.
    #[serde(serialize_with = "num::gb")]
    pub min_ram_gb: f64,
    /// VRAM required per GPU, GB.
    #[serde(serialize_with = "num::gb")]
    pub min_vram_gb: f64,
    /// Storage required, GB.
    #[serde(serialize_with = "num::gb")]
    pub min_storage_gb: f64,
    /// What to run.
    pub parameters: JobParameters,
    /// Epoch ms by which the job must be placed, else it fails.
    pub timeout_assign_at_ms: i64,
    /// The job's ID.
    pub uuid: JobId,
    /// When the first run started.
    pub started_at: Option<Timestamp>,
    /// When the job reached a terminal state.
    pub completed_at: Option<Timestamp>,
    /// Free text.
    pub description: Option<String>,
    /// GPU model name requirement.
    pub gpu_name: Option<String>,
    /// Exact GPU model requirement.
    pub gpu_registry_uuid: Option<String>,
    /// Assignment timeout, ms.
    pub max_timeout_assign_ms: i64,
    /// Run timeout, ms (null for PERSISTENT).
    pub max_timeout_run_ms: Option<i64>,
    /// Start timeout (image pull included), ms.
    pub max_timeout_start_ms: i64,
    /// Failed runs retried this many times.
    pub max_retry_count: i64,
    /// Nodes the job runs on at once.
    pub max_node_count: i64,
    /// Size of the image once pulled.
    pub image_size_bytes: Option<i64>,
    /// Access tokens of the job's containers.
    pub container_access_tokens: Vec<ContainerAccessToken>,
    /// Why the job is in its status, for people.
    pub status_reason: Option<String>,
    /// Recipe the job was cooked from.
    pub source_recipe_uuid: Option<String>,
    /// Regions the job may run in; empty = anywhere.
    pub allowed_region_codes: Vec<String>,
    /// Gantry addition: the owning account.
    pub account_uuid: AccountId,
}

/// `POST /v1/jobs` body, as received: every field optional so that validation can
/// name each missing or bad one. Unknown fields are ignored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateJobRequest {
    /// Required.
    pub title: Option<String>,
    /// Required: `BATCH` or `PERSISTENT`.
    pub task: Option<String>,
    /// Required.
    pub parameters: Option<JobParametersInput>,
    /// BATCH: required, >= 60000. PERSISTENT: null or absent.
    #[serde(default, deserialize_with = "num::opt_int")]
    pub max_timeout_run_ms: Option<i64>,
    /// >= 0, default 0.
    #[serde(default, deserialize_with = "num::opt_int")]
    pub cpu_count: Option<i64>,
    /// >= 0, default 0.
    #[serde(default, deserialize_with = "num::opt_int")]
    pub gpu_count: Option<i64>,
    /// Free text.
    pub description: Option<String>,
    /// Mutually exclusive with `gpu_registry_uuid`.
    pub gpu_name: Option<String>,
    /// Mutually exclusive with `gpu_name`.
    pub gpu_registry_uuid: Option<String>,
    /// >= 1, default 1.
    #[serde(default, deserialize_with = "num::opt_int")]
    pub max_node_count: Option<i64>,
    /// >= 0, default 0.
    #[serde(default, deserialize_with = "num::opt_int")]
    pub max_retry_count: Option<i64>,
    /// >= 300000, default 300000.
    #[serde(default, deserialize_with = "num::opt_int")]
    pub max_timeout_assign_ms: Option<i64>,
    /// >= 120000, default 300000.
    #[serde(default, deserialize_with = "num::opt_int")]
    pub max_timeout_start_ms: Option<i64>,
    /// >= 0, default 0.
    pub min_ram_gb: Option<f64>,
    /// >= 0, default 0.
    pub min_storage_gb: Option<f64>,
    /// >= 0, default 0.
    pub min_vram_gb: Option<f64>,
    /// Region codes (API.md §4.11); empty = anywhere.
    pub allowed_region_codes: Option<Vec<String>>,
}

/// The `parameters` block as received.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct JobParametersInput {
    /// `docker` (the default when absent).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Required.
    pub parameters: Option<DockerParametersInput>,
}

/// Docker parameters as received.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct DockerParametersInput {
    /// Required.
    pub image: Option<String>,
    /// Default `latest`.
    pub tag: Option<String>,
    /// Registry host.
    pub host: Option<String>,
    /// Registry user.
    pub user: Option<String>,
    /// Registry password/token.
    pub secret: Option<String>,
    /// Upstream field of unknown meaning.
    pub imagesrc: Option<String>,
    /// SSH public key.
    pub sshkey: Option<String>,
    /// IPs/CIDRs.
    pub allowed_ips: Option<Vec<String>>,
    /// Integers 1-65535.
    #[serde(default, deserialize_with = "num::opt_int_list")]
    pub ports: Option<Vec<i64>>,
    /// Environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Image mounts.
    pub volumes: Option<Vec<VolumeInput>>,
}

/// A volume as received.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct VolumeInput {
    /// Required.
    pub image: Option<String>,
    /// Required, absolute path.
    pub mount: Option<String>,
    /// Registry host.
    pub registry: Option<String>,
    /// Registry password/token.
    pub secret: Option<String>,
    /// Tag.
    pub tag: Option<String>,
    /// Registry user.
    pub user: Option<String>,
}

/// `PUT /v1/jobs/{uuid}/cancel` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CancelJobRequest {
    /// Why; kept in `status_reason`. Default "Cancelled by user".
    pub reason: Option<String>,
}

/// A validated job request: what the server turns into a [`Job`].
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// Title.
    pub title: String,
    /// Task kind.
    pub task: JobTask,
    /// Parameters (secrets still in clear: the server encrypts them).
    pub parameters: JobParameters,
    /// Run timeout.
    pub max_timeout_run_ms: Option<i64>,
    /// CPU cores.
    pub cpu_count: i64,
    /// GPUs.
    pub gpu_count: i64,
    /// Description.
    pub description: Option<String>,
    /// GPU model name.
    pub gpu_name: Option<String>,
    /// GPU registry uuid.
    pub gpu_registry_uuid: Option<String>,
    /// Gang size.
    pub max_node_count: i64,
    /// Retries.
    pub max_retry_count: i64,
    /// Assignment timeout.
    pub max_timeout_assign_ms: i64,
    /// Start timeout.
    pub max_timeout_start_ms: i64,
    /// RAM GB.
    pub min_ram_gb: f64,
    /// Storage GB.
    pub min_storage_gb: f64,
    /// VRAM GB.
    pub min_vram_gb: f64,
    /// Regions.
    pub allowed_region_codes: Vec<String>,
}

impl JobSpec {
    /// A new PENDING job from this spec, created at `now_ms`.
    pub fn into_job(self, uuid: JobId, account_uuid: AccountId, now_ms: i64) -> Job {
        Job {
            object: "job".into(),
            created_at: Timestamp(now_ms),
            updated_at: Timestamp(now_ms),
            status: JobStatus::Pending,
            task: self.task,
            title: self.title,
            cpu_count: self.cpu_count,
            gpu_count: self.gpu_count,
            min_ram_gb: self.min_ram_gb,
            min_vram_gb: self.min_vram_gb,
            min_storage_gb: self.min_storage_gb,
            parameters: self.parameters,
            timeout_assign_at_ms: now_ms + self.max_timeout_assign_ms,
            uuid,
            started_at: None,
            completed_at: None,
            description: self.description,
            gpu_name: self.gpu_name,
            gpu_registry_uuid: self.gpu_registry_uuid,
            max_timeout_assign_ms: self.max_timeout_assign_ms,
            max_timeout_run_ms: self.max_timeout_run_ms,
            max_timeout_start_ms: self.max_timeout_start_ms,
            max_retry_count: self.max_retry_count,
            max_node_count: self.max_node_count,
            image_size_bytes: None,
            container_access_tokens: Vec::new(),
            status_reason: None,
            source_recipe_uuid: None,
            allowed_region_codes: self.allowed_region_codes,
            account_uuid,
        }
    }
}

/// What a secret (or, for anyone but a job's owner, an `env` value) reads as in
/// responses and events.
pub const REDACTED: &str = "********";

impl Job {
    /// The job with registry secrets and `env` values replaced by [`REDACTED`]: what
    /// anyone but its owner sees, and what events carry.
    pub fn redacted(mut self) -> Self {
        let _ = self.parameters.parameters.map_secrets(|_| Ok::<_, ()>(REDACTED.to_string()));
        let _ = self.parameters.parameters.map_env(|_| Ok::<_, ()>(REDACTED.to_string()));
        self
    }
}

impl DockerParameters {
    /// Applies `f` to every `env` value (encrypted at rest like registry secrets: in
    /// practice they carry cloud credentials).
    pub fn map_env<E>(&mut self, mut f: impl FnMut(&str) -> Result<String, E>) -> Result<(), E> {
        for value in self.env.iter_mut().flat_map(|env| env.values_mut()) {
            *value = f(value)?;
        }
        Ok(())
    }

    /// Applies `f` to every registry secret (the image's and each volume's), e.g. to
    /// encrypt, decrypt or redact them in one place.
    pub fn map_secrets<E>(&mut self, mut f: impl FnMut(&str) -> Result<String, E>) -> Result<(), E> {
        if let Some(s) = &self.secret {
            self.secret = Some(f(s)?);
        }
        for v in self.volumes.iter_mut().flatten() {
            if let Some(s) = &v.secret {
                v.secret = Some(f(s)?);
            }
        }
        Ok(())
    }
}
