//! Issue 14 point 4: the control plane over TLS. The server boots with a certificate
//! from `gantry_tls::write_self_signed` (what `gantry admin tls-selfsigned` writes);
//! the signed client trusting that CA talks to it, clients that do not trust it are
//! refused, simulated nodes sync over it, and the connection limits of issue 15
//! point 3 hold over TLS too, including for handshakes that never finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_client::{Client, ClientError, Credentials};
use gantry_test_harness::{TestContext, wait_for};
use gantry_types::job::JobStatus;
use gantry_types::permissions::Preset;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closed `stream` (a read ends or fails) within 10 s.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a TLS alert before the close
            Err(_) => return false,
        }
    }
}

fn addr(ctx: &TestContext) -> String {
    ctx.base_url.trim_start_matches("https://").to_owned()
}

/// A TLS connection to the server that trusts its CA, handshake done.
async fn tls_connection(ctx: &TestContext) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = gantry_tls::client_config(ctx.ca_cert.as_deref().unwrap()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(addr(ctx)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_others_are_refused() {
    let ctx = TestContext::start_tls_with(|_| {}).await;
    assert!(ctx.base_url.starts_with("https://127.0.0.1:"), "{}", ctx.base_url);
    let user = ctx.new_account(Preset::Consumer).await;
    let me = user.me().await.unwrap();
    let job = user.create_job(&gantry_test_harness::batch_job("over tls")).await.unwrap();
    assert_eq!(user.get_job(job.uuid).await.unwrap().uuid, job.uuid);

    // The same key through a client that trusts only the system's roots: refused
    // before any request is sent, with a message that says what to pass.
    let creds = user.credentials().clone();
    let err = Client::new(creds.clone()).me().await.unwrap_err();
    assert!(matches!(err, ClientError::Untrusted { .. }), "{err:?}");
    assert!(err.to_string().contains("--ca-cert"), "{err}");

    // A client trusting another CA (another lab's ca.pem): refused as well.
    let other = tempfile::tempdir().unwrap();
    let other_ca = gantry_tls::write_self_signed(other.path(), &["127.0.0.1".into()], false).unwrap().ca_cert;
    let err = Client::with_ca_cert(creds.clone(), Some(&other_ca)).unwrap().me().await.unwrap_err();
    assert!(matches!(err, ClientError::Untrusted { .. }), "{err:?}");

    // Plain HTTP to the TLS port gets no API answer.
    let plain = Credentials { base_url: ctx.base_url.replace("https://", "http://"), ..creds.clone() };
    assert!(Client::new(plain).me().await.is_err());

    // `localhost` is in the certificate too; the account is the same.
    let by_name = Credentials { base_url: ctx.base_url.replace("127.0.0.1", "localhost"), ..creds };
    let again = Client::with_ca_cert(by_name, ctx.ca_cert.as_deref()).unwrap().me().await.unwrap();
    assert_eq!(again.uuid, me.uuid);
}

/// A certificate that does not name the host the client dialled is refused even when
/// its CA is trusted.
#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let elsewhere = tempfile::tempdir().unwrap();
    let other = gantry_tls::write_self_signed(elsewhere.path(), &["gantry.invalid".into()], false).unwrap();
    let files = gantry_tls::CertFiles { cert: other.cert.clone(), key: other.key.clone() };
    let ctx = TestContext::start_tls_with(|c| c.tls = Some(files)).await;
    let creds = ctx.new_account(Preset::Consumer).await.credentials().clone();
    let err = Client::with_ca_cert(creds, Some(&other.ca_cert)).unwrap().me().await.unwrap_err();
    assert!(matches!(err, ClientError::Untrusted { .. }), "{err:?}");
    assert!(err.to_string().contains("does not name the host"), "{err}");
}

#[tokio::test]
async fn simulated_nodes_sync_over_tls_and_run_a_job() {
    let ctx = TestContext::start_tls_with(gantry_test_harness::fast).await;
    let nodes = ctx.sim_nodes(1, "1xNVIDIA RTX 4090:24,cpus=8,ram=32").await;
    let user = ctx.new_account(Preset::Consumer).await;
    let body = json!({"title": "tls", "task": "BATCH", "max_timeout_run_ms": 600000, "cpu_count": 1,
        "gpu_count": 1, "parameters": {"type": "docker", "parameters": {"image": "busybox",
        "env": {"GANTRY_SIM_DURATION_MS": "200"}}}});
    let job = user.create_job(&body).await.unwrap();
    wait_for("the job to complete on the node syncing over TLS", Duration::from_secs(20), || async {
        user.get_job(job.uuid).await.ok().filter(|j| j.status == JobStatus::Completed)
    })
    .await;
    // A restarted server keeps serving TLS (same certificate), and the node comes back.
    let mut ctx = ctx;
    ctx.restart().await;
    let second = user.create_job(&body).await.unwrap();
    wait_for("a job after the restart", Duration::from_secs(20), || async {
        user.get_job(second.uuid).await.ok().filter(|j| j.status == JobStatus::Completed)
    })
    .await;
    nodes.stop().await;
}

/// Connections that open a socket and never say hello, or stop in the middle of the
/// ClientHello, are closed after the header-read timeout, so with more of them than
/// the connection limit a normal client still gets answers.
#[tokio::test]
async fn stalled_handshakes_do_not_hold_connection_slots() {
    let ctx = TestContext::start_tls_with(|c| {
        c.connections.header_read_timeout = Duration::from_secs(1);
        c.connections.idle_timeout = Duration::from_secs(1);
        c.connections.max_connections = 8;
    })
    .await;
    let user = ctx.new_account(Preset::Consumer).await;
    let mut stalled = Vec::new();
    for i in 0..16 {
        let mut s = TcpStream::connect(addr(&ctx)).await.unwrap();
        if i % 2 == 1 {
            // A TLS record header announcing a 512-byte handshake, then nothing.
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
        }
        stalled.push(s);
    }
    let started = Instant::now();
    for _ in 0..3 {
        user.me().await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(8), "answers took {:?}", started.elapsed());
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(closed_by_server(s).await, "stalled handshake {i} was kept open");
    }
    user.me().await.unwrap();
}

/// After the handshake, the header-read and idle timeouts apply to the decrypted
/// stream as they do to plain HTTP.
#[tokio::test]
async fn over_tls_idle_and_slow_header_connections_are_closed() {
    let ctx = TestContext::start_tls_with(|c| {
        c.connections.header_read_timeout = Duration::from_secs(1);
        c.connections.idle_timeout = Duration::from_secs(1);
    })
    .await;
    // Idle after the handshake.
    let mut idle = tls_connection(&ctx).await;
    // Slowloris inside TLS: header lines keep coming, the head never ends.
    let mut slow = tls_connection(&ctx).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let slow = Arc::new(tokio::sync::Mutex::new(slow));
    let trickler = slow.clone();
    let trickle = tokio::spawn(async move {
        for _ in 0..12 {
            if trickler.lock().await.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // A keep-alive connection that got its answer and then went quiet.
    let mut kept = tls_connection(&ctx).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));

    assert!(closed_by_server(&mut idle).await, "an idle TLS connection was kept open");
    assert!(closed_by_server(&mut kept).await, "an idle keep-alive TLS connection was kept open");
    let closed = closed_by_server(&mut *slow.lock().await).await;
    trickle.abort();
    assert!(closed, "a slow-header TLS connection was kept open");
}
