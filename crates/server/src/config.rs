//! Server configuration. Every knob has a default suited to one machine; the
//! command line (`gantry server`) and tests build this struct directly.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How a server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Holds `gantry.db` (SQLite) and `server.key`.
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL instead of the embedded SQLite.
    pub database_url: Option<String>,
    /// The 32-byte key encrypting secrets at rest (64 hex chars or base64); when
    /// absent, `<data_dir>/server.key` is used, created on first start.
    pub server_key: Option<String>,
    /// Largest request body accepted, bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Most nonces remembered for replay protection (bounded memory).
    pub nonce_capacity: usize,
    /// Timing of the background reconcilers (scheduler, lifecycle).
    pub timing: crate::background::Timing,
}

impl ServerConfig {
    /// Defaults for a data dir, listening on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            listen,
            data_dir: data_dir.into(),
            database_url: None,
            server_key: None,
            max_body_bytes: 1024 * 1024,
            nonce_capacity: 4_000_000,
            timing: Default::default(),
        }
    }
}
