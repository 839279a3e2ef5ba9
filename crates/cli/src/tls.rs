//! TLS on the command line: `--ca-cert FILE` (or `GANTRY_CA_CERT`), a global flag
//! every command that talks to a server honours (the client commands and `gantry
//! agent`), and `gantry admin tls-selfsigned`.
//!
//! The flag is global so that one setting (an exported variable, or `ca_cert` in
//! the agent's configuration file) covers every command; `main` records it once and
//! [`client`] applies it. Without it, `https://` servers are verified against the
//! system's roots.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Context;
use clap::Args;
use gantry_client::{Client, Credentials};

static CA_CERT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Records `--ca-cert` (called once, by `main`).
pub fn init(ca_cert: Option<PathBuf>) {
    let _ = CA_CERT.set(ca_cert);
}

/// The `--ca-cert` in effect, if any.
pub fn ca_cert() -> Option<&'static std::path::Path> {
    CA_CERT.get().and_then(|c| c.as_deref())
}

/// A signed client for `creds` trusting `--ca-cert` (else the system's roots).
pub fn client(creds: Credentials) -> anyhow::Result<Client> {
    let ca = ca_cert();
    Client::with_ca_cert(creds, ca).with_context(|| match ca {
        Some(path) => format!("--ca-cert {}", path.display()),
        None => "the HTTP client".into(),
    })
}

/// `gantry admin tls-selfsigned`.
#[derive(Args)]
pub struct SelfSignedArgs {
    /// A DNS name or IP address clients will use to reach the server (repeatable;
    /// every one goes into the certificate), e.g. --host gantry.lab --host 10.0.0.5.
    #[arg(long = "host", value_name = "NAME", required = true)]
    hosts: Vec<String>,
    /// Directory to write ca.pem, server.pem and server.key (mode 0600) into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace files that exist already (clients must then get the new ca.pem).
    #[arg(long)]
    force: bool,
}

/// Writes a fresh CA and a server certificate and key it signed.
pub fn self_signed(args: SelfSignedArgs) -> anyhow::Result<()> {
    let written = gantry_tls::write_self_signed(&args.out, &args.hosts, args.force)?;
    outln!("CA certificate:     {}  (clients: --ca-cert or GANTRY_CA_CERT)", written.ca_cert.display())?;
    outln!("server certificate: {}  (gantry server --tls-cert)", written.cert.display())?;
    outln!("server key:         {}  (gantry server --tls-key; owner-only)", written.key.display())?;
    outln!("hosts: {}; valid for 10 years; the CA's own key was not kept.", args.hosts.join(", "))?;
    Ok(())
}
