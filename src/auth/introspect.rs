//! RFC 7662 token introspection, asked by the control thread.
//!
//! A worker that meets a token it has no verdict for sends an [`Ask`] and
//! waits (at most [`WAIT`]); the control runtime POSTs the token to the
//! configured server with the client's credentials (HTTP Basic, RFC 6749
//! 2.3.1) and answers. Identical asks in flight share one call, and at most
//! [`MAX_IN_FLIGHT`] calls run at once (more: answered at once as
//! unavailable), so a flood of made-up tokens cannot queue without bound.

use super::identity::{Identity, Method};
use crate::config::auth::{BearerAuth, BearerMethod, IntrospectionAuth};
use crate::fetch::HttpClient;
use futures_channel::oneshot;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

/// How long a request waits for an introspection answer.
pub const WAIT: Duration = Duration::from_secs(2);
/// Calls running at once, over all servers.
const MAX_IN_FLIGHT: usize = 256;
const MAX_BODY: usize = 64 * 1024;

/// What the server said: the identity of an active token and until when
/// it may be remembered, or `None` for an inactive one.
pub type Answer = Result<(Option<Identity>, u64), String>;

pub struct Ask {
    pub auth: Arc<BearerAuth>,
    pub token: String,
    pub done: oneshot::Sender<Answer>,
}

static ASKS: OnceLock<flume::Sender<Ask>> = OnceLock::new();

#[derive(Default, Clone)]
struct Status {
    ok_at: Option<u64>,
    error: Option<String>,
}

/// Per server URL: the last call's outcome (for `/readyz`).
static STATUS: LazyLock<Mutex<HashMap<String, Status>>> = LazyLock::new(Default::default);
static CALLS_OK: AtomicU64 = AtomicU64::new(0);
static CALLS_FAILED: AtomicU64 = AtomicU64::new(0);

/// Sends an ask to the control thread; `None` when it cannot take one.
pub fn ask(auth: &Arc<BearerAuth>, token: &str) -> Option<oneshot::Receiver<Answer>> {
    let tx = ASKS.get()?;
    let (done, rx) = oneshot::channel();
    tx.try_send(Ask { auth: auth.clone(), token: token.to_string(), done }).ok()?;
    Some(rx)
}

/// Starts the task that answers asks (once per process, on the control runtime).
pub fn start(http: &HttpClient, spawn: &dyn Fn(super::Task)) {
    let (tx, rx) = flume::bounded::<Ask>(4096);
    if ASKS.set(tx).is_err() {
        return;
    }
    let http = http.clone();
    spawn(Box::pin(async move { serve(rx, http).await }));
}

/// Which servers the configuration names (for `/readyz`).
pub fn sync(gateway: &crate::config::GatewayConfig) {
    use crate::config::auth::Auth;
    let urls: Vec<String> = gateway
        .services
        .iter()
        .map(|s| &s.auth)
        .chain(gateway.endpoints.iter().map(|e| &e.auth))
        .filter_map(|a| match a {
            Auth::Bearer(b) => match &b.method {
                BearerMethod::Introspection(i) => Some(i.url.clone()),
                BearerMethod::Jwt(_) => None,
            },
            _ => None,
        })
        .collect();
    let mut st = STATUS.lock().unwrap_or_else(|p| p.into_inner());
    st.retain(|u, _| urls.contains(u));
    for u in urls {
        st.entry(u).or_default();
    }
}

type Waiting = Arc<Mutex<HashMap<(u64, String), Vec<oneshot::Sender<Answer>>>>>;

async fn serve(rx: flume::Receiver<Ask>, http: HttpClient) {
    let waiting: Waiting = Arc::default();
    while let Ok(a) = rx.recv_async().await {
        let BearerMethod::Introspection(cfg) = &a.auth.method else { continue };
        let k = (a.auth.id, a.token.clone());
        {
            let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = w.get_mut(&k) {
                list.push(a.done);
                continue;
            }
            if w.len() >= MAX_IN_FLIGHT {
                let _ = a.done.send(Err("too many introspection calls in flight".into()));
                continue;
            }
            w.insert(k.clone(), vec![a.done]);
        }
        let (http, waiting, cfg, claims) = (http.clone(), waiting.clone(), cfg.clone(), a.auth.claims.clone());
        tokio::spawn(async move {
            let answer = call(&http, &cfg, &k.1, &claims).await;
            let mut st = STATUS.lock().unwrap_or_else(|p| p.into_inner());
            let s = st.entry(cfg.url.clone()).or_default();
            match &answer {
                Ok(_) => {
                    CALLS_OK.fetch_add(1, Relaxed);
                    *s = Status { ok_at: Some(super::jwks::now_ms() / 1000), error: None };
                }
                Err(e) => {
                    CALLS_FAILED.fetch_add(1, Relaxed);
                    tracing::warn!(url = %cfg.url, error = %e, "token introspection failed");
                    s.error = Some(e.clone());
                }
            }
            drop(st);
            let list = waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&k).unwrap_or_default();
            for d in list {
                let _ = d.send(answer.clone());
            }
        });
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn form(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn call(http: &HttpClient, cfg: &IntrospectionAuth, token: &str, claims: &[String]) -> Answer {
    use base64::Engine;
    let secret = std::env::var(&cfg.client_secret_env)
        .map_err(|_| format!("{} (the client secret) is not set", cfg.client_secret_env))?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", form(&cfg.client_id), form(&secret)));
    let body = format!("token={}&token_type_hint=access_token", form(token)).into_bytes();
    let req = crate::fetch::Request::post(&cfg.url, body)
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded".into())
        .header("accept", "application/json".into())
        .timeout(WAIT);
    let r = http.fetch(req, MAX_BODY).await.map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{} answered {}", cfg.url, r.status));
    }
    let doc: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| format!("not JSON: {e}"))?;
    let now = super::jwks::now_ms();
    let remember = now.saturating_add(cfg.cache.as_millis() as u64);
    let Some(obj) = doc.as_object() else { return Err("not a JSON object".into()) };
    // Anything but `"active": true` is inactive (RFC 7662 2.2).
    if obj.get("active") != Some(&serde_json::Value::Bool(true)) {
        return Ok((None, remember));
    }
    let id = Identity::from_claims(Method::Introspection, obj, claims);
    // A token past its `exp` is inactive whatever the server says.
    if id.exp.is_some_and(|e| e.saturating_mul(1000) <= now) {
        return Ok((None, remember));
    }
    let until = id.exp.map_or(remember, |e| remember.min(e.saturating_mul(1000)));
    Ok((Some(id), until))
}

/// `"introspection":{URL:{"state":…,"error":…}}` for `/readyz`.
pub fn readiness_json() -> Option<String> {
    let st = STATUS.lock().unwrap_or_else(|p| p.into_inner());
    if st.is_empty() {
        return None;
    }
    let j = |v: &str| serde_json::Value::from(v).to_string();
    let mut parts: Vec<String> = st
        .iter()
        .map(|(u, s)| {
            let state = if s.error.is_some() {
                "unreachable"
            } else if s.ok_at.is_some() {
                "up"
            } else {
                "unused"
            };
            format!(
                r#"{}:{{"state":"{state}","answered_at":{},"error":{}}}"#,
                j(super::jwks::shown(u)),
                s.ok_at.map_or("null".into(), |t| t.to_string()),
                s.error.as_deref().map_or("null".into(), j)
            )
        })
        .collect();
    parts.sort();
    Some(format!("{{{}}}", parts.join(",")))
}

pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP wasp_introspection_calls_total Token introspection calls by outcome.\n# TYPE wasp_introspection_calls_total counter"
    );
    let _ = writeln!(out, "wasp_introspection_calls_total{{result=\"ok\"}} {}", CALLS_OK.load(Relaxed));
    let _ = writeln!(out, "wasp_introspection_calls_total{{result=\"failed\"}} {}", CALLS_FAILED.load(Relaxed));
}
