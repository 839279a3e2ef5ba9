//! TLS for Gantry, in one place: the server's configuration from PEM files, the
//! certificates a client trusts, and a self-signed CA for tests and small labs
//! (`gantry admin tls-selfsigned`).
//!
//! Why a crate of its own: the control plane serves TLS, the client crate (CLI,
//! agent) verifies it, and a relay will do both; each gets the same rules (which
//! PEM blocks count, which errors name which file) instead of three copies.
//!
//! The crypto provider is rustls's `aws-lc-rs`, the one reqwest uses, so the binary
//! carries a single crypto library; `aws-lc-sys` builds with a C compiler alone.
//! HTTP over TLS here is HTTP/1.1 only (ALPN `http/1.1`): the server speaks nothing
//! else.
//!
//! **Invariant:** nothing here opens sockets or knows HTTP; timeouts on handshakes
//! belong to the accept loops that call [`TlsAcceptor::accept`].

mod selfsigned;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
pub use selfsigned::{SelfSigned, Written, self_signed, write_self_signed};
pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::server::TlsStream;

/// What can go wrong loading or making certificates. Each variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has no `CERTIFICATE` PEM block.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file has no private key PEM block.
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A PEM block did not parse.
    #[error("{} is not valid PEM", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the certificate and key (e.g. the key does not match the
    /// certificate, or its algorithm is not supported).
    #[error("the certificate {} and the key {} do not make a TLS configuration", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate rustls cannot use as a root.
    #[error("{} holds a CA certificate that cannot be used", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// A certificate could not be generated (e.g. a host name that is not a DNS name).
    #[error("cannot make a certificate for {what}")]
    Generate {
        /// What was being made.
        what: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// No host was named.
    #[error("a certificate needs at least one host name or address (--host NAME)")]
    NoHost,
    /// A host is neither a DNS name nor an IP address.
    #[error("--host {host:?} is neither a DNS name nor an IP address")]
    BadHost {
        /// The host.
        host: String,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file to be written exists already.
    #[error("{} exists already; remove it or pass --force to replace it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// A server certificate (chain) and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// The private key of the leaf (`--tls-key`).
    pub key: PathBuf,
}

/// The crypto provider every configuration here uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source })
}

/// Every `CERTIFICATE` block of a PEM file (at least one, or an error naming the file).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { path: path.into(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: path.into() },
        source => TlsError::Pem { path: path.into(), source },
    })
}

/// The server side of TLS for `files`: the chain and key are read and checked now,
/// so a bad file stops the server at start with a message naming it.
pub fn server_config(files: &CertFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(&files.cert)?;
    let key = read_private_key(&files.key)?;
    let config_error = |source| TlsError::Config { cert: files.cert.clone(), key: files.key.clone(), source };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of TLS trusting only the CA certificates in `ca_file` (what
/// `--ca-cert` means for connections Gantry makes with rustls directly; the HTTP
/// client gets the same roots through reqwest).
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(ca_file)? {
        roots.add(cert).map_err(|source| TlsError::BadCa { path: ca_file.into(), source })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::BadCa { path: ca_file.into(), source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The client side of TLS trusting the system's roots (the platform verifier, what
/// reqwest uses too), or only `ca_file` when given.
pub fn client_config_or_system(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    if let Some(path) = ca_file {
        return client_config(path);
    }
    let system = |source| TlsError::BadCa { path: PathBuf::from("(the system's roots)"), source };
    let verifier = rustls_platform_verifier::Verifier::new(provider()).map_err(system)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(system)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An acceptor for [`server_config`].
pub fn acceptor(files: &CertFiles) -> Result<TlsAcceptor, TlsError> {
    server_config(files).map(TlsAcceptor::from)
}

#[cfg(test)]
mod tests;
