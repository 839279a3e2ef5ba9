//! `gantry dev`: the whole platform on one machine, for trying Gantry out.
//!
//! Today that is the control plane on the embedded SQLite default in `./.gantry`,
//! plus a consumer key for the CLI, kept in `.gantry/dev-credentials.json` (mode 0600)
//! so a restart prints the same exports. Node agents join here as later issues land.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use gantry_types::permissions::Preset;
use serde::{Deserialize, Serialize};

use crate::serve::{ServerArgs, shutdown_signal};

/// `gantry dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Data directory.
    #[arg(long, default_value = ".gantry")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

#[derive(Serialize, Deserialize)]
struct DevCredentials {
    public_key: String,
    secret_key: String,
    account_uuid: String,
}

const CREDENTIALS_FILE: &str = "dev-credentials.json";

/// Runs the dev platform until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let creds = credentials(&args.data_dir).await?;
    let server_args = ServerArgs {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        database_url: None,
        max_body_bytes: 1024 * 1024,
        billing_enforce: false,
        price_gpu: vec![],
        price_gpu_default: "0.50".into(),
        price_cpu_core: "0.01".into(),
        price_ram_gb: "0.002".into(),
        operator_share: "0.8".into(),
    };
    let server = gantry_server::start(server_args.config()?)
        .await
        .with_context(|| format!("cannot start the server on {} (is another one running?)", args.listen))?;
    let url = format!("http://{}", server.local_addr);
    println!("Gantry is up: control plane at {url}, data in {}", args.data_dir.display());
    println!("\nPaste these into another shell to use the CLI:\n");
    println!("export GANTRY_API_BASE_URL={url}");
    println!("export GANTRY_PUBLIC_KEY={}", creds.public_key);
    println!("export GANTRY_SECRET_KEY={}", creds.secret_key);
    println!("\nThen try: gantry jobs create --image busybox && gantry jobs list");
    println!("Ctrl-C stops the platform; state stays in {}.", args.data_dir.display());
    shutdown_signal().await;
    server.shutdown().await
}

/// Loads the dev key, creating an account and key on first run.
async fn credentials(data_dir: &std::path::Path) -> anyhow::Result<DevCredentials> {
    let path = data_dir.join(CREDENTIALS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).with_context(|| format!("{} is corrupt; delete it", path.display()));
    }
    let key = crate::admin::create_key_in(data_dir, None, "dev", Preset::Consumer, None, None).await?;
    let creds = DevCredentials {
        public_key: key.public_key,
        secret_key: key.secret_key.context("new key has a secret")?,
        account_uuid: key.account_uuid.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options.open(&path)?.write_all(serde_json::to_string_pretty(&creds)?.as_bytes())?;
    Ok(creds)
}
