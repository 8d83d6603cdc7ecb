//! From a validated upgrade request to a running session: `$connect`, the
//! 101 answer, registration in the worker's table, and `$disconnect` at the end.

use crate::auth::bearer;
use crate::auth::{count, Fail, Identity, Method};
use crate::config::auth::Auth;
use crate::error::{reason, ErrorKind};
use crate::io::{flush, BufStream};
use crate::pipeline::ctx::Worker;
use crate::pipeline::http::conn::finish;
use crate::pipeline::http::request::WsUpgrade;
use crate::pipeline::snapshot::Snapshot;
use crate::pipeline::ws::conn::{json_string, ConnId, WsConn};
use crate::pipeline::ws::events::on_connect;
use crate::proto::ws::handshake::switching_protocols;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Random bits for a connection id (from the OS; ids must not be guessable).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return std::hash::BuildHasher::hash_one(&ahash::RandomState::new(), Instant::now());
    }
    u64::from_le_bytes(b)
}

/// A connection past its handshake, ready to run (`session::run`).
pub struct Session {
    pub stream: monoio::net::TcpStream,
    pub leftover: Vec<u8>,
    pub conn: Rc<WsConn>,
    pub endpoint: std::sync::Arc<crate::router::endpoint::Endpoint>,
}

/// `$connect`, then the 101. `None` when the handshake was refused or failed.
pub async fn handshake(
    w: &Rc<Worker>,
    snap: &Snapshot,
    mut client: BufStream,
    peer: SocketAddr,
    mut up: WsUpgrade,
) -> Option<Session> {
    let started = Instant::now();
    let ep = up.endpoint.clone();
    let id = ConnId::new(w.id, random_u64());
    let id_text = id.display(w.node);
    let rid = up.meta.request_id;

    // Who is calling (endpoint `auth`): the credential leaves the headers and
    // the query `$connect` sees, whatever the outcome.
    let offered_wasp = offers_wasp(&up.headers);
    let caller = match authenticate(snap, &mut up).await {
        Ok(c) => c,
        Err((fail, challenge)) => {
            let e = fail.error();
            let status = e.status();
            let body = format!(
                r#"{{"error":"{}","status":{status},"message":"{}","request_id":"{}"}}"#,
                e.kind.code(),
                e.message,
                rid.as_str()
            );
            let mut out = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\nwww-authenticate: {challenge}\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n\r\n{body}",
                reason(status),
                body.len(),
                rid.as_str()
            )
            .into_bytes();
            let _ = write_with_deadline(w, snap, &mut client.stream, &mut out).await;
            w.stats.error(e.kind);
            finish(w, snap, &up.meta, status, 0, started);
            return None;
        }
    };

    let headers: Vec<String> =
        up.headers.iter().map(|(n, v)| format!("{}:{}", json_string(n), json_string(v))).collect();
    let identity = caller.identity.as_deref();
    let consumer_json = identity.and_then(|i| i.consumer.as_deref()).map_or("null".to_string(), json_string);
    let identity_json = identity.map_or("null".to_string(), |i| i.json());
    let connect_body = format!(
        r#"{{"connection_id":"{id_text}","endpoint":{},"path":{},"query":{},"remote_addr":"{peer}","consumer":{consumer_json},"identity":{identity_json},"headers":{{{}}}}}"#,
        json_string(ep.name()),
        json_string(&up.path),
        json_string(&up.query),
        headers.join(",")
    );
    let groups = match on_connect(w, &ep, &id_text, rid.as_str(), connect_body.as_bytes(), identity).await {
        Ok(g) => g,
        Err((status, message)) => {
            let body = format!(
                r#"{{"error":"connect_refused","status":{status},"message":{},"request_id":"{}"}}"#,
                json_string(&message.chars().take(512).collect::<String>()),
                rid.as_str()
            );
            let mut out = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n\r\n{body}",
                reason(status),
                body.len(),
                rid.as_str()
            )
            .into_bytes();
            let _ = write_with_deadline(w, snap, &mut client.stream, &mut out).await;
            w.stats.error(if status >= 500 { ErrorKind::BadGateway } else { ErrorKind::BadRequest });
            finish(w, snap, &up.meta, status, 0, started);
            return None;
        }
    };

    let mut out = Vec::with_capacity(256);
    switching_protocols(&up.accept, &id_text, offered_wasp.then_some("wasp"), &mut out);
    if write_with_deadline(w, snap, &mut client.stream, &mut out).await.is_err() {
        return None;
    }
    finish(w, snap, &up.meta, 101, 0, started);

    let (stream, leftover) = client.into_leftover();
    let conn = WsConn::new(id, w.node, w.ws.endpoint_name(ep.name()), peer, &ep.config.limits);
    conn.client_ip.set(up.client_ip);
    conn.set_identity(caller.identity, caller.grace_ms);
    conn.set_token(caller.token);
    conn.set_key(caller.key);
    let conn = Rc::new(conn);
    w.ws.insert(conn.clone());
    for g in &groups {
        w.ws.join(id, g);
    }
    w.stats.ws_open.fetch_add(1, Relaxed);
    w.stats.ws_accepted.fetch_add(1, Relaxed);
    ep.stats.add(w.id, crate::metrics::EndpointStats::OPEN, 1);
    if w.shutdown.is_triggered() {
        conn.request_close(crate::proto::ws::frame::close::GOING_AWAY, "server shutting down");
    }
    Some(Session { stream, leftover, conn, endpoint: ep })
}

/// A handshake answer, cut if the client does not take it within `timeouts.write`.
async fn write_with_deadline(
    w: &Worker,
    snap: &Snapshot,
    stream: &mut monoio::net::TcpStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&*stream);
    let phase = crate::deadline::Phase::ClientWrite;
    w.deadlines.watch().run(fd, phase, snap.gateway.timeouts.write, flush(stream, out)).await
}

/// Who an upgrade was let in as.
#[derive(Default)]
struct Caller {
    identity: Option<Arc<Identity>>,
    /// The HMAC of the API key (checked again before each event).
    key: Option<Box<crate::auth::Digest>>,
    /// How long a client whose token expired may take to send a fresh one.
    grace_ms: u64,
    /// An introspected token (asked about again later).
    token: Option<Box<str>>,
}

/// Whether the client offers the subprotocol `wasp` (browsers that send a
/// token as `wasp.bearer.<token>` offer it too, and need it answered).
fn offers_wasp(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n == "sec-websocket-protocol")
        .flat_map(|(_, v)| v.split(','))
        .any(|p| p.trim() == "wasp")
}

/// Checks the endpoint's `auth` against the upgrade request and takes the
/// credential out of what `$connect` will see (every copy, every `_` alias
/// of its header, its query parameter, a `wasp.bearer.` subprotocol).
/// `Err`: why not, and the `WWW-Authenticate` challenge.
async fn authenticate(snap: &Snapshot, up: &mut WsUpgrade) -> Result<Caller, (Fail, String)> {
    let named = |n: &str, h: &str| {
        n.len() == h.len() && n.bytes().zip(h.bytes()).all(|(x, y)| x == y || x == b'_' && y == b'-')
    };
    match &up.endpoint.config.auth.clone() {
        Auth::None => Ok(Caller::default()),
        Auth::ApiKey(a) => {
            let challenge = crate::filters::api_key::challenge(a);
            let mut key = None;
            if let Some(h) = &a.header {
                key = up.headers.iter().find(|(n, _)| n == h).map(|(_, v)| v.clone());
                up.headers.retain(|(n, _)| !named(n, h));
            }
            if let Some(q) = &a.query {
                let (v, rest) = crate::filters::api_key::take_param(&up.query, q);
                // (The access log leaves it out too: `conn::logged_target`.)
                key = key.or(v.map(str::to_string));
                up.query = rest;
            }
            let Some(key) = key.filter(|k| !k.is_empty()) else {
                count(Method::ApiKey, Err(Fail::Missing));
                return Err((Fail::Missing, challenge));
            };
            let Some(consumer) = crate::auth::lookup(key.as_bytes()) else {
                count(Method::ApiKey, Err(Fail::Invalid));
                return Err((Fail::Invalid, challenge));
            };
            let scopes = snap.gateway.consumers.iter().find(|c| *c.name == *consumer).map_or(&[][..], |c| &c.scopes);
            let id = Identity::consumer(consumer, scopes);
            if id.missing_scope(&a.scopes).is_some() {
                count(Method::ApiKey, Err(Fail::InsufficientScope));
                return Err((Fail::InsufficientScope, crate::filters::api_key::scope_challenge("ApiKey", &a.scopes)));
            }
            count(Method::ApiKey, Ok(()));
            let key = crate::auth::digest(key.as_bytes()).map(Box::new);
            Ok(Caller { identity: Some(Arc::new(id)), key, grace_ms: 0, token: None })
        }
        Auth::Bearer(b) => {
            let method = bearer::method(b);
            let mut token = up
                .headers
                .iter()
                .find(|(n, _)| n == "authorization")
                .and_then(|(_, v)| bearer::from_authorization(v.as_bytes()))
                .map(str::to_string);
            up.headers.retain(|(n, _)| !named(n, "authorization"));
            // A browser's subprotocol token: taken, the other protocols stay.
            let offered = up.headers.iter().filter(|(n, _)| n == "sec-websocket-protocol").map(|(_, v)| v.as_str());
            token = token.or_else(|| bearer::from_subprotocols(offered).map(str::to_string));
            for (n, v) in up.headers.iter_mut().filter(|(n, _)| n == "sec-websocket-protocol") {
                let _ = n;
                *v = v
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.starts_with("wasp.bearer."))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            up.headers.retain(|(n, v)| !(n == "sec-websocket-protocol" && v.is_empty()));
            if let Some(q) = &b.query {
                let (v, rest) = crate::filters::api_key::take_param(&up.query, q);
                token = token.or(v.map(str::to_string));
                up.query = rest;
            }
            let Some(token) = token.filter(|t| !t.is_empty()) else {
                count(method, Err(Fail::Missing));
                return Err((Fail::Missing, "Bearer".into()));
            };
            let id = bearer::verify(b, &token)
                .await
                .inspect_err(|f| count(method, Err(*f)))
                .map_err(|f| (f, "Bearer".into()))?;
            if id.missing_scope(&b.scopes).is_some() {
                count(method, Err(Fail::InsufficientScope));
                return Err((Fail::InsufficientScope, crate::filters::api_key::scope_challenge("Bearer", &b.scopes)));
            }
            count(method, Ok(()));
            let token = (method == Method::Introspection).then(|| token.into_boxed_str());
            Ok(Caller { identity: Some(id), key: None, grace_ms: b.expiry_grace.as_millis() as u64, token })
        }
    }
}
