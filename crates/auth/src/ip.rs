//! Per-key IP allow-lists (`allowed_ips`, API.md §5.4): parsing the configured entries and
//! matching a peer address against them.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Parses an allow-list: each entry an IPv4/IPv6 address (meaning /32 or /128) or a CIDR.
///
/// Host bits in a CIDR are ignored (`10.1.2.3/8` means `10.0.0.0/8`), and IPv4-mapped IPv6
/// entries (`::ffff:10.0.0.0/104`) become their IPv4 equivalent, because [`ip_allowed`]
/// matches mapped peers as IPv4. Returns the index and a message for the first bad entry,
/// e.g. `not an IP address or CIDR: "x"`.
pub fn parse_allow_list(entries: &[String]) -> Result<Vec<IpNet>, (usize, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let text = entry.trim();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| (index, format!("not an IP address or CIDR: {entry:?}")))?;
            Ok(unmap_net(net.trunc()))
        })
        .collect()
}

/// Whether `ip` may use a key with this allow-list. An empty list admits everyone.
/// IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`, as seen on dual-stack sockets) are matched as IPv4.
pub fn ip_allowed(list: &[IpNet], ip: IpAddr) -> bool {
    if list.is_empty() {
        return true;
    }
    let ip = ip.to_canonical();
    list.iter().any(|net| net.contains(&ip))
}

/// Whether the allow-list `inner` admits no address that `outer` refuses: every entry of
/// `inner` lies inside some entry of `outer`. An empty `outer` admits everyone, so
/// anything lies within it; an empty `inner` admits everyone, so it lies within only an
/// empty `outer`. Returns the index of the first entry outside, or `None` for an empty
/// `inner` under a non-empty `outer` (used to stop a key minting a broader key).
pub fn allow_list_within(inner: &[IpNet], outer: &[IpNet]) -> Result<(), Option<usize>> {
    if outer.is_empty() {
        return Ok(());
    }
    if inner.is_empty() {
        return Err(None);
    }
    match inner.iter().position(|net| !outer.iter().any(|o| o.contains(net))) {
        Some(index) => Err(Some(index)),
        None => Ok(()),
    }
}

fn unmap_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(mapped) = IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
    {
        return mapped;
    }
    net
}

/// Whether `ip` is an internal address that tenants must not make Gantry reach (a
/// node's registry pulls, the control plane's webhook deliveries): loopback,
/// unspecified, link-local, private (RFC 1918), shared (RFC 6598), unique-local, or
/// an IPv4-mapped form of those.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
            }
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_link_local()
        || ip.is_private()
        || ip.is_broadcast()
        || (a == 100 && (64..128).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<IpNet> {
        parse_allow_list(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn empty_list_admits_everyone() {
        assert!(ip_allowed(&[], ip("203.0.113.9")));
        assert!(ip_allowed(&[], ip("2001:db8::1")));
    }

    #[test]
    fn addresses_and_cidrs() {
        let nets = list(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", " ::1 "]);
        assert!(ip_allowed(&nets, ip("10.200.3.4")));
        assert!(ip_allowed(&nets, ip("192.0.2.7")));
        assert!(!ip_allowed(&nets, ip("192.0.2.8")));
        assert!(ip_allowed(&nets, ip("2001:db8:ffff::1")));
        assert!(ip_allowed(&nets, ip("::1")));
        assert!(!ip_allowed(&nets, ip("2001:db9::1")));
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_entries() {
        let nets = list(&["10.0.0.0/8"]);
        assert!(ip_allowed(&nets, ip("::ffff:10.1.2.3")));
        assert!(!ip_allowed(&nets, ip("::ffff:11.1.2.3")));
        let mapped_entry = list(&["::ffff:192.0.2.0/120"]);
        assert_eq!(mapped_entry, list(&["192.0.2.0/24"]));
        assert!(ip_allowed(&mapped_entry, ip("192.0.2.55")));
        assert!(ip_allowed(&mapped_entry, ip("::ffff:192.0.2.55")));
    }

    #[test]
    fn narrower_lists_lie_within_broader_ones() {
        let outer = list(&["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(allow_list_within(&list(&["10.1.0.0/16", "127.0.0.1/32"]), &outer), Ok(()));
        assert_eq!(allow_list_within(&list(&["10.1.0.0/16", "0.0.0.0/0"]), &outer), Err(Some(1)));
        assert_eq!(allow_list_within(&list(&["127.0.0.0/31"]), &outer), Err(Some(0)));
        assert_eq!(allow_list_within(&[], &outer), Err(None), "no limit is broader than any limit");
        assert_eq!(allow_list_within(&list(&["::ffff:10.9.9.9"]), &outer), Ok(()));
        assert_eq!(allow_list_within(&[], &[]), Ok(()));
        assert_eq!(allow_list_within(&list(&["2001:db8::/32"]), &[]), Ok(()));
    }

    #[test]
    fn host_bits_are_ignored() {
        assert_eq!(list(&["10.1.2.3/8"]), list(&["10.0.0.0/8"]));
    }

    #[test]
    fn first_bad_entry_is_reported() {
        let entries: Vec<String> = ["10.0.0.1", "x", "also bad"].iter().map(|e| (*e).to_owned()).collect();
        assert_eq!(parse_allow_list(&entries), Err((1, "not an IP address or CIDR: \"x\"".to_owned())));
        let entries = vec!["10.0.0.0/33".to_owned()];
        assert_eq!(parse_allow_list(&entries).unwrap_err().0, 0);
    }
}
