//! Published ports: each container port gets a listener on the node at a random
//! external port (chosen before the container is created, so it can be recorded in
//! the container's labels and taken again after an agent restart), served by a proxy
//! in the agent that admits only sources inside the run's `allowed_ips`.

use std::net::{IpAddr, SocketAddr};

use gantry_types::job_run::NodeUrl;

use crate::proxy::{AllowList, PortProxy, ProxyLimits};

/// A bound, not yet served, external port.
pub struct Listener {
    /// Port inside the container.
    pub container_port: u16,
    /// Port clients connect to.
    pub external_port: u16,
    socket: std::net::TcpListener,
}

/// Binds one listener per `(container port, wanted external port)`; a wanted port
/// that is taken (or none) gets a random one.
pub fn bind(ip: IpAddr, wanted: &[(u16, Option<u16>)]) -> std::io::Result<Vec<Listener>> {
    wanted
        .iter()
        .map(|(container_port, external)| {
            let socket = external
                .and_then(|p| std::net::TcpListener::bind(SocketAddr::new(ip, p)).ok())
                .map_or_else(|| std::net::TcpListener::bind(SocketAddr::new(ip, 0)), Ok)?;
            socket.set_nonblocking(true)?;
            Ok(Listener { container_port: *container_port, external_port: socket.local_addr()?.port(), socket })
        })
        .collect()
}

/// Serves the listeners towards `target`, returning the proxies and the run's `node_urls`.
pub fn serve(
    listeners: Vec<Listener>,
    target: IpAddr,
    allowed_ips: &[String],
    advertise_host: &str,
    limits: ProxyLimits,
) -> Result<(Vec<PortProxy>, Vec<NodeUrl>), String> {
    let allow = AllowList::parse(allowed_ips).map_err(|e| format!("allowed_ips: {e}"))?;
    let mut proxies = Vec::with_capacity(listeners.len());
    let mut urls = Vec::with_capacity(listeners.len());
    for l in listeners {
        let socket = tokio::net::TcpListener::from_std(l.socket).map_err(|e| format!("cannot serve a port: {e}"))?;
        let proxy = PortProxy::serve_with(socket, SocketAddr::new(target, l.container_port), allow.clone(), limits)
            .map_err(|e| format!("cannot serve a port: {e}"))?;
        proxies.push(proxy);
        urls.push(NodeUrl {
            description: if l.container_port == 22 { "ssh".into() } else { l.container_port.to_string() },
            hostname: advertise_host.to_string(),
            port: l.external_port,
            protocol: "tcp".into(),
            tls: false,
        });
    }
    Ok((proxies, urls))
}
