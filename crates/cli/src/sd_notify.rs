//! systemd's readiness protocol (`Type=notify`), by hand: one datagram to the socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). The
//! server sends `READY=1` once it serves (so `systemctl start` returns when
//! `/healthz` answers, and units ordered after it start then) and `STOPPING=1` when it
//! begins to drain; the agent sends `READY=1` once the control plane accepted its key
//! and Docker answered. Without `NOTIFY_SOCKET` (not under systemd) it does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1\nSTATUS=serving`) if systemd is listening; errors are
/// logged, never fatal: a service that works but cannot report it should still work.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = socket.to_string_lossy().into_owned();
    let sent = UnixDatagram::unbound().and_then(|sock| {
        if let Some(name) = socket.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &socket)
        }
    });
    if let Err(e) = sent {
        tracing::warn!(%socket, error = %e, "cannot notify systemd");
    }
}
