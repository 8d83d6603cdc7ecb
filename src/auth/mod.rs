//! Who is calling: API keys (and, later, OAuth2 tokens).
//!
//! An API key is never kept: the store holds its HMAC-SHA-256 under a secret
//! read from the environment (`auth.key_secret_env`), so neither the store
//! file, its versions, an export nor a log can give a key away. Workers find
//! a key's consumer in an index of those HMACs ([`lookup`]), published whole
//! (one atomic swap) after every key change and every configuration change:
//! a revoked key stops working on every worker at its next request.

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};

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

/// What became of a credential (`wasp_auth_total{method,result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// No credential where the endpoint or service looks for one.
    Missing,
    /// A credential that is not a live key.
    Invalid,
}

static COUNTS: [std::sync::atomic::AtomicU64; 3] = [const { std::sync::atomic::AtomicU64::new(0) }; 3];

/// Counts one API key check.
pub fn count(o: Outcome) {
    COUNTS[o as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Prometheus lines.
pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    let _ =
        writeln!(out, "# HELP wasp_auth_total Credential checks by method and result.\n# TYPE wasp_auth_total counter");
    for (o, name) in [(Outcome::Ok, "ok"), (Outcome::Missing, "missing"), (Outcome::Invalid, "invalid")] {
        let n = COUNTS[o as usize].load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(out, "wasp_auth_total{{method=\"api_key\",result=\"{name}\"}} {n}");
    }
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
