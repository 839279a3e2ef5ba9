//! Docker image references, checked at submit against the grammar the registry and
//! the daemon use (distribution's `reference` package), so a job names an image the
//! node can actually pull instead of failing on the node (or smuggling something else
//! into the pull: another host, path tricks, control characters).
//!
//! ```text
//! image  := [domain "/"] path [":" tag] ["@" digest]     (at most 255 bytes of name)
//! domain := host [":" port]        host: DNS labels, an IPv4 address or [IPv6]
//! path   := component ("/" component)*    component: [a-z0-9]+ ([._]|__|-+ [a-z0-9]+)*
//! tag    := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest := algorithm ":" hex{32,}
//! ```

/// Longest image name (domain and path), as Docker enforces.
pub const MAX_NAME_LEN: usize = 255;

/// Checks a job's `image` (which may carry its own registry, tag or digest).
pub fn check_image(image: &str) -> Result<(), String> {
    let (rest, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(d) = digest {
        check_digest(d)?;
    }
    // A tag is a ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        check_tag(t)?;
    }
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("is longer than {MAX_NAME_LEN} bytes"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, path)) if looks_like_domain(first) => (Some(first), path),
        _ => (None, name),
    };
    if let Some(d) = domain {
        check_host(d)?;
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "{component:?} is not a valid repository name component (lowercase letters, digits, and . _ __ - between them)"
            ));
        }
    }
    Ok(())
}

/// Checks a `tag`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = tag.len() <= 128
        && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{tag:?} is not a valid tag (letters, digits, _ . -; at most 128; not starting with . or -)"))
    }
}

/// Checks a registry `host`: a DNS name, IPv4 address or `[IPv6]`, with an optional port.
pub fn check_host(host: &str) -> Result<(), String> {
    let bad = || format!("{host:?} is not a registry host (e.g. ghcr.io, registry.example.com:5000)");
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => return Ok(()),
            p => return p.strip_prefix(':').filter(|p| is_port(p)).map(|_| ()).ok_or_else(bad),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| !is_port(p)) || name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.split('.').all(label_ok) { Ok(()) } else { Err(bad()) }
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
}

/// The first component is a registry when it has a '.' or ':' or is `localhost` or
/// has an uppercase letter (as Docker decides).
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.starts_with('[')
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-', always between alphanumerics.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => i += if bytes.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !bytes.get(i).copied().is_some_and(alnum) {
            return false;
        }
    }
    true
}

fn check_digest(d: &str) -> Result<(), String> {
    let bad = || format!("{d:?} is not a digest (e.g. sha256:<64 hex digits>)");
    let (algorithm, hex) = d.split_once(':').ok_or_else(bad)?;
    let algorithm_ok = algorithm.split(['+', '.', '-', '_']).all(|c| {
        c.chars().next().is_some_and(|f| f.is_ascii_alphabetic()) && c.chars().all(|x| x.is_ascii_alphanumeric())
    });
    if algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_references_pass() {
        for image in [
            "busybox",
            "library/busybox",
            "gantry-test/busybox",
            "ghcr.io/org/image",
            "registry.example.com:5000/team/trainer",
            "127.0.0.1:5000/private/secret",
            "localhost/x",
            "[::1]:5000/x",
            "img:3",
            "nvcr.io/nvidia/pytorch:24.01-py3",
            "a__b/c.d-e---f",
            "reg.example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "reg.example/app:v1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(check_image(image), Ok(()), "{image}");
        }
        for tag in ["latest", "v1.2.3", "24.01-py3", "_x"] {
            assert_eq!(check_tag(tag), Ok(()), "{tag}");
        }
        for host in
            ["ghcr.io", "registry.example.com:5000", "127.0.0.1:5000", "[::1]:5000", "[2001:db8::1]", "localhost"]
        {
            assert_eq!(check_host(host), Ok(()), "{host}");
        }
    }

    #[test]
    fn malformed_references_fail() {
        for image in [
            "",
            "UPPER",
            "a//b",
            "/abs",
            "x/",
            "a..b",
            "a_-b",
            "-a",
            "a b",
            "a\nb",
            "a:",
            "a:-x",
            "a@sha256:xyz",
            "a@nope",
            "evil.example:99999/x",
            "x/../y",
            &"a".repeat(256),
        ] {
            assert!(check_image(image).is_err(), "{image:?}");
        }
        for tag in ["", "-x", ".x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(check_tag(tag).is_err(), "{tag:?}");
        }
        for host in ["", "a/b", "host:", "host:0", "host:x", "-a.com", "a..com", "[::1", "[zz]:1", "a b", "user@host"] {
            assert!(check_host(host).is_err(), "{host:?}");
        }
    }
}
