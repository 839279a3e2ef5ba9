//! `gantry admin ...`: operator commands that open the store directly, so they work
//! before any key exists and while the server runs (SQLite allows a second process;
//! PostgreSQL is shared anyway).
//!
//! Errors are the application layer's own (`AppError`) or the store's, both
//! `std::error::Error`s: `main` prints them as one sentence with their cause chain
//! ("no account with uuid ..."), never as Rust debug output.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_server::admin::{KeySpec, create_account, create_in};
use gantry_types::AccountId;
use gantry_types::permissions::Preset;

/// Operator commands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an API key (and a new account unless --account names one).
    CreateKey(CreateKeyArgs),
    /// Grant credit (USD) to an account; the platform is the counterparty in the ledger.
    Credit(CreditArgs),
    /// Write a consistent backup of a SQLite data dir (store and server key), also
    /// while the server runs.
    Backup(crate::backup::BackupArgs),
    /// Restore a backup into a data dir (refused while a server uses it).
    Restore(crate::backup::RestoreArgs),
    /// Apply the store's pending schema migrations, or list them with --dry-run.
    Migrate(crate::backup::MigrateArgs),
    /// Exit 0 when a server's /healthz answers (for container HEALTHCHECKs).
    Healthcheck(crate::backup::HealthcheckArgs),
    /// Write a CA and a server certificate and key it signed (for tests and small
    /// labs): serve with --tls-cert/--tls-key, give clients the CA as --ca-cert.
    TlsSelfsigned(crate::tls::SelfSignedArgs),
    /// Job recipes: import them under their own uuids.
    #[command(subcommand)]
    Recipes(crate::admin_recipes::AdminRecipesCommand),
}

/// `gantry admin credit`.
#[derive(Args)]
pub struct CreditArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The account to credit.
    account: AccountId,
    /// USD, e.g. 25 or 0.50 (at most 6 decimals, greater than 0).
    amount: String,
    /// A note kept on the ledger line.
    #[arg(long)]
    memo: Option<String>,
    /// Print the account's balance as JSON afterwards.
    #[arg(long)]
    json: bool,
}

/// Where the store is.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The server's data directory (holds the server key, and the SQLite database).
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = ".gantry")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL, when the server uses PostgreSQL.
    #[arg(long, env = "GANTRY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The server's key file, when it is not DATA_DIR/server.key (as the server's
    /// --server-key-file).
    #[arg(long, visible_alias = "secret-key-file", env = "GANTRY_SERVER_KEY_FILE", value_name = "FILE")]
    pub server_key_file: Option<PathBuf>,
}

/// `gantry admin create-key`.
#[derive(Args)]
pub struct CreateKeyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Name of the key (and of the new account).
    #[arg(long)]
    name: String,
    /// consumer, node, admin or relay.
    #[arg(long, value_parser = ["consumer", "node", "admin", "relay"])]
    preset: String,
    /// Add the key to this existing account instead of creating one.
    #[arg(long)]
    account: Option<AccountId>,
    /// Email of the new account.
    #[arg(long)]
    email: Option<String>,
    /// Print one JSON object (public_key, secret_key, account_uuid, ...).
    #[arg(long)]
    json: bool,
}

/// Runs an admin command.
pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::CreateKey(args) => create_key(args).await,
        AdminCommand::Credit(args) => credit(args).await,
        AdminCommand::Backup(args) => crate::backup::backup(args).await,
        AdminCommand::Restore(args) => crate::backup::restore(args).await,
        AdminCommand::Migrate(args) => crate::backup::migrate(args).await,
        AdminCommand::Healthcheck(args) => crate::backup::healthcheck(args).await,
        AdminCommand::Recipes(cmd) => crate::admin_recipes::run(cmd).await,
        AdminCommand::TlsSelfsigned(args) => crate::tls::self_signed(args),
    }
}

/// Opens the store and the secret box of a data dir.
pub async fn open(
    store: &StoreArgs,
) -> anyhow::Result<(std::sync::Arc<dyn gantry_store::Store>, gantry_auth::SecretBox)> {
    let server_key = match &store.server_key_file {
        Some(path) => Some(crate::config_file::read_secret_file(path)?),
        None => std::env::var("GANTRY_SERVER_KEY").ok().filter(|k| !k.is_empty()),
    };
    let key = gantry_server::admin::load_server_key(&store.data_dir, server_key.as_deref())?;
    let db = gantry_store::open(&store.data_dir, store.database_url.as_deref())
        .await
        .with_context(|| format!("cannot open the store in {}", store.data_dir.display()))?;
    let secrets = gantry_auth::SecretBox::new(key);
    // Keys created with another key than the servers' would be unusable.
    gantry_server::admin::verify_server_key(db.as_ref(), &secrets).await?;
    Ok((db, secrets))
}

/// Creates an account (unless given) and a key; returns the key with its secret.
pub async fn create_key_in(
    data_dir: &Path,
    database_url: Option<&str>,
    name: &str,
    preset: Preset,
    account: Option<AccountId>,
    email: Option<String>,
) -> anyhow::Result<gantry_types::api_key::ApiKey> {
    let (store, secrets) = open(&StoreArgs {
        data_dir: data_dir.to_path_buf(),
        database_url: database_url.map(str::to_string),
        server_key_file: None,
    })
    .await?;
    create_key_with(store.as_ref(), &secrets, name, preset, account, email).await
}

/// [`create_key_in`] on an open store.
pub async fn create_key_with(
    store: &dyn gantry_store::Store,
    secrets: &gantry_auth::SecretBox,
    name: &str,
    preset: Preset,
    account: Option<AccountId>,
    email: Option<String>,
) -> anyhow::Result<gantry_types::api_key::ApiKey> {
    let account = match account {
        Some(id) => {
            store.account_fetch(id).await?.with_context(|| format!("no account {id}; omit --account to create one"))?;
            id
        }
        None => create_account(store, name, email).await?.uuid,
    };
    let spec =
        KeySpec { name: name.to_string(), permissions: preset.permissions(), allowed_ips: vec![], expires_at_ms: None };
    Ok(create_in(store, secrets, account, spec).await?)
}

async fn credit(args: CreditArgs) -> anyhow::Result<()> {
    let micros = gantry_types::money::parse_usd(&args.amount, false)
        .map_err(|e| anyhow::anyhow!("AMOUNT {e}"))
        .and_then(|m| if m > 0 { Ok(m) } else { Err(anyhow::anyhow!("AMOUNT must be greater than 0")) })?;
    let (store, _) = open(&args.store).await?;
    let memo = args.memo.or_else(|| Some("credit granted by an operator".into()));
    gantry_server::admin::credit(store.as_ref(), args.account, micros, memo, None).await?;
    let posted = store.ledger_balance(args.account).await?;
    if args.json {
        let out = serde_json::json!({
            "account_uuid": args.account,
            "credited_micros": micros,
            "posted_balance_micros": posted,
            "posted_balance": gantry_types::money::micros_to_usd(posted),
            "currency": gantry_types::money::CURRENCY,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        outln!(
            "Credited {} USD to account {}; its posted balance is now {} USD",
            gantry_types::money::format_usd(micros),
            args.account,
            gantry_types::money::format_usd(posted)
        )?;
    }
    Ok(())
}

async fn create_key(args: CreateKeyArgs) -> anyhow::Result<()> {
    let preset = Preset::parse(&args.preset).context("--preset must be consumer, node, admin or relay")?;
    let key = create_key_in(
        &args.store.data_dir,
        args.store.database_url.as_deref(),
        &args.name,
        preset,
        args.account,
        args.email,
    )
    .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&key)?)?;
    } else {
        outln!("Created {} key {:?} in account {}", args.preset, key.name, key.account_uuid)?;
        outln!("The secret is shown only now. For the CLI:\n")?;
        outln!("export GANTRY_PUBLIC_KEY={}", key.public_key)?;
        outln!("export GANTRY_SECRET_KEY={}", key.secret_key.unwrap_or_default())?;
    }
    Ok(())
}
