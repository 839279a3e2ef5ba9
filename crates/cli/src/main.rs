//! `gantry`: the one binary. Parses the command line and calls into the library
//! crates; no business logic lives here.

#[macro_use]
mod output;

mod admin;
mod admin_recipes;
mod agent;
mod bench;
mod bench_agent;
mod bench_cluster;
mod billing;
mod dev;
mod gpus;
mod jobs;
mod keys;
mod recipes;
mod serve;

use clap::{Parser, Subcommand};

// The request path allocates many small objects (JSON values, headers); mimalloc
// serves them markedly faster than glibc's malloc under two busy threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gantry: an open GPU compute platform speaking the upstream jobs API.
#[derive(Parser)]
#[command(name = "gantry", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on one machine: the control plane on SQLite in ./.gantry, with
    /// local credentials printed as exports.
    Dev(dev::DevArgs),
    /// Run the control plane.
    Server(serve::ServerArgs),
    /// Run a node agent (today: simulated nodes with --simulate N).
    Agent(Box<agent::AgentArgs>),
    /// Operator commands that work on the data dir directly (also while the server runs).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Submit, list, inspect and cancel jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// List and inspect job recipes, and cook one into a job.
    #[command(subcommand)]
    Recipes(recipes::RecipesCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List the GPU registry: the models (and names) jobs may ask for.
    Gpus(output::JsonFlag),
    /// Show who the configured key belongs to.
    Me(output::JsonFlag),
    /// List compute offers: live capacity by hardware and region, with hourly prices.
    Offers(billing::OffersArgs),
    /// Show the configured key's account balance and latest ledger lines.
    Balance(output::JsonFlag),
    /// Print the OpenAPI document of the API.
    Openapi,
    /// Benchmarks (print figures and a ratio against a same-run reference).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_wanted(std::io::IsTerminal::is_terminal(&std::io::stderr()), std::env::var_os("NO_COLOR")))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Server(args) => serve::run(args).await,
            Command::Agent(args) => agent::run(*args).await,
            Command::Admin(cmd) => admin::run(cmd).await,
            Command::Jobs(cmd) => jobs::run(cmd).await,
            Command::Recipes(cmd) => recipes::run(cmd).await,
            Command::Keys(cmd) => keys::run(cmd).await,
            Command::Me(flag) => keys::me(flag).await,
            Command::Gpus(flag) => gpus::run(flag).await,
            Command::Offers(args) => billing::offers(args).await,
            Command::Balance(flag) => billing::balance(flag).await,
            Command::Openapi => {
                outln!("{}", gantry_server::openapi().to_pretty_json()?)?;
                Ok(())
            }
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our stdout went away (`| head`): stop quietly, like Unix tools.
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether logs may use ANSI colour: only on a terminal, and never when `NO_COLOR` is
/// set to anything non-empty (<https://no-color.org>). Logs piped to a file or a
/// journal stay plain text.
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour_wanted;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some("".into())), "an empty NO_COLOR does not count");
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(!colour_wanted(false, None));
    }
}
