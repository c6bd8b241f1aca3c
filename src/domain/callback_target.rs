//! Where a callback may go, and what a callback secret looks like: checked when a process
//! or a `/run` names them, and again (through the resolver) when a callback is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use rand::Rng;

/// The prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in Base64.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Whether a secret is `whsec_` and Base64 of 24 to 64 bytes.
pub fn valid_secret(secret: &str) -> bool {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|k| (24..=64).contains(&k.len()))
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast, unspecified or otherwise reserved). An IPv6 address
/// that embeds an IPv4 one (IPv4-compatible `::/96`, mapped `::ffff:0:0/96`, SIIT
/// `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by that IPv4
/// address; Teredo (`2001::/32`) and local NAT64 (`64:ff9b:1::/48`) are refused, and
/// otherwise only global unicast (`2000::/3`) counts.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            (s[0] & 0xe000) == 0x2000 // global unicast 2000::/3
                && !(s[0] == 0x2001 && s[1] == 0x0000) // Teredo: the client's address is hidden
                && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                && !(s[0] == 0x2001 && (0x0010..0x0030).contains(&s[1])) // ORCHID
                && !(s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking
                && !(s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1) // local NAT64 (not in 2000::/3 anyway)
        }
    }
}

/// The IPv4 address an IPv6 transition form carries, when it carries one.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // IPv4-compatible ::a.b.c.d (also :: and ::1, which judge as 0.0.0.0 and 0.0.0.1).
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        // Mapped ::ffff:a.b.c.d and SIIT ::ffff:0:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // NAT64 well-known prefix.
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4: 2002:aabb:ccdd::/48.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // shared 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF 192.0.0/24
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
        || o[0] >= 240)
}

/// Checks a callback URL when it is given: absolute http(s), with a host that is not a
/// private address or `localhost` (unless private targets are allowed).
pub fn check_target(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    // The URL parser would silently drop a tab, CR or LF; refuse them instead.
    if url.chars().any(char::is_control) {
        return Err("contains a control character (such as CR, LF, tab or NUL)".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let host = match parsed.host() {
        Some(h) => h,
        None => return Err("has no host".into()),
    };
    if url.len() > 2000 {
        return Err("is longer than 2000 characters".into());
    }
    if allow_private {
        return Ok(parsed);
    }
    let private = match host {
        url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || !d.contains('.')
        }
    };
    if private {
        return Err(
            "points at a loopback, private or link-local address; set GATEWAY_ALLOW_PRIVATE_CALLBACKS to allow it"
                .into(),
        );
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "::127.0.0.1",
            "::10.1.2.3",
            "::",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "::ffff:0:127.0.0.1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "2001:10::1",
            "100::1",
            "4000::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2002:808:808::1",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn targets_are_checked() {
        assert!(check_target("https://example.com/hook", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "http://localhost:8080/",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://intranet/",
            "not a url",
            "http://[::127.0.0.1]/",
            "http://[2002:7f00:1::]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "https://example.com/\r\nX-Injected: 1",
            "https://exam\tple.com/",
            "https://example.com/a\0b",
        ] {
            assert!(check_target(bad, false).is_err(), "{bad}");
        }
        assert!(check_target("http://127.0.0.1:9/", true).is_ok());
        // Control characters are refused even where private targets are allowed.
        assert!(check_target("http://127.0.0.1:9/\n", true).is_err());
    }

    #[test]
    fn secrets_are_whsec_base64() {
        let s = generate_secret();
        assert!(valid_secret(&s));
        assert!(!valid_secret("whsec_short"));
        assert!(!valid_secret("secret"));
    }
}
