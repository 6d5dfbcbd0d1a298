//! Origin allowlists: what gorilla's `CheckOrigin` does, as configuration.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `https://app.example.com` (scheme, host and optional port, compared case-insensitively).
    Exact(String),
    /// `https://*.example.com` or `*.example.com`: any subdomain (not the bare domain), with the
    /// given scheme or any scheme.
    Suffix { scheme: Option<String>, suffix: String },
    /// `*`: every origin (an explicit opt-out, e.g. for a public API).
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Empty: same-origin only (the Origin's host must be the request's Host), like gorilla's
    /// default `CheckOrigin`.
    allow: Vec<Pattern>,
    allow_missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginVerdict {
    Allowed,
    Missing,
    Forbidden,
}

impl OriginPolicy {
    /// With an empty allowlist only same-origin browser requests pass (`["*"]` lets every
    /// origin in); requests without an Origin header (non-browser clients) pass if
    /// `allow_missing`.
    pub fn new(allow: &[String], allow_missing: bool) -> Result<OriginPolicy> {
        let allow = allow.iter().map(|p| parse(p)).collect::<Result<_>>()?;
        Ok(OriginPolicy { allow, allow_missing })
    }

    /// `request_host` is the request's Host header, for the same-origin default.
    pub fn check(&self, origin: Option<&str>, request_host: Option<&str>) -> OriginVerdict {
        let Some(origin) = origin else {
            return if self.allow_missing { OriginVerdict::Allowed } else { OriginVerdict::Missing };
        };
        if self.allow.contains(&Pattern::Any) {
            return OriginVerdict::Allowed;
        }
        let origin = origin.trim().to_ascii_lowercase();
        let (scheme, host) = match origin.split_once("://") {
            Some((s, h)) => (s, h),
            None => return OriginVerdict::Forbidden, // "null" and other opaque origins
        };
        if self.allow.is_empty() {
            let same = request_host.is_some_and(|h| h.trim().eq_ignore_ascii_case(host));
            return if same { OriginVerdict::Allowed } else { OriginVerdict::Forbidden };
        }
        let bare = host_without_port(host);
        let ok = self.allow.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Exact(e) => *e == origin,
            Pattern::Suffix { scheme: want, suffix } => {
                want.as_deref().is_none_or(|w| w == scheme)
                    && bare.ends_with(suffix.as_str())
                    && bare.len() > suffix.len()
            }
        });
        if ok { OriginVerdict::Allowed } else { OriginVerdict::Forbidden }
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn parse(p: &str) -> Result<Pattern> {
    let lower = p.trim().trim_end_matches('/').to_ascii_lowercase();
    if lower == "*" {
        return Ok(Pattern::Any);
    }
    let (scheme, rest) = match lower.split_once("://") {
        Some((s, r)) => (Some(s.to_owned()), r.to_owned()),
        None => (None, lower.clone()),
    };
    if rest.is_empty() || rest.contains('/') {
        bail!("invalid origin {p:?}: expected \"https://host[:port]\" or \"*.example.com\"");
    }
    if let Some(domain) = rest.strip_prefix("*.") {
        if domain.is_empty() || domain.contains('*') {
            bail!("invalid origin pattern {p:?}");
        }
        return Ok(Pattern::Suffix { scheme, suffix: format!(".{domain}") });
    }
    if rest.contains('*') {
        bail!("invalid origin pattern {p:?}: '*' is allowed only as the first label (\"*.example.com\")");
    }
    match scheme {
        Some(_) => Ok(Pattern::Exact(lower)),
        None => {
            bail!("invalid origin {p:?}: an exact origin needs its scheme, e.g. \"https://{rest}\"")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], allow_missing: bool) -> OriginPolicy {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(&allow, allow_missing).unwrap()
    }

    #[test]
    fn exact_and_wildcard_origins() {
        let p = policy(&["https://app.example.com", "*.trusted.org", "http://localhost:8080"], true);
        assert_eq!(p.check(Some("https://app.example.com"), None), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("HTTPS://APP.EXAMPLE.COM"), None), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("http://app.example.com"), None), OriginVerdict::Forbidden);
        assert_eq!(p.check(Some("https://evil.com"), None), OriginVerdict::Forbidden);
        assert_eq!(p.check(Some("https://a.b.trusted.org"), None), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("https://a.trusted.org:8443"), None), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("https://trusted.org"), None), OriginVerdict::Forbidden);
        assert_eq!(p.check(Some("https://eviltrusted.org"), None), OriginVerdict::Forbidden);
        assert_eq!(p.check(Some("http://localhost:8080"), None), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("null"), None), OriginVerdict::Forbidden);
        assert_eq!(p.check(None, None), OriginVerdict::Allowed);
        assert_eq!(policy(&["https://a.com"], false).check(None, None), OriginVerdict::Missing);
    }

    #[test]
    fn scheme_bound_wildcard_and_bad_patterns() {
        let p = policy(&["https://*.example.com"], true);
        assert_eq!(p.check(Some("https://x.example.com"), None), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("http://x.example.com"), None), OriginVerdict::Forbidden);
        for bad in ["example.com", "https://a.*.com", "https://a.com/path", "*."] {
            assert!(OriginPolicy::new(&[bad.into()], true).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_an_allowlist_only_the_same_origin_passes() {
        let p = OriginPolicy::new(&[], true).unwrap();
        assert_eq!(p.check(Some("https://localhost:8443"), Some("localhost:8443")), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("https://LOCALHOST:8443"), Some("localhost:8443")), OriginVerdict::Allowed);
        assert_eq!(p.check(Some("https://evil.com"), Some("localhost:8443")), OriginVerdict::Forbidden);
        assert_eq!(p.check(Some("https://localhost:9999"), Some("localhost:8443")), OriginVerdict::Forbidden);
        assert_eq!(p.check(Some("https://localhost:8443"), None), OriginVerdict::Forbidden);
        assert_eq!(p.check(None, Some("localhost:8443")), OriginVerdict::Allowed);
        let any = policy(&["*"], true);
        assert_eq!(any.check(Some("https://evil.com"), Some("localhost")), OriginVerdict::Allowed);
        assert_eq!(any.check(Some("null"), Some("localhost")), OriginVerdict::Allowed);
    }
}
