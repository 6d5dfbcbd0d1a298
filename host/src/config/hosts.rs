//! `http_allowed_hosts`: which backends a plugin may call. An entry names a scheme, a host and
//! optionally a port: `https://api.example.com` (port 443), `http://127.0.0.1:8080`,
//! `https://*.example.com` (any subdomain, not `example.com` itself), `http://localhost:*`
//! (any port). Nothing else matches: no paths, no user info, no default allow.

use anyhow::{Result, bail};

/// One parsed entry of `http_allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pub scheme: Scheme,
    host: HostMatch,
    /// `None`: any port.
    port: Option<u16>,
    /// As written, for logs.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// `*.example.com`: the stored suffix is `.example.com`.
    Subdomains(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern> {
        let Some((scheme, rest)) = text.split_once("://") else {
            bail!("allowed host {text:?} has no scheme (write http://... or https://...)");
        };
        let Some(scheme) = Scheme::parse(scheme) else {
            bail!("allowed host {text:?}: the scheme must be http or https");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            bail!("allowed host {text:?}: only scheme://host[:port] (no path, query or user)");
        }
        let (host, port) = split_host_port(rest);
        let port = match port {
            None => Some(scheme.default_port()),
            Some("*") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => bail!("allowed host {text:?}: bad port {p:?}"),
            },
        };
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => HostMatch::Subdomains(format!(".{suffix}")),
            _ if host.is_empty() || host.contains('*') => {
                bail!("allowed host {text:?}: the host must be a name, an address, or *.domain")
            }
            _ => HostMatch::Exact(host),
        };
        Ok(HostPattern { scheme, host, port, text: text.to_owned() })
    }

    /// The entry names one IP address (`http://127.0.0.1:8080`, `http://[::1]:9000`): the
    /// operator chose that address, so the SSRF guard does not second-guess it.
    pub fn is_ip_literal(&self) -> bool {
        match &self.host {
            HostMatch::Exact(h) => h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok(),
            HostMatch::Subdomains(_) => false,
        }
    }

    /// Whether a request to `scheme://host:port` may go out (`host` lower-cased, IPv6 in
    /// brackets as in a URL).
    pub fn matches(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        if scheme != self.scheme || self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostMatch::Exact(h) => h == host,
            HostMatch::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// `host[:port]`, with `[v6]:port` kept bracketed.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if s.starts_with('[') {
        return match s.find(']') {
            Some(end) => (&s[..=end], s[end + 1..].strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_hosts_and_default_ports() {
        let api = p("https://API.example.com");
        assert!(api.matches(Scheme::Https, "api.example.com", 443));
        assert!(!api.matches(Scheme::Https, "api.example.com", 8443));
        assert!(!api.matches(Scheme::Http, "api.example.com", 443));
        assert!(!api.matches(Scheme::Https, "evil.com", 443));
        assert!(!api.matches(Scheme::Https, "api.example.com.evil.com", 443));
        let local = p("http://127.0.0.1:8080/");
        assert!(local.matches(Scheme::Http, "127.0.0.1", 8080));
        assert!(!local.matches(Scheme::Http, "127.0.0.1", 80));
        assert!(p("http://[::1]:9000").matches(Scheme::Http, "[::1]", 9000));
        assert!(p("http://localhost:*").matches(Scheme::Http, "localhost", 1234));
        assert!(local.is_ip_literal() && p("http://[::1]:9000").is_ip_literal());
        assert!(!p("http://localhost:*").is_ip_literal() && !p("https://*.0.0.1").is_ip_literal());
    }

    #[test]
    fn subdomain_wildcards() {
        let w = p("https://*.example.com");
        assert!(w.matches(Scheme::Https, "a.example.com", 443));
        assert!(w.matches(Scheme::Https, "a.b.example.com", 443));
        assert!(!w.matches(Scheme::Https, "example.com", 443));
        assert!(!w.matches(Scheme::Https, "badexample.com", 443));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in
            ["example.com", "ftp://x", "https://x/path", "https://u@x", "https://", "https://a.*.com", "http://x:0"]
        {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
