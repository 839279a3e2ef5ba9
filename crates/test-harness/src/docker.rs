//! Docker fixtures: the local Docker Engine, images built from the machine's static
//! busybox, a loopback `docker-registry` behind htpasswd, and an in-process node agent
//! on the Docker runtime.
//!
//! The engine and the registry are real; nothing here is faked. Each test uses its own
//! owner label, image names and registry, so tests run in parallel on one daemon.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gantry_agent::docker::spec::LABEL_OWNER;
use gantry_agent::docker::{DockerConfig, DockerRuntime, image};
use gantry_agent::inventory::parse_fake_spec;
use gantry_agent::state::StateFile;
use gantry_agent::{Agent, AgentConfig};
use gantry_client::Client;

/// The test image: busybox that runs `sh -c "$SCRIPT"` (default: print a greeting).
pub const TEST_IMAGE: &str = "gantry-test/busybox";

/// A Docker client, or a panic that says what the tests need.
pub fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults().expect("the Docker tests need a Docker Engine on the local socket")
}

/// Builds the test image (`gantry-test/busybox:1`) if the daemon does not have it.
pub async fn test_image() -> String {
    let docker = docker();
    let reference = format!("{TEST_IMAGE}:1");
    if docker.inspect_image(&reference).await.is_err() {
        image::build_busybox_image(&docker, TEST_IMAGE, "1", "echo hello from the test image")
            .await
            .expect("build the test image");
    }
    reference
}

/// Builds `repo:tag` holding just `files` (path, content): a volume's file tree.
pub async fn file_image(repo: &str, tag: &str, files: &[(&str, &str)]) -> String {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(content.len() as u64);
        tar.append_data(&mut h, path, content.as_bytes()).expect("tar entry");
    }
    let rootfs = tar.into_inner().expect("tar");
    image::import(&docker(), repo, tag, rootfs, &[]).await.expect("import the file image");
    format!("{repo}:{tag}")
}

/// A TCP server that accepts connections and never answers: a registry that hangs.
pub async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (host, task)
}

/// A loopback `docker-registry` requiring a user and password (htpasswd, bcrypt).
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one and waits until it answers.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (user, password) = ("tester".to_string(), format!("pw-{}", uuid::Uuid::new_v4().simple()));
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", &user, &password])
            .output()
            .expect("htpasswd (Debian's apache2-utils) is needed for the registry tests");
        assert!(htpasswd.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: gantry-test\n    path: {pw}\n",
            root = dir.path().join("data").display(),
            pw = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's docker-registry) is needed for the registry tests");
        let host = format!("127.0.0.1:{port}");
        let url = format!("http://{host}/v2/");
        crate::wait_for("the registry to answer", Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                let status = reqwest::get(&url).await.ok()?.status();
                (status == reqwest::StatusCode::UNAUTHORIZED).then_some(())
            }
        })
        .await;
        Self { host, user, password, child, _dir: dir }
    }

    /// Pushes the local image `local` as `HOST/repo:tag` and removes that tag from the
    /// daemon again, so a run has to pull it through the registry.
    pub async fn push(&self, local: &str, repo: &str, tag: &str) -> String {
        let docker = docker();
        let target = format!("{}/{repo}", self.host);
        let options = bollard::query_parameters::TagImageOptions { repo: Some(target.clone()), tag: Some(tag.into()) };
        docker.tag_image(local, Some(options)).await.expect("tag for the registry");
        let credentials = bollard::auth::DockerCredentials {
            username: Some(self.user.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.host.clone()),
            ..Default::default()
        };
        let push = bollard::query_parameters::PushImageOptions { tag: Some(tag.into()), ..Default::default() };
        use futures_util::StreamExt;
        let mut stream = docker.push_image(&target, Some(push), Some(credentials));
        while let Some(item) = stream.next().await {
            let info = item.expect("push to the test registry");
            assert!(info.error_detail.is_none(), "push failed: {info:?}");
        }
        let reference = format!("{target}:{tag}");
        let remove = bollard::query_parameters::RemoveImageOptions { noprune: true, ..Default::default() };
        docker.remove_image(&reference, Some(remove), None).await.expect("untag the pushed image");
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_binary() -> PathBuf {
    ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry", "/usr/bin/registry"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("docker-registry"))
}

/// A port free right now on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port()
}

/// An in-process node agent on the Docker runtime, with its own owner label and
/// state directory. Dropping it removes every container it owns.
pub struct DockerNode {
    /// The label value on its containers.
    pub owner: String,
    /// Its state directory (node uuid, log cursors).
    pub state_dir: tempfile::TempDir,
    client: Client,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The runtime, for inspecting it.
    pub runtime: Arc<DockerRuntime>,
    tweak: Tweak,
}

/// Changes a test node's runtime configuration (kept for restarts).
pub type Tweak = Arc<dyn Fn(&mut DockerConfig) + Send + Sync>;

impl DockerNode {
    /// Starts an agent for a node offering `spec` (`--fake-gpus` syntax).
    ///
    /// The test registries listen on loopback, so test nodes allow registries on
    /// internal addresses (`allow_private_registries`), which real nodes refuse by
    /// default; [`DockerNode::start_with`] can turn it off again.
    pub async fn start(client: Client, spec: &str) -> Self {
        Self::start_with(client, spec, Arc::new(|_| {})).await
    }

    /// Like [`DockerNode::start`], with `tweak` applied to the runtime's configuration.
    pub async fn start_with(client: Client, spec: &str, tweak: Tweak) -> Self {
        let owner = format!("test-{}", uuid::Uuid::new_v4().simple());
        let state_dir = tempfile::tempdir().expect("tempdir");
        let (stop, _) = tokio::sync::watch::channel(false);
        let runtime = Arc::new(Self::runtime(&owner, &state_dir, &tweak));
        let mut node = Self { owner, state_dir, client, stop, task: None, runtime, tweak };
        node.spawn(spec);
        node
    }

    fn runtime(owner: &str, state_dir: &tempfile::TempDir, tweak: &Tweak) -> DockerRuntime {
        let state = StateFile::in_dir(state_dir.path()).load_or_create().expect("state file");
        let mut config = DockerConfig::new(owner, "127.0.0.1");
        config.bind_ip = [127, 0, 0, 1].into();
        config.stop_grace = Duration::from_secs(2);
        config.rescan_every = Duration::from_millis(500);
        config.log_cursors = state.log_cursors;
        config.allow_private_registries = true;
        config.private_images_file = Some(state_dir.path().join("private-images.json"));
        // Small jobs: the floor is what a 2-core CI machine can hold many of.
        config.limits.min_memory_bytes = 256 << 20;
        config.limits.min_cpus = 0.5;
        tweak(&mut config);
        DockerRuntime::connect(config).expect("docker client")
    }

    fn spawn(&mut self, spec: &str) {
        let file = StateFile::in_dir(self.state_dir.path());
        let state = file.load_or_create().expect("state file");
        let config = AgentConfig {
            name: self.owner.clone(),
            description: parse_fake_spec(spec).expect("node spec"),
            hostname: Some("127.0.0.1".into()),
            sync_wait_ms: 500,
            state: Some((file, state)),
            probe: None,
        };
        let agent = Agent::new(self.client.clone(), self.runtime.clone(), config);
        let (stop, rx) = tokio::sync::watch::channel(false);
        self.stop = stop;
        self.task = Some(tokio::spawn(agent.run(rx)));
    }

    /// Stops the agent loop (containers keep running, as after a crash of the agent's
    /// reconcile loop) and starts a fresh agent and runtime on the same state.
    pub async fn restart(&mut self, spec: &str) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        self.runtime = Arc::new(Self::runtime(&self.owner, &self.state_dir, &self.tweak));
        self.spawn(spec);
    }

    /// Ids of the containers this node owns (running or not).
    pub fn containers(&self) -> Vec<String> {
        owned_containers(&self.owner)
    }
}

/// Ids of every container carrying `gantry.owner=OWNER`.
pub fn owned_containers(owner: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("label={LABEL_OWNER}={owner}")])
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Ids of every network carrying `gantry.owner=OWNER`.
pub fn owned_networks(owner: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["network", "ls", "-q", "--no-trunc", "--filter", &format!("label={LABEL_OWNER}={owner}")])
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

impl Drop for DockerNode {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let ids = owned_containers(&self.owner);
        if !ids.is_empty() {
            let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
        }
        let networks = owned_networks(&self.owner);
        if !networks.is_empty() {
            let _ = Command::new("docker").arg("network").arg("rm").args(&networks).output();
        }
    }
}

/// A BATCH job titled `title` running `script` in the test image (or the `image`/`tag`
/// given in `params`, whose keys are merged into the job's docker parameters).
pub fn busybox_job(title: &str, script: &str, params: serde_json::Value) -> serde_json::Value {
    let mut p = serde_json::json!({"image": "gantry-test/busybox", "tag": "1", "env": {"SCRIPT": script}, "ports": []});
    for (k, v) in params.as_object().cloned().unwrap_or_default() {
        p[k] = v;
    }
    serde_json::json!({
        "title": title, "task": "BATCH", "max_timeout_run_ms": 900000,
        "cpu_count": 1, "gpu_count": 0, "min_ram_gb": 1,
        "parameters": {"type": "docker", "parameters": p}
    })
}

/// A server with test timing, except that a node is declared lost only after 5 s of
/// silence: container operations on a loaded machine are slower than simulated ones,
/// and the container tests are about containers, not node loss.
pub async fn start_for_containers() -> crate::TestContext {
    crate::TestContext::start_with(|config| {
        crate::fast(config);
        config.timing.node_lost_after = Duration::from_secs(5);
    })
    .await
}

/// The job's first run, once it has one (within 20 s).
pub async fn only_run(client: &Client, job: gantry_types::JobId) -> gantry_types::job_run::JobRun {
    crate::wait_for("the job's run", Duration::from_secs(20), || async {
        client.runs_of_job(job).await.unwrap().into_iter().next()
    })
    .await
}

/// The job's first run once `done` holds for it, waiting at most `within` (`what`
/// names the condition in the timeout message).
pub async fn run_until(
    client: &Client,
    job: gantry_types::JobId,
    what: &str,
    within: Duration,
    done: impl Fn(&gantry_types::job_run::JobRun) -> bool,
) -> gantry_types::job_run::JobRun {
    let run = only_run(client, job).await;
    crate::wait_for(what, within, || async {
        let r = client.get_job_run(run.uuid).await.unwrap();
        done(&r).then_some(r)
    })
    .await
}
