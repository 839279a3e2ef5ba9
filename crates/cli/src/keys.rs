//! `gantry keys ...` and `gantry me`: API keys through the API.

use clap::{Subcommand, ValueEnum};
use gantry_client::Credentials;
use gantry_types::ApiKeyId;
use gantry_types::api_key::CreateApiKeyRequest;

use crate::output::{self, JsonFlag};

/// Key commands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key in your account (its secret is shown once).
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Permission preset.
        #[arg(long, value_enum, default_value = "consumer")]
        preset: PresetArg,
        /// Allowed source IP or CIDR (repeatable); none = any.
        #[arg(long = "allow-ip")]
        allowed_ips: Vec<String>,
        /// Expiry, RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List your keys.
    List(JsonFlag),
    /// Revoke a key by its uuid.
    Revoke {
        /// Key uuid.
        uuid: ApiKeyId,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Presets offered on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum PresetArg {
    /// Submits jobs.
    Consumer,
    /// Runs a node.
    Node,
}

/// Runs a keys command.
pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    let client = crate::tls::client(Credentials::from_env()?)?;
    match cmd {
        KeysCommand::Create { name, preset, allowed_ips, expires_at, out } => {
            let preset = match preset {
                PresetArg::Consumer => "consumer",
                PresetArg::Node => "node",
            };
            let req = CreateApiKeyRequest {
                name: Some(name),
                preset: Some(preset.into()),
                allowed_ips: Some(allowed_ips),
                expires_at,
                permissions: None,
            };
            let key = client.create_api_key(&req).await?;
            if out.json {
                return output::json(&key);
            }
            outln!("Created key {} ({}). The secret is shown only now:\n", key.uuid, key.name)?;
            outln!("export GANTRY_PUBLIC_KEY={}", key.public_key)?;
            outln!("export GANTRY_SECRET_KEY={}", key.secret_key.unwrap_or_default())?;
        }
        KeysCommand::List(out) => {
            let list = client.list_api_keys(&[]).await?;
            if out.json {
                return output::json(&list);
            }
            let mut t = output::table(&["UUID", "NAME", "PUBLIC KEY", "REVOKED", "EXPIRES", "LAST USED"]);
            for k in &list.data {
                let time = |t: Option<gantry_types::Timestamp>| t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
                t.add_row(vec![
                    k.uuid.to_string(),
                    k.name.clone(),
                    k.public_key.clone(),
                    k.is_revoked.to_string(),
                    time(k.expires_at),
                    time(k.last_used_at),
                ]);
            }
            outln!("{t}\n{} key(s)", list.total)?;
        }
        KeysCommand::Revoke { uuid, out } => {
            let key = client.revoke_api_key(uuid).await?;
            if out.json {
                return output::json(&key);
            }
            outln!("Revoked key {} ({})", key.uuid, key.name)?;
        }
    }
    Ok(())
}

/// `gantry me`.
pub async fn me(out: JsonFlag) -> anyhow::Result<()> {
    let client = crate::tls::client(Credentials::from_env()?)?;
    let user = client.me().await?;
    if out.json {
        return output::json(&user);
    }
    outln!("account {} ({}), email {}", user.account_uuid, user.name, user.email.as_deref().unwrap_or("-"))?;
    outln!("permissions: {}", user.permissions.join(", "))?;
    Ok(())
}
