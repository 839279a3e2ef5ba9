//! `gantry jobs ...`: the Jobs API from the command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_client::{Client, Credentials};
use gantry_types::JobId;
use serde_json::{Value, json};

use crate::output::{self, JsonFlag};

/// Jobs commands.
#[derive(Subcommand)]
pub enum JobsCommand {
    /// Submit a job: from a JSON file in the upstream create-job shape (-f), or from flags.
    Create(CreateArgs),
    /// List your jobs, newest first.
    List(ListArgs),
    /// Show one job.
    Get {
        /// Job uuid.
        uuid: JobId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Print a job's container output; with --follow, stream it until the job ends
    /// (following retries onto their new runs).
    Logs {
        /// Job uuid.
        uuid: JobId,
        /// Keep streaming new output until the job ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a job (idempotent).
    Cancel {
        /// Job uuid.
        uuid: JobId,
        /// Reason recorded in status_reason.
        #[arg(long, default_value = "Cancelled by user")]
        reason: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// `gantry jobs create`.
#[derive(Args)]
pub struct CreateArgs {
    /// A create-job JSON body (`-` for stdin). Flags below override its fields.
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Title.
    #[arg(long)]
    title: Option<String>,
    /// Image (may include a registry host).
    #[arg(long)]
    image: Option<String>,
    /// Image tag.
    #[arg(long)]
    tag: Option<String>,
    /// PERSISTENT (runs until cancelled) instead of BATCH.
    #[arg(long)]
    persistent: bool,
    /// BATCH run timeout in seconds.
    #[arg(long, default_value_t = 900)]
    max_run_secs: i64,
    /// CPU cores.
    #[arg(long)]
    cpus: Option<i64>,
    /// GPUs.
    #[arg(long)]
    gpus: Option<i64>,
    /// GPU model, e.g. "NVIDIA RTX 4090".
    #[arg(long)]
    gpu_name: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Container port to publish (repeatable).
    #[arg(long = "port")]
    ports: Vec<u16>,
    /// After submitting, stream the job's output until it ends.
    #[arg(long, conflicts_with = "json")]
    follow: bool,
    /// After submitting, wait until the job ends (following the event stream, not
    /// polling); exits 0 when it completed, 1 otherwise.
    #[arg(long, conflicts_with = "follow")]
    wait: bool,
    #[command(flatten)]
    out: JsonFlag,
}

/// `gantry jobs list`.
#[derive(Args)]
pub struct ListArgs {
    /// Only these statuses (comma list, e.g. PENDING,RUNNING).
    #[arg(long)]
    status: Option<String>,
    /// Page size, 1-50.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Page, from 1.
    #[arg(long, default_value_t = 1)]
    page: u64,
    /// Oldest first.
    #[arg(long)]
    oldest_first: bool,
    #[command(flatten)]
    out: JsonFlag,
}

/// Runs a jobs command.
pub async fn run(cmd: JobsCommand) -> anyhow::Result<()> {
    let client = crate::tls::client(Credentials::from_env()?)?;
    match cmd {
        JobsCommand::Create(args) => {
            let (json_out, follow, wait) = (args.out.json, args.follow, args.wait);
            let body = create_body(args)?;
            // Subscribed before the submit, so no status change can slip by.
            let waiter = if wait { Some(crate::events::JobWait::open(&client).await?) } else { None };
            let job = client.create_job(&body).await?;
            if let Some(waiter) = waiter {
                if !json_out {
                    outln!("Submitted job {}; waiting for it to end", job.uuid)?;
                }
                let ended = waiter.until_done(job.uuid, json_out).await?;
                if json_out {
                    output::json(&ended)?;
                } else {
                    outln!("Job {} ended {}", ended.uuid, ended.status.as_str())?;
                }
                return crate::events::wait_outcome(&ended);
            }
            if json_out {
                return output::json(&job);
            }
            outln!("Submitted job {} ({})", job.uuid, job.status.as_str())?;
            if follow {
                return logs(&client, job.uuid, true).await;
            }
            output::job_details(&job)?;
            Ok(())
        }
        JobsCommand::Logs { uuid, follow } => logs(&client, uuid, follow).await,
        JobsCommand::List(args) => {
            let mut query =
                vec![("limit".to_string(), args.limit.to_string()), ("page".to_string(), args.page.to_string())];
            if args.oldest_first {
                query.push(("sort".into(), "created_at".into()));
            }
            if let Some(s) = args.status {
                query.push(("filter[status]".into(), s));
            }
            let list = client.list_jobs(&query).await?;
            if args.out.json {
                output::json(&list)
            } else {
                output::jobs_table(&list.data, list.total, list.page)?;
                Ok(())
            }
        }
        JobsCommand::Get { uuid, out } => {
            let job = client.get_job(uuid).await?;
            if out.json {
                output::json(&job)
            } else {
                output::job_details(&job)?;
                Ok(())
            }
        }
        JobsCommand::Cancel { uuid, reason, out } => {
            let job = client.cancel_job(uuid, &reason).await?;
            if out.json {
                output::json(&job)
            } else {
                outln!("Job {} is {}", job.uuid, job.status.as_str())?;
                Ok(())
            }
        }
    }
}

/// Prints the output of the job's latest run; when following, streams it and moves
/// on to the next attempt's run when the job is retried, until the job ends.
async fn logs(client: &Client, job: JobId, follow: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut done = std::collections::HashSet::new();
    let mut waiting_said = false;
    // A run's job settles a moment after the run ends: no "waiting" note in between.
    let mut last_stream_end = std::time::Instant::now();
    loop {
        let runs = client.runs_of_job(job).await?;
        let latest = runs.iter().map(|r| r.attempt).max();
        let next = runs.iter().find(|r| Some(r.attempt) == latest && r.rank == 0 && !done.contains(&r.uuid));
        if let Some(run) = next {
            if runs.iter().any(|r| Some(r.attempt) == latest && r.rank > 0) {
                eprintln!("(gang job: showing rank 0; `gantry jobs get {job}` lists the other runs)");
            }
            let mut stream = client.run_logs(run.uuid, follow).await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.chunk().await? {
                out.write_all(&chunk)?;
                out.flush()?;
            }
            done.insert(run.uuid);
            waiting_said = false;
            last_stream_end = std::time::Instant::now();
        }
        if !follow {
            if runs.is_empty() {
                eprintln!("job {job} has no run yet: it has not been placed on a node");
            }
            return Ok(());
        }
        let status = client.get_job(job).await?;
        if status.status.is_terminal() {
            let reason = status.status_reason.map(|r| format!(": {r}")).unwrap_or_default();
            eprintln!("job {job} {}{reason}", status.status.as_str());
            return Ok(());
        }
        if !waiting_said && last_stream_end.elapsed() > std::time::Duration::from_secs(2) {
            eprintln!("job {job} is {}: waiting for its next run...", status.status.as_str());
            waiting_said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The request body: the file's JSON (if any) with flags applied on top.
fn create_body(args: CreateArgs) -> anyhow::Result<Value> {
    let mut body = match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("stdin is not JSON")?
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
        }
        None => {
            if args.image.is_none() {
                anyhow::bail!("give a job file (-f job.json) or at least --image; see `gantry jobs create --help`");
            }
            json!({"task": "BATCH", "parameters": {"type": "docker", "parameters": {}}})
        }
    };
    let obj = body.as_object_mut().context("the job file must hold a JSON object")?;
    if args.file.is_none() || args.persistent {
        let task = if args.persistent { "PERSISTENT" } else { "BATCH" };
        obj.insert("task".into(), json!(task));
        let run = if args.persistent { Value::Null } else { json!(args.max_run_secs * 1000) };
        obj.insert("max_timeout_run_ms".into(), run);
    }
    let title = args.title.clone().or_else(|| args.image.clone().map(|i| format!("{i} from the CLI")));
    for (k, v) in [
        ("title", title.map(Value::from)),
        ("cpu_count", args.cpus.map(Value::from)),
        ("gpu_count", args.gpus.map(Value::from)),
        ("gpu_name", args.gpu_name.map(Value::from)),
    ] {
        if let Some(v) = v {
            obj.insert(k.into(), v);
        }
    }
    let docker = obj
        .entry("parameters")
        .or_insert_with(|| json!({"type": "docker"}))
        .as_object_mut()
        .context("parameters must be an object")?
        .entry("parameters")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .context("parameters.parameters must be an object")?;
    if let Some(image) = args.image {
        docker.insert("image".into(), json!(image));
    }
    if let Some(tag) = args.tag {
        docker.insert("tag".into(), json!(tag));
    }
    if !args.ports.is_empty() {
        docker.insert("ports".into(), json!(args.ports));
    }
    if !args.env.is_empty() {
        let env = docker.entry("env").or_insert_with(|| json!({})).as_object_mut().context("env must be an object")?;
        for kv in &args.env {
            let (k, v) = kv.split_once('=').with_context(|| format!("--env {kv:?} is not KEY=VALUE"))?;
            env.insert(k.into(), json!(v));
        }
    }
    Ok(body)
}
