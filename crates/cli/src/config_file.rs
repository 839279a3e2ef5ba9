//! Configuration files for the long-running commands (`gantry server`, `gantry
//! agent`): TOML whose keys are the commands' long flags in snake_case
//! (`--max-body-bytes` is `max_body_bytes`, `--label` is `label = ["k=v", ...]`).
//!
//! Precedence is flags > environment > file > built-in defaults. Rather than a second
//! configuration model beside clap's, the file is turned into flags: the command line
//! is parsed once, every file key whose flag was neither given nor set through its
//! environment variable is checked with that flag's own parser and appended as
//! `--flag=value`, and the result is parsed for real. One set of validations, one
//! place where a key is documented (`--help`), and nothing a file can set that a flag
//! cannot.
//!
//! The file is `--config FILE` (or `GANTRY_CONFIG`), else `/etc/gantry/<command>.toml`
//! when it exists. An unknown key, a value of the wrong kind or one the flag rejects
//! is an error naming the file, the line and the key. `--print-config` prints the
//! effective configuration (values and where each came from) with secrets redacted.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// `--config` and `--print-config`, flattened into each configurable command.
#[derive(clap::Args, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file; keys are the long flags in snake_case (default:
    /// /etc/gantry/<command>.toml when it exists). Flags and environment win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (with where each value came from, secrets
    /// redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Reads a secret from a file (a key file, a systemd credential): the first line,
/// trimmed, so an editor's trailing newline does not count.
pub fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the secret file {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        bail!("the secret file {} is empty", path.display());
    }
    Ok(secret)
}

/// The commands that read a configuration file.
const CONFIGURABLE: &[&str] = &["server", "agent"];

/// Flags that are about the file itself or print-and-exit modes, not configuration.
const NOT_KEYS: &[&str] = &["config", "print_config", "help", "version", "print_inventory", "json"];

/// Where an effective value came from, for `--print-config`.
#[derive(Clone, Copy, PartialEq)]
enum Origin {
    Flag,
    Env,
    File,
    Default,
}

/// Returns `argv` with the configuration file's settings appended as flags. Leaves it
/// unchanged for other commands, and when the command line does not parse (clap then
/// reports that as usual). With `--print-config`, prints and exits.
pub fn expand(cli: Command, argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let mut cli = cli;
    cli.build();
    // Lenient first pass: a required flag (the agent's key) may come from the file.
    let Ok(matches) = cli.clone().ignore_errors(true).try_get_matches_from(&argv) else { return Ok(argv) };
    let Some((name, sub_matches)) = matches.subcommand() else { return Ok(argv) };
    if !CONFIGURABLE.contains(&name) {
        return Ok(argv);
    }
    let sub = cli.find_subcommand(name).expect("the parsed subcommand exists").clone();
    let path = match sub_matches.get_one::<PathBuf>("config") {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(format!("/etc/gantry/{name}.toml"))).filter(|p| p.exists()),
    };
    let mut from_file = Vec::new();
    let mut argv = argv;
    if let Some(path) = &path {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (extra, keys) = flags_from_file(&sub, sub_matches, path, &text)?;
        argv.extend(extra);
        from_file = keys;
    }
    let final_matches = cli.clone().try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    let (_, sub_final) = final_matches.subcommand().expect("same subcommand");
    if sub_final.get_flag("print_config") {
        // A reader that stops early (`--print-config | grep -q`) is not a failure.
        let _ = out!("{}", render(&sub, sub_matches, sub_final, &from_file, path.as_deref()));
        std::process::exit(0);
    }
    Ok(argv)
}

/// The `--flag=value` arguments a file adds, and the keys it set.
fn flags_from_file(
    sub: &Command,
    given: &ArgMatches,
    path: &Path,
    text: &str,
) -> anyhow::Result<(Vec<OsString>, Vec<String>)> {
    let file = path.display();
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut extra = Vec::new();
    let mut keys = Vec::new();
    for (key, value) in &table {
        let at = format!("{file}:{}", line(key.span().start));
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_long().map(|l| l.replace('-', "_")).as_deref() == Some(key.get_ref().as_str()))
            .filter(|a| !NOT_KEYS.contains(&a.get_id().as_str()))
        else {
            bail!("{at}: unknown key `{}`; the keys are: {}", key.get_ref(), known_keys(sub).join(", "));
        };
        let id = arg.get_id().as_str();
        let set =
            |id: &str| matches!(given.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
        // A flag or the environment wins, also over a key that conflicts with what
        // they set (`secret_key` in the file, `--secret-key-file` given).
        let conflicts =
            |a: &clap::Arg, b: &clap::Arg| sub.get_arg_conflicts_with(a).iter().any(|c| c.get_id() == b.get_id());
        let conflicting_set = sub
            .get_arguments()
            .any(|other| set(other.get_id().as_str()) && (conflicts(arg, other) || conflicts(other, arg)));
        if set(id) || conflicting_set {
            continue;
        }
        let long = arg.get_long().expect("keys are long flags");
        let bad = |why: String| anyhow::anyhow!("{at}: bad value for `{}`: {why}", key.get_ref());
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match value.get_ref() {
                toml::Value::Boolean(true) => extra.push(OsString::from(format!("--{long}"))),
                toml::Value::Boolean(false) => {}
                other => return Err(bad(format!("expected true or false, got {other}"))),
            }
            keys.push(id.to_string());
            continue;
        }
        let many = matches!(arg.get_action(), ArgAction::Append);
        let items: Vec<&toml::Value> = match value.get_ref() {
            toml::Value::Array(items) if many => items.iter().collect(),
            toml::Value::Array(_) => return Err(bad("expected one value, got a list".into())),
            one => vec![one],
        };
        for item in items {
            let text = match item {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(bad(format!("expected a string or a number, got {other}"))),
            };
            // The flag's own parser: the same checks, the same message, as on the command line.
            let check = Command::new("gantry").no_binary_name(true).arg(
                clap::Arg::new("value")
                    .long("value")
                    .action(ArgAction::Set)
                    .value_parser(arg.get_value_parser().clone()),
            );
            check.try_get_matches_from([OsString::from(format!("--value={text}"))]).map_err(|e| {
                let message = e.render().to_string();
                let first = message.lines().next().unwrap_or("").trim_start_matches("error: ");
                bad(first.replace(" for '--value <value>'", ""))
            })?;
            extra.push(OsString::from(format!("--{long}={text}")));
        }
        keys.push(id.to_string());
    }
    Ok((extra, keys))
}

fn known_keys(sub: &Command) -> Vec<String> {
    sub.get_arguments()
        .filter(|a| !NOT_KEYS.contains(&a.get_id().as_str()))
        .filter_map(|a| a.get_long().map(|l| l.replace('-', "_")))
        .collect()
}

/// Keys whose values are secrets; files holding secrets (`*_file`) are only paths.
fn is_secret(key: &str) -> bool {
    !key.ends_with("_file") && (key.contains("secret") || key.ends_with("server_key") || key.contains("password"))
}

/// The effective configuration as a TOML file one could use.
fn render(
    sub: &Command,
    given: &ArgMatches,
    effective: &ArgMatches,
    from_file: &[String],
    path: Option<&Path>,
) -> String {
    let mut out = format!(
        "# Effective configuration of `gantry {}` (flags > environment > file > defaults)\n# file: {}\n",
        sub.get_name(),
        path.map(|p| p.display().to_string()).unwrap_or_else(|| "none".into())
    );
    for arg in sub.get_arguments() {
        let id = arg.get_id().as_str();
        let (Some(long), false) = (arg.get_long(), NOT_KEYS.contains(&id)) else { continue };
        let key = long.replace('-', "_");
        let origin = match given.value_source(id) {
            Some(ValueSource::CommandLine) => Origin::Flag,
            Some(ValueSource::EnvVariable) => Origin::Env,
            _ if from_file.iter().any(|k| k == id) => Origin::File,
            _ => Origin::Default,
        };
        let origin = match origin {
            Origin::Flag => "flag",
            Origin::Env => "environment",
            Origin::File => "file",
            Origin::Default => "default",
        };
        let values: Vec<String> =
            effective.get_raw(id).map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect()).unwrap_or_default();
        let shown = |v: &str| -> String {
            if is_secret(&key) {
                return "\"<redacted>\"".into();
            }
            if key == "database_url" {
                return toml::Value::String(gantry_store::database_url::redacted(v)).to_string();
            }
            match (v.parse::<i64>(), v) {
                (Ok(n), _) => n.to_string(),
                (_, "true" | "false") => v.to_string(),
                _ => toml::Value::String(v.to_string()).to_string(),
            }
        };
        let line = match (values.as_slice(), matches!(arg.get_action(), ArgAction::Append)) {
            ([], true) => format!("{key} = []"),
            ([], false) => format!("# {key} is not set"),
            (many, true) => format!("{key} = [{}]", many.iter().map(|v| shown(v)).collect::<Vec<_>>().join(", ")),
            ([one, ..], false) => format!("{key} = {}", shown(one)),
        };
        out.push_str(&format!("{line:<60} # {origin}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_only_the_password() {
        assert_eq!(
            gantry_store::database_url::redacted("postgres://gantry:hunter2@db:5432/gantry"),
            "postgres://gantry:<redacted>@db:5432/gantry"
        );
        assert_eq!(gantry_store::database_url::redacted("postgres://gantry@db/gantry"), "postgres://gantry@db/gantry");
        assert!(is_secret("secret_key") && is_secret("server_key") && !is_secret("secret_key_file"));
    }
}
