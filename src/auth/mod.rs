//! Who is calling: API keys and OAuth2 access tokens (JWT verified against
//! a key set, or RFC 7662 introspection); see [`bearer`] for tokens.
//!
//! An API key is never kept: the store holds its HMAC-SHA-256 under a secret
//! read from the environment (`auth.key_secret_env`), so neither the store
//! file, its versions, an export nor a log can give a key away. Workers find
//! a key's consumer in an index of those HMACs ([`lookup`]), published whole
//! (one atomic swap) after every key change and every configuration change:
//! a revoked key stops working on every worker at its next request.

pub mod bearer;
pub mod cache;
pub mod identity;
pub mod introspect;
pub mod jwks;
pub mod jwt;

pub use identity::{Identity, Method};

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, OnceLock};

/// A task for the control runtime (key set fetches, introspection calls).
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Follows a new configuration: key sets fetched for exactly the `jwks_url`s
/// it names, introspection servers reported on for exactly its own.
pub fn sync(gateway: &crate::config::GatewayConfig, http: &crate::fetch::HttpClient, spawn: &dyn Fn(Task)) {
    introspect::start(http, spawn);
    jwks::sync(gateway, http, spawn);
    introspect::sync(gateway);
}

/// An HMAC digest: the index key.
pub type Digest = [u8; 32];

static SECRET: OnceLock<Option<Vec<u8>>> = OnceLock::new();
static INDEX: LazyLock<ArcSwap<HashMap<Digest, Arc<str>>>> = LazyLock::new(Default::default);

/// Reads the secret from `env` once, at start. `false` when it is not set
/// (or shorter than 32 bytes): API keys can then be neither made nor checked.
pub fn init_secret(env: &str) -> bool {
    let s = std::env::var_os(env).map(|v| v.into_encoded_bytes()).filter(|v| v.len() >= 32);
    SECRET.get_or_init(|| s).is_some()
}

pub fn has_secret() -> bool {
    SECRET.get().is_some_and(Option::is_some)
}

/// The HMAC of `key` under the secret; `None` without a secret.
pub fn digest(key: &[u8]) -> Option<Digest> {
    let secret = SECRET.get()?.as_ref()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(key);
    Some(mac.finalize().into_bytes().into())
}

pub fn to_hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Digest> {
    let mut d = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in d.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(d)
}

/// Compares two digests in constant time.
fn same(a: &Digest, b: &Digest) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The consumer a key belongs to, if it is a live key.
pub fn lookup(key: &[u8]) -> Option<Arc<str>> {
    // Keys are 48 characters; anything much longer is not one (and is not
    // worth hashing).
    if key.is_empty() || key.len() > 256 {
        return None;
    }
    let d = digest(key)?;
    let index = INDEX.load();
    // Found by its digest (an attacker cannot aim at a digest), then
    // compared in constant time all the same.
    index.get_key_value(&d).filter(|(k, _)| same(k, &d)).map(|(_, c)| c.clone())
}

/// Whether the key with this digest is still live (an open WebSocket
/// connection asks before each event: a revoked key ends it).
pub fn is_live(d: &Digest) -> bool {
    INDEX.load().contains_key(d)
}

/// Replaces the index: `(hmac hex, consumer)` of every live key whose
/// consumer exists.
pub fn publish(keys: impl IntoIterator<Item = (String, String)>) {
    let map: HashMap<Digest, Arc<str>> =
        keys.into_iter().filter_map(|(h, c)| Some((from_hex(&h)?, Arc::from(c.as_str())))).collect();
    INDEX.store(Arc::new(map));
}

/// Why a credential was refused: the `result` label of
/// `wasp_auth_total` and the `reason` in refusals' logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// No credential where the endpoint or service looks for one.
    Missing,
    /// An API key that is not a live key.
    Invalid,
    Malformed,
    AlgorithmNotAllowed,
    /// No key in the set for the token's `kid` (after a fetch, if allowed).
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    NoExpiry,
    WrongIssuer,
    WrongAudience,
    /// Introspection said `active: false`.
    Inactive,
    /// A scope the service, endpoint or route requires is missing.
    InsufficientScope,
    /// The token could not be checked (introspection server down or slow).
    Unavailable,
}

impl Fail {
    const ALL: [Fail; 14] = [
        Fail::Missing,
        Fail::Invalid,
        Fail::Malformed,
        Fail::AlgorithmNotAllowed,
        Fail::UnknownKey,
        Fail::BadSignature,
        Fail::Expired,
        Fail::NotYetValid,
        Fail::NoExpiry,
        Fail::WrongIssuer,
        Fail::WrongAudience,
        Fail::Inactive,
        Fail::InsufficientScope,
        Fail::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fail::Missing => "missing",
            Fail::Invalid => "invalid",
            Fail::Malformed => "malformed",
            Fail::AlgorithmNotAllowed => "algorithm_not_allowed",
            Fail::UnknownKey => "unknown_key",
            Fail::BadSignature => "bad_signature",
            Fail::Expired => "expired",
            Fail::NotYetValid => "not_yet_valid",
            Fail::NoExpiry => "no_expiry",
            Fail::WrongIssuer => "wrong_issuer",
            Fail::WrongAudience => "wrong_audience",
            Fail::Inactive => "inactive",
            Fail::InsufficientScope => "insufficient_scope",
            Fail::Unavailable => "unavailable",
        }
    }

    /// The words a client reads (the JSON body's `message`).
    pub fn message(self) -> &'static str {
        match self {
            Fail::Missing => "a credential is required",
            Fail::Invalid => "the API key is not valid",
            Fail::Malformed => "the token is not a valid JWT",
            Fail::AlgorithmNotAllowed => "the token's algorithm is not accepted",
            Fail::UnknownKey => "the token's signing key is not known",
            Fail::BadSignature => "the token's signature is not valid",
            Fail::Expired => "the token has expired",
            Fail::NotYetValid => "the token is not valid yet",
            Fail::NoExpiry => "the token has no expiry (exp)",
            Fail::WrongIssuer => "the token's issuer is not accepted",
            Fail::WrongAudience => "the token is not meant for this audience",
            Fail::Inactive => "the token is not active",
            Fail::InsufficientScope => "the credential lacks a required scope",
            Fail::Unavailable => "the credential could not be checked now",
        }
    }

    /// The data-plane error (status 401, 403 or 503).
    pub fn error(self) -> crate::error::ProxyError {
        use crate::error::{ErrorKind, ProxyError};
        let kind = match self {
            Fail::InsufficientScope => ErrorKind::InsufficientScope,
            Fail::Unavailable => ErrorKind::AuthUnavailable,
            _ => ErrorKind::Unauthorized,
        };
        ProxyError::new(kind, self.message())
    }
}

const METHODS: [Method; 3] = [Method::ApiKey, Method::Jwt, Method::Introspection];
static OK: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static FAILED: [[AtomicU64; Fail::ALL.len()]; 3] = [const { [const { AtomicU64::new(0) }; Fail::ALL.len()] }; 3];

/// Counts one credential check (`wasp_auth_total{method,result}`).
pub fn count(method: Method, r: Result<(), Fail>) {
    let m = method as usize;
    match r {
        Ok(()) => OK[m].fetch_add(1, Relaxed),
        Err(f) => FAILED[m][f as usize].fetch_add(1, Relaxed),
    };
}

/// Credential checks refused so far, every method and reason (the
/// dashboard's auth failures).
pub fn failures_total() -> u64 {
    FAILED.iter().flatten().map(|c| c.load(Relaxed)).sum()
}

/// Prometheus lines.
pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    let _ =
        writeln!(out, "# HELP wasp_auth_total Credential checks by method and result.\n# TYPE wasp_auth_total counter");
    for m in METHODS {
        let _ = writeln!(
            out,
            "wasp_auth_total{{method=\"{}\",result=\"ok\"}} {}",
            m.as_str(),
            OK[m as usize].load(Relaxed)
        );
        for f in Fail::ALL {
            let n = FAILED[m as usize][f as usize].load(Relaxed);
            let _ = writeln!(out, "wasp_auth_total{{method=\"{}\",result=\"{}\"}} {n}", m.as_str(), f.as_str());
        }
    }
    jwks::render(out);
    introspect::render(out);
}

/// A new key and its id: 32 random bytes, URL-safe base64, with a prefix
/// that tells what it is in a leaked log or a secret scanner.
pub fn new_key() -> Result<(String, String), String> {
    use base64::Engine;
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
    let mut id = [0u8; 8];
    getrandom::getrandom(&mut id).map_err(|e| format!("no randomness: {e}"))?;
    let key = format!("wasp_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    Ok((id.iter().map(|b| format!("{b:02x}")).collect(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_compare() {
        let d = [7u8; 32];
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert!(from_hex("zz").is_none());
        assert!(same(&d, &d));
        let mut e = d;
        e[31] ^= 1;
        assert!(!same(&d, &e));
    }

    #[test]
    fn new_keys_differ_and_are_url_safe() {
        let (id1, k1) = new_key().unwrap();
        let (id2, k2) = new_key().unwrap();
        assert_ne!(k1, k2);
        assert_ne!(id1, id2);
        assert!(k1.starts_with("wasp_") && k1.len() == 48, "{k1}");
        assert!(k1.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    }
}
