//! `gantry version`: what this binary is, for bug reports, upgrade checks and
//! scripts (`--json`). The facts come from `build.rs`; the schema version is the
//! newest store migration compiled in, the one a database must not exceed.

use clap::Args;
use serde::Serialize;

/// `gantry version`.
#[derive(Args)]
pub struct VersionArgs {
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

/// The build facts.
#[derive(Serialize)]
pub struct VersionInfo {
    /// The release, e.g. `0.1.0`.
    pub version: &'static str,
    /// The git commit built (`-dirty` when the tree had changes), or `unknown`.
    pub commit: &'static str,
    /// When the built commit was made (or `SOURCE_DATE_EPOCH`), RFC 3339 UTC: builds
    /// of one commit are identical, so the date is the source's, not the clock's.
    pub build_date: String,
    /// The Cargo features enabled in this build.
    pub features: Vec<&'static str>,
    /// The store backends compiled in.
    pub store_backends: [&'static str; 2],
    /// The newest store schema version (migration) this binary knows.
    pub schema_version: i64,
    /// The target triple and the Cargo profile built with.
    pub target: &'static str,
    /// The Cargo profile built with (`release`, `dist`, `debug`).
    pub profile: &'static str,
}

/// The facts of this binary.
pub fn info() -> VersionInfo {
    let epoch: i64 = env!("GANTRY_BUILD_EPOCH").parse().unwrap_or(0);
    let build_date = chrono::DateTime::from_timestamp(epoch, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "unknown".into());
    VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("GANTRY_BUILD_COMMIT"),
        build_date,
        features: env!("GANTRY_BUILD_FEATURES").split(',').filter(|f| !f.is_empty()).collect(),
        store_backends: ["sqlite", "postgres"],
        schema_version: gantry_store::migrate::newest_version(),
        target: env!("GANTRY_BUILD_TARGET"),
        profile: env!("GANTRY_BUILD_PROFILE"),
    }
}

/// The one line `gantry --version` prints after the name.
pub fn long_version() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        let i = info();
        format!("{} (commit {}, built {}, schema {})", i.version, short(i.commit), i.build_date, i.schema_version)
    })
}

fn short(commit: &str) -> &str {
    commit.get(..12).filter(|_| commit.len() > 12 && !commit.starts_with("unknown")).unwrap_or(commit)
}

/// Prints the facts.
pub fn run(args: VersionArgs) -> anyhow::Result<()> {
    let i = info();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&i)?)?;
    } else {
        outln!("gantry {}", i.version)?;
        outln!("commit:          {}", i.commit)?;
        outln!("build date:      {}", i.build_date)?;
        let features = if i.features.is_empty() { "(default)".to_string() } else { i.features.join(", ") };
        outln!("features:        {features}")?;
        outln!("store backends:  {}", i.store_backends.join(", "))?;
        outln!("schema version:  {}", i.schema_version)?;
        outln!("target:          {} ({})", i.target, i.profile)?;
    }
    Ok(())
}
