#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wasmsock_sdk::testing::TestHost;
use wasmsock_sdk::{Connect, Identity, Request};

use super::*;

const SECRET: &str = "test-secret-0123456789";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn unsigned(alg: &str, claims: &Value) -> String {
    format!("{}.{}", b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

fn hs256(claims: &Value, secret: &str) -> String {
    let input = unsigned("HS256", claims);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "ada", "exp": now() + 600, "role": "admin"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn req(query: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        route: "/chat".into(),
        path: "/chat".into(),
        query: query.into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        remote_addr: "127.0.0.1:9".into(),
        ..Request::default()
    }
}

/// Runs on_connect with a fresh plugin instance under `config`.
fn connect(config: &[(&str, &str)], request: Request) -> Connect {
    let mut host = TestHost::new();
    for (k, v) in config {
        host = host.config(k, v);
    }
    host.connect(&Auth::default(), request).1
}

fn hs_config() -> Vec<(&'static str, &'static str)> {
    vec![("hs256_secret", SECRET)]
}

fn accepted_as(answer: &Connect) -> (String, Value, Option<String>) {
    match answer {
        Connect::Accept { identity: Some(Identity { id, claims }), protocol } => {
            (id.clone(), serde_json::from_str(claims).unwrap(), protocol.clone())
        }
        other => panic!("expected acceptance, got {other:?}"),
    }
}

fn rejected(answer: &Connect) -> (u16, String) {
    match answer {
        Connect::Reject { status, reason } => (*status, reason.clone()),
        other => panic!("expected rejection, got {other:?}"),
    }
}

#[test]
fn a_good_hs256_token_in_the_query_is_accepted_with_its_subject_and_claims() {
    let token = hs256(&claims(json!({})), SECRET);
    let (id, claims, protocol) = accepted_as(&connect(&hs_config(), req(&format!("token={token}"), &[])));
    assert_eq!(id, "ada");
    assert_eq!(claims["role"], "admin");
    assert_eq!(protocol, None);
}

#[test]
fn bearer_header_is_a_token_source() {
    let token = hs256(&claims(json!({})), SECRET);
    let answer = connect(&hs_config(), req("", &[("authorization", &format!("Bearer {token}"))]));
    assert_eq!(accepted_as(&answer).0, "ada");
}

#[test]
fn subprotocol_carriers_answer_with_an_offered_protocol() {
    let token = hs256(&claims(json!({})), SECRET);
    // `bearer.<jwt>` alongside a real protocol: answer the real one.
    let offered = format!("chat.v1, bearer.{token}");
    let answer = connect(&hs_config(), req("", &[("sec-websocket-protocol", &offered)]));
    assert_eq!(accepted_as(&answer).2.as_deref(), Some("chat.v1"));
    // The pair form alone: answer `access_token`.
    let offered = format!("access_token, {token}");
    let answer = connect(&hs_config(), req("", &[("sec-websocket-protocol", &offered)]));
    assert_eq!(accepted_as(&answer).2.as_deref(), Some("access_token"));
    // `bearer.<jwt>` alone: the only offered protocol is echoed.
    let offered = format!("bearer.{token}");
    let answer = connect(&hs_config(), req("", &[("sec-websocket-protocol", &offered)]));
    assert_eq!(accepted_as(&answer).2, Some(format!("bearer.{token}")));
}

#[test]
fn every_bad_token_is_refused_with_401_and_a_short_reason() {
    let good = claims(json!({}));
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "missing token"),
        ("not-a-jwt".into(), "malformed token"),
        ("a.b.c".into(), "malformed token"),
        (hs256(&good, "another secret"), "bad signature"),
        (format!("{}.", unsigned("none", &good)), "unsupported algorithm"),
        (format!("{}.c2ln", unsigned("RS256", &good)), "unsupported algorithm"),
        (hs256(&claims(json!({"exp": now() - 100})), SECRET), "token expired"),
        (hs256(&claims(json!({"exp": null})), SECRET), "token expired"),
        (hs256(&claims(json!({"nbf": now() + 100})), SECRET), "token not yet valid"),
        (hs256(&claims(json!({"sub": null})), SECRET), "token has no sub"),
        (hs256(&claims(json!({"exp": "tomorrow"})), SECRET), "malformed token"),
    ];
    for (token, reason) in cases {
        let query = if token.is_empty() { String::new() } else { format!("token={token}") };
        assert_eq!(rejected(&connect(&hs_config(), req(&query, &[]))), (401, reason.to_owned()), "{token}");
    }
}

#[test]
fn leeway_tolerates_small_clock_skew() {
    let config = vec![("hs256_secret", SECRET), ("leeway_seconds", "30")];
    let token = hs256(&claims(json!({"exp": now() - 10, "nbf": now() + 10})), SECRET);
    assert_eq!(accepted_as(&connect(&config, req(&format!("token={token}"), &[]))).0, "ada");
    let config = vec![("hs256_secret", SECRET), ("leeway_seconds", "0")];
    assert_eq!(rejected(&connect(&config, req(&format!("token={token}"), &[]))).1, "token expired");
    // exp can be made optional.
    let config = vec![("hs256_secret", SECRET), ("require_exp", "false")];
    let token = hs256(&claims(json!({"exp": null})), SECRET);
    assert_eq!(accepted_as(&connect(&config, req(&format!("token={token}"), &[]))).0, "ada");
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let config = vec![("hs256_secret", SECRET), ("issuer", "https://id.example"), ("audience", "chat")];
    let ok = hs256(&claims(json!({"iss": "https://id.example", "aud": ["other", "chat"]})), SECRET);
    assert_eq!(accepted_as(&connect(&config, req(&format!("token={ok}"), &[]))).0, "ada");
    let ok = hs256(&claims(json!({"iss": "https://id.example", "aud": "chat"})), SECRET);
    assert_eq!(accepted_as(&connect(&config, req(&format!("token={ok}"), &[]))).0, "ada");
    let bad_iss = hs256(&claims(json!({"iss": "https://evil.example", "aud": "chat"})), SECRET);
    assert_eq!(rejected(&connect(&config, req(&format!("token={bad_iss}"), &[]))).1, "wrong issuer");
    let bad_aud = hs256(&claims(json!({"iss": "https://id.example", "aud": ["other"]})), SECRET);
    assert_eq!(rejected(&connect(&config, req(&format!("token={bad_aud}"), &[]))).1, "wrong audience");
    let no_aud = hs256(&claims(json!({"iss": "https://id.example"})), SECRET);
    assert_eq!(rejected(&connect(&config, req(&format!("token={no_aud}"), &[]))).1, "wrong audience");
}

#[test]
fn rs256_and_es256_tokens_verify_with_public_keys() {
    use p256::pkcs8::EncodePublicKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    let mut rng = rand::rngs::OsRng;

    let rsa_private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let rsa_pem = rsa_private.to_public_key().to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let input = unsigned("RS256", &claims(json!({"sub": "rsa-user"})));
    let sig = rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_private).sign(input.as_bytes());
    let rs_token = format!("{input}.{}", b64(&sig.to_bytes()));

    let ec_private = p256::ecdsa::SigningKey::random(&mut rng);
    let ec_pem = ec_private.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let input = unsigned("ES256", &claims(json!({"sub": "ec-user"})));
    let sig: p256::ecdsa::Signature = ec_private.sign(input.as_bytes());
    let es_token = format!("{input}.{}", b64(&sig.to_bytes()));

    let config = vec![("rs256_public_key", rsa_pem.as_str()), ("es256_public_key", ec_pem.as_str())];
    assert_eq!(accepted_as(&connect(&config, req(&format!("token={rs_token}"), &[]))).0, "rsa-user");
    assert_eq!(accepted_as(&connect(&config, req(&format!("token={es_token}"), &[]))).0, "ec-user");
    // Tampered payloads fail the signature.
    let mut parts: Vec<&str> = rs_token.split('.').collect();
    let evil = b64(claims(json!({"sub": "eve"})).to_string().as_bytes());
    parts[1] = &evil;
    let forged = parts.join(".");
    assert_eq!(rejected(&connect(&config, req(&format!("token={forged}"), &[]))).1, "bad signature");
    // Algorithm confusion: an HS256 token "signed" with the RSA public key text is refused,
    // because no HS256 secret is configured.
    let confused = hs256(&claims(json!({})), &rsa_pem);
    assert_eq!(rejected(&connect(&config, req(&format!("token={confused}"), &[]))).1, "unsupported algorithm");
    // A key of the wrong kind in the config is reported, never silently ignored.
    let bad = vec![("rs256_public_key", ec_pem.as_str())];
    assert_eq!(rejected(&connect(&bad, req(&format!("token={rs_token}"), &[]))).1, "auth plugin has no key configured");
}

#[test]
fn without_any_key_tokens_are_refused() {
    let token = hs256(&claims(json!({})), SECRET);
    assert_eq!(rejected(&connect(&[], req(&format!("token={token}"), &[]))).1, "auth plugin has no key configured");
}

#[test]
fn anonymous_mode_admits_guests_but_never_bad_tokens() {
    let config = vec![("hs256_secret", SECRET), ("allow_anonymous", "true")];
    let (id, guest_claims, _) = accepted_as(&connect(&config, req("name=Ada%20L.", &[])));
    assert_eq!(id, "guest-adal");
    assert_eq!(guest_claims, json!({"anonymous": true}));
    let (id, _, _) = accepted_as(&connect(&config, req("", &[])));
    assert!(id.starts_with("guest-") && id[6..].parse::<u64>().is_ok(), "{id}");
    let bad = hs256(&claims(json!({})), "wrong");
    assert_eq!(rejected(&connect(&config, req(&format!("token={bad}&name=x"), &[]))).1, "bad signature");
    let good = hs256(&claims(json!({})), SECRET);
    assert_eq!(accepted_as(&connect(&config, req(&format!("token={good}"), &[]))).0, "ada");
}
