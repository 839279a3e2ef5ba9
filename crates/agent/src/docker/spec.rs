//! The Docker request for a run, built as plain data so it can be tested without a
//! daemon (there is no GPU on the machines that run the tests, so the GPU device
//! requests are only ever checked here).
//!
//! What a job may get is deliberately narrow (the README's "Isolation on a node"
//! says it for operators): its image, its environment, its assigned GPUs, and a
//! network of its account's own ([`super::network`]). Never privileged, never a bind mount (no
//! host path, no Docker socket), never the host network: a job cannot reach the
//! node's own files. Image volumes are copied into the container by the runtime
//! ([`super::volumes`]), not bind-mounted.
//!
//! Every container is bounded ([`JobLimits`]): memory (no swap beyond it) and CPUs
//! from the request, raised to the node's floor when the job asked for less (a job
//! asking for 0 RAM gets the floor, not the whole node); a PID limit (a fork bomb
//! stays in its container); `no-new-privileges` (setuid binaries gain nothing); the
//! capabilities that reach the network stack or the kernel dropped (`NET_RAW`, so
//! no raw sockets or ARP spoofing; `NET_ADMIN`, `SYS_ADMIN`, `SYS_MODULE`,
//! `SYS_PTRACE`, `MKNOD`); and a writable-layer size where the storage driver can
//! enforce one.
//!
//! The GPU runtime is configured by the agent alone: `NVIDIA_VISIBLE_DEVICES`,
//! `CUDA_VISIBLE_DEVICES`, `NVIDIA_DRIVER_CAPABILITIES` and the other variables the
//! NVIDIA container runtime reads ([`GPU_RUNTIME_ENV`]) are dropped from the job's
//! environment and set from the assignment. A run without GPUs gets
//! `NVIDIA_VISIBLE_DEVICES=void`, which also overrides the `all` that CUDA base
//! images carry in their own `ENV`, so on a node whose default runtime is NVIDIA a
//! GPU-less job sees no GPU.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use gantry_types::JobRunId;
use gantry_types::protocol::RunSpec;

/// Label holding the run a container belongs to.
pub const LABEL_RUN: &str = "gantry.run";
/// Label naming the agent that owns the container (its node), so two agents sharing
/// one Docker daemon never touch each other's containers.
pub const LABEL_OWNER: &str = "gantry.owner";
/// Label holding the node's lease epoch the run was granted under.
pub const LABEL_EPOCH: &str = "gantry.epoch";
/// Label holding the account the run's job belongs to, so a restarted agent knows
/// which account's network ([`super::network`]) the container is on.
pub const LABEL_ACCOUNT: &str = "gantry.account";
/// Label prefix for published ports: `gantry.port.8080=41234` (container=external),
/// so a restarted agent publishes each port again on the same external port.
pub const LABEL_PORT_PREFIX: &str = "gantry.port.";

/// The container name of a run: one run can never have two containers, because the
/// daemon refuses a second container of the same name.
pub fn container_name(run: JobRunId) -> String {
    format!("gantry-{run}")
}

/// The full image reference (`host/image:tag`) for `image` pulled from `host`.
///
/// The image may already carry its registry (`registry.gitlab.com/group/img`); a
/// separate `host` is prefixed only when the image does not start with it. A digest
/// reference (`img@sha256:...`) is used as is.
pub fn image_reference(image: &str, tag: &str, host: Option<&str>) -> String {
    let image = image.trim();
    let qualified = match host.map(str::trim).filter(|h| !h.is_empty()) {
        Some(host) if !image.starts_with(&format!("{host}/")) => format!("{host}/{image}"),
        _ => image.to_string(),
    };
    if qualified.contains('@') || has_tag(&qualified) {
        qualified
    } else {
        format!("{qualified}:{}", if tag.is_empty() { "latest" } else { tag })
    }
}

/// Whether the last path component carries `:tag` (a `host:port/` prefix does not count).
fn has_tag(reference: &str) -> bool {
    reference.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// Whether the node hands real GPUs to containers (NVML found devices) or only
/// pretends (`--fake-gpus`): fake GPUs get the environment but no device request,
/// which a daemon without the NVIDIA runtime would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuMode {
    /// Request the assigned devices from the NVIDIA container runtime.
    Nvidia,
    /// Set the environment only.
    Fake,
}

/// Environment variables the NVIDIA container runtime reads to decide which devices
/// and driver parts a container gets. Jobs never set them; the agent does.
pub const GPU_RUNTIME_ENV: [&str; 12] = [
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "NVIDIA_REQUIRE_CUDA",
    "NVIDIA_DISABLE_REQUIRE",
    "NVIDIA_MIG_CONFIG_DEVICES",
    "NVIDIA_MIG_MONITOR_DEVICES",
    "NVIDIA_IMEX_CHANNELS",
    "NVIDIA_GDRCOPY",
    "NVIDIA_GDS",
    "NVIDIA_MOFED",
    "NVIDIA_NVSWITCH",
];

/// Whether the job may not set `key` (the GPU runtime's variables, `NVIDIA_REQUIRE_*` included).
pub fn is_gpu_runtime_env(key: &str) -> bool {
    GPU_RUNTIME_ENV.contains(&key) || key.starts_with("NVIDIA_REQUIRE_")
}

/// Capabilities removed from Docker's default set (and ones Docker does not grant by
/// default, named so a changed daemon default cannot bring them back).
pub const DROPPED_CAPABILITIES: [&str; 6] = ["NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "MKNOD"];

/// The bounds every container gets (node configuration; see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct JobLimits {
    /// Memory a job gets at least, bytes (when it asked for less, or for nothing).
    pub min_memory_bytes: i64,
    /// CPUs a job gets at least (when it asked for fewer, or for none), in CPUs.
    pub min_cpus: f64,
    /// Most processes (threads included) in one container.
    pub pids: i64,
    /// Size of the container's writable layer, bytes, where the storage driver
    /// supports a limit (overlay2 on xfs with pquota, btrfs, zfs, devicemapper);
    /// `None` sets none.
    pub writable_layer_bytes: Option<u64>,
}

impl Default for JobLimits {
    /// 1 GiB and 1 CPU at least, 4,096 processes, 100 GiB of writable layer.
    fn default() -> Self {
        Self { min_memory_bytes: 1 << 30, min_cpus: 1.0, pids: 4096, writable_layer_bytes: Some(100 << 30) }
    }
}

impl JobLimits {
    /// Memory limit for a request of `ram_gb`: the request, at least the floor.
    pub fn memory_bytes(&self, ram_gb: f64) -> i64 {
        let asked = if ram_gb.is_finite() && ram_gb > 0.0 {
            (ram_gb * (1u64 << 30) as f64).min(i64::MAX as f64) as i64
        } else {
            0
        };
        asked.max(self.min_memory_bytes)
    }

    /// CPU limit for a request of `cpu` cores, in billionths of a CPU.
    pub fn nano_cpus(&self, cpu: u32) -> i64 {
        let cpus = f64::from(cpu).max(self.min_cpus);
        (cpus * 1e9) as i64
    }
}

/// Everything the create call needs besides the spec.
#[derive(Clone, Debug)]
pub struct CreateContext<'a> {
    /// The run.
    pub run: JobRunId,
    /// The owning agent's label value.
    pub owner: &'a str,
    /// Lease epoch the run was granted under.
    pub epoch: i64,
    /// The resolved image reference.
    pub image: &'a str,
    /// External port chosen for each container port.
    pub published: &'a [(u16, u16)],
    /// GPU mode of the node.
    pub gpus: GpuMode,
    /// The network of the run's account ([`super::network`]).
    pub network: &'a str,
    /// The bounds of the node.
    pub limits: &'a JobLimits,
    /// Whether to ask for a writable-layer size (the storage driver supports it).
    pub writable_layer_limit: bool,
}

/// The container's environment: the job's, without the GPU runtime's variables,
/// plus those set from the assignment.
pub fn environment(spec: &RunSpec) -> Vec<String> {
    let mut env: Vec<String> =
        spec.env.iter().filter(|(k, _)| !is_gpu_runtime_env(k)).map(|(k, v)| format!("{k}={v}")).collect();
    if spec.gpu_uuids.is_empty() {
        env.push("NVIDIA_VISIBLE_DEVICES=void".into());
    } else {
        env.push(format!("NVIDIA_VISIBLE_DEVICES={}", spec.gpu_uuids.join(",")));
        let ordinals: Vec<String> = (0..spec.gpu_uuids.len()).map(|i| i.to_string()).collect();
        env.push(format!("CUDA_VISIBLE_DEVICES={}", ordinals.join(",")));
        env.push("NVIDIA_DRIVER_CAPABILITIES=compute,utility".into());
    }
    env
}

/// The `POST /containers/create` body for a run.
pub fn create_body(spec: &RunSpec, ctx: &CreateContext<'_>) -> ContainerCreateBody {
    let mut labels = HashMap::from([
        (LABEL_RUN.to_string(), ctx.run.to_string()),
        (LABEL_OWNER.to_string(), ctx.owner.to_string()),
        (LABEL_EPOCH.to_string(), ctx.epoch.to_string()),
    ]);
    if let Some(account) = spec.account_uuid {
        labels.insert(LABEL_ACCOUNT.to_string(), account.to_string());
    }
    for (container, external) in ctx.published {
        labels.insert(format!("{LABEL_PORT_PREFIX}{container}"), external.to_string());
    }
    let env = environment(spec);
    let device_requests = match ctx.gpus {
        GpuMode::Nvidia if !spec.gpu_uuids.is_empty() => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(spec.gpu_uuids.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]),
        _ => None,
    };
    let memory = ctx.limits.memory_bytes(spec.ram_gb);
    let storage_opt = match ctx.limits.writable_layer_bytes {
        Some(bytes) if ctx.writable_layer_limit => Some(HashMap::from([("size".to_string(), bytes.to_string())])),
        _ => None,
    };
    let host_config = HostConfig {
        nano_cpus: Some(ctx.limits.nano_cpus(spec.cpu)),
        memory: Some(memory),
        // Swap up to the same total: no swap beyond the memory limit.
        memory_swap: Some(memory),
        pids_limit: Some(ctx.limits.pids),
        security_opt: Some(vec!["no-new-privileges".into()]),
        cap_drop: Some(DROPPED_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        storage_opt,
        device_requests,
        privileged: Some(false),
        network_mode: Some(ctx.network.to_string()),
        binds: Some(vec![]),
        mounts: Some(vec![]),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(ctx.image.to_string()),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    pub(crate) fn spec() -> RunSpec {
        RunSpec {
            image: "team/trainer".into(),
            tag: "v2".into(),
            registry_host: None,
            registry_user: None,
            registry_secret: None,
            env: BTreeMap::from([("A".into(), "1".into()), ("NVIDIA_VISIBLE_DEVICES".into(), "GPU-a,GPU-b".into())]),
            ports: vec![22, 8080],
            allowed_ips: vec![],
            volumes: vec![],
            gpu_indices: vec![1, 3],
            gpu_uuids: vec!["GPU-a".into(), "GPU-b".into()],
            cpu: 4,
            ram_gb: 1.5,
            max_timeout_run_ms: None,
            max_timeout_start_ms: None,
            account_uuid: None,
        }
    }

    const LIMITS: JobLimits =
        JobLimits { min_memory_bytes: 512 << 20, min_cpus: 0.5, pids: 1024, writable_layer_bytes: Some(10 << 30) };

    fn ctx<'a>(run: JobRunId, gpus: GpuMode, published: &'a [(u16, u16)]) -> CreateContext<'a> {
        CreateContext {
            run,
            owner: "node-1",
            epoch: 7,
            image: "team/trainer:v2",
            published,
            gpus,
            network: "gantry-net-x",
            limits: &LIMITS,
            writable_layer_limit: false,
        }
    }

    #[test]
    fn assigned_gpus_become_an_nvidia_device_request() {
        let run = JobRunId::new();
        let body = create_body(&spec(), &ctx(run, GpuMode::Nvidia, &[]));
        let host = body.host_config.unwrap();
        let requests = host.device_requests.unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].driver.as_deref(), Some("nvidia"));
        assert_eq!(requests[0].device_ids.as_deref(), Some(&["GPU-a".to_string(), "GPU-b".to_string()][..]));
        assert_eq!(requests[0].capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert_eq!(requests[0].count, None, "devices are named, never counted");
        // The wire form is what the daemon reads.
        let json = serde_json::to_value(&requests[0]).unwrap();
        assert_eq!(json["Driver"], "nvidia");
        assert_eq!(json["DeviceIDs"][1], "GPU-b");
        assert_eq!(json["Capabilities"][0][0], "gpu");
    }

    #[test]
    fn fake_gpus_and_cpu_jobs_get_no_device_request() {
        let run = JobRunId::new();
        let fake = create_body(&spec(), &ctx(run, GpuMode::Fake, &[]));
        assert!(fake.host_config.unwrap().device_requests.is_none());
        let mut cpu_only = spec();
        cpu_only.gpu_uuids.clear();
        let body = create_body(&cpu_only, &ctx(run, GpuMode::Nvidia, &[]));
        assert!(body.host_config.unwrap().device_requests.is_none());
    }

    #[test]
    fn limits_labels_env_and_isolation() {
        let run = JobRunId::new();
        let body = create_body(&spec(), &ctx(run, GpuMode::Fake, &[(22, 40022), (8080, 40080)]));
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.nano_cpus, Some(4_000_000_000));
        assert_eq!(host.memory, Some(1_610_612_736));
        assert_eq!(host.memory_swap, Some(1_610_612_736), "no swap beyond the limit");
        assert_eq!(host.pids_limit, Some(1024));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
        let dropped = host.cap_drop.clone().unwrap();
        for cap in ["NET_RAW", "NET_ADMIN", "SYS_ADMIN"] {
            assert!(dropped.contains(&cap.to_string()), "{cap} dropped");
        }
        assert_eq!(host.cap_add, None, "nothing added");
        assert_eq!(host.storage_opt, None, "no size where the driver cannot enforce one");
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("gantry-net-x"));
        assert_eq!(host.binds, Some(vec![]));
        assert_eq!(host.mounts, Some(vec![]));
        let labels = body.labels.clone().unwrap();
        assert_eq!(labels[LABEL_RUN], run.to_string());
        assert_eq!(labels[LABEL_OWNER], "node-1");
        assert_eq!(labels[LABEL_EPOCH], "7");
        assert_eq!(labels["gantry.port.8080"], "40080");
        let env = body.env.clone().unwrap();
        assert!(env.contains(&"A=1".to_string()));
        assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b".to_string()));
        assert!(env.contains(&"CUDA_VISIBLE_DEVICES=0,1".to_string()));
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["ExposedPorts"]["8080/tcp"], serde_json::json!({}));
        assert_eq!(json["Image"], "team/trainer:v2");
        // Asking for nothing (or less than the floor) gets the node's floor, never no limit.
        let mut unlimited = spec();
        unlimited.cpu = 0;
        unlimited.ram_gb = 0.0;
        let host = create_body(&unlimited, &ctx(run, GpuMode::Fake, &[])).host_config.unwrap();
        assert_eq!((host.nano_cpus, host.memory), (Some(500_000_000), Some(512 << 20)));
        unlimited.ram_gb = f64::NAN;
        let host = create_body(&unlimited, &ctx(run, GpuMode::Fake, &[])).host_config.unwrap();
        assert_eq!(host.memory, Some(512 << 20));
        // Where the driver enforces it, the writable layer is bounded.
        let sized = CreateContext { writable_layer_limit: true, ..ctx(run, GpuMode::Fake, &[]) };
        let host = create_body(&spec(), &sized).host_config.unwrap();
        assert_eq!(host.storage_opt.unwrap()["size"], (10u64 << 30).to_string());
    }

    #[test]
    fn the_job_cannot_configure_the_gpu_runtime() {
        let run = JobRunId::new();
        let mut hostile = spec();
        hostile.gpu_indices.clear();
        hostile.gpu_uuids.clear();
        for (k, v) in [
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("CUDA_VISIBLE_DEVICES", "0,1,2,3"),
            ("NVIDIA_DRIVER_CAPABILITIES", "all"),
            ("NVIDIA_REQUIRE_CUDA", "cuda>=99"),
            ("NVIDIA_TF32_OVERRIDE", "0"),
        ] {
            hostile.env.insert(k.into(), v.into());
        }
        let env = create_body(&hostile, &ctx(run, GpuMode::Nvidia, &[])).env.unwrap();
        let gpu_env: Vec<&String> = env.iter().filter(|e| is_gpu_runtime_env(e.split('=').next().unwrap())).collect();
        assert_eq!(gpu_env, vec!["NVIDIA_VISIBLE_DEVICES=void"], "only the agent's value, which exposes nothing");
        assert!(env.contains(&"NVIDIA_TF32_OVERRIDE=0".to_string()), "library settings are the job's");
        // With GPUs assigned, the assignment wins over the job's value.
        hostile.gpu_uuids = vec!["GPU-a".into()];
        hostile.gpu_indices = vec![2];
        let env = create_body(&hostile, &ctx(run, GpuMode::Nvidia, &[])).env.unwrap();
        let mut gpu_env: Vec<&String> =
            env.iter().filter(|e| is_gpu_runtime_env(e.split('=').next().unwrap())).collect();
        gpu_env.sort();
        assert_eq!(
            gpu_env,
            vec![
                "CUDA_VISIBLE_DEVICES=0",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
                "NVIDIA_VISIBLE_DEVICES=GPU-a"
            ]
        );
    }

    #[test]
    fn image_references() {
        assert_eq!(image_reference("busybox", "", None), "busybox:latest");
        assert_eq!(image_reference("team/img", "v1", None), "team/img:v1");
        assert_eq!(image_reference("team/img", "v1", Some("127.0.0.1:5000")), "127.0.0.1:5000/team/img:v1");
        assert_eq!(
            image_reference("127.0.0.1:5000/team/img", "v1", Some("127.0.0.1:5000")),
            "127.0.0.1:5000/team/img:v1"
        );
        assert_eq!(image_reference("127.0.0.1:5000/img", "latest", None), "127.0.0.1:5000/img:latest");
        assert_eq!(image_reference("img:3", "latest", None), "img:3");
        assert_eq!(image_reference("img@sha256:abc", "latest", None), "img@sha256:abc");
    }
}
