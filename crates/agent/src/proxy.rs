//! TEMPORARY stand-in until the proxy branch lands.
use std::net::SocketAddr;

#[derive(Clone, Debug, Default)]
pub struct AllowList(Vec<ipnet::IpNet>);
impl AllowList {
    pub fn parse(items: &[String]) -> Result<Self, String> {
        items.iter().map(|s| s.parse::<ipnet::IpNet>().map_err(|e| format!("{s}: {e}"))).collect::<Result<_, _>>().map(Self)
    }
    fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n.contains(&ip))
    }
}
pub struct PortProxy(tokio::task::JoinHandle<()>);
impl Drop for PortProxy {
    fn drop(&mut self) {
        self.0.abort();
    }
}
impl PortProxy {
    pub fn serve(listener: tokio::net::TcpListener, target: SocketAddr, allow: AllowList) -> Self {
        Self(tokio::spawn(async move {
            while let Ok((mut s, peer)) = listener.accept().await {
                if !allow.admits(peer.ip()) { continue; }
                tokio::spawn(async move {
                    if let Ok(mut t) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut t).await;
                    }
                });
            }
        }))
    }
}
