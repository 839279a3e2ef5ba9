//! `gantry events` and `gantry webhooks ...`: the event stream and webhook endpoints
//! from the command line, and the event-stream wait behind `gantry jobs create --wait`.

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_client::{Client, Credentials, EventStream, EventsQuery};
use gantry_types::event::{Event, EventType};
use gantry_types::job::{Job, JobStatus};
use gantry_types::{JobId, WebhookId};
use serde_json::json;

use crate::output::{self, JsonFlag};

/// `gantry events`.
#[derive(Args)]
pub struct EventsArgs {
    /// Keep streaming new events (Server-Sent Events), reconnecting after a dropped
    /// connection without losing or repeating any.
    #[arg(short, long)]
    follow: bool,
    /// Only this event type (repeatable or comma list), e.g. job.status_changed.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Start after this event id (default: the oldest kept; with --follow, now).
    #[arg(long)]
    after: Option<i64>,
    /// Most events printed without --follow, 1-500.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// One JSON object per event (without --follow: the list envelope).
    #[command(flatten)]
    out: JsonFlag,
}

fn parse_types(types: &[String]) -> anyhow::Result<Vec<EventType>> {
    let mut out = Vec::new();
    for t in types {
        for parsed in EventType::parse_list(t).map_err(|e| anyhow::anyhow!("--type: {e}"))? {
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
    }
    Ok(out)
}

/// Runs `gantry events`.
pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let client = Client::new(Credentials::from_env()?);
    let query = EventsQuery { after: args.after, types: parse_types(&args.types)? };
    if !args.follow {
        let page = client.events(&query, std::time::Duration::ZERO, args.limit).await?;
        if args.out.json {
            return output::json(&page);
        }
        let mut t = output::table(&["ID", "TIME", "TYPE", "OBJECT", "STATUS"]);
        for e in &page.data {
            t.add_row(row(e));
        }
        outln!("{t}")?;
        if let Some(last) = page.data.last() {
            eprintln!("{} events; more with --after {}", page.data.len(), last.id);
        }
        return Ok(());
    }
    let mut stream = Follow::open(&client, query).await?;
    loop {
        let e = stream.next().await?;
        if args.out.json {
            outln!("{}", serde_json::to_string(&e)?)?;
        } else {
            outln!("{}", row(&e).join("  "))?;
        }
    }
}

/// One event as table cells: id, time, type, the object's uuid, its status.
fn row(e: &Event) -> Vec<String> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let object = text(&e.data["uuid"]).or_else(|| text(&e.data["transaction_uuid"])).unwrap_or_else(|| "-".into());
    let status = text(&e.data["status"]).or_else(|| e.data["amount"].as_f64().map(|a| format!("{a:+} USD")));
    vec![e.id.to_string(), e.created_at.to_rfc3339(), e.event_type.as_str().into(), object, status.unwrap_or_default()]
}

/// An SSE stream that reconnects after its last event when the connection drops.
struct Follow<'a> {
    client: &'a Client,
    query: EventsQuery,
    stream: EventStream,
}

impl<'a> Follow<'a> {
    async fn open(client: &'a Client, query: EventsQuery) -> anyhow::Result<Self> {
        let stream = client.event_stream(&query, None).await.context("cannot open the event stream")?;
        Ok(Self { client, query, stream })
    }

    /// The next event, reconnecting (after the last one seen) as often as needed.
    async fn next(&mut self) -> anyhow::Result<Event> {
        let mut backoff = std::time::Duration::from_millis(200);
        loop {
            match self.stream.next().await {
                Ok(Some(e)) => return Ok(e),
                Ok(None) => eprintln!("(event stream closed by the server; reconnecting)"),
                Err(e) => eprintln!("(event stream interrupted: {e}; reconnecting)"),
            }
            if let Some(last) = self.stream.last_id() {
                self.query.after = Some(last);
            }
            loop {
                tokio::time::sleep(backoff).await;
                match self.client.event_stream(&self.query, None).await {
                    Ok(s) => {
                        self.stream = s;
                        break;
                    }
                    Err(e) if backoff < std::time::Duration::from_secs(10) => {
                        eprintln!("(reconnecting failed: {e})");
                        backoff *= 2;
                    }
                    Err(e) => return Err(e).context("cannot reconnect to the event stream"),
                }
            }
        }
    }
}

/// An open wait for jobs' ends, opened *before* the job is submitted so that no
/// status change can slip by between the submit and the subscription.
pub struct JobWait<'a> {
    follow: Follow<'a>,
}

impl<'a> JobWait<'a> {
    /// Subscribes to the caller's job status changes from now on.
    pub async fn open(client: &'a Client) -> anyhow::Result<Self> {
        let query = EventsQuery { after: None, types: vec![EventType::JobStatusChanged] };
        Ok(Self { follow: Follow::open(client, query).await? })
    }

    /// Waits until `job` is in a terminal status (printing each change unless
    /// `quiet`); the job then.
    pub async fn until_done(mut self, job: JobId, quiet: bool) -> anyhow::Result<Job> {
        loop {
            let e = self.follow.next().await?;
            if e.data["uuid"].as_str() != Some(job.to_string().as_str()) {
                continue;
            }
            let seen: Job = serde_json::from_value(e.data).context("a job.status_changed event without a job")?;
            if !quiet {
                let reason = seen.status_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                eprintln!("{} {}{reason}", e.created_at.to_rfc3339(), seen.status.as_str());
            }
            if seen.status.is_terminal() {
                return Ok(seen);
            }
        }
    }
}

/// The exit status `--wait` ends with: 0 when the job completed, else 1.
pub fn wait_outcome(job: &Job) -> anyhow::Result<()> {
    match job.status {
        JobStatus::Completed => Ok(()),
        other => anyhow::bail!("job {} ended {}", job.uuid, other.as_str()),
    }
}

/// Webhook commands.
#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Create an endpoint; prints its signing secret (shown only this once).
    Create {
        /// Where events are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// Only this event type (repeatable or comma list; default: all).
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List your endpoints.
    List(JsonFlag),
    /// Delete an endpoint (its pending deliveries are dropped).
    Delete {
        /// Webhook uuid.
        uuid: WebhookId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// An endpoint's deliveries, newest first: status, attempts, last error.
    Deliveries {
        /// Webhook uuid.
        uuid: WebhookId,
        /// Page size, 1-50.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Runs a webhooks command.
pub async fn webhooks(cmd: WebhooksCommand) -> anyhow::Result<()> {
    let client = Client::new(Credentials::from_env()?);
    match cmd {
        WebhooksCommand::Create { url, events, description, out } => {
            let names: Vec<&str> = parse_types(&events)?.iter().map(|t| t.as_str()).collect();
            let hook = client.create_webhook(&json!({"url": url, "events": names, "description": description})).await?;
            if out.json {
                return output::json(&hook);
            }
            outln!("Created webhook {} -> {}", hook.uuid, hook.url)?;
            outln!("Signing secret (shown only now; verify X-Gantry-Signature with it):")?;
            outln!("{}", hook.secret.unwrap_or_default())?;
            Ok(())
        }
        WebhooksCommand::List(out) => {
            let list = client.list_webhooks(&[("limit".into(), "50".into())]).await?;
            if out.json {
                return output::json(&list);
            }
            let mut t = output::table(&["UUID", "URL", "EVENTS", "DESCRIPTION", "CREATED"]);
            for w in &list.data {
                let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
                let events = if events.is_empty() { "all".to_string() } else { events.join(",") };
                t.add_row(vec![
                    w.uuid.to_string(),
                    w.url.clone(),
                    events,
                    w.description.clone().unwrap_or_default(),
                    w.created_at.to_rfc3339(),
                ]);
            }
            outln!("{t}")?;
            Ok(())
        }
        WebhooksCommand::Delete { uuid, out } => {
            let hook = client.delete_webhook(uuid).await?;
            if out.json {
                return output::json(&hook);
            }
            outln!("Deleted webhook {}", hook.uuid)?;
            Ok(())
        }
        WebhooksCommand::Deliveries { uuid, limit, out } => {
            let list = client.list_webhook_deliveries(uuid, &[("limit".into(), limit.to_string())]).await?;
            if out.json {
                return output::json(&list);
            }
            let mut t = output::table(&["EVENT", "TYPE", "STATUS", "ATTEMPTS", "CODE", "NEXT ATTEMPT", "LAST ERROR"]);
            for d in &list.data {
                t.add_row(vec![
                    d.event_id.to_string(),
                    d.event_type.as_str().into(),
                    d.status.as_str().into(),
                    d.attempts.to_string(),
                    d.status_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    d.next_attempt_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                    d.last_error.clone().unwrap_or_default(),
                ]);
            }
            outln!("{t}")?;
            Ok(())
        }
    }
}
