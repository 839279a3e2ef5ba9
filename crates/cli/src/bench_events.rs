//! `gantry bench events`: how fast the event stream and webhooks tell what happened.
//!
//! Starts its own `gantry server` (this binary, `--webhooks-allow-private`, a temp
//! data dir), then:
//!
//! 1. **Status change → SSE client.** One SSE client follows `job.status_changed`;
//!    the bench creates a job, cancels it, and measures from the change (the
//!    event's `created_at`, taken by the server in the transaction) to the moment
//!    the client has the event, over `--changes` changes. Reference, measured in the
//!    same run: the cancel request's own round trip (the durable acknowledgement of
//!    the same change). Target: p99 ≤ 50 ms.
//! 2. **Webhook throughput.** `--endpoints` local receivers (loopback, answering 204)
//!    each subscribe to `job.created`; `--jobs` jobs are submitted by 16 clients, and
//!    the bench measures deliveries per second until every receiver has every
//!    event. Reference: the submit rate of the same jobs in the same run.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gantry_client::{Client, Credentials, EventsQuery};
use gantry_types::event::EventType;
use serde_json::json;

/// `gantry bench events`.
#[derive(Args)]
pub struct EventsBenchArgs {
    /// Status changes timed for the SSE latency.
    #[arg(long, default_value_t = 300)]
    changes: usize,
    /// Webhook endpoints (each receives every job.created).
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Jobs submitted for the webhook throughput.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn job_body(i: usize) -> serde_json::Value {
    json!({"title": format!("bench-events-{i}"), "task": "BATCH", "max_timeout_run_ms": 900000, "cpu_count": 1,
        "gpu_count": 1, "gpu_name": "NVIDIA RTX 4090",
        "parameters": {"type": "docker", "parameters": {"image": "ghcr.io/example/trainer", "tag": "v1"}}})
}

/// A loopback receiver answering 204 to every POST, counting them.
async fn receiver() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counted = counted.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let _ = req.into_body().collect().await;
                        counted.fetch_add(1, Ordering::Relaxed);
                        let resp = hyper::Response::builder()
                            .status(204)
                            .body(http_body_util::Empty::<bytes::Bytes>::new())
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok((url, count))
}

/// Runs the benchmark.
pub async fn events(args: EventsBenchArgs) -> anyhow::Result<()> {
    let target = crate::bench::start_server_with(&["--webhooks-allow-private".to_string()]).await?;
    let client = Client::new(Credentials {
        base_url: target.url.clone(),
        public_key: target.public_key.clone(),
        secret_key: target.secret_key.clone(),
    });
    eprintln!("bench: {} status changes through SSE, against {}", args.changes, target.url);

    // 1. Status change → SSE client.
    let query = EventsQuery { after: None, types: vec![EventType::JobStatusChanged] };
    let mut stream = client.event_stream(&query, None).await?;
    let (mut sse_ms, mut ack_ms) = (Vec::new(), Vec::new());
    for i in 0..args.changes {
        let job = client.create_job(&job_body(i)).await?;
        let sent = Instant::now();
        client.cancel_job(job.uuid, "bench").await?;
        ack_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        let uuid = job.uuid.to_string();
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .context("no event within 10 s")??
                .context("the event stream ended")?;
            if e.data["uuid"].as_str() == Some(uuid.as_str()) {
                sse_ms.push((now_ms() - e.created_at.0).max(0) as f64);
                break;
            }
        }
    }
    drop(stream);
    sse_ms.sort_by(f64::total_cmp);
    ack_ms.sort_by(f64::total_cmp);
    let (sse_p50, sse_p99) = (percentile(&sse_ms, 0.5), percentile(&sse_ms, 0.99));
    let (ack_p50, ack_p99) = (percentile(&ack_ms, 0.5), percentile(&ack_ms, 0.99));

    // 2. Webhook throughput.
    eprintln!("bench: {} jobs to {} webhook endpoints ...", args.jobs, args.endpoints);
    let mut counters = Vec::new();
    for _ in 0..args.endpoints {
        let (url, count) = receiver().await?;
        client.create_webhook(&json!({"url": url, "events": ["job.created"]})).await?;
        counters.push(count);
    }
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for _ in 0..16 {
        let (client, next, total) = (client.clone(), next.clone(), args.jobs as u64);
        submitters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                client.create_job(&job_body(i as usize)).await?;
            }
        }));
    }
    for s in submitters {
        s.await??;
    }
    let submitted = started.elapsed();
    let want = (args.jobs * args.endpoints) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let got: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if got >= want {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {got} of {want} deliveries arrived within 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();
    let deliveries_per_s = want as f64 / delivered.as_secs_f64();
    let submits_per_s = args.jobs as f64 / submitted.as_secs_f64();
    let ratio = deliveries_per_s / submits_per_s.max(1.0);

    if args.json {
        let figures = json!({
            "changes": args.changes,
            "sse_p50_ms": sse_p50, "sse_p99_ms": sse_p99,
            "cancel_ack_p50_ms": ack_p50, "cancel_ack_p99_ms": ack_p99,
            "sse_p99_target_ms": 50, "sse_p99_within_target": sse_p99 <= 50.0,
            "endpoints": args.endpoints, "jobs": args.jobs,
            "webhook_deliveries_per_s": deliveries_per_s.round(),
            "submits_per_s": submits_per_s.round(),
            "deliveries_to_submits_ratio": (ratio * 1000.0).round() / 1000.0,
        });
        outln!("{}", serde_json::to_string_pretty(&figures)?)?;
    } else {
        let verdict = if sse_p99 <= 50.0 { "within" } else { "OVER" };
        outln!(
            "status change -> SSE client: p50 {sse_p50:.1} ms  p99 {sse_p99:.1} ms ({verdict} the 50 ms target; {} changes)",
            sse_ms.len()
        )?;
        outln!("reference, the cancel's own durable round trip: p50 {ack_p50:.1} ms  p99 {ack_p99:.1} ms")?;
        outln!(
            "webhooks: {deliveries_per_s:.0} deliveries/s ({want} to {} endpoints in {:.2} s); submits {submits_per_s:.0} jobs/s; \
             ratio {ratio:.3}",
            args.endpoints,
            delivered.as_secs_f64()
        )?;
    }
    Ok(())
}
