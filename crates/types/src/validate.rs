//! Validation of request bodies, exactly as the upstream reference states
//! (create-job.txt, API.md §4.2), collecting every violation so the client sees all
//! of them in one 400.

use std::collections::BTreeSet;

use crate::error::FieldError;
use crate::job::{
    CreateJobRequest, DockerParameters, DockerParametersInput, JobParameters, JobSpec, JobTask, Volume, VolumeInput,
};
use crate::limits;
use crate::num::MAX_SAFE_INTEGER;
use crate::region::is_region_code;

/// Upstream defaults and minimums.
pub const DEFAULT_TIMEOUT_ASSIGN_MS: i64 = 300_000;
/// Minimum `max_timeout_assign_ms`.
pub const MIN_TIMEOUT_ASSIGN_MS: i64 = 300_000;
/// Default `max_timeout_start_ms` (the doc text says 5 minutes).
pub const DEFAULT_TIMEOUT_START_MS: i64 = 300_000;
/// Minimum `max_timeout_start_ms`.
pub const MIN_TIMEOUT_START_MS: i64 = 120_000;
/// Minimum `max_timeout_run_ms` for BATCH.
pub const MIN_TIMEOUT_RUN_MS: i64 = 60_000;
/// Longest title/description accepted, in bytes (a sanity bound, not upstream's).
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Most region codes a job may list (upstream: 36, the size of the enum).
pub const MAX_REGION_CODES: usize = 36;

/// Deserializes a JSON value into `T`, naming the offending field on failure
/// (`parameters.parameters.ports[1]: expected an integer ...`).
pub fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_string() } else { path };
        FieldError::new(field, e.into_inner().to_string())
    })
}

/// Collects field errors while checking a request.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// An integer field with a minimum; returns the value or the default.
    fn int(&mut self, field: &str, value: Option<i64>, min: i64, default: i64) -> i64 {
        self.int_within(field, value, min, MAX_SAFE_INTEGER, default)
    }

    /// An integer field with a minimum and a maximum (a physical bound, see `limits`).
    fn int_within(&mut self, field: &str, value: Option<i64>, min: i64, max: i64, default: i64) -> i64 {
        match value {
            None => default,
            Some(v) if v < min => {
                self.add(field, format!("must be >= {min}, got {v}"));
                default
            }
            Some(v) if v > max => {
                self.add(field, format!("must be <= {max}, got {v}"));
                default
            }
            Some(v) => v,
        }
    }

    /// A GB amount from 0 to `max` (a physical bound, see `limits`).
    fn size(&mut self, field: &str, value: Option<f64>, max: f64) -> f64 {
        match value {
            None => 0.0,
            Some(v) if !v.is_finite() || v < 0.0 => {
                self.add(field, format!("must be a number >= 0, got {v}"));
                0.0
            }
            Some(v) if v > max => {
                self.add(field, format!("must be <= {max} GB, got {v}"));
                0.0
            }
            Some(v) => v,
        }
    }

    fn text(&mut self, field: &str, value: Option<String>) -> Option<String> {
        let value = non_empty(value)?;
        if value.len() > MAX_TEXT_LEN {
            self.add(field, format!("must be at most {MAX_TEXT_LEN} bytes"));
        }
        Some(value)
    }
}

/// Empty strings mean "unset" (official client files send `""` for unused fields).
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// Checks a create-job body and applies upstream's defaults.
pub fn validate_create_job(req: CreateJobRequest) -> Result<JobSpec, Vec<FieldError>> {
    let mut e = Errors::default();

    let title = match e.text("title", req.title) {
        Some(t) if t.trim().is_empty() => {
            e.add("title", "must not be blank");
            t
        }
        Some(t) => t,
        None => {
            e.add("title", "is required");
            String::new()
        }
    };
    let task = match req.task.as_deref() {
        None => {
            e.add("task", "is required: BATCH or PERSISTENT");
            None
        }
        Some(t) => {
            let task = JobTask::parse(t);
            if task.is_none() {
                e.add("task", format!("must be BATCH or PERSISTENT, got {t:?}"));
            }
            task
        }
    };
    let max_timeout_run_ms = match (task, req.max_timeout_run_ms) {
        (Some(JobTask::Batch), None) => {
            e.add("max_timeout_run_ms", "is required for BATCH jobs (>= 60000)");
            None
        }
        (Some(JobTask::Batch), Some(v)) => {
            Some(e.int("max_timeout_run_ms", Some(v), MIN_TIMEOUT_RUN_MS, MIN_TIMEOUT_RUN_MS))
        }
        (Some(JobTask::Persistent), Some(_)) => {
            e.add("max_timeout_run_ms", "must be null or absent for PERSISTENT jobs");
            None
        }
        (_, v) => v,
    };
    let parameters = match req.parameters {
        None => {
            e.add("parameters", "is required");
            None
        }
        Some(p) => {
            if let Some(kind) = p.kind.as_deref().filter(|k| *k != "docker") {
                e.add("parameters.type", format!("must be \"docker\", got {kind:?}"));
            }
            match p.parameters {
                None => {
                    e.add("parameters.parameters", "is required");
                    None
                }
                Some(d) => Some(docker_parameters(&mut e, d)),
            }
        }
    };

    let gpu_name = non_empty(req.gpu_name);
    let gpu_registry_uuid = non_empty(req.gpu_registry_uuid);
    if gpu_name.is_some() && gpu_registry_uuid.is_some() {
        let msg = "gpu_name and gpu_registry_uuid are mutually exclusive: send only one";
        e.add("gpu_name", msg);
        e.add("gpu_registry_uuid", msg);
    }
    if let Some(u) = &gpu_registry_uuid
        && uuid::Uuid::parse_str(u).is_err()
    {
        e.add("gpu_registry_uuid", format!("must be a UUID, got {u:?}"));
    }

    let allowed_region_codes = req.allowed_region_codes.unwrap_or_default();
    if allowed_region_codes.len() > MAX_REGION_CODES {
        e.add("allowed_region_codes", format!("at most {MAX_REGION_CODES} entries"));
    }
    for (i, code) in allowed_region_codes.iter().enumerate() {
        if !is_region_code(code) {
            e.add(
                format!("allowed_region_codes[{i}]"),
                format!("unknown region code {code:?} (e.g. us-east-1, eu-west-1)"),
            );
        }
    }

    let spec = JobSpec {
        cpu_count: e.int_within("cpu_count", req.cpu_count, 0, i64::from(limits::MAX_CPU_CORES), 0),
        gpu_count: e.int_within("gpu_count", req.gpu_count, 0, i64::from(limits::MAX_GPUS), 0),
        description: e.text("description", req.description),
        max_node_count: e.int_within("max_node_count", req.max_node_count, 1, limits::MAX_NODE_COUNT, 1),
        max_retry_count: e.int_within("max_retry_count", req.max_retry_count, 0, limits::MAX_RETRY_COUNT, 0),
        max_timeout_assign_ms: e.int(
            "max_timeout_assign_ms",
            req.max_timeout_assign_ms,
            MIN_TIMEOUT_ASSIGN_MS,
            DEFAULT_TIMEOUT_ASSIGN_MS,
        ),
        max_timeout_start_ms: e.int(
            "max_timeout_start_ms",
            req.max_timeout_start_ms,
            MIN_TIMEOUT_START_MS,
            DEFAULT_TIMEOUT_START_MS,
        ),
        min_ram_gb: e.size("min_ram_gb", req.min_ram_gb, limits::MAX_RAM_GB),
        min_storage_gb: e.size("min_storage_gb", req.min_storage_gb, limits::MAX_STORAGE_GB),
        min_vram_gb: e.size("min_vram_gb", req.min_vram_gb, limits::MAX_VRAM_GB),
        gpu_name,
        gpu_registry_uuid,
        allowed_region_codes,
        max_timeout_run_ms,
        title,
        task: task.unwrap_or(JobTask::Batch),
        parameters: parameters
            .unwrap_or(JobParameters { kind: "docker".into(), parameters: DockerParameters::default() }),
    };
    if e.0.is_empty() { Ok(spec) } else { Err(e.0) }
}

fn docker_parameters(e: &mut Errors, d: DockerParametersInput) -> JobParameters {
    const P: &str = "parameters.parameters";
    let image = non_empty(d.image).unwrap_or_else(|| {
        e.add(format!("{P}.image"), "is required (e.g. \"busybox\" or \"ghcr.io/org/image\")");
        String::new()
    });
    if !image.is_empty()
        && let Err(m) = crate::docker_ref::check_image(&image)
    {
        e.add(format!("{P}.image"), m);
    }
    reference_parts(e, P, "tag", d.tag.as_deref(), "host", d.host.as_deref());
    if let Some(ips) = &d.allowed_ips {
        allowed_ips(e, &format!("{P}.allowed_ips"), ips);
    }
    let ports = d.ports.map(|ports| {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(ports.len());
        for (i, p) in ports.into_iter().enumerate() {
            match u16::try_from(p) {
                Ok(port) if port >= 1 => {
                    if !seen.insert(port) {
                        e.add(format!("{P}.ports[{i}]"), format!("port {port} is listed twice"));
                    }
                    out.push(port);
                }
                _ => e.add(format!("{P}.ports[{i}]"), format!("must be a port 1-65535, got {p}")),
            }
        }
        out
    });
    if let Some(env) = &d.env {
        for key in env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                e.add(format!("{P}.env"), format!("invalid variable name {key:?}"));
            }
        }
    }
    let volumes = d
        .volumes
        .map(|vols| vols.into_iter().enumerate().map(|(i, v)| volume(e, &format!("{P}.volumes[{i}]"), v)).collect());
    JobParameters {
        kind: "docker".into(),
        parameters: DockerParameters {
            image,
            tag: non_empty(d.tag),
            host: non_empty(d.host),
            user: non_empty(d.user),
            secret: non_empty(d.secret),
            imagesrc: non_empty(d.imagesrc),
            sshkey: non_empty(d.sshkey),
            allowed_ips: d.allowed_ips,
            ports,
            env: d.env,
            volumes,
        },
    }
}

fn volume(e: &mut Errors, field: &str, v: VolumeInput) -> Volume {
    let image = non_empty(v.image).unwrap_or_else(|| {
        e.add(format!("{field}.image"), "is required");
        String::new()
    });
    if !image.is_empty()
        && let Err(m) = crate::docker_ref::check_image(&image)
    {
        e.add(format!("{field}.image"), m);
    }
    reference_parts(e, field, "tag", v.tag.as_deref(), "registry", v.registry.as_deref());
    let sent = non_empty(v.mount).unwrap_or_default();
    // Normalised first (`//`, `/./` and a trailing `/` collapse), so `//` cannot pass
    // for something other than the root.
    let mount = normalise_mount(&sent);
    if !sent.starts_with('/') || mount == "/" || mount.split('/').any(|c| c == ".." || c.contains('\0')) {
        e.add(format!("{field}.mount"), format!("must be an absolute path other than /, got {sent:?}"));
    }
    Volume {
        image,
        mount,
        registry: non_empty(v.registry),
        secret: non_empty(v.secret),
        tag: non_empty(v.tag),
        user: non_empty(v.user),
    }
}

/// Checks a tag and a registry host field against the Docker reference grammar.
fn reference_parts(e: &mut Errors, prefix: &str, tag_key: &str, tag: Option<&str>, host_key: &str, host: Option<&str>) {
    if let Some(t) = tag.filter(|t| !t.is_empty())
        && let Err(m) = crate::docker_ref::check_tag(t)
    {
        e.add(format!("{prefix}.{tag_key}"), m);
    }
    if let Some(h) = host.filter(|h| !h.is_empty())
        && let Err(m) = crate::docker_ref::check_host(h)
    {
        e.add(format!("{prefix}.{host_key}"), m);
    }
}

/// A mount path with empty and `.` components dropped: `//data/./x/` is `/data/x`,
/// `//` is `/`.
pub fn normalise_mount(mount: &str) -> String {
    let parts: Vec<&str> = mount.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    format!("/{}", parts.join("/"))
}

/// Checks that every entry is an IPv4/IPv6 address or CIDR.
pub fn allowed_ips(e_out: &mut impl Extend<FieldError>, field: &str, ips: &[String]) {
    for (i, ip) in ips.iter().enumerate() {
        if !is_ip_or_cidr(ip) {
            e_out.extend([FieldError::new(
                format!("{field}[{i}]"),
                format!("not an IP address or CIDR: {ip:?} (e.g. \"203.0.113.7/32\", \"0.0.0.0/0\")"),
            )]);
        }
    }
}

impl Extend<FieldError> for Errors {
    fn extend<I: IntoIterator<Item = FieldError>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

/// Whether `text` is an IP address or a CIDR (`10.0.0.0/8`, `2001:db8::/32`).
pub fn is_ip_or_cidr(text: &str) -> bool {
    text.parse::<std::net::IpAddr>().is_ok() || text.parse::<ipnet::IpNet>().is_ok()
}

#[cfg(test)]
mod tests;
