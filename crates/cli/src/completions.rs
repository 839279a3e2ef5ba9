//! `gantry completions SHELL` and `gantry man --out DIR`: generated from the same clap
//! definitions as `--help`, so they never drift. The Debian package ships both.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// `gantry completions`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// `gantry man`.
#[derive(Args)]
pub struct ManArgs {
    /// Directory to write gantry.1 and one page per subcommand into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Prints the completion script.
pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<()> {
    clap_complete::generate(args.shell, &mut cli, "gantry", &mut std::io::stdout());
    Ok(())
}

/// Writes the man pages.
pub fn man(args: ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    clap_mangen::generate_to(cli, &args.out)
        .with_context(|| format!("cannot write man pages to {}", args.out.display()))?;
    Ok(())
}
