//! Log setup for people and for log shippers.
//!
//! * `--log-level` (or `GANTRY_LOG_LEVEL`, or the config file's `log_level`) takes a
//!   tracing filter (`info`, `gantry=debug,info`); without it `RUST_LOG` is read, as
//!   before; the default is `info`.
//! * `--log-format text|json`: text for people (colour only when stderr is a
//!   terminal and `NO_COLOR` is unset), JSON lines for shippers (one object per event with `timestamp`,
//!   `level`, `target`, `fields`, and the span).
//! * Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`), events go
//!   to journald over its native protocol: each field becomes a journal field
//!   (`REQUEST_ID`, `STATUS`, ...) that `journalctl -o json` shows and shippers
//!   index, with the journal's own timestamp. If the journal socket cannot be used,
//!   text lines without a timestamp of their own are written instead.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// The log flags, global to every command.
#[derive(Args, Clone, Default)]
pub struct LogArgs {
    /// Log line format on stderr.
    #[arg(long, global = true, env = "GANTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `gantry=debug,info` (default: RUST_LOG, else info).
    #[arg(long, global = true, env = "GANTRY_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("--log-level {level:?}: {e}"))?,
        // The platform verifier logs every refused certificate at ERROR; the error
        // the command returns says the same and what to do, so by default it is quiet.
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rustls_platform_verifier=off"))
        }
    };
    let journal = under_journald();
    if journal
        && args.log_format == LogFormat::Text
        && let Ok(layer) = tracing_journald::layer()
    {
        tracing_subscriber::registry().with(filter).with(layer.with_syslog_identifier("gantry".into())).init();
        return Ok(());
    }
    let base = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match (args.log_format, journal) {
        (LogFormat::Json, false) => base.json().with_current_span(true).init(),
        // The journal stamps each line itself.
        (LogFormat::Json, true) => base.json().without_time().init(),
        (LogFormat::Text, true) => base.with_ansi(false).without_time().init(),
        (LogFormat::Text, false) => base
            .with_ansi(crate::colour_wanted(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR"),
            ))
            .init(),
    }
    Ok(())
}

/// Whether stderr is the journal stream systemd connected: `JOURNAL_STREAM` holds
/// `DEVICE:INODE` of that stream, and a child that inherited the variable but writes
/// elsewhere (a pipe, a file) must not be taken for it.
fn under_journald() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.split_once(':') else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    use std::os::unix::fs::MetadataExt;
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}
