//! Output for people (tables) and for scripts (`--json`), and the two macros every
//! command prints with.
//!
//! [`outln!`] and [`out!`] are `println!`/`print!` that return the write's
//! `io::Result` instead of panicking: a command whose stdout was closed (`gantry jobs
//! list | head -1`) gets a `BrokenPipe` error, which `main` turns into a quiet exit 0,
//! as Unix tools do.

/// `println!` to stdout that returns the `io::Result` (use with `?`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` to stdout that returns the `io::Result` (use with `?`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Whether `e` is (or was caused by) writing to a closed pipe: the reader went away,
/// which is how `| head` ends a command, not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use gantry_types::job::Job;
use serde::Serialize;

/// `--json` on commands that print a result.
#[derive(Args, Clone, Copy, Default)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// A table with a header row.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic).set_header(header);
    t
}

/// One job as label/value lines.
pub fn job_details(job: &Job) -> std::io::Result<()> {
    let mut t = table(&["field", "value"]);
    let p = &job.parameters.parameters;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<(&str, String)> = vec![
        ("uuid", job.uuid.to_string()),
        ("title", job.title.clone()),
        ("status", job.status.as_str().into()),
        ("status_reason", opt(&job.status_reason)),
        ("task", job.task.as_str().into()),
        ("image", format!("{}:{}", p.image, p.tag.as_deref().unwrap_or("latest"))),
        (
            "resources",
            format!(
                "{} CPU, {} GPU{}, {} GB RAM, {} GB VRAM, {} GB disk",
                job.cpu_count,
                job.gpu_count,
                job.gpu_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                job.min_ram_gb,
                job.min_vram_gb,
                job.min_storage_gb
            ),
        ),
        ("created_at", job.created_at.to_rfc3339()),
        ("assign by", gantry_types::Timestamp(job.timeout_assign_at_ms).to_rfc3339()),
        ("retries", job.max_retry_count.to_string()),
        ("nodes", job.max_node_count.to_string()),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    outln!("{t}")
}

/// Jobs as a table.
pub fn jobs_table(jobs: &[Job], total: u64, page: u64) -> std::io::Result<()> {
    let mut t = table(&["UUID", "TITLE", "TASK", "STATUS", "GPUS", "CREATED"]);
    for j in jobs {
        t.add_row(vec![
            j.uuid.to_string(),
            j.title.clone(),
            j.task.as_str().to_string(),
            j.status.as_str().to_string(),
            j.gpu_count.to_string(),
            j.created_at.to_rfc3339(),
        ]);
    }
    outln!("{t}")?;
    outln!("{} of {} job(s), page {}", jobs.len(), total, page)
}
