//! The self-signed CA makes a working server configuration; a client trusting the CA
//! completes a handshake, one trusting another CA does not; bad files are errors
//! naming the file.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs one handshake over an in-memory pipe and one byte each way.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<(), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let serving = tokio::spawn(async move {
        let mut s = acceptor.accept(a).await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        s.write_all(&byte).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())
    });
    let mut c = connector.connect(name, b).await.map_err(|e| e.to_string())?;
    c.write_all(b"x").await.map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    c.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
    serving.await.map_err(|e| e.to_string())??;
    Ok(())
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = vec!["gantry.test".to_string(), "127.0.0.1".to_string()];
    let written = write_self_signed(dir.path(), &hosts, false).unwrap();
    let server = server_config(&CertFiles { cert: written.cert.clone(), key: written.key.clone() }).unwrap();
    let client = client_config(&written.ca_cert).unwrap();
    handshake(server.clone(), client.clone(), "gantry.test").await.unwrap();
    handshake(server.clone(), client.clone(), "127.0.0.1").await.unwrap();
    // A name the certificate does not carry.
    let err = handshake(server.clone(), client, "other.test").await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // Another CA's client.
    let other = tempfile::tempdir().unwrap();
    let other_ca = write_self_signed(other.path(), &hosts, false).unwrap().ca_cert;
    let err = handshake(server, client_config(&other_ca).unwrap(), "gantry.test").await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn the_key_is_owner_only_and_files_are_not_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = vec!["localhost".to_string()];
    let written = write_self_signed(dir.path(), &hosts, false).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&written.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let first = std::fs::read_to_string(&written.ca_cert).unwrap();
    let err = write_self_signed(dir.path(), &hosts, false).unwrap_err();
    assert!(matches!(err, TlsError::Exists { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&written.ca_cert).unwrap(), first, "nothing was replaced");
    write_self_signed(dir.path(), &hosts, true).unwrap();
    assert_ne!(std::fs::read_to_string(&written.ca_cert).unwrap(), first, "--force makes a new CA");
}

#[test]
fn bad_inputs_are_errors_naming_the_file_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(self_signed(&[]), Err(TlsError::NoHost)));
    assert!(matches!(self_signed(&["not a host name!".into()]), Err(TlsError::BadHost { .. })));
    let written = write_self_signed(dir.path(), &["localhost".into()], false).unwrap();
    let missing = dir.path().join("missing.pem");
    let err = server_config(&CertFiles { cert: missing.clone(), key: written.key.clone() }).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    // A key file given as the certificate, and the other way round.
    let err = server_config(&CertFiles { cert: written.key.clone(), key: written.key.clone() }).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    let err = server_config(&CertFiles { cert: written.cert.clone(), key: written.cert.clone() }).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    // A key that does not belong to the certificate.
    let other = tempfile::tempdir().unwrap();
    let other_key = write_self_signed(other.path(), &["localhost".into()], false).unwrap().key;
    let err = server_config(&CertFiles { cert: written.cert, key: other_key }).unwrap_err();
    assert!(matches!(err, TlsError::Config { .. }), "{err}");
    assert!(matches!(client_config(&written.key), Err(TlsError::NoCertificate { .. })));
}
