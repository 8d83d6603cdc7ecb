//! OAuth2 access tokens on the request path: the decision in two steps so
//! the filter that enforces it stays synchronous.
//!
//! [`check`] decides from what the worker holds: its cache, then (JWT) the
//! key set already fetched. When it cannot decide without the network (a
//! `kid` not in the set, a token introspection has not seen) it says
//! [`Decision::Ask`]; the request path then calls [`begin`] and awaits the
//! [`Pending`] (at most 500 ms for a key set, [`introspect::WAIT`] for
//! introspection) before the filters run, and the filter's own `check`
//! finds the answer. A request never waits on anything else, and a worker
//! is never blocked: the fetches run on the control thread.

use super::cache::{self, Verdict};
use super::identity::Identity;
use super::{introspect, jwks, jwt, Fail, Method};
use crate::config::auth::{BearerAuth, BearerMethod};
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for a key set fetched because of its `kid`.
pub const KEYS_WAIT: Duration = Duration::from_millis(500);
/// Verified JWTs remembered per worker and configuration.
const JWT_CACHE_ENTRIES: usize = 10_000;

pub enum Decision {
    Ok(Arc<Identity>),
    Refused(Fail),
    /// Only the network can tell: [`begin`], wait, check again.
    Ask,
}

pub fn method(auth: &BearerAuth) -> Method {
    match auth.method {
        BearerMethod::Jwt(_) => Method::Jwt,
        BearerMethod::Introspection(_) => Method::Introspection,
    }
}

/// The decision on `token` from what this worker holds.
pub fn check(auth: &BearerAuth, token: &str) -> Decision {
    let now = jwks::now_ms();
    match cache::get(auth.id, token, now) {
        Some(Verdict::Ok(id)) => return Decision::Ok(id),
        Some(Verdict::Refused(f)) => return Decision::Refused(f),
        None => {}
    }
    if token.is_empty() {
        return Decision::Refused(Fail::Missing);
    }
    // Never sent anywhere, never remembered.
    if token.len() > jwt::MAX_TOKEN {
        return Decision::Refused(Fail::Malformed);
    }
    let BearerMethod::Jwt(j) = &auth.method else { return Decision::Ask };
    let head = match jwt::head(j, token) {
        Ok(h) => h,
        Err(f) => return Decision::Refused(f),
    };
    let Some(source) = jwks::source(&j.jwks_url) else { return Decision::Refused(Fail::Unavailable) };
    let keys = source.keys();
    match jwt::verify(j, &keys, token, &head, &auth.claims) {
        Ok(id) => {
            let id = Arc::new(id);
            // Until `exp` (+ leeway), and no longer than the key set is
            // trusted without a fetch.
            let exp = id.exp.unwrap_or(0).saturating_mul(1000).saturating_add(j.leeway.as_millis() as u64);
            let until = exp.min(now.saturating_add(j.jwks_cache.as_millis() as u64));
            cache::put(auth.id, token, Verdict::Ok(id.clone()), until, JWT_CACHE_ENTRIES, now);
            Decision::Ok(id)
        }
        Err(Fail::UnknownKey) => Decision::Ask,
        Err(f) => Decision::Refused(f),
    }
}

/// What a request waits for.
pub enum Pending {
    /// A key set fetch (the token's `kid` was unknown).
    /// `fail`: the answer if it does not come in time.
    Keys {
        rx: futures_channel::oneshot::Receiver<()>,
        auth: u64,
        token: String,
        fail: Fail,
    },
    Introspection {
        rx: futures_channel::oneshot::Receiver<introspect::Answer>,
        auth: Arc<BearerAuth>,
        token: String,
    },
    /// Nothing will come (no fetch allowed now): the next check decides.
    Nothing {
        auth: u64,
        token: String,
        fail: Fail,
    },
}

/// Starts what [`Decision::Ask`] needs.
pub fn begin(auth: &Arc<BearerAuth>, token: &str) -> Pending {
    match &auth.method {
        BearerMethod::Jwt(j) => {
            let source = jwks::source(&j.jwks_url);
            // No key set fetched yet (the key server has been down since
            // start): the token may be good; the gateway cannot tell.
            let fail =
                if source.as_ref().is_some_and(|s| s.ever_fetched()) { Fail::UnknownKey } else { Fail::Unavailable };
            match source.and_then(|s| s.ask_refresh()) {
                Some(rx) => Pending::Keys { rx, auth: auth.id, token: token.to_string(), fail },
                None => Pending::Nothing { auth: auth.id, token: token.to_string(), fail },
            }
        }
        BearerMethod::Introspection(_) => match introspect::ask(auth, token) {
            Some(rx) => Pending::Introspection { rx, auth: auth.clone(), token: token.to_string() },
            None => Pending::Nothing { auth: auth.id, token: token.to_string(), fail: Fail::Unavailable },
        },
    }
}

impl Pending {
    /// Waits (bounded) and leaves the answer where the next [`check`] finds it.
    pub async fn wait(self) {
        match self {
            Pending::Keys { rx, auth, token, fail } => {
                // The new keys are published before the waiters are told.
                // Not in time: refused (the fetch goes on for later ones).
                if monoio::time::timeout(KEYS_WAIT, rx).await.is_err() {
                    cache::hand_over(auth, &token, Verdict::Refused(fail), jwks::now_ms());
                }
            }
            Pending::Introspection { rx, auth, token } => {
                let answer = monoio::time::timeout(introspect::WAIT, rx).await;
                let now = jwks::now_ms();
                let verdict = match answer {
                    Ok(Ok(Ok((id, until)))) => {
                        let v = match id {
                            Some(id) => Verdict::Ok(Arc::new(id)),
                            None => Verdict::Refused(Fail::Inactive),
                        };
                        if let BearerMethod::Introspection(i) = &auth.method {
                            cache::put(auth.id, &token, v.clone(), until, i.cache_entries, now);
                        }
                        v
                    }
                    // Down, slow or refused: not remembered.
                    _ => Verdict::Refused(Fail::Unavailable),
                };
                cache::hand_over(auth.id, &token, verdict, now);
            }
            Pending::Nothing { auth, token, fail } => {
                cache::hand_over(auth, &token, Verdict::Refused(fail), jwks::now_ms())
            }
        }
    }
}

/// The decision after waiting: what is still undecided is refused.
pub fn settled(auth: &BearerAuth, token: &str) -> Result<Arc<Identity>, Fail> {
    match check(auth, token) {
        Decision::Ok(id) => Ok(id),
        Decision::Refused(f) => Err(f),
        Decision::Ask => Err(match &auth.method {
            // No key set fetched yet (the key server has been down since
            // start): the token may be good; the gateway cannot tell.
            BearerMethod::Jwt(j) if !jwks::source(&j.jwks_url).is_some_and(|s| s.ever_fetched()) => Fail::Unavailable,
            BearerMethod::Jwt(_) => Fail::UnknownKey,
            BearerMethod::Introspection(_) => Fail::Unavailable,
        }),
    }
}

/// A token's check, waiting (bounded) when it needs the network: for a
/// WebSocket upgrade or a `$auth` event, where nothing is prepared twice.
pub async fn verify(b: &Arc<BearerAuth>, token: &str) -> Result<Arc<Identity>, Fail> {
    for _ in 0..2 {
        match check(b, token) {
            // A new key set can leave the kid unknown; the second begin
            // then finds no fetch allowed and hands over the refusal.
            Decision::Ask => begin(b, token).wait().await,
            _ => break,
        }
    }
    settled(b, token)
}

/// The token in `Authorization: Bearer …` (scheme in any case), if any.
pub fn from_authorization(value: &[u8]) -> Option<&str> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
}

/// The token a browser offers as the subprotocol `wasp.bearer.<token>`
/// (beside `wasp`), from `Sec-WebSocket-Protocol` values.
pub fn from_subprotocols<'a>(values: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix("wasp.bearer."))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_where_clients_put_them() {
        assert_eq!(from_authorization(b"Bearer abc"), Some("abc"));
        assert_eq!(from_authorization(b"bearer  abc "), Some("abc"));
        assert_eq!(from_authorization(b"Basic abc"), None);
        assert_eq!(from_authorization(b"Bearer "), None);
        let offered = ["wasp, wasp.bearer.t0k"];
        assert_eq!(from_subprotocols(offered.iter().copied()), Some("t0k"));
        assert_eq!(from_subprotocols(["wasp"].iter().copied()), None);
    }
}
