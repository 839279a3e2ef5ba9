//! A CA and a server certificate it signed, for tests and small labs
//! (`gantry admin tls-selfsigned`).
//!
//! Choices: ECDSA P-256 keys (small, fast, accepted by every client Gantry talks to);
//! the CA may sign only leaf certificates (path length 0) and its private key is
//! **not kept**: nothing else can ever be signed with it, so a copied `ca.pem` is
//! harmless, and rotating means running the command again and handing out the new
//! `ca.pem`. Every name or address the server will be reached by is one `--host`
//! (IP addresses become IP subject alternative names). Both certificates are valid
//! from a day before they were made (clock skew) for ten years.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::TlsError;

/// How long the certificates are valid.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The PEM texts of a fresh CA certificate and a server certificate and key it signed.
pub struct SelfSigned {
    /// The CA's certificate: what clients pass as `--ca-cert`.
    pub ca_cert_pem: String,
    /// The server's certificate (`--tls-cert`).
    pub cert_pem: String,
    /// The server's private key, PKCS#8 (`--tls-key`).
    pub key_pem: String,
}

/// Makes a CA and a server certificate for `hosts` (DNS names or IP addresses; at
/// least one).
pub fn self_signed(hosts: &[String]) -> Result<SelfSigned, TlsError> {
    let first = hosts.first().ok_or(TlsError::NoHost)?;
    // What a client will check the certificate against (rcgen takes any ASCII).
    if let Some(bad) = hosts.iter().find(|h| rustls_pki_types::ServerName::try_from(h.as_str()).is_err()) {
        return Err(TlsError::BadHost { host: bad.clone() });
    }
    let now = SystemTime::now();
    let not_before = now - Duration::from_secs(24 * 3600);
    let not_after = now + VALIDITY;

    let ca_key = KeyPair::generate().map_err(generate("the CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(&format!("Gantry CA for {first}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before.into();
    ca.not_after = not_after.into();
    let ca_cert = ca.self_signed(&ca_key).map_err(generate("the CA"))?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(generate("the server key"))?;
    let mut leaf = CertificateParams::new(hosts.to_vec()).map_err(generate(format!("the hosts {hosts:?}")))?;
    leaf.distinguished_name = name(first);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before.into();
    leaf.not_after = not_after.into();
    let cert = leaf.signed_by(&key, &issuer).map_err(generate("the server certificate"))?;
    Ok(SelfSigned { ca_cert_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn generate(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> TlsError {
    let what = what.into();
    move |source| TlsError::Generate { what, source }
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common);
    dn
}

/// Where [`write_self_signed`] put the files.
#[derive(Clone, Debug)]
pub struct Written {
    /// `DIR/ca.pem`.
    pub ca_cert: PathBuf,
    /// `DIR/server.pem`.
    pub cert: PathBuf,
    /// `DIR/server.key` (mode 0600).
    pub key: PathBuf,
}

/// [`self_signed`] written to `dir` (created if missing) as `ca.pem`, `server.pem`
/// and `server.key` (owner-only). Existing files are replaced only with `force`.
pub fn write_self_signed(dir: &Path, hosts: &[String], force: bool) -> Result<Written, TlsError> {
    let written = Written { ca_cert: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    if !force {
        for path in [&written.ca_cert, &written.cert, &written.key] {
            if path.exists() {
                return Err(TlsError::Exists { path: path.clone() });
            }
        }
    }
    let made = self_signed(hosts)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.into(), source })?;
    write_file(&written.ca_cert, &made.ca_cert_pem, 0o644)?;
    write_file(&written.cert, &made.cert_pem, 0o644)?;
    write_file(&written.key, &made.key_pem, 0o600)?;
    Ok(written)
}

/// Writes `text` to `path` created with `mode` (a replaced file gets `mode` too).
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let error = |source| TlsError::Write { path: path.into(), source };
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)
}
