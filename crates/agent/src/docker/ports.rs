//! Published ports: each container port gets a listener on the node at a random
//! external port (chosen before the container is created, so it can be recorded in
//! the container's labels and taken again after an agent restart), served by a proxy
//! in the agent that admits only sources inside the run's `allowed_ips`.
//!
//! With a [`PortRange`] (`gantry agent --port-range A-B`) external ports are taken only
//! from that range, so operators can open exactly it in their firewall: a random free
//! port in it, or a run fails saying the range is full. An adopted container's
//! recorded port is taken again only when it is still inside the range.

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

/// The external ports the agent may use (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

impl PortRange {
    /// Parses `A-B` (1 <= A <= B <= 65535).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("must be A-B with 1 <= A <= B <= 65535 (e.g. 40000-40999), got {text:?}");
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let (first, last): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(Self { first, last })
    }

    fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Binds a free port of the range, starting the scan at a random offset so
    /// concurrent runs rarely probe the same ports.
    fn bind(&self, ip: IpAddr) -> std::io::Result<std::net::TcpListener> {
        let size = u32::from(self.last - self.first) + 1;
        let start = {
            use rand::Rng;
            rand::rng().next_u32() % size
        };
        for i in 0..size {
            let port = self.first + ((start + i) % size) as u16;
            if let Ok(socket) = std::net::TcpListener::bind(SocketAddr::new(ip, port)) {
                return Ok(socket);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("no free port in the agent's --port-range {}-{}", self.first, self.last),
        ))
    }
}

/// Binds one listener per `(container port, wanted external port)`; a wanted port
/// that is taken (or none) gets a random one, from `range` when given.
pub fn bind(ip: IpAddr, wanted: &[(u16, Option<u16>)], range: Option<PortRange>) -> std::io::Result<Vec<Listener>> {
    wanted
        .iter()
        .map(|(container_port, external)| {
            let socket = external
                .filter(|p| range.is_none_or(|r| r.contains(*p)))
                .and_then(|p| std::net::TcpListener::bind(SocketAddr::new(ip, p)).ok())
                .map_or_else(
                    || match range {
                        Some(r) => r.bind(ip),
                        None => std::net::TcpListener::bind(SocketAddr::new(ip, 0)),
                    },
                    Ok,
                )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_confine_the_ports() {
        assert_eq!(PortRange::parse("40000-40009"), Ok(PortRange { first: 40000, last: 40009 }));
        for bad in ["", "5", "9-1", "0-10", "1-70000", "a-b"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        // A range of free ports: find two adjacent ones by binding port 0.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = probe.local_addr().unwrap().port();
        drop(probe);
        let range = PortRange { first: p, last: p };
        let ip = IpAddr::from([127, 0, 0, 1]);
        let got = bind(ip, &[(22, None)], Some(range)).unwrap();
        assert_eq!(got[0].external_port, p);
        // Full: the error says so.
        let err = bind(ip, &[(80, None)], Some(range)).err().expect("range is full");
        assert!(err.to_string().contains("--port-range"), "{err}");
        // A recorded port outside the range is not taken again.
        let outside = bind(ip, &[(80, Some(p.wrapping_add(1)))], Some(PortRange { first: p, last: p }));
        assert!(outside.is_err(), "only the (full) range may be used");
    }
}
