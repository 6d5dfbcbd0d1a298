//! The SSRF guard: a name in `http_allowed_hosts` may not lead a plugin into the server's own
//! network. `api.example.com` resolving to 127.0.0.1, 10.0.0.5 or the cloud metadata address
//! 169.254.169.254 (a stale or hostile DNS record) is refused unless the plugin's policy says
//! `http_allow_private = true`, or the entry the request matched is itself an IP address (the
//! operator who writes `http://127.0.0.1:8080` means it). The addresses checked are the ones
//! connected to: the name is resolved once, so a second answer cannot slip in between.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Loopback, private, shared (CGNAT), link-local, unspecified, multicast, broadcast or
/// otherwise not a public unicast address.
pub(super) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        // 0.0.0.0/8 ("this network"), 100.64.0.0/10 (shared address space), 240.0.0.0/4 (reserved).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 the former site-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal(s: &str) -> bool {
        is_internal(s.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(internal(ip), "{ip} is internal");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in
            ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"]
        {
            assert!(!internal(ip), "{ip} is public");
        }
    }
}
