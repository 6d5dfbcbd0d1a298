//! Pusher's request signing: `auth_key`, `auth_timestamp`, `auth_version=1.0`, `body_md5` for
//! a non-empty body, and `auth_signature`, the hex HMAC-SHA256 under the app's secret of
//!
//! ```text
//! METHOD\nPATH\nQUERY
//! ```
//!
//! where QUERY is every query parameter but `auth_signature`, keys lower-cased, sorted by key,
//! joined as `key=value` with `&`, not URL-escaped.

use wasmsock_sdk::HttpRequest;

use super::{MAX_CLOCK_SKEW, Refusal, decode};
use crate::apps::App;
use crate::sign;

/// The query's parameters, names and values decoded, in order.
pub fn params(query: &str) -> Vec<(String, String)> {
    pairs(query).map(|(k, v)| (decode(k, true), decode(v, true))).collect()
}

/// The first value of parameter `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The string a client signs for `method path?query`. Values are taken decoded (what the
/// reference says and the Go and Ruby SDKs sign) or, with `raw`, as they are in the query (what
/// the Node SDK signs: it puts values in the URL unescaped, so a `+` in a value stays a `+`).
pub fn string_to_sign(method: &str, path: &str, query: &str, raw: bool) -> String {
    let mut kept: Vec<(String, String)> = pairs(query)
        .map(|(k, v)| if raw { (k.to_owned(), v.to_owned()) } else { (decode(k, true), decode(v, true)) })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    // Stable, as the SDKs' sorts are: repeated keys keep their order.
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let query: Vec<String> = kept.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}\n{path}\n{}", method.to_ascii_uppercase(), query.join("&"))
}

/// Checks `req` is signed by `app`'s secret, at most [`MAX_CLOCK_SKEW`] seconds from `now`, with
/// the body it was signed with. Refusals are 401 with Pusher's explanations.
pub fn verify(app: &App, req: &HttpRequest, now: u64) -> Result<(), Refusal> {
    let params = params(&req.query);
    let get = |name: &str| param(&params, name);
    let refuse = |message: String| Err(Refusal::new(401, message));
    let Some(key) = get("auth_key") else { return refuse("Missing auth_key".into()) };
    if !sign::same(key.as_bytes(), app.key.as_bytes()) {
        return refuse(format!("Invalid auth_key {key:?}: not the key of app {}", app.id));
    }
    let Some(signature) = get("auth_signature") else { return refuse("Missing auth_signature".into()) };
    let Some(timestamp) = get("auth_timestamp") else { return refuse("Missing auth_timestamp".into()) };
    match get("auth_version") {
        Some("1.0") => {}
        Some(v) => return refuse(format!("Unsupported auth_version {v:?}: use 1.0")),
        None => return refuse("Missing auth_version".into()),
    }
    let signed = |raw: bool| string_to_sign(&req.method, &req.path, &req.query, raw);
    let good = |raw: bool| {
        let expected = sign::hmac_sha256_hex(&app.secret, &signed(raw));
        sign::same(signature.as_bytes(), expected.as_bytes())
    };
    if !good(false) && !good(true) {
        return refuse(format!(
            "Invalid signature: you should have sent HmacSHA256Hex({:?}, your_secret_key), but you sent {signature:?}",
            signed(false)
        ));
    }
    let Ok(timestamp) = timestamp.parse::<u64>() else {
        return refuse(format!("Invalid auth_timestamp {timestamp:?}: seconds since 1970 expected"));
    };
    if timestamp.abs_diff(now) > MAX_CLOCK_SKEW {
        return refuse(format!(
            "Timestamp expired: Given timestamp ({timestamp}) not within {MAX_CLOCK_SKEW}s of server time ({now})"
        ));
    }
    match get("body_md5") {
        Some(given) => {
            let actual = sign::md5_hex(&req.body);
            if !sign::same(given.as_bytes(), actual.as_bytes()) {
                return refuse(format!("Invalid body_md5: the body's MD5 is {actual}, you sent {given:?}"));
            }
        }
        None if !req.body.is_empty() => return refuse("Missing body_md5: a request with a body must sign it".into()),
        None => {}
    }
    Ok(())
}
