//! Property tests of the JWT parser: whatever a client sends as a token, verification never
//! panics and never accepts a token not signed with the configured key, however its header and
//! claims are shaped (`alg: none`, other algorithms, tampered payloads). Bounded case counts;
//! failing cases are kept in `plugins/auth/proptest-regressions/`.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use crate::jwt::Verifier;

const SECRET: &[u8] = b"test-secret-0123456789";
const NOW: u64 = 1_700_000_000;

fn verifier() -> Verifier {
    Verifier { hs256: Some(SECRET.to_vec()), require_exp: false, ..Verifier::default() }
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn sign(input: &str, key: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    b64(&mac.finalize().into_bytes())
}

fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[a-z]{0,8}".prop_map(|s| format!("{s:?}")),
        Just("1e400".to_owned()),
        Just("-1".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
    ]
}

/// A header and claims as JSON text, shaped like a token's or not quite.
fn parts() -> impl Strategy<Value = (String, String)> {
    let alg = prop_oneof![
        Just("HS256"),
        Just("none"),
        Just("None"),
        Just("RS256"),
        Just("ES256"),
        Just("HS512"),
        Just("hs256"),
        Just("")
    ];
    let header = (alg, any::<bool>()).prop_map(|(a, typ)| {
        if typ { format!(r#"{{"alg":"{a}","typ":"JWT"}}"#) } else { format!(r#"{{"alg":"{a}"}}"#) }
    });
    let claims = proptest::collection::vec(
        (prop_oneof![Just("sub"), Just("exp"), Just("nbf"), Just("iss"), Just("aud"), Just("x")], json_value()),
        0..5,
    )
    .prop_map(|kv| {
        let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
        format!("{{{}}}", body.join(","))
    });
    (header, claims)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_refused_without_panicking(token in "[A-Za-z0-9_.=+/-]{0,120}") {
        prop_assert!(verifier().verify(&token, NOW).is_err());
    }

    #[test]
    fn only_the_configured_key_signs(
        (header, claims) in parts(),
        key in proptest::collection::vec(any::<u8>(), 1..40),
        sig_kind in 0u8..4,
    ) {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let token = match sig_kind {
            0 => format!("{input}."),                       // alg none style: no signature
            1 => format!("{input}.{}", sign(&input, &key)), // another key
            2 => format!("{input}.{}", b64(&key)),          // garbage
            _ => format!("{input}.{}", sign(&input, SECRET)),
        };
        let result = verifier().verify(&token, NOW);
        if sig_kind != 3 && key != SECRET {
            prop_assert!(result.is_err(), "{token} accepted");
        }
        if let Ok(v) = result {
            prop_assert!(header.contains("\"HS256\""));
            prop_assert!(!v.sub.is_empty());
        }
    }

    #[test]
    fn a_signed_token_with_any_byte_changed_is_refused(
        (_, claims) in parts(),
        at in any::<usize>(),
        to in any::<u8>(),
    ) {
        let input = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(claims.as_bytes()));
        let token = format!("{input}.{}", sign(&input, SECRET));
        let mut bytes = token.clone().into_bytes();
        let i = at % bytes.len();
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        let Ok(tampered) = String::from_utf8(bytes) else { return Ok(()) };
        // Base64 without padding can encode the last few bits two ways: only a changed decoding counts.
        let same = |a: &str, b: &str| {
            let d = |t: &str| t.split('.').map(|p| URL_SAFE_NO_PAD.decode(p).ok()).collect::<Vec<_>>();
            d(a) == d(b)
        };
        prop_assume!(!same(&tampered, &token));
        prop_assert!(verifier().verify(&tampered, NOW).is_err(), "{tampered}");
    }
}
