//! JWT verification: compact JWS with HS256, RS256 or ES256, and the registered claims.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use thiserror::Error;

/// Why a token was refused; the display text is the 401 reason the client sees.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Reject {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("token has no sub")]
    NoSubject,
    #[error("auth plugin has no key configured")]
    NoKey,
}

/// Verification keys and claim rules, parsed once from the plugin's configuration.
#[derive(Default)]
pub struct Verifier {
    pub hs256: Option<Vec<u8>>,
    pub rs256: Option<rsa::RsaPublicKey>,
    pub es256: Option<p256::ecdsa::VerifyingKey>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: u64,
    pub require_exp: bool,
}

/// A verified token: the subject and every claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub sub: String,
    pub claims: Map<String, Value>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl Verifier {
    pub fn has_key(&self) -> bool {
        self.hs256.is_some() || self.rs256.is_some() || self.es256.is_some()
    }

    /// Checks signature and claims of `token` at time `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Verified, Reject> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Reject::Malformed);
        };
        let header: Header = decode_json(h)?;
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| Reject::Malformed)?;
        let signed = &token[..h.len() + 1 + p.len()];
        if !self.has_key() {
            return Err(Reject::NoKey);
        }
        // The algorithm must match a configured key of its own kind: a token cannot pick an
        // algorithm we did not configure (no "none", no HS256 keyed with an RSA public key).
        match header.alg.as_str() {
            "HS256" => {
                let key = self.hs256.as_ref().ok_or(Reject::UnsupportedAlgorithm)?;
                let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| Reject::NoKey)?;
                mac.update(signed.as_bytes());
                mac.verify_slice(&signature).map_err(|_| Reject::BadSignature)?;
            }
            "RS256" => {
                use rsa::signature::Verifier as _;
                let key = self.rs256.as_ref().ok_or(Reject::UnsupportedAlgorithm)?;
                let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone());
                let sig = rsa::pkcs1v15::Signature::try_from(signature.as_slice()).map_err(|_| Reject::BadSignature)?;
                verifier.verify(signed.as_bytes(), &sig).map_err(|_| Reject::BadSignature)?;
            }
            "ES256" => {
                use p256::ecdsa::signature::Verifier as _;
                let key = self.es256.as_ref().ok_or(Reject::UnsupportedAlgorithm)?;
                // JWS uses the fixed-size r||s encoding (RFC 7518 3.4).
                let sig = p256::ecdsa::Signature::from_slice(&signature).map_err(|_| Reject::BadSignature)?;
                key.verify(signed.as_bytes(), &sig).map_err(|_| Reject::BadSignature)?;
            }
            _ => return Err(Reject::UnsupportedAlgorithm),
        }
        let claims: Map<String, Value> = decode_json(p)?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, claims: Map<String, Value>, now: u64) -> Result<Verified, Reject> {
        let time = |name: &str| -> Result<Option<u64>, Reject> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v.as_f64().filter(|t| *t >= 0.0).map(|t| Some(t as u64)).ok_or(Reject::Malformed),
            }
        };
        match time("exp")? {
            Some(exp) if now >= exp.saturating_add(self.leeway) => return Err(Reject::Expired),
            None if self.require_exp => return Err(Reject::Expired),
            _ => {}
        }
        if let Some(nbf) = time("nbf")?
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(Reject::NotYetValid);
        }
        if let Some(want) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(want.as_str())
        {
            return Err(Reject::WrongIssuer);
        }
        if let Some(want) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == want,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want.as_str())),
                _ => false,
            };
            if !ok {
                return Err(Reject::WrongAudience);
            }
        }
        let sub = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(Reject::NoSubject)?;
        Ok(Verified { sub: sub.to_owned(), claims })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Reject> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| Reject::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Reject::Malformed)
}

/// Parses an RSA public key in SPKI ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") PEM.
pub fn rsa_key(pem: &str) -> Result<rsa::RsaPublicKey, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    rsa::RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| format!("rs256_public_key is not an RSA public key PEM: {e}"))
}

/// Parses a P-256 public key in SPKI ("PUBLIC KEY") PEM.
pub fn es256_key(pem: &str) -> Result<p256::ecdsa::VerifyingKey, String> {
    use p256::pkcs8::DecodePublicKey;
    p256::ecdsa::VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("es256_public_key is not a P-256 public key PEM: {e}"))
}
