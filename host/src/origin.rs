//! Origin allowlists: what gorilla's `CheckOrigin` does, as configuration.
//!
//! Origins are parsed as origins (RFC 6454: scheme, host, port, with the scheme's default port
//! filled in) and compared as such, never as strings: `https://evil.com/x.example.com` is not an
//! origin at all, and `https://app.example.com:443` is `https://app.example.com`.

use anyhow::{Result, bail};

/// A parsed origin. Host lower-cased; an IPv6 literal keeps its brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    /// `None` only for a scheme without a known default port and no explicit port.
    pub port: Option<u16>,
}

impl Origin {
    /// Parses an `Origin` header value (or a configured origin): `scheme://host[:port]` and
    /// nothing else: no path, query, fragment, user info or whitespace inside. `None` for
    /// anything else, including the opaque origin `null`.
    pub fn parse(text: &str) -> Option<Origin> {
        let text = text.trim();
        let (scheme, authority) = text.split_once("://")?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_authority(authority)?;
        let port = match port {
            Some(p) => Some(p),
            None => default_port(&scheme),
        };
        Some(Origin { scheme, host, port })
    }

    /// The same origin as seen from the other protocol: `wss` is served to `https` pages.
    fn web_scheme(&self) -> &str {
        match self.scheme.as_str() {
            "wss" => "https",
            "ws" => "http",
            s => s,
        }
    }

    fn same_as(&self, other: &Origin) -> bool {
        self.web_scheme() == other.web_scheme() && self.host == other.host && self.port == other.port
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) if Some(p) != default_port(&self.scheme) => write!(f, ":{p}"),
            _ => Ok(()),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (a `Host` header, or an origin's authority): lower-cased host and the port if
/// one is given. `None` unless the host is a DNS name, an IPv4 address or a bracketed IPv6
/// literal and the port a number: any `/`, `?`, `#`, `@`, space or `*` makes it invalid.
pub fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", inner.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if !valid_host(host) {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Dot-separated labels of letters, digits, `-` and `_`, none empty (a trailing dot aside).
fn valid_host(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `https://app.example.com` (scheme, host and port; the default port when none is given).
    Exact(Origin),
    /// `https://*.example.com` or `*.example.com`: any subdomain (not the bare domain), with the
    /// given scheme (and its default port, or the given one) or, without a scheme, any scheme
    /// and port. Matched on the parsed host's labels.
    Suffix { scheme: Option<String>, port: Option<u16>, domain: String },
    /// `*`: every origin (an explicit opt-out, e.g. for a public API).
    Any,
}

impl Pattern {
    fn matches(&self, o: &Origin) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => e.same_as(o),
            Pattern::Suffix { scheme, port, domain } => {
                let scheme_ok = scheme.as_deref().is_none_or(|s| {
                    let want = Origin { scheme: s.to_owned(), host: String::new(), port: None };
                    want.web_scheme() == o.web_scheme()
                });
                let port_ok = scheme.is_none() || *port == o.port;
                let host = o.host.strip_suffix('.').unwrap_or(&o.host);
                // Label-wise: strictly more labels than the domain, and the last ones equal.
                let host_ok = !host.starts_with('[')
                    && host.len() > domain.len() + 1
                    && host.ends_with(domain.as_str())
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.';
                scheme_ok && port_ok && host_ok
            }
        }
    }
}

/// The server's own origin, for the same-origin default: the scheme it is served on and the
/// names it answers to (its certificate's names), when they are known.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// Served over TLS: pages are `https`.
    pub tls: bool,
    /// The DNS names and IP addresses of the server certificate (`*.example.com` allowed).
    /// Empty (plain ws://): only loopback names are the server's own.
    pub names: Vec<String>,
}

impl Served {
    fn owns_host(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.names.is_empty() {
            return matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        }
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            let bracketed = if n.contains(':') && !n.starts_with('[') { format!("[{n}]") } else { n.clone() };
            if bracketed == host {
                return true;
            }
            // A wildcard certificate name covers exactly one label.
            n.strip_prefix("*.").is_some_and(|d| {
                host.strip_suffix(d)
                    .and_then(|h| h.strip_suffix('.'))
                    .is_some_and(|l| !l.is_empty() && !l.contains('.'))
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Empty: same-origin only, like gorilla's default `CheckOrigin`.
    allow: Vec<Pattern>,
    /// The server's own public origins (`[origins] public`): with them, "same origin" means one
    /// of these, and the client's `Host` header is not consulted.
    public: Vec<Origin>,
    allow_missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginVerdict {
    Allowed,
    Missing,
    Forbidden,
    /// More than one `Origin` header: no browser sends that.
    Ambiguous,
}

impl OriginPolicy {
    /// With an empty allowlist only same-origin browser requests pass (`["*"]` lets every
    /// origin in); requests without an Origin header (non-browser clients) pass if
    /// `allow_missing`.
    pub fn new(allow: &[String], public: &[String], allow_missing: bool) -> Result<OriginPolicy> {
        let allow = allow.iter().map(|p| parse_pattern(p)).collect::<Result<_>>()?;
        let public = public
            .iter()
            .map(|p| match Origin::parse(p.trim_end_matches('/')) {
                Some(o) if o.port.is_some() => Ok(o),
                _ => bail!("invalid public origin {p:?}: expected \"https://host[:port]\""),
            })
            .collect::<Result<_>>()?;
        Ok(OriginPolicy { allow, public, allow_missing })
    }

    /// True when same-origin checks rely on the server's certificate names or loopback, not on
    /// a configured `public` list (worth a warning on a plain listener).
    pub fn same_origin_without_public(&self) -> bool {
        self.allow.is_empty() && self.public.is_empty()
    }

    /// `origins` are the values of every `Origin` header of the request; `request_host` its
    /// `Host` header; `served` what this server is.
    pub fn check(&self, origins: &[&str], request_host: Option<&str>, served: &Served) -> OriginVerdict {
        let origin = match origins {
            [] => return if self.allow_missing { OriginVerdict::Allowed } else { OriginVerdict::Missing },
            [one] => *one,
            _ => return OriginVerdict::Ambiguous,
        };
        if self.allow.contains(&Pattern::Any) {
            return OriginVerdict::Allowed;
        }
        let Some(origin) = Origin::parse(origin) else {
            return OriginVerdict::Forbidden; // "null", and anything that is not an origin
        };
        let ok = if self.allow.is_empty() {
            self.same_origin(&origin, request_host, served)
        } else {
            self.allow.iter().any(|p| p.matches(&origin))
        };
        if ok { OriginVerdict::Allowed } else { OriginVerdict::Forbidden }
    }

    /// Same origin: the page's scheme is the one this server is served on, and its host and port
    /// are one of the configured public origins or else the request's `Host` — which is taken
    /// only when it names this server (a certificate name, or loopback on a plain listener):
    /// a DNS-rebinding page sends a `Host` equal to its own origin.
    fn same_origin(&self, origin: &Origin, request_host: Option<&str>, served: &Served) -> bool {
        if !self.public.is_empty() {
            return self.public.iter().any(|p| p.same_as(origin));
        }
        let scheme = if served.tls { "https" } else { "http" };
        if origin.web_scheme() != scheme {
            return false;
        }
        let Some((host, port)) = request_host.and_then(|h| split_authority(h.trim())) else {
            return false;
        };
        let port = port.or(default_port(scheme));
        origin.host == host && origin.port == port && served.owns_host(&host)
    }
}

fn parse_pattern(p: &str) -> Result<Pattern> {
    let text = p.trim().trim_end_matches('/');
    if text == "*" {
        return Ok(Pattern::Any);
    }
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, text),
    };
    if let Some(domain) = rest.strip_prefix("*.") {
        // Parse the pattern as the origin it stands for, with a placeholder label.
        let probe = format!("{}://x.{domain}", scheme.as_deref().unwrap_or("https"));
        let Some(o) = Origin::parse(&probe).filter(|o| !o.host.starts_with('[')) else {
            bail!("invalid origin pattern {p:?}: expected \"https://*.example.com\" or \"*.example.com\"");
        };
        if scheme.is_none() && o.port != Some(443) {
            bail!("invalid origin pattern {p:?}: a pattern without a scheme takes no port");
        }
        let domain = o.host["x.".len()..].trim_end_matches('.').to_owned();
        if domain.is_empty() {
            bail!("invalid origin pattern {p:?}: no domain after \"*.\"");
        }
        return Ok(Pattern::Suffix { port: scheme.as_ref().and(o.port), scheme, domain });
    }
    if rest.contains('*') {
        bail!("invalid origin pattern {p:?}: '*' is allowed only as the first label (\"*.example.com\")");
    }
    if scheme.is_none() {
        bail!("invalid origin {p:?}: an exact origin needs its scheme, e.g. \"https://{rest}\"");
    }
    match Origin::parse(text) {
        Some(o) => Ok(Pattern::Exact(o)),
        None => bail!("invalid origin {p:?}: expected \"https://host[:port]\" or \"*.example.com\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], allow_missing: bool) -> OriginPolicy {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(&allow, &[], allow_missing).unwrap()
    }

    fn tls() -> Served {
        Served { tls: true, names: vec!["localhost".into(), "127.0.0.1".into()] }
    }

    fn one(p: &OriginPolicy, origin: &str) -> OriginVerdict {
        p.check(&[origin], None, &tls())
    }

    #[test]
    fn exact_and_wildcard_origins() {
        let p = policy(&["https://app.example.com", "*.trusted.org", "http://localhost:8080"], true);
        assert_eq!(one(&p, "https://app.example.com"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "HTTPS://APP.EXAMPLE.COM"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "https://app.example.com:443"), OriginVerdict::Allowed, "default port");
        assert_eq!(one(&p, "https://app.example.com:8443"), OriginVerdict::Forbidden);
        assert_eq!(one(&p, "http://app.example.com"), OriginVerdict::Forbidden);
        assert_eq!(one(&p, "https://evil.com"), OriginVerdict::Forbidden);
        assert_eq!(one(&p, "https://a.b.trusted.org"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "https://a.trusted.org:8443"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "https://trusted.org"), OriginVerdict::Forbidden);
        assert_eq!(one(&p, "https://eviltrusted.org"), OriginVerdict::Forbidden);
        assert_eq!(one(&p, "http://localhost:8080"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "null"), OriginVerdict::Forbidden);
        assert_eq!(p.check(&[], None, &tls()), OriginVerdict::Allowed);
        assert_eq!(policy(&["https://a.com"], false).check(&[], None, &tls()), OriginVerdict::Missing);
    }

    #[test]
    fn strings_that_merely_end_like_an_allowed_origin_are_not_origins() {
        let p = policy(&["https://*.example.com", "https://app.example.org"], true);
        for evil in [
            "https://evil.com/x.example.com",
            "https://evil.com#.example.com",
            "https://evil.com?.example.com",
            "https://evil.com\\.example.com",
            "https://user@x.example.com",
            "https://x.example.com/",
            "https://x.example.com evil",
            "https://app.example.org/path",
            "https://[::1].example.com",
            "https://x.example.com:99999",
        ] {
            assert_eq!(one(&p, evil), OriginVerdict::Forbidden, "{evil}");
        }
        assert_eq!(one(&p, "https://x.example.com"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "https://x.example.com:443"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "https://x.example.com:8443"), OriginVerdict::Forbidden, "the scheme's port");
    }

    #[test]
    fn two_origin_headers_are_refused_whatever_they_say() {
        let p = policy(&["https://app.example.com"], true);
        let two = ["https://app.example.com", "https://evil.com"];
        assert_eq!(p.check(&two, None, &tls()), OriginVerdict::Ambiguous);
        assert_eq!(policy(&["*"], true).check(&two, None, &tls()), OriginVerdict::Ambiguous);
    }

    #[test]
    fn scheme_bound_wildcard_and_bad_patterns() {
        let p = policy(&["https://*.example.com"], true);
        assert_eq!(one(&p, "https://x.example.com"), OriginVerdict::Allowed);
        assert_eq!(one(&p, "http://x.example.com"), OriginVerdict::Forbidden);
        for bad in ["example.com", "https://a.*.com", "https://a.com/path", "*.", "https://*.", "https://a.com?x"] {
            assert!(OriginPolicy::new(&[bad.into()], &[], true).is_err(), "{bad}");
        }
        assert!(OriginPolicy::new(&[], &["app.example.com".into()], true).is_err());
    }

    #[test]
    fn without_an_allowlist_only_the_same_origin_passes() {
        let p = OriginPolicy::new(&[], &[], true).unwrap();
        let host = Some("localhost:8443");
        let check = |o: &str, h| p.check(&[o], h, &tls());
        assert_eq!(check("https://localhost:8443", host), OriginVerdict::Allowed);
        assert_eq!(check("https://LOCALHOST:8443", host), OriginVerdict::Allowed);
        assert_eq!(check("https://evil.com", host), OriginVerdict::Forbidden);
        assert_eq!(check("https://localhost:9999", host), OriginVerdict::Forbidden);
        assert_eq!(check("https://localhost:8443", None), OriginVerdict::Forbidden);
        assert_eq!(check("http://localhost:8443", host), OriginVerdict::Forbidden, "scheme");
        assert_eq!(check("https://localhost", Some("localhost:443")), OriginVerdict::Allowed, "default port");
        // DNS rebinding: the page's host resolves to us, and the browser sends Host = its origin.
        assert_eq!(check("https://evil.com:8443", Some("evil.com:8443")), OriginVerdict::Forbidden);
        assert_eq!(p.check(&[], host, &tls()), OriginVerdict::Allowed);
        let any = policy(&["*"], true);
        assert_eq!(any.check(&["https://evil.com"], Some("localhost"), &tls()), OriginVerdict::Allowed);
        assert_eq!(any.check(&["null"], Some("localhost"), &tls()), OriginVerdict::Allowed);
        // A plain listener owns only loopback names unless told its public origins.
        let plain = Served::default();
        assert_eq!(p.check(&["http://localhost:80"], Some("localhost"), &plain), OriginVerdict::Allowed);
        assert_eq!(p.check(&["http://app.example.com"], Some("app.example.com"), &plain), OriginVerdict::Forbidden);
        let wild = Served { tls: true, names: vec!["*.example.com".into()] };
        assert_eq!(p.check(&["https://a.example.com"], Some("a.example.com"), &wild), OriginVerdict::Allowed);
        assert_eq!(p.check(&["https://a.b.example.com"], Some("a.b.example.com"), &wild), OriginVerdict::Forbidden);
    }

    #[test]
    fn configured_public_origins_replace_the_host_header() {
        let p = OriginPolicy::new(&[], &["https://app.example.com".into()], true).unwrap();
        let plain = Served::default();
        assert_eq!(p.check(&["https://app.example.com"], Some("10.0.0.1:8080"), &plain), OriginVerdict::Allowed);
        assert_eq!(p.check(&["https://app.example.com:443"], None, &plain), OriginVerdict::Allowed);
        assert_eq!(p.check(&["wss://app.example.com"], None, &plain), OriginVerdict::Allowed);
        assert_eq!(p.check(&["https://evil.com"], Some("evil.com"), &plain), OriginVerdict::Forbidden);
        assert_eq!(p.check(&["http://app.example.com"], None, &plain), OriginVerdict::Forbidden);
    }
}

/// Property tests of origin matching (bounded case counts; failures kept in
/// `host/proptest-regressions/`).
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
    }

    fn wildcard() -> OriginPolicy {
        OriginPolicy::new(&["https://*.example.com".into()], &[], true).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn any_text_is_checked_without_panicking_and_origins_print_back(text in "\\PC{0,60}") {
            let _ = wildcard().check(&[&text], Some(&text), &Served::default());
            if let Some(o) = Origin::parse(&text) {
                prop_assert_eq!(Origin::parse(&o.to_string()), Some(o));
            }
        }

        #[test]
        fn a_wildcard_admits_only_hosts_under_its_domain(
            prefix in "[a-z:/.]{0,12}",
            sep in prop_oneof![Just("/"), Just("?"), Just("#"), Just("\\"), Just("@"), Just(" "), Just("%2f"), Just("."), Just("-")],
            labels in proptest::collection::vec(label(), 1..3),
            port in prop_oneof![Just(String::new()), Just(":443".to_owned()), (1u16..).prop_map(|p| format!(":{p}"))],
        ) {
            let text = format!("https://{prefix}{sep}{}.example.com{port}", labels.join("."));
            let verdict = wildcard().check(&[&text], None, &Served::default());
            if verdict == OriginVerdict::Allowed {
                let o = Origin::parse(&text).unwrap();
                prop_assert!(o.host.ends_with(".example.com") && o.scheme == "https" && o.port == Some(443), "{}", text);
                prop_assert!(!text["https://".len()..].contains(['/', '?', '#', '\\', '@', ' ']), "{}", text);
            }
        }

        #[test]
        fn every_subdomain_on_the_default_port_is_admitted(labels in proptest::collection::vec(label(), 1..4), explicit in any::<bool>()) {
            let port = if explicit { ":443" } else { "" };
            let text = format!("https://{}.EXAMPLE.com{port}", labels.join("."));
            prop_assert_eq!(wildcard().check(&[&text], None, &Served::default()), OriginVerdict::Allowed);
        }
    }
}
