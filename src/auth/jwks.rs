//! Key sets (JWKS) for JWT verification, fetched on the control thread.
//!
//! Each `jwks_url` the configuration names has a [`Source`]: a task on the
//! control runtime fetches it at start, again when its cache lifetime ends,
//! and early when a worker meets a `kid` it does not know (a key rotation).
//! Workers read the keys lock-free (one `ArcSwap` load); asking for an early
//! fetch is allowed once per [`MIN_REFRESH`] per source, so tokens with made
//! up `kid`s cannot turn the gateway into a flood against the key server.
//! A failed fetch keeps the keys already fetched: an identity provider that
//! is down does not log everybody out (and `/readyz` says so).

use crate::fetch::HttpClient;
use arc_swap::ArcSwap;
use futures_channel::oneshot;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Early fetches (unknown `kid`) of one source: at most one per this long.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// A key set larger than this is refused (a real one is a few KiB).
const MAX_BODY: usize = 512 * 1024;
/// Keys kept from one set.
const MAX_KEYS: usize = 64;

/// Which keys can check which algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Rsa,
    Ec,
    Okp,
}

pub fn family(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Okp),
        HS256 | HS384 | HS512 => None,
    }
}

pub struct Key {
    pub kid: Option<String>,
    /// The key's own `alg`, when the set names one: only that algorithm.
    pub alg: Option<Algorithm>,
    pub family: Family,
    pub key: DecodingKey,
}

#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

/// One `jwks_url`: its keys and the fetch task's state.
pub struct Source {
    pub url: String,
    keys: ArcSwap<KeySet>,
    /// Unix milliseconds before which no early fetch may be asked for.
    next_ask: AtomicU64,
    /// Requests waiting for the fetch in progress or about to start, and
    /// whether there is one (changed together, under the lock, so no
    /// request waits for a fetch that already ended).
    waiters: Mutex<(bool, Vec<oneshot::Sender<()>>)>,
    kick: tokio::sync::Notify,
    stop: AtomicBool,
    /// For `/readyz` and metrics.
    status: Mutex<Status>,
    fetches_failed: AtomicU64,
    fetches_ok: AtomicU64,
    /// How long fetched keys are used (ms): the shortest `jwks_cache` of
    /// the configurations naming this set, followed across reloads.
    life_ms: AtomicU64,
}

#[derive(Default, Clone)]
struct Status {
    /// Unix seconds of the last good fetch.
    fetched_at: Option<u64>,
    error: Option<String>,
}

static SOURCES: LazyLock<ArcSwap<HashMap<String, Arc<Source>>>> = LazyLock::new(Default::default);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The source for `url`, when the configuration names it.
pub fn source(url: &str) -> Option<Arc<Source>> {
    SOURCES.load().get(url).cloned()
}

impl Source {
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Whether a fetch ever succeeded.
    pub fn ever_fetched(&self) -> bool {
        self.fetches_ok.load(Relaxed) > 0
    }

    /// Asks for an early fetch; `None` when one was made or asked for less
    /// than [`MIN_REFRESH`] ago (the caller decides without waiting).
    pub fn ask_refresh(&self) -> Option<oneshot::Receiver<()>> {
        let now = now_ms();
        let next = self.next_ask.load(Relaxed);
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if !w.0 {
            if now < next {
                return None;
            }
            self.next_ask.store(now + MIN_REFRESH.as_millis() as u64, Relaxed);
            w.0 = true;
            self.kick.notify_one();
        }
        // Bounded: the list is drained after every fetch, and a fetch is
        // at most 5 s.
        if w.1.len() >= 10_000 {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        w.1.push(tx);
        Some(rx)
    }
}

/// Starts and stops fetch tasks for exactly the key sets the configuration
/// names (`jwks_cache`: the shortest any configuration asks for).
pub fn sync(gateway: &crate::config::GatewayConfig, http: &HttpClient, spawn: &dyn Fn(super::Task)) {
    use crate::config::auth::{Auth, BearerMethod};
    let mut wanted: HashMap<String, Duration> = HashMap::new();
    let auths = gateway.services.iter().map(|s| &s.auth).chain(gateway.endpoints.iter().map(|e| &e.auth));
    for a in auths {
        if let Auth::Bearer(b) = a {
            if let BearerMethod::Jwt(j) = &b.method {
                let e = wanted.entry(j.jwks_url.clone()).or_insert(j.jwks_cache);
                *e = (*e).min(j.jwks_cache);
            }
        }
    }
    let old = SOURCES.load_full();
    let mut next: HashMap<String, Arc<Source>> = HashMap::new();
    for (url, s) in old.iter() {
        if let Some(life) = wanted.get(url) {
            s.life_ms.store(life.as_millis() as u64, Relaxed);
            next.insert(url.clone(), s.clone());
        } else {
            s.stop.store(true, Relaxed);
            s.kick.notify_one();
        }
    }
    for (url, life) in wanted {
        if next.contains_key(&url) {
            continue;
        }
        let s = Arc::new(Source {
            url: url.clone(),
            keys: ArcSwap::from_pointee(KeySet::default()),
            next_ask: AtomicU64::new(0),
            // The first fetch is on its way: early requests wait for it.
            waiters: Mutex::new((true, Vec::new())),
            kick: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
            status: Mutex::new(Status::default()),
            fetches_failed: AtomicU64::new(0),
            fetches_ok: AtomicU64::new(0),
            life_ms: AtomicU64::new(life.as_millis() as u64),
        });
        next.insert(url, s.clone());
        let http = http.clone();
        spawn(Box::pin(async move { run(s, http).await }));
    }
    SOURCES.store(Arc::new(next));
}

/// A source's fetch loop.
async fn run(s: Arc<Source>, http: HttpClient) {
    use futures_util::future::{select, Either};
    loop {
        if s.stop.load(Relaxed) {
            return;
        }
        let started = std::time::Instant::now();
        s.next_ask.fetch_max(now_ms() + MIN_REFRESH.as_millis() as u64, Relaxed);
        let ok = match fetch(&http, &s.url).await {
            Ok(set) => {
                s.keys.store(Arc::new(set));
                s.fetches_ok.fetch_add(1, Relaxed);
                let mut st = s.status.lock().unwrap_or_else(|p| p.into_inner());
                *st = Status { fetched_at: Some(now_ms() / 1000), error: None };
                true
            }
            Err(e) => {
                tracing::warn!(url = %s.url, error = %e, "JWKS fetch failed; the keys already fetched stay in use");
                s.fetches_failed.fetch_add(1, Relaxed);
                s.status.lock().unwrap_or_else(|p| p.into_inner()).error = Some(e);
                false
            }
        };
        let waiting = {
            let mut w = s.waiters.lock().unwrap_or_else(|p| p.into_inner());
            w.0 = false;
            std::mem::take(&mut w.1)
        };
        for w in waiting {
            let _ = w.send(());
        }
        // A failed fetch is tried again sooner than a good one expires.
        let life = Duration::from_millis(s.life_ms.load(Relaxed));
        let wait = if ok { life } else { life.min(MIN_REFRESH) };
        let kicked = {
            let sleep = std::pin::pin!(tokio::time::sleep(wait));
            let kick = std::pin::pin!(s.kick.notified());
            matches!(select(sleep, kick).await, Either::Right(_))
        };
        if kicked {
            // Never two fetches closer than MIN_REFRESH, however the asks raced.
            let since = started.elapsed();
            if since < MIN_REFRESH && !s.stop.load(Relaxed) {
                tokio::time::sleep(MIN_REFRESH - since).await;
            }
        } else {
            s.waiters.lock().unwrap_or_else(|p| p.into_inner()).0 = true;
        }
    }
}

async fn fetch(http: &HttpClient, url: &str) -> Result<KeySet, String> {
    let r = http
        .fetch(crate::fetch::Request::get(url).timeout(Duration::from_secs(5)), MAX_BODY)
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{url} answered {}", r.status));
    }
    parse(&r.body)
}

/// The usable signing keys of a JWKS document. Keys of kinds the gateway
/// does not verify with (symmetric `oct`, encryption keys, unknown types)
/// are skipped, not fatal.
pub fn parse(body: &[u8]) -> Result<KeySet, String> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(list) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Err("no \"keys\" array".into());
    };
    let mut keys = Vec::new();
    for k in list {
        if keys.len() >= MAX_KEYS {
            break;
        }
        if k.get("use").and_then(|u| u.as_str()).is_some_and(|u| u != "sig") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else { continue };
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
            // A shared secret in a public key set: never a verification key.
            AlgorithmParameters::OctetKey(_) => continue,
        };
        let alg = match k.get("alg").and_then(|a| a.as_str()) {
            None => None,
            Some(a) => match a.parse::<Algorithm>() {
                Ok(a) if self::family(a) == Some(family) => Some(a),
                // A key that names an algorithm of another family (or one
                // we do not know) is not trusted for any.
                _ => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        keys.push(Key { kid: jwk.common.key_id.clone(), alg, family, key });
    }
    Ok(KeySet { keys })
}

/// `"jwks":{URL:{"keys":N,"fetched_at":T,"error":…}}` for `/readyz`; `None`
/// when no configuration uses JWT.
pub fn readiness_json() -> Option<String> {
    let sources = SOURCES.load();
    if sources.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = sources
        .values()
        .map(|s| {
            let st = s.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let j = |v: &str| serde_json::Value::from(v).to_string();
            format!(
                r#"{}:{{"state":"{}","keys":{},"fetched_at":{},"error":{}}}"#,
                j(shown(&s.url)),
                if st.error.is_some() {
                    "unreachable"
                } else if st.fetched_at.is_some() {
                    "up"
                } else {
                    "fetching"
                },
                s.keys.load().keys.len(),
                st.fetched_at.map_or("null".into(), |t| t.to_string()),
                st.error.as_deref().map_or("null".into(), j)
            )
        })
        .collect();
    parts.sort();
    Some(format!("{{{}}}", parts.join(",")))
}

/// Prometheus lines: fetches by outcome, keys held.
pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    let sources = SOURCES.load();
    let _ = writeln!(
        out,
        "# HELP wasp_jwks_fetches_total Key set fetches by outcome.\n# TYPE wasp_jwks_fetches_total counter"
    );
    for s in sources.values() {
        let u = shown(&s.url).replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "wasp_jwks_fetches_total{{url=\"{u}\",result=\"ok\"}} {}", s.fetches_ok.load(Relaxed));
        let _ = writeln!(
            out,
            "wasp_jwks_fetches_total{{url=\"{u}\",result=\"failed\"}} {}",
            s.fetches_failed.load(Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP wasp_jwks_keys Signing keys held per key set.\n# TYPE wasp_jwks_keys gauge");
    for s in sources.values() {
        let u = shown(&s.url).replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "wasp_jwks_keys{{url=\"{u}\"}} {}", s.keys.load().keys.len());
    }
}

/// A URL as `/readyz` and metrics show it: without its query, which may
/// carry a credential.
pub fn shown(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}
