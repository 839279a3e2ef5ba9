//! `gantry`: the one binary. Parses the command line and calls into the library
//! crates; no business logic lives here.

#[macro_use]
mod output;

mod admin;
mod admin_recipes;
mod agent;
mod backup;
mod bench;
mod bench_agent;
mod bench_cluster;
mod bench_events;
mod bench_failover;
mod bench_heartbeats;
mod bench_relay;
mod bench_restart;
mod billing;
mod completions;
mod config_file;
mod dev;
mod events;
mod gpus;
mod jobs;
mod keys;
mod logging;
mod recipes;
mod relay;
mod sd_notify;
mod serve;
mod tls;
mod version;

use clap::{CommandFactory, Parser, Subcommand};

// The request path allocates many small objects (JSON values, headers); mimalloc
// serves them markedly faster than glibc's malloc under two busy threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gantry: an open GPU compute platform speaking the upstream jobs API.
#[derive(Parser)]
#[command(name = "gantry", version, long_version = version::long_version(), about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: logging::LogArgs,
    /// Trust only the CA certificate(s) in FILE (PEM) for https:// servers, instead of
    /// the system's roots (e.g. the ca.pem of `gantry admin tls-selfsigned`).
    #[arg(long, global = true, env = "GANTRY_CA_CERT", value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
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
    /// Run a relay: carries the published ports of nodes behind NAT (their agents dial
    /// it with --relay).
    Relay(relay::RelayArgs),
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
    /// Print what happened (job, run, node and balance events); --follow streams them.
    Events(events::EventsArgs),
    /// Create, list and delete webhook endpoints, and see their deliveries.
    #[command(subcommand)]
    Webhooks(events::WebhooksCommand),
    /// Print the OpenAPI document of the API.
    Openapi,
    /// Print the version, git commit, build date, features and store schema version.
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Write the man pages (gantry.1, gantry-server.1, ...) into a directory.
    Man(completions::ManArgs),
    /// Benchmarks (print figures and a ratio against a same-run reference).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    // `gantry server` and `gantry agent` take settings from a config file too.
    let argv = match config_file::expand(Cli::command(), std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    if let Err(e) = logging::init(&cli.log) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    tls::init(cli.ca_cert.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Server(args) => serve::run(args).await,
            Command::Agent(args) => agent::run(*args).await,
            Command::Relay(args) => relay::run(args).await,
            Command::Admin(cmd) => admin::run(cmd).await,
            Command::Jobs(cmd) => jobs::run(cmd).await,
            Command::Recipes(cmd) => recipes::run(cmd).await,
            Command::Keys(cmd) => keys::run(cmd).await,
            Command::Me(flag) => keys::me(flag).await,
            Command::Gpus(flag) => gpus::run(flag).await,
            Command::Offers(args) => billing::offers(args).await,
            Command::Balance(flag) => billing::balance(flag).await,
            Command::Events(args) => events::events(args).await,
            Command::Webhooks(cmd) => events::webhooks(cmd).await,
            Command::Openapi => {
                outln!("{}", gantry_server::openapi().to_pretty_json()?)?;
                Ok(())
            }
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Version(args) => version::run(args),
            Command::Completions(args) => completions::completions(args, Cli::command()),
            Command::Man(args) => completions::man(args, Cli::command()),
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
