//! Issue 14 point 3, SSH as upstream clients use it: their workload runner logs in with
//! `ssh -p PORT USER@HOST` at a run's "ssh" `node_urls`. Here a real Docker agent
//! publishes a container's port 22 through a real `gantry relay`; the container runs a
//! real SSH server (Dropbear: Debian's `dropbear-bin`, copied with the libraries `ldd`
//! lists into an image of its own beside a static busybox); the real OpenSSH client
//! logs in through the relay with a key the test makes, runs a command and gets its
//! output back.
//!
//! Skipped with a message where `ssh`, `ssh-keygen` or `dropbear` are missing (or
//! Docker), unless `GANTRY_REQUIRE_SSH=1` (which `.ci/run` sets, after installing
//! `openssh-client` and `dropbear-bin`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gantry_test_harness::wait_for;
use serde_json::json;
use tokio::process::Command;

mod common;

use common::GANTRY;

const DROPBEAR: &str = "/usr/sbin/dropbear";
const IMAGE: (&str, &str) = ("gantry-test/dropbear", "1");

/// What is missing to run this test, if anything.
async fn missing() -> Option<String> {
    for tool in ["ssh", "ssh-keygen"] {
        let found = std::process::Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if found.is_err() {
            return Some(format!("{tool} is not installed (apt-get install openssh-client)"));
        }
    }
    if !Path::new(DROPBEAR).exists() {
        return Some(format!("{DROPBEAR} is not installed (apt-get install dropbear-bin)"));
    }
    if let Err(e) = gantry_test_harness::docker::docker().ping().await {
        return Some(format!("no Docker Engine ({e})"));
    }
    None
}

/// The shared libraries `ldd` lists for `binary`, with the program interpreter.
fn libraries(binary: &str) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd").arg(binary).output().expect("ldd runs");
    assert!(out.status.success(), "ldd {binary}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/')).map(PathBuf::from))
        .collect()
}

/// Builds the SSH server image: busybox (its applets as symlinks), Dropbear and its
/// libraries at their paths, root's account. The container's `SCRIPT` runs at start.
async fn build_image() -> String {
    let reference = format!("{}:{}", IMAGE.0, IMAGE.1);
    let docker = gantry_test_harness::docker::docker();
    if docker.inspect_image(&reference).await.is_ok() {
        return reference;
    }
    let busybox = gantry_agent::docker::image::find_static_busybox().expect("a static busybox (busybox-static)");
    let mut tar = tar::Builder::new(Vec::new());
    let file = |path: &str, mode: u32, bytes: &[u8], tar: &mut tar::Builder<Vec<u8>>| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, path.trim_start_matches('/'), bytes).unwrap();
    };
    for dir in ["bin", "tmp", "etc", "root", "usr/sbin", "var/log"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty()).unwrap();
    }
    file("/bin/busybox", 0o755, &std::fs::read(&busybox).unwrap(), &mut tar);
    let applets = std::process::Command::new(&busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    file(DROPBEAR, 0o755, &std::fs::read(DROPBEAR).unwrap(), &mut tar);
    // Each library at the path the binary asks for (links resolved to their files).
    for lib in libraries(DROPBEAR) {
        file(lib.to_str().unwrap(), 0o755, &std::fs::read(&lib).unwrap(), &mut tar);
    }
    file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n", &mut tar);
    file("/etc/group", 0o644, b"root:x:0:\n", &mut tar);
    let rootfs = tar.into_inner().unwrap();
    let command = json!(["/bin/sh", "-c", "eval \"$SCRIPT\""]);
    gantry_agent::docker::image::import(
        &docker,
        IMAGE.0,
        IMAGE.1,
        rootfs,
        &["ENV PATH=/bin:/usr/sbin", &format!("CMD {command}")],
    )
    .await
    .expect("import the SSH server image");
    reference
}

#[tokio::test]
async fn the_real_ssh_client_logs_in_to_a_container_through_the_relay() {
    if let Some(why) = missing().await {
        assert!(std::env::var("GANTRY_REQUIRE_SSH").as_deref() != Ok("1"), "GANTRY_REQUIRE_SSH=1 but {why}");
        eprintln!("skipping the SSH-through-the-relay test: {why} (GANTRY_REQUIRE_SSH=1 makes this a failure)");
        return;
    }
    let image = build_image().await;
    let (repo, tag) = image.rsplit_once(':').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let made = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().await;
    assert!(made.unwrap().success(), "ssh-keygen");
    let public_key = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let data = dir.path().join("data");
    let tls = dir.path().join("tls");
    gantry_tls::write_self_signed(&tls, &["127.0.0.1".into()], false).unwrap();
    let (_server, url) = common::start_server(&data).await;
    let relay_key = common::create_key(&data, "relay").await;
    let node_key = common::create_key(&data, "node").await;
    let consumer = common::client(&url, &common::create_key(&data, "consumer").await);
    let first = gantry_test_harness::docker::free_port().min(65_000);
    let (_relay, relay_addr) =
        common::start_relay(&url, &relay_key, "127.0.0.1:0", (first, first + 9), &tls, &[]).await;
    // Declared before the agent, so dropped after it: its container goes even when this fails.
    let _leftovers = common::DockerLeftovers(dir.path().join("agent"));
    let _agent = Command::new(GANTRY)
        .args(["agent", "--server", &url, "--relay", &relay_addr, "--bind", "127.0.0.1"])
        .args(["--advertise-host", "127.0.0.1", "--stop-grace-secs", "2", "--sync-wait-ms", "300"])
        .args(["--fake-gpus", "cpus=2,ram=4", "--state-dir"])
        .arg(dir.path().join("agent"))
        .arg("--ca-cert")
        .arg(tls.join("ca.pem"))
        .env("GANTRY_PUBLIC_KEY", node_key["public_key"].as_str().unwrap())
        .env("GANTRY_SECRET_KEY", node_key["secret_key"].as_str().unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The job's `sshkey` reaches the container as SSH_PUBKEY (as upstream); Dropbear
    // makes its host key on the first connection (-R), logs to stderr (-E) and stays
    // in the foreground (-F).
    let script = "mkdir -p /etc/dropbear /root/.ssh && chmod 700 /root /root/.ssh \
                  && printf '%s\\n' \"$SSH_PUBKEY\" > /root/.ssh/authorized_keys \
                  && chmod 600 /root/.ssh/authorized_keys && exec dropbear -F -E -R -p 22";
    let body = json!({"title": "ssh through the relay", "task": "PERSISTENT", "max_timeout_run_ms": null,
        "gpu_count": 0, "cpu_count": 1, "parameters": {"type": "docker", "parameters": {
            "image": repo, "tag": tag, "env": {"SCRIPT": script}, "sshkey": public_key.trim(),
            "ports": [22], "allowed_ips": ["127.0.0.1/32"]}}});
    let job = consumer.create_job(&body).await.unwrap();
    let ssh_url = wait_for("the run's ssh node_url", Duration::from_secs(90), || async {
        let runs = consumer.list_job_runs(&[("filter[job_uuid]".into(), job.uuid.to_string())]).await.ok()?;
        runs.data.into_iter().find_map(|r| r.node_urls.into_iter().find(|u| u.description == "ssh"))
    })
    .await;
    assert_eq!(ssh_url.hostname, "127.0.0.1", "the relay's public host: {ssh_url:?}");
    assert!((first..=first + 9).contains(&ssh_url.port), "a port of the relay's range: {ssh_url:?}");

    // As the upstream runner does: ssh -p PORT USER@HOST, here with a command.
    let port = ssh_url.port.to_string();
    let output = wait_for("a login through the relay", Duration::from_secs(60), || async {
        let out = Command::new("ssh")
            .args(["-p", &port, "-i"])
            .arg(&key)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg(format!("root@{}", ssh_url.hostname))
            .arg("echo logged-in-as-$(id -u) $((6*7))")
            .stdin(Stdio::null())
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out).await.ok()?.ok()?;
        if !out.status.success() {
            eprintln!("ssh: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(String::from_utf8_lossy(&out.stdout).to_string())
    })
    .await;
    assert_eq!(output, "logged-in-as-0 42\n");

    consumer.cancel_job(job.uuid, "test over").await.unwrap();
    wait_for("the ssh port to close at the relay", Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", ssh_url.port)).await.is_err().then_some(())
    })
    .await;
}
