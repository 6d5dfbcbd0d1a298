//! The server's side of the permessage-deflate negotiation (RFC 7692 section 5 and 7.1).

use super::{Agreed, Config};

/// Picks the first permessage-deflate offer in `headers` (the values of every
/// `Sec-WebSocket-Extensions` header, in order) that we can accept; returns what was agreed and
/// the value of our response header. An offer with an unknown, repeated or invalid parameter
/// is declined, and the next one is tried (RFC 7692 section 5.1).
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>, cfg: &Config) -> Option<(Agreed, String)> {
    if !cfg.enabled {
        return None;
    }
    headers.into_iter().flat_map(split_elements).find_map(|element| accept(element, cfg))
}

/// One offer, parsed.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// The most our compressor may use.
    server_max_window_bits: Option<u8>,
    /// The client accepts a limit on its window (with the most it will use, if given).
    client_max_window_bits: Option<Option<u8>>,
}

fn accept(element: &str, cfg: &Config) -> Option<(Agreed, String)> {
    let mut parts = split_outside_quotes(element, ';');
    if parts.next()?.trim() != "permessage-deflate" {
        return None;
    }
    let offer = parse_params(parts)?;
    let server_bits = match offer.server_max_window_bits {
        Some(bits) => bits.min(cfg.window_bits),
        None => cfg.window_bits,
    };
    // zlib has no 8-bit raw deflate window (it would quietly use 9): decline rather than
    // break the client's limit; it may offer another.
    if server_bits < 9 {
        return None;
    }
    let agreed = Agreed {
        server_takeover: cfg.context_takeover && !offer.server_no_context_takeover,
        client_takeover: cfg.context_takeover && !offer.client_no_context_takeover,
        window_bits: server_bits,
        level: cfg.level,
        min_size: cfg.min_size,
    };
    let mut response = String::from("permessage-deflate");
    if !agreed.server_takeover {
        response.push_str("; server_no_context_takeover");
    }
    // Asked of the client even when it did not offer it (RFC 7692 7.1.1.2): nothing is kept
    // for it between messages.
    if !agreed.client_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if offer.server_max_window_bits.is_some() || server_bits < 15 {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    // `client_max_window_bits` is not answered: our inflater takes any window up to 15 bits.
    let _ = offer.client_max_window_bits;
    Some((agreed, response))
}

fn parse_params<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = Vec::new();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match (name, value) {
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => offer.server_max_window_bits = Some(window_bits(v)?),
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => offer.client_max_window_bits = Some(Some(window_bits(v)?)),
            _ => return None,
        }
    }
    Some(offer)
}

/// 8 to 15, in decimal without a leading zero (RFC 7692 7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// A token, or a quoted string holding one.
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains(['"', '\\'])),
        None => Some(v),
    }
}

fn split_elements(header: &str) -> impl Iterator<Item = &str> {
    split_outside_quotes(header, ',').filter(|e| !e.trim().is_empty())
}

/// Splits at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config { enabled: true, context_takeover: false, window_bits: 15, min_size: 0, level: 1 }
    }

    fn answer(headers: &[&str], cfg: &Config) -> Option<String> {
        negotiate(headers.iter().copied(), cfg).map(|(_, r)| r)
    }

    #[test]
    fn a_browser_offer_gets_no_context_takeover_both_ways() {
        let (agreed, response) = negotiate(["permessage-deflate; client_max_window_bits"], &cfg()).expect("accepted");
        assert_eq!(response, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        assert!(!agreed.server_takeover && !agreed.client_takeover);
        assert_eq!(agreed.window_bits, 15);
    }

    #[test]
    fn nothing_is_answered_when_disabled_or_not_offered() {
        let off = Config { enabled: false, ..cfg() };
        assert_eq!(answer(&["permessage-deflate"], &off), None);
        assert_eq!(answer(&["x-webkit-deflate-frame"], &cfg()), None);
        assert_eq!(answer(&[], &cfg()), None);
    }

    #[test]
    fn window_bits_are_limited_by_the_offer_and_by_us() {
        let r = answer(&["permessage-deflate; server_max_window_bits=10"], &cfg());
        assert_eq!(
            r.as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
            )
        );
        let small = Config { window_bits: 12, ..cfg() };
        let (agreed, r) = negotiate(["permessage-deflate"], &small).expect("accepted");
        assert_eq!(agreed.window_bits, 12);
        assert!(r.ends_with("; server_max_window_bits=12"), "{r}");
        let (agreed, _) = negotiate(["permessage-deflate; server_max_window_bits=\"14\""], &small).expect("quoted");
        assert_eq!(agreed.window_bits, 12);
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            // zlib cannot keep to an 8-bit window.
            "permessage-deflate; server_max_window_bits=8",
        ] {
            assert_eq!(answer(&[bad], &cfg()), None, "{bad}");
            let two = format!("{bad}, permessage-deflate; server_max_window_bits=9");
            assert!(answer(&[&two], &cfg()).is_some_and(|r| r.ends_with("=9")), "{two}");
        }
        // Offers may come in several headers.
        let r = answer(&["permessage-deflate; bogus", "foo, permessage-deflate"], &cfg());
        assert!(r.is_some());
    }

    #[test]
    fn context_takeover_when_configured_unless_the_client_declines_it() {
        let keep = Config { context_takeover: true, ..cfg() };
        let (agreed, r) = negotiate(["permessage-deflate"], &keep).expect("accepted");
        assert!(agreed.server_takeover && agreed.client_takeover);
        assert_eq!(r, "permessage-deflate");
        let (agreed, r) =
            negotiate(["permessage-deflate; server_no_context_takeover; client_no_context_takeover"], &keep)
                .expect("accepted");
        assert!(!agreed.server_takeover && !agreed.client_takeover);
        assert_eq!(r, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    }
}
