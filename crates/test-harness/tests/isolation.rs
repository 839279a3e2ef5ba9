//! Hostile tenants on one Docker node (issue 15): jobs of different accounts cannot
//! reach each other, every container is bounded, the GPU runtime is the agent's, a
//! private image cached on the node runs only for jobs the registry lets have it,
//! and a job cannot point the node's daemon at internal addresses. Real containers on
//! the local Docker Engine, a real loopback registry behind htpasswd.

use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use gantry_agent::docker::spec::container_name;
use gantry_client::Client;
use gantry_test_harness::docker::{Registry, busybox_job, docker, start_for_containers, test_image};
use gantry_test_harness::wait_for;
use gantry_types::JobId;
use gantry_types::job_run::{JobRun, JobRunStatus};
use gantry_types::permissions::Preset;
use serde_json::{Value, json};

const NODE: &str = "cpus=4,ram=8,disk=50";

/// A BATCH job running `script` in the test image, with `params` merged in.
fn job(script: &str, params: Value) -> Value {
    busybox_job("isolation test", script, params)
}

async fn run_until(client: &Client, job: JobId, what: &str, done: impl Fn(&JobRun) -> bool) -> JobRun {
    gantry_test_harness::docker::run_until(client, job, what, Duration::from_secs(90), done).await
}

async fn final_run(client: &Client, job: JobId) -> JobRun {
    run_until(client, job, "the run to end", |r| r.status.is_terminal()).await
}

/// Every address the daemon gives the run's container.
async fn container_addresses(run: &JobRun) -> Vec<String> {
    let inspect = docker().inspect_container(&container_name(run.uuid), None::<InspectContainerOptions>).await.unwrap();
    let settings = inspect.network_settings.unwrap_or_default();
    let mut addresses: Vec<String> = settings
        .networks
        .unwrap_or_default()
        .values()
        .filter_map(|e| e.ip_address.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// A one-line HTTP server on every address of the node (what "outside" is for a container).
async fn node_http_server(body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let response = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn jobs_of_two_accounts_cannot_reach_each_other_on_one_node() {
    test_image().await;
    let ctx = start_for_containers().await;
    // Proxies on every address, as on a real node: other jobs can reach them, and the
    // allow-list must be what keeps them out.
    let _node = ctx.docker_node_with(NODE, |c| c.bind_ip = [0, 0, 0, 0].into()).await;
    let alice = ctx.new_account(Preset::Consumer).await;
    let bob = ctx.new_account(Preset::Consumer).await;

    // Alice serves a page on 8080, published only to an address nobody here has.
    let serve = "mkdir -p /www && echo secret-of-alice > /www/index.html && httpd -f -p 8080 -h /www";
    let params = json!({"ports": [8080], "allowed_ips": ["198.51.100.7/32"]});
    let served = alice.create_job(&job(serve, params)).await.unwrap();
    let run_a = run_until(&alice, served.uuid, "Alice's run RUNNING with its port", |r| {
        r.status == JobRunStatus::Running && r.node_urls.len() == 1
    })
    .await;
    let proxy_port = run_a.node_urls[0].port;
    let addresses = container_addresses(&run_a).await;
    assert!(!addresses.is_empty(), "Alice's container has an address");
    // The node itself reaches the page, so a refusal below is the isolation's doing.
    for address in &addresses {
        let url = format!("http://{address}:8080/");
        let body = wait_for("Alice's page from the node", Duration::from_secs(20), || async {
            reqwest::get(&url).await.ok()?.text().await.ok()
        })
        .await;
        assert_eq!(body, "secret-of-alice\n");
    }

    // Bob tries every address of Alice's container, Alice's port proxy on the node,
    // and, as a control, a server on the node (outbound traffic works).
    let outside = node_http_server("outside-ok").await;
    // The control goes first, until it answers: a new network may take a moment to
    // forward, and a probe must not count as blocked for that reason.
    // (busybox's nc: the static busybox's wget crashes in glibc's name service.)
    let probe = format!(
        "GW=$(ip route | awk '/^default/ {{print $3}}'); \
         get() {{ printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${{1%:*}} ${{1##*:}} 2>/dev/null; }}; \
         for i in $(seq 1 100); do get $GW:{outside} >/tmp/out && grep -q outside-ok /tmp/out && break; sleep 0.2; done; \
         grep -o outside-ok /tmp/out; \
         for t in $TARGETS $GW:{proxy_port}; do \
           if get $t | grep -q secret-of-alice; then echo REACHED $t; else echo blocked $t; fi; \
         done",
    );
    let targets: Vec<String> = addresses.iter().map(|a| format!("{a}:8080")).collect();
    let params = json!({"env": {"SCRIPT": probe, "TARGETS": targets.join(" ")}});
    let probing = bob.create_job(&job("", params)).await.unwrap();
    let run_b = final_run(&bob, probing.uuid).await;
    let logs = run_b.logs.clone().unwrap_or_default();
    assert_eq!(run_b.status, JobRunStatus::Completed, "{run_b:?}");
    assert!(!logs.contains("REACHED"), "Bob reached Alice: {logs}");
    for target in &targets {
        assert!(logs.contains(&format!("blocked {target}")), "{target} probed: {logs}");
    }
    assert!(logs.contains(&format!(":{proxy_port}")), "the proxy was probed: {logs}");
    assert!(logs.contains("outside-ok"), "outbound traffic leaves the job's network: {logs}");
    // Besides Docker's own isolation chains (which the daemon rewrites on every network
    // change), the agent keeps a drop rule between job networks in DOCKER-USER.
    if let Ok(out) = std::process::Command::new("iptables").args(["-w", "-S", "DOCKER-USER"]).output()
        && out.status.success()
    {
        let rules = String::from_utf8_lossy(&out.stdout);
        assert!(rules.contains("-A DOCKER-USER -s 10.213.0.0/16 -d 10.213.0.0/16 -j DROP"), "{rules}");
    } else {
        eprintln!("iptables is not usable here: the DOCKER-USER rule was not checked");
    }

    alice.cancel_job(served.uuid, "done").await.unwrap();
    final_run(&alice, served.uuid).await;
}

/// Reads a number from the container's `/proc/self/status` line `Name:` (hex for Cap*).
fn status_field<'a>(logs: &'a str, name: &str) -> &'a str {
    logs.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{name} missing from the output: {logs}"))
}

#[tokio::test]
async fn a_job_asking_for_nothing_is_still_bounded_and_cannot_steer_the_gpu_runtime() {
    test_image().await;
    let ctx = start_for_containers().await;
    let node = ctx
        .docker_node_with(NODE, |c| {
            c.limits.min_memory_bytes = 300 << 20;
            c.limits.min_cpus = 0.5;
            c.limits.pids = 321;
        })
        .await;
    let client = ctx.new_account(Preset::Consumer).await;
    let script = "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; env | grep -E '^(NVIDIA|CUDA)_' | sort; \
                  sleep 30";
    let mut body = job(
        script,
        json!({"env": {"SCRIPT": script, "NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VISIBLE_DEVICES": "0,1",
                        "NVIDIA_DRIVER_CAPABILITIES": "all", "NVIDIA_TF32_OVERRIDE": "0"}}),
    );
    body["cpu_count"] = json!(0);
    body["min_ram_gb"] = json!(0);
    let created = client.create_job(&body).await.unwrap();
    let run = run_until(&client, created.uuid, "the run RUNNING with its output", |r| {
        r.status.is_terminal()
            || (r.status == JobRunStatus::Running && r.logs.as_deref().is_some_and(|l| l.contains("NVIDIA_VISIBLE")))
    })
    .await;
    assert_eq!(run.status, JobRunStatus::Running, "{run:?}");
    let logs = run.logs.clone().unwrap_or_default();

    // The process inside: no raw sockets, no network or system administration, no new privileges.
    let caps = u64::from_str_radix(status_field(&logs, "CapEff"), 16).unwrap();
    for (name, bit) in [("NET_RAW", 13), ("NET_ADMIN", 12), ("SYS_ADMIN", 21), ("MKNOD", 27)] {
        assert_eq!(caps & (1 << bit), 0, "{name} is not effective: {logs}");
    }
    assert_eq!(status_field(&logs, "NoNewPrivs"), "1");
    // The GPU runtime sees only what the agent set: no GPU for a job without GPUs.
    let gpu_env: Vec<&str> = logs.lines().filter(|l| l.starts_with("NVIDIA_") || l.starts_with("CUDA_")).collect();
    assert_eq!(gpu_env, vec!["NVIDIA_TF32_OVERRIDE=0", "NVIDIA_VISIBLE_DEVICES=void"], "{logs}");

    // The daemon holds the limits: the node's floors for a request of nothing.
    let inspect = docker().inspect_container(&container_name(run.uuid), None::<InspectContainerOptions>).await.unwrap();
    let host = inspect.host_config.unwrap();
    assert_eq!(host.memory, Some(300 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.pids_limit, Some(321));
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
    assert_eq!(host.privileged, Some(false));
    let network = host.network_mode.unwrap_or_default();
    assert!(network.starts_with("gantry-net-"), "a network of its own: {network}");
    drop(node);
}

/// A unique image: the test busybox plus `/secret.txt` holding `secret`.
async fn secret_image(repo: &str, secret: &str) -> String {
    use gantry_agent::docker::image;
    let busybox = image::find_static_busybox().expect("a static busybox");
    let rootfs = image::busybox_rootfs(&busybox).unwrap();
    // Append the secret to the root file system tar.
    let mut archive = tar::Archive::new(&rootfs[..]);
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        if header.entry_type() == tar::EntryType::Symlink {
            let target = entry.link_name().unwrap().unwrap().into_owned();
            builder.append_link(&mut header, &path, &target).unwrap();
        } else {
            builder.append_data(&mut header, &path, &mut entry).unwrap();
        }
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(secret.len() as u64);
    builder.append_data(&mut header, "secret.txt", secret.as_bytes()).unwrap();
    let cmd = format!("CMD {}", json!(["/bin/sh", "-c", "eval \"$SCRIPT\""]));
    image::import(&docker(), repo, "1", builder.into_inner().unwrap(), &["ENV PATH=/bin", &cmd]).await.unwrap();
    format!("{repo}:1")
}

#[tokio::test]
async fn a_private_image_cached_on_the_node_runs_only_with_credentials_the_registry_accepts() {
    let registry = Registry::start().await;
    let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let local_repo = format!("gantry-test/secret-{}", uuid::Uuid::new_v4().simple());
    let local = secret_image(&local_repo, &secret).await;
    let repo = format!("private{}/secret", uuid::Uuid::new_v4().simple());
    let reference = registry.push(&local, &repo, "1").await;
    let remove = bollard::query_parameters::RemoveImageOptions { noprune: true, ..Default::default() };
    docker().remove_image(&local, Some(remove), None).await.expect("untag the local build");
    let ctx = start_for_containers().await;
    let _node = ctx.docker_node(NODE).await;
    let alice = ctx.new_account(Preset::Consumer).await;
    let bob = ctx.new_account(Preset::Consumer).await;
    // (The newline: a last line without one is shipped only when the log stream ends.)
    let read = "cat /secret.txt; echo";
    let with = |user: &str, password: &str| json!({"image": repo, "tag": "1", "host": registry.host, "user": user, "secret": password});

    // Alice pulls with her credentials and reads her file.
    let pulled = alice.create_job(&job(read, with(&registry.user, &registry.password))).await.unwrap();
    let run = final_run(&alice, pulled.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    assert_eq!(run.logs.as_deref(), Some(format!("{secret}\n").as_str()));
    let digest = docker()
        .inspect_image(&reference)
        .await
        .unwrap()
        .repo_digests
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.starts_with(&format!("{}/{repo}@", registry.host)))
        .expect("the pulled image has a digest");
    let by_digest = digest.rsplit_once('@').map(|(_, d)| format!("{repo}@{d}")).unwrap();

    // Bob, without credentials, by tag and by digest; and with wrong ones: refused,
    // although the image sits in the node's cache.
    let attempts = [
        json!({"image": repo, "tag": "1", "host": registry.host}),
        json!({"image": by_digest, "host": registry.host}),
        with(&registry.user, "wrong-password"),
    ];
    for params in attempts {
        let tried = bob.create_job(&job(read, params.clone())).await.unwrap();
        let run = final_run(&bob, tried.uuid).await;
        assert_eq!(run.status, JobRunStatus::Failed, "{params}: {run:?}");
        assert!(!run.logs.unwrap_or_default().contains(&secret), "{params}: Bob read the secret");
        let reason = run.status_reason.unwrap_or_default();
        assert!(reason.contains("private") || reason.contains("rejected the credentials"), "{params}: {reason}");
    }

    // Bob with the registry's own credentials, by digest: the registry accepts them, so he may.
    let accepted = bob
        .create_job(&job(
            read,
            json!({"image": by_digest, "host": registry.host, "user": registry.user,
                                        "secret": registry.password}),
        ))
        .await
        .unwrap();
    let run = final_run(&bob, accepted.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
    // Public images still start from the cache without asking anyone.
    test_image().await;
    let public = bob.create_job(&job("echo public", json!({}))).await.unwrap();
    let run = final_run(&bob, public.uuid).await;
    assert_eq!((run.status, run.logs.as_deref()), (JobRunStatus::Completed, Some("public\n")), "{run:?}");
}

#[tokio::test]
async fn registries_on_internal_addresses_and_too_many_ports_are_refused_by_default() {
    test_image().await;
    let ctx = start_for_containers().await;
    let _node = ctx
        .docker_node_with(NODE, |c| {
            c.allow_private_registries = false;
            c.max_ports = 2;
        })
        .await;
    let client = ctx.new_account(Preset::Consumer).await;
    let internal = client
        .create_job(&job("echo never", json!({"image": "t/busybox", "tag": "1", "host": "127.0.0.1:5000"})))
        .await
        .unwrap();
    let metadata = client
        .create_job(&job("echo never", json!({"image": "169.254.169.254/latest/busybox", "tag": "1"})))
        .await
        .unwrap();
    let ports = client.create_job(&job("echo never", json!({"ports": [8080, 8081, 8082]}))).await.unwrap();
    for (job, expected) in [
        (internal.uuid, "--allow-private-registries"),
        (metadata.uuid, "--allow-private-registries"),
        (ports.uuid, "at most 2"),
    ] {
        let run = final_run(&client, job).await;
        assert_eq!(run.status, JobRunStatus::Failed, "{run:?}");
        let reason = run.status_reason.unwrap_or_default();
        assert!(reason.contains(expected), "{reason}");
    }
    // A job within the rules runs on the same node.
    let fine = client.create_job(&job("echo fine", json!({"ports": [8080]}))).await.unwrap();
    let run = final_run(&client, fine.uuid).await;
    assert_eq!(run.status, JobRunStatus::Completed, "{run:?}");
}

#[tokio::test]
async fn account_networks_come_from_the_pool_with_isolation_on_are_reused_and_expire_and_strays_are_swept() {
    use gantry_agent::docker::network::{NetworkPool, Networks, Tenant};
    use gantry_test_harness::docker::owned_networks;
    use gantry_types::{AccountId, JobRunId};
    let owner = format!("test-{}", uuid::Uuid::new_v4().simple());
    let owned = || owned_networks(&owner).len();
    let idle = Duration::from_secs(2);
    let networks = Networks::with_idle(docker(), owner.clone(), NetworkPool::default(), idle);
    let (alice, bob) = (Tenant::Account(AccountId::new()), Tenant::Account(AccountId::new()));
    let (a1, a2, b1) = (JobRunId::new(), JobRunId::new(), JobRunId::new());
    let net_a = networks.take(alice, a1).await.unwrap();
    wait_for("a spare network made ahead", Duration::from_secs(20), || async { (owned() == 2).then_some(()) }).await;
    let inspect = docker().inspect_network(&net_a, None).await.unwrap();
    let options = inspect.options.unwrap_or_default();
    assert_eq!(options.get("com.docker.network.bridge.enable_icc").map(String::as_str), Some("false"));
    let subnet: ipnet::Ipv4Net = inspect.ipam.unwrap().config.unwrap()[0].subnet.as_deref().unwrap().parse().unwrap();
    assert!("10.213.0.0/16".parse::<ipnet::Ipv4Net>().unwrap().contains(&subnet), "{subnet}");
    assert_eq!(subnet.prefix_len(), 26);

    // Alice's second run joins her network without a daemon call; Bob gets the spare.
    assert_eq!(networks.take(alice, a2).await.unwrap(), net_a, "one network per account");
    let net_b = networks.take(bob, b1).await.unwrap();
    assert_ne!(net_b, net_a, "another account never shares it");
    wait_for("the spare made again", Duration::from_secs(20), || async { (owned() == 3).then_some(()) }).await;

    // An earlier agent process of the same owner left a network and a spare behind.
    let earlier = Networks::new(docker(), owner.clone(), NetworkPool::default());
    let old_run = JobRunId::new();
    earlier.take(Tenant::Run(old_run), old_run).await.unwrap();
    wait_for("the earlier process's spare", Duration::from_secs(20), || async { (owned() == 5).then_some(()) }).await;
    drop(earlier);
    networks.sweep().await.unwrap();
    assert_eq!(owned(), 3, "strays swept; the accounts' networks and the spare kept");

    // A network outlives its runs by the idle time, then the rescan's expiry removes it.
    networks.release(a1);
    networks.expire().await;
    assert_eq!(owned(), 3, "Alice's second run still holds her network");
    networks.release(a2);
    networks.expire().await;
    assert_eq!(owned(), 3, "kept for Alice's next run while idle less than {idle:?}");
    wait_for("Alice's idle network removed", Duration::from_secs(20), || async {
        networks.expire().await;
        (owned() == 2).then_some(())
    })
    .await;
    let held: Vec<(Tenant, String)> = networks.held().into_iter().map(|(t, n, _)| (t, n)).collect();
    assert_eq!(held, vec![(bob, net_b)]);
    networks.release(b1);
    gantry_agent::docker::network::sweep(&docker(), &owner, |_| false).await.unwrap();
    assert_eq!(owned(), 0);
}
