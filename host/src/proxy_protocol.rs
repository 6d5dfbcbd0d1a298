//! The PROXY protocol (v1 text and v2 binary, HAProxy's spec), so that behind a TCP load
//! balancer the per-IP limit and the connection log see the client's address rather than the
//! balancer's. Read before TLS; exactly the header's bytes are consumed, nothing of what follows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Addresses plus the TLVs a balancer adds (unique id, TLS details); more is refused.
const V2_MAX_PAYLOAD: usize = 512;

/// Reads the header and returns the client's address, or `None` when the balancer speaks for
/// itself (v2 LOCAL, e.g. health checks; v1 UNKNOWN): the socket's peer is then the right one.
pub async fn read_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>> {
    // Both versions are at least 15 bytes long, so 12 can be read without overreading.
    let mut start = [0u8; 12];
    tcp.read_exact(&mut start).await.context("no PROXY protocol header")?;
    if start == V2_SIGNATURE {
        let mut head = [0u8; 4];
        tcp.read_exact(&mut head).await.context("truncated PROXY v2 header")?;
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        if len > V2_MAX_PAYLOAD {
            bail!("PROXY v2 header of {len} bytes (at most {V2_MAX_PAYLOAD})");
        }
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.context("truncated PROXY v2 header")?;
        return parse_v2(head[0], head[1], &payload);
    }
    if !start.starts_with(b"PROXY ") {
        bail!("the connection does not start with a PROXY protocol header");
    }
    let mut line = start.to_vec();
    read_line_rest(tcp, &mut line).await?;
    parse_v1(&line)
}

/// Reads the rest of a v1 line up to its CRLF. One peek finds the end when the whole line has
/// arrived (the usual case: the balancer sends it in one segment); otherwise byte by byte.
async fn read_line_rest(tcp: &mut TcpStream, line: &mut Vec<u8>) -> Result<()> {
    let mut peeked = [0u8; V1_MAX];
    let n = tcp.peek(&mut peeked[..V1_MAX - line.len()]).await?;
    if let Some(end) = find_line_end(line, &peeked[..n]) {
        let mut rest = vec![0u8; end];
        tcp.read_exact(&mut rest).await?;
        line.extend_from_slice(&rest);
        return Ok(());
    }
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            bail!("PROXY v1 line longer than {V1_MAX} bytes");
        }
        line.push(tcp.read_u8().await.context("truncated PROXY v1 line")?);
    }
    Ok(())
}

/// How many bytes of `next` complete the line begun in `line` (through its CRLF).
fn find_line_end(line: &[u8], next: &[u8]) -> Option<usize> {
    if line.last() == Some(&b'\r') && next.first() == Some(&b'\n') {
        return Some(1);
    }
    next.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>> {
    let text = std::str::from_utf8(line).ok().and_then(|t| t.strip_suffix("\r\n")).context("bad PROXY v1 line")?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().with_context(|| format!("bad PROXY v1 source address {src:?}"))?;
            if ip.is_ipv4() != (*family == "TCP4") {
                bail!("PROXY v1 source {src} is not {family}");
            }
            let port: u16 = sport.parse().with_context(|| format!("bad PROXY v1 source port {sport:?}"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => bail!("bad PROXY v1 line {text:?}"),
    }
}

fn parse_v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Result<Option<SocketAddr>> {
    if ver_cmd >> 4 != 2 {
        bail!("PROXY protocol version {} (expected 2)", ver_cmd >> 4);
    }
    match ver_cmd & 0x0f {
        0 => return Ok(None), // LOCAL: the balancer's own connection
        1 => {}               // PROXY
        c => bail!("PROXY v2 command {c}"),
    }
    let (af, transport) = (family >> 4, family & 0x0f);
    if af != 0 && transport != 1 {
        bail!("PROXY v2 over a transport other than TCP ({family:#04x})");
    }
    let addr = match af {
        // TCP over IPv4: source, destination, source port, destination port.
        1 if payload.len() >= 12 => {
            let ip = Ipv4Addr::new(payload[0], payload[1], payload[2], payload[3]);
            SocketAddr::new(ip.into(), u16::from_be_bytes([payload[8], payload[9]]))
        }
        2 if payload.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&payload[..16]);
            SocketAddr::new(Ipv6Addr::from(octets).into(), u16::from_be_bytes([payload[32], payload[33]]))
        }
        // UNSPEC, or a Unix socket: no client IP address to use.
        0 | 3 => return Ok(None),
        _ => bail!("PROXY v2 address block too short, or an unknown family ({family:#04x})"),
    };
    Ok(Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let a = |s: &str| parse_v1(s.as_bytes());
        assert_eq!(
            a("PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n").unwrap(),
            Some("203.0.113.7:5555".parse().unwrap())
        );
        assert_eq!(
            a("PROXY TCP6 2001:db8::1 2001:db8::2 7 443\r\n").unwrap(),
            Some("[2001:db8::1]:7".parse().unwrap())
        );
        assert_eq!(a("PROXY UNKNOWN\r\n").unwrap(), None);
        assert!(a("PROXY TCP4 2001:db8::1 192.0.2.1 5 443\r\n").is_err(), "family mismatch");
        assert!(a("PROXY TCP4 203.0.113.7 192.0.2.1 99999 443\r\n").is_err(), "port");
        assert!(a("PROXY TCP4 203.0.113.7\r\n").is_err(), "fields");
        assert!(a("PROXY TCP4 203.0.113.7 192.0.2.1 5555 443").is_err(), "no CRLF");
    }

    #[test]
    fn v2_headers() {
        let v4 = [203, 0, 113, 7, 192, 0, 2, 1, 0x15, 0xb3, 0x01, 0xbb];
        assert_eq!(parse_v2(0x21, 0x11, &v4).unwrap(), Some("203.0.113.7:5555".parse().unwrap()));
        assert_eq!(parse_v2(0x20, 0x00, &[]).unwrap(), None, "LOCAL");
        assert!(parse_v2(0x21, 0x11, &v4[..8]).is_err(), "short");
        assert!(parse_v2(0x31, 0x11, &v4).is_err(), "version");
        assert!(parse_v2(0x21, 0x12, &v4).is_err(), "UDP");
        assert_eq!(parse_v2(0x21, 0x31, &[0; 216]).unwrap(), None, "Unix stream");
        assert!(parse_v2(0x21, 0x41, &v4).is_err(), "unknown family");
    }

    #[test]
    fn line_ends_across_the_first_read() {
        assert_eq!(find_line_end(b"PROXY UNKNOWN\r", b"\nTLS"), Some(1));
        assert_eq!(find_line_end(b"PROXY TCP4 1", b"0.0.0.1 x y z\r\n\x16\x03"), Some(15));
        assert_eq!(find_line_end(b"PROXY TCP4 1", b"0.0.0"), None);
    }
}

/// Property tests of the PROXY header parser (bounded case counts; failures kept in
/// `host/proptest-regressions/`).
#[cfg(test)]
mod props {
    use std::net::{IpAddr, SocketAddr};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_headers_never_panic(
            line in proptest::collection::vec(any::<u8>(), 0..120),
            text in "PROXY [A-Z0-9 .:]{0,100}\r\n",
            ver_cmd in any::<u8>(),
            family in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            split in 0usize..120,
        ) {
            let _ = parse_v1(&line);
            let _ = parse_v1(text.as_bytes());
            let _ = parse_v2(ver_cmd, family, &payload);
            let (a, b) = line.split_at(split.min(line.len()));
            if let Some(n) = find_line_end(a, b) {
                prop_assert!(n <= b.len());
            }
        }

        #[test]
        fn a_balancer_header_names_its_client(ip in any::<IpAddr>(), port in any::<u16>(), dport in any::<u16>()) {
            let want = Some(SocketAddr::new(ip, port));
            let family = if ip.is_ipv4() { "TCP4" } else { "TCP6" };
            let dst = if ip.is_ipv4() { "192.0.2.1" } else { "2001:db8::2" };
            let line = format!("PROXY {family} {ip} {dst} {port} {dport}\r\n");
            prop_assert_eq!(parse_v1(line.as_bytes()).unwrap(), want);
            let (fam, mut payload) = match ip {
                IpAddr::V4(v4) => (0x11, [&v4.octets()[..], &[192, 0, 2, 1]].concat()),
                IpAddr::V6(v6) => (0x21, [&v6.octets()[..], &[0; 16]].concat()),
            };
            payload.extend_from_slice(&port.to_be_bytes());
            payload.extend_from_slice(&dport.to_be_bytes());
            prop_assert_eq!(parse_v2(0x21, fam, &payload).unwrap(), want);
        }
    }
}
