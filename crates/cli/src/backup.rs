//! `gantry admin backup | restore | migrate | healthcheck`: the operator's side of
//! keeping a control plane's data safe across failures and upgrades.
//!
//! A backup is one tar file (mode 0600): `gantry.db`, a consistent copy of the SQLite
//! store taken with `VACUUM INTO` (a read transaction, so the server keeps serving
//! and writing while it runs, and the copy is exactly the store at one commit);
//! `server.key`, the key that decrypts the secrets in it, in clear beside it (a
//! database restored without its key has unreadable secrets, so they travel
//! together; encrypt the archive with the backup tool if it leaves the machine); and
//! `backup.json`, what made it. PostgreSQL deployments back up with PostgreSQL's own
//! tools (README, "Backups").
//!
//! A running `gantry server` holds an exclusive lock on `DATA_DIR/gantry.lock`;
//! restore takes the same lock, so it refuses to replace a store a server is using.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

/// File names inside a data dir and inside a backup.
const DB_FILE: &str = "gantry.db";
const LOCK_FILE: &str = "gantry.lock";
const MANIFEST: &str = "backup.json";

/// `gantry admin backup`.
#[derive(Args)]
pub struct BackupArgs {
    /// The server's data directory (holds gantry.db and server.key).
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = ".gantry")]
    data_dir: PathBuf,
    /// The backup file to write (a tar, mode 0600); must not exist.
    #[arg(long)]
    out: PathBuf,
}

/// `gantry admin restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// A file written by `gantry admin backup`.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to restore into (created if absent).
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = ".gantry")]
    data_dir: PathBuf,
    /// Replace a store already in the data dir (never one a server is using).
    #[arg(long)]
    force: bool,
}

/// `gantry admin migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    store: crate::admin::StoreArgs,
    /// List the migrations a start would apply, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `gantry admin healthcheck`.
#[derive(Args)]
pub struct HealthcheckArgs {
    /// The server's base URL (default: the local listen address).
    #[arg(long, env = "GANTRY_HEALTHCHECK_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

/// Holds `DATA_DIR/gantry.lock` exclusively for as long as the value lives. `gantry
/// server` keeps one for its whole run; restore takes one while it writes.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, or says which process kind holds it.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "{} is in use by a running gantry server (it holds {}); stop the server first",
                data_dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// Writes a backup of a data dir.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let db = args.data_dir.join(DB_FILE);
    if !db.exists() {
        bail!(
            "{} holds no SQLite store ({} is missing); for PostgreSQL use pg_dump (README, \"Backups\")",
            args.data_dir.display(),
            db.display()
        );
    }
    if args.out.exists() {
        bail!("{} exists; choose a new file name (a backup never overwrites)", args.out.display());
    }
    let staging =
        tempfile::tempdir_in(args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
            .context("cannot create a staging directory beside --out")?;
    let copy = staging.path().join(DB_FILE);
    let (source, target) = (db.clone(), copy.clone());
    let schema_version =
        tokio::task::spawn_blocking(move || gantry_store::backup::sqlite_snapshot(&source, &target)).await??;
    let key = args.data_dir.join(gantry_server::admin::SERVER_KEY_FILE);
    let manifest = serde_json::json!({
        "format": 1,
        "gantry_version": env!("CARGO_PKG_VERSION"),
        "schema_version": schema_version,
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "server_key_included": key.exists(),
    });
    let partial = staging.path().join("backup.tar");
    {
        let mut options = File::options();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
        let mut tar = tar::Builder::new(file);
        let body = serde_json::to_vec_pretty(&manifest)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        tar.append_data(&mut header, MANIFEST, body.as_slice())?;
        tar.append_path_with_name(&copy, DB_FILE)?;
        if key.exists() {
            tar.append_path_with_name(&key, gantry_server::admin::SERVER_KEY_FILE)?;
        }
        let file = tar.into_inner()?;
        file.sync_all()?;
    }
    // Rename last: a file at --out is always a complete backup.
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("cannot move the backup to {}", args.out.display()))?;
    if !key.exists() {
        eprintln!(
            "note: {} has no server.key (the server key comes from GANTRY_SERVER_KEY or --server-key-file); \
             keep that key with this backup, or its secrets cannot be read",
            args.data_dir.display()
        );
    }
    outln!("Backed up {} (schema {schema_version}) to {}", args.data_dir.display(), args.out.display())?;
    Ok(())
}

/// Restores a backup into a data dir.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let _lock = DataDirLock::acquire(&args.data_dir)?;
    let db = args.data_dir.join(DB_FILE);
    if db.exists() && !args.force {
        bail!(
            "{} already holds a store; pass --force to replace it (take a backup of it first)",
            args.data_dir.display()
        );
    }
    let file = File::open(&args.from).with_context(|| format!("cannot open {}", args.from.display()))?;
    let staging = tempfile::tempdir_in(&args.data_dir)?;
    let mut archive = tar::Archive::new(file);
    let mut found = Vec::new();
    for entry in archive.entries().context("not a gantry backup (not a tar file)")? {
        let not_a_backup = || format!("{} is not a gantry backup (a damaged or foreign tar)", args.from.display());
        let mut entry = entry.with_context(not_a_backup)?;
        let name = entry.path().with_context(not_a_backup)?.to_string_lossy().into_owned();
        if ![DB_FILE, gantry_server::admin::SERVER_KEY_FILE, MANIFEST].contains(&name.as_str()) {
            bail!("not a gantry backup: unexpected member {name:?}");
        }
        let dest = staging.path().join(&name);
        let mut options = File::options();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&dest)?;
        std::io::copy(&mut entry, &mut out).with_context(not_a_backup)?;
        out.sync_all()?;
        found.push(name);
    }
    if !found.iter().any(|n| n == DB_FILE) {
        bail!("not a gantry backup: {} has no {DB_FILE}", args.from.display());
    }
    let manifest: serde_json::Value = std::fs::read(staging.path().join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let schema = manifest["schema_version"].as_i64().unwrap_or(0);
    if schema > gantry_store::migrate::newest_version() {
        bail!(
            "the backup has schema {schema}, newer than this binary knows ({}); restore it with gantry {} or newer",
            gantry_store::migrate::newest_version(),
            manifest["gantry_version"].as_str().unwrap_or("of that release")
        );
    }
    // Old WAL files belong to the replaced database; applied to the restored one
    // they would corrupt it.
    for stale in ["gantry.db-wal", "gantry.db-shm"] {
        let _ = std::fs::remove_file(args.data_dir.join(stale));
    }
    for name in &found {
        if name != MANIFEST {
            std::fs::rename(staging.path().join(name), args.data_dir.join(name))?;
        }
    }
    File::open(&args.data_dir)?.sync_all()?;
    outln!(
        "Restored {} into {} (schema {schema}{})",
        args.from.display(),
        args.data_dir.display(),
        if found.iter().any(|n| n == gantry_server::admin::SERVER_KEY_FILE) { ", with its server key" } else { "" }
    )?;
    Ok(())
}

/// Lists (with `--dry-run`) or applies the pending migrations.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let pending = gantry_store::migrate::pending(&args.store.data_dir, args.store.database_url.as_deref())
        .await
        .context("cannot read the store's schema")?;
    if !args.dry_run && !pending.is_empty() {
        gantry_store::open(&args.store.data_dir, args.store.database_url.as_deref()).await?;
    }
    let listed: Vec<_> = pending.iter().map(|m| serde_json::json!({"version": m.version, "name": m.name})).collect();
    if args.json {
        let out = serde_json::json!({
            "dry_run": args.dry_run,
            "schema_version": gantry_store::migrate::newest_version(),
            "pending": listed,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else if pending.is_empty() {
        outln!("The store is at schema {}; nothing to apply.", gantry_store::migrate::newest_version())?;
    } else {
        let verb = if args.dry_run { "A start would apply" } else { "Applied" };
        outln!("{verb} {} migration(s):", pending.len())?;
        for m in &pending {
            outln!("  {:04} {}", m.version, m.name)?;
        }
    }
    Ok(())
}

/// Exits 0 when the server's `/healthz` answers 200 (the container image's HEALTHCHECK).
pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = format!("{}/healthz", args.url.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let response = client.get(&url).send().await.with_context(|| format!("{url} is unreachable"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let _ = std::io::stdout().write_all(b"ok\n");
    Ok(())
}
