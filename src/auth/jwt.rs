//! Verifying a JWT access token against a key set (`jsonwebtoken`, ring).
//!
//! What is refused before any signature is checked: a token that is not
//! three base64url parts, `alg: none` or any algorithm the configuration
//! does not list (HMAC ones can never be listed: with a public key set,
//! `HS256` would make the public key a signing secret), and a key whose
//! family or own `alg` does not match the token's. Then the signature, then
//! `exp` (required), `nbf`, `iss` and `aud` with the configured leeway.

use super::identity::{Identity, Method};
use super::jwks::{family, KeySet};
use super::Fail;
use crate::config::auth::JwtAuth;
use jsonwebtoken::{Algorithm, Validation};

/// Tokens longer than this are not looked at (a real JWT is 1 to 2 KiB, an
/// opaque token much less); it also bounds what a remembered verdict holds.
pub const MAX_TOKEN: usize = 4 * 1024;

/// The token's header fields that choose a key.
pub struct Head {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Reads the header and checks the algorithm is allowed.
pub fn head(cfg: &JwtAuth, token: &str) -> Result<Head, Fail> {
    if token.len() > MAX_TOKEN || token.split('.').count() != 3 {
        return Err(Fail::Malformed);
    }
    // `decode_header` refuses `"alg":"none"` and names it does not know.
    let h = jsonwebtoken::decode_header(token).map_err(|_| Fail::Malformed)?;
    // Extensions the token says must be understood (RFC 7515 4.1.11): none
    // is, so a token that names any (or an empty list) is refused.
    if critical(token) {
        return Err(Fail::Malformed);
    }
    let name = format!("{:?}", h.alg);
    if family(h.alg).is_none() || !cfg.algorithms.contains(&name) {
        return Err(Fail::AlgorithmNotAllowed);
    }
    Ok(Head { alg: h.alg, kid: h.kid })
}

/// Verifies `token` with the key its header names. `Err(Fail::UnknownKey)`
/// when the set has no such key (the caller may fetch the set again).
pub fn verify(cfg: &JwtAuth, keys: &KeySet, token: &str, head: &Head, wanted: &[String]) -> Result<Identity, Fail> {
    let fam = family(head.alg).ok_or(Fail::AlgorithmNotAllowed)?;
    let fits = |k: &&super::jwks::Key| k.family == fam && k.alg.is_none_or(|a| a == head.alg);
    let key = match &head.kid {
        Some(kid) => keys.keys.iter().filter(fits).find(|k| k.kid.as_deref() == Some(kid.as_str())),
        // Without a kid, only a set with a single key that fits.
        None => {
            let mut fitting = keys.keys.iter().filter(fits);
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => Some(k),
                _ => None,
            }
        }
    };
    let key = key.ok_or(Fail::UnknownKey)?;
    let mut v = Validation::new(head.alg);
    v.algorithms = vec![head.alg];
    v.leeway = cfg.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.required_spec_claims = ["exp".to_string()].into_iter().collect();
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        v.required_spec_claims.insert("iss".into());
    }
    if cfg.audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&cfg.audience);
        v.required_spec_claims.insert("aud".into());
    }
    let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
        .map_err(|e| fail_of(e.kind()))?;
    // jsonwebtoken skips a time claim it cannot read as a number: a string
    // `nbf` would be no `nbf` at all. Refused instead.
    for c in ["exp", "nbf", "iat"] {
        if data.claims.get(c).is_some_and(|v| super::identity::seconds(v).is_none()) {
            return Err(Fail::Malformed);
        }
    }
    Ok(Identity::from_claims(Method::Jwt, &data.claims, wanted))
}

/// Whether the JOSE header has a `crit` member.
fn critical(token: &str) -> bool {
    use base64::Engine;
    let Some(part) = token.split('.').next() else { return true };
    let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')) else {
        return true;
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&raw) {
        Ok(h) => h.contains_key("crit"),
        Err(_) => true,
    }
}

fn fail_of(e: &jsonwebtoken::errors::ErrorKind) -> Fail {
    use jsonwebtoken::errors::ErrorKind as K;
    match e {
        K::ExpiredSignature => Fail::Expired,
        K::ImmatureSignature => Fail::NotYetValid,
        K::InvalidIssuer => Fail::WrongIssuer,
        K::InvalidAudience => Fail::WrongAudience,
        K::MissingRequiredClaim(c) if c == "exp" => Fail::NoExpiry,
        K::MissingRequiredClaim(c) if c == "iss" => Fail::WrongIssuer,
        K::MissingRequiredClaim(c) if c == "aud" => Fail::WrongAudience,
        K::InvalidSignature => Fail::BadSignature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => Fail::AlgorithmNotAllowed,
        _ => Fail::Malformed,
    }
}
