//! The Docker request for a run, built as plain data so it can be tested without a
//! daemon (there is no GPU on the machines that run the tests, so the GPU device
//! requests are only ever checked here).
//!
//! What a job may get is deliberately narrow: its image, its environment, CPU and
//! memory limits, its assigned GPUs, and the default bridge network. Never
//! privileged, never a bind mount (no host path, no Docker socket), never the host
//! network: a job cannot reach the node's own files. Image volumes are copied into
//! the container by the runtime ([`super::volumes`]), not bind-mounted.

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
}

/// The `POST /containers/create` body for a run.
pub fn create_body(spec: &RunSpec, ctx: &CreateContext<'_>) -> ContainerCreateBody {
    let mut labels = HashMap::from([
        (LABEL_RUN.to_string(), ctx.run.to_string()),
        (LABEL_OWNER.to_string(), ctx.owner.to_string()),
        (LABEL_EPOCH.to_string(), ctx.epoch.to_string()),
    ]);
    for (container, external) in ctx.published {
        labels.insert(format!("{LABEL_PORT_PREFIX}{container}"), external.to_string());
    }
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let device_requests = match ctx.gpus {
        GpuMode::Nvidia if !spec.gpu_uuids.is_empty() => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(spec.gpu_uuids.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]),
        _ => None,
    };
    let host_config = HostConfig {
        nano_cpus: (spec.cpu > 0).then(|| i64::from(spec.cpu) * 1_000_000_000),
        memory: (spec.ram_gb > 0.0).then_some((spec.ram_gb * 1024.0 * 1024.0 * 1024.0) as i64),
        device_requests,
        privileged: Some(false),
        network_mode: Some("bridge".into()),
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
        }
    }

    fn ctx<'a>(run: JobRunId, gpus: GpuMode, published: &'a [(u16, u16)]) -> CreateContext<'a> {
        CreateContext { run, owner: "node-1", epoch: 7, image: "team/trainer:v2", published, gpus }
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
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
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
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["ExposedPorts"]["8080/tcp"], serde_json::json!({}));
        assert_eq!(json["Image"], "team/trainer:v2");
        // No limits requested means none set.
        let mut unlimited = spec();
        unlimited.cpu = 0;
        unlimited.ram_gb = 0.0;
        let host = create_body(&unlimited, &ctx(run, GpuMode::Fake, &[])).host_config.unwrap();
        assert_eq!((host.nano_cpus, host.memory), (None, None));
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
