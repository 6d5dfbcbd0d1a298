//! A WebSocket route's path: exact (`/chat`), or a pattern whose `{name}` segments match any one
//! segment (`/app/{key}`, as Pusher clients connect) and whose last segment may be `{*name}`,
//! matching everything below (`/feeds/{*rest}`: `/feeds/a` and `/feeds/a/b`, not `/feeds`).
//!
//! Which route a path goes to does not depend on the order of the configuration: an exact
//! route wins; then the pattern with the most literal segments; at equal counts one without
//! `{*rest}` wins over one with it. Two patterns that would tie (`/a/{x}` and `/a/{y}`) are a
//! configuration error, so no path is ever ambiguous.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    One,
    /// `{*name}`, last only: one or more segments.
    Rest,
}

/// A parsed route path; `Exact` for one without `{`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoutePath {
    Exact(String),
    Pattern(Pattern),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    segments: Vec<Segment>,
}

impl RoutePath {
    /// Parses a configured path; the error says what is wrong with it.
    pub fn parse(path: &str) -> Result<RoutePath> {
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            bail!("route path {path:?} must start with '/' and contain no '?', '#' or spaces");
        }
        if !path.contains(['{', '}']) {
            return Ok(RoutePath::Exact(path.to_owned()));
        }
        let parts: Vec<&str> = path[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    let (rest, name) = match name.strip_prefix('*') {
                        Some(n) => (true, n),
                        None => (false, name),
                    };
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        bail!(
                            "route path {path:?}: {part:?} must be {{name}} or {{*name}}, a name of letters, digits and '_'"
                        );
                    }
                    if rest && !last {
                        bail!("route path {path:?}: {part:?} may only be the last segment");
                    }
                    if rest { Segment::Rest } else { Segment::One }
                }
                None if part.contains(['{', '}']) => {
                    bail!("route path {path:?}: a segment is either literal or a whole {{name}}, not {part:?}")
                }
                None if part.is_empty() && !last => bail!("route path {path:?} has an empty segment"),
                None => Segment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        Ok(RoutePath::Pattern(Pattern { segments }))
    }
}

impl Pattern {
    /// Whether `path` (without the query string) is one this pattern matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        for (i, segment) in self.segments.iter().enumerate() {
            let last = i + 1 == self.segments.len();
            let (part, tail) = match rest.split_once('/') {
                Some((p, t)) => (p, Some(t)),
                None => (rest, None),
            };
            match segment {
                Segment::Rest => return !rest.is_empty() && !part.is_empty(),
                Segment::One if part.is_empty() => return false,
                Segment::One => {}
                Segment::Literal(l) if l != part => return false,
                Segment::Literal(_) => {}
            }
            match tail {
                Some(t) if !last => rest = t,
                // More segments than the pattern has.
                Some(_) => return false,
                // The path ended before the pattern did.
                None if !last => return false,
                None => {}
            }
        }
        true
    }

    /// Orders patterns so that the first one matching a path is the most specific: more
    /// literal segments first, then without `{*rest}` before with it.
    pub fn precedence(&self) -> (std::cmp::Reverse<usize>, bool) {
        let literals = self.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        (std::cmp::Reverse(literals), self.segments.last() == Some(&Segment::Rest))
    }

    /// Whether two patterns could match one path with the same precedence, so that neither
    /// would win: same precedence, same length class, and every literal of one is either a
    /// literal equal to the other's or faces a wildcard.
    pub fn ties_with(&self, other: &Pattern) -> bool {
        if self.precedence() != other.precedence() {
            return false;
        }
        let rest = self.segments.last() == Some(&Segment::Rest);
        if !rest && self.segments.len() != other.segments.len() {
            return false;
        }
        self.segments.iter().zip(&other.segments).all(|(a, b)| match (a, b) {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            _ => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        match RoutePath::parse(p) {
            Ok(RoutePath::Pattern(p)) => p,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn one_segment_matches_exactly_one_non_empty_segment() {
        let p = pattern("/app/{key}");
        assert!(p.matches("/app/demo-key"));
        assert!(!p.matches("/app/"));
        assert!(!p.matches("/app"));
        assert!(!p.matches("/app/a/b"));
        assert!(!p.matches("/apps/a"));
        assert!(!p.matches("app/a"));
        let mid = pattern("/t/{tenant}/ws");
        assert!(mid.matches("/t/acme/ws"));
        assert!(!mid.matches("/t/acme/wss"));
        assert!(!mid.matches("/t//ws"));
    }

    #[test]
    fn rest_matches_everything_below_not_the_prefix_itself() {
        let p = pattern("/feeds/{*rest}");
        assert!(p.matches("/feeds/a"));
        assert!(p.matches("/feeds/a/b/c"));
        assert!(!p.matches("/feeds"));
        assert!(!p.matches("/feeds/"));
        assert!(!p.matches("/feedsx/a"));
    }

    #[test]
    fn bad_paths_are_refused_with_what_is_wrong() {
        let err = |p: &str| RoutePath::parse(p).unwrap_err().to_string();
        assert!(err("app/{key}").contains("must start with '/'"));
        assert!(err("/app/{}").contains("{name}"));
        assert!(err("/app/{k-y}").contains("{name}"));
        assert!(err("/app/x{key}").contains("either literal or a whole"));
        assert!(err("/app/{*rest}/x").contains("only be the last"));
        assert!(err("/app//{key}").contains("empty segment"));
        assert_eq!(RoutePath::parse("/chat").unwrap(), RoutePath::Exact("/chat".into()));
    }

    #[test]
    fn more_literals_win_and_ties_are_detected() {
        let mut ps = [pattern("/{*rest}"), pattern("/app/{key}"), pattern("/app/{*rest}"), pattern("/app/{key}/x")];
        ps.sort_by_key(Pattern::precedence);
        assert_eq!(ps[0], pattern("/app/{key}/x"));
        assert_eq!(ps[1], pattern("/app/{key}"));
        assert_eq!(ps[2], pattern("/app/{*rest}"));
        assert_eq!(ps[3], pattern("/{*rest}"));
        assert!(pattern("/a/{x}").ties_with(&pattern("/a/{y}")));
        assert!(pattern("/{x}/b").ties_with(&pattern("/a/{y}")));
        assert!(!pattern("/a/{x}").ties_with(&pattern("/b/{x}")));
        assert!(!pattern("/a/{x}").ties_with(&pattern("/a/{x}/c")));
        assert!(!pattern("/a/{x}").ties_with(&pattern("/a/{*x}")));
    }
}
