//! The server key that encrypts secrets at rest (API key secrets, registry
//! passwords). Given in config for deployments that share one database between
//! several servers, or created on first start as `<data_dir>/server.key` (mode 0600).
//! The admin CLI reads the same file, so it can create keys while the server runs.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// File name of the key inside the data dir.
pub const KEY_FILE: &str = "server.key";

/// Returns the configured key, or the data dir's key file, creating it if absent.
pub fn load_or_create(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<[u8; 32]> {
    if let Some(text) = configured {
        return gantry_auth::parse_server_key(text.trim())
            .context("the configured server key (GANTRY_SERVER_KEY) is invalid");
    }
    let path = data_dir.join(KEY_FILE);
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    if !path.exists() {
        // Write a complete file under a temporary name, then hard-link it into place:
        // the link either appears whole or fails because another process (a server and
        // an admin command starting together) won the race; both then read its key.
        let tmp = data_dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(hex::encode(gantry_auth::SecretBox::generate_key()).as_bytes())?;
        file.sync_all()?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read the server key {}", path.display()))?;
    gantry_auth::parse_server_key(text.trim())
        .with_context(|| format!("{} does not hold a valid server key", path.display()))
}

/// What the check value decrypts to.
const CHECK_PLAINTEXT: &str = "gantry server key check v1";

/// Proves that `secrets` holds the key this database's secrets are encrypted with, so
/// an instance given another key (several instances on one PostgreSQL, each with its
/// own data dir's key) refuses to start instead of writing secrets no other instance
/// can read. The first start stores a value encrypted with its key
/// ([`gantry_store::deployment::KEY_CHECK`]); every start decrypts it. A database
/// from before the check existed is checked against one of its stored API key
/// secrets before the check value is written.
pub async fn verify(store: &dyn gantry_store::Store, secrets: &gantry_auth::SecretBox) -> anyhow::Result<()> {
    use gantry_store::deployment::KEY_CHECK;
    let wrong_key = || {
        anyhow::anyhow!(
            "the server key cannot decrypt the secrets in this database: they were encrypted with another \
             key. Every instance sharing a database needs the same key: give each the same \
             --secret-key-file FILE (or GANTRY_SECRET_KEY_FILE); a single instance uses DATA_DIR/{KEY_FILE}"
        )
    };
    let reading = "cannot read the server key's check value from the store";
    if store.setting_fetch(KEY_CHECK).await.context(reading)?.is_none() {
        let filter = gantry_types::list::ApiKeyFilter::default();
        let paging = gantry_types::list::Paging { page: 1, limit: 1, newest_first: false };
        let oldest = store.api_key_list(None, &filter, paging).await.context(reading)?;
        if let Some(key) = oldest.items.first() {
            secrets.decrypt(&key.secret_encrypted).map_err(|_| wrong_key())?;
        }
    }
    let stored = store.setting_insert_if_absent(KEY_CHECK, &secrets.encrypt(CHECK_PLAINTEXT)).await.context(reading)?;
    match secrets.decrypt(&stored) {
        Ok(text) if text == CHECK_PLAINTEXT => Ok(()),
        _ => Err(wrong_key()),
    }
}
