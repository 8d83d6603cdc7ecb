//! From a validated upgrade request to a running session: `$connect`, the
//! 101 answer, registration in the worker's table, and `$disconnect` at the end.

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
    let mut key_digest = None;
    let consumer = match &ep.config.auth {
        crate::config::auth::Auth::None => None,
        crate::config::auth::Auth::ApiKey(a) => {
            let mut key = None;
            if let Some(h) = &a.header {
                // Every copy and every `_` alias of the header leaves.
                let named = |n: &str| {
                    n.len() == h.len() && n.bytes().zip(h.bytes()).all(|(x, y)| x == y || x == b'_' && y == b'-')
                };
                key = up.headers.iter().find(|(n, _)| n == h).map(|(_, v)| v.clone());
                up.headers.retain(|(n, _)| !named(n));
            }
            if let Some(q) = &a.query {
                let (v, rest) = crate::filters::api_key::take_param(&up.query, q);
                // (The access log leaves it out too: `conn::logged_target`.)
                key = key.or(v.map(str::to_string));
                up.query = rest;
            }
            let key = key.filter(|k| !k.is_empty());
            match key.as_deref().and_then(|k| crate::auth::lookup(k.as_bytes())) {
                Some(c) => {
                    crate::auth::count(crate::auth::Outcome::Ok);
                    key_digest = key.as_deref().and_then(|k| crate::auth::digest(k.as_bytes())).map(Box::new);
                    Some(c)
                }
                None => {
                    crate::auth::count(if key.is_some() {
                        crate::auth::Outcome::Invalid
                    } else {
                        crate::auth::Outcome::Missing
                    });
                    let message = if key.is_some() { "the API key is not valid" } else { "an API key is required" };
                    let body = format!(
                        r#"{{"error":"unauthorized","status":401,"message":"{message}","request_id":"{}"}}"#,
                        rid.as_str()
                    );
                    let mut out = format!(
                        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nwww-authenticate: {}\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n\r\n{body}",
                        crate::filters::api_key::challenge(a),
                        body.len(),
                        rid.as_str()
                    )
                    .into_bytes();
                    let _ = write_with_deadline(w, snap, &mut client.stream, &mut out).await;
                    w.stats.error(ErrorKind::Unauthorized);
                    finish(w, snap, &up.meta, 401, 0, started);
                    return None;
                }
            }
        }
    };

    let headers: Vec<String> =
        up.headers.iter().map(|(n, v)| format!("{}:{}", json_string(n), json_string(v))).collect();
    let consumer_json = consumer.as_deref().map_or("null".to_string(), json_string);
    let connect_body = format!(
        r#"{{"connection_id":"{id_text}","endpoint":{},"path":{},"query":{},"remote_addr":"{peer}","consumer":{consumer_json},"headers":{{{}}}}}"#,
        json_string(ep.name()),
        json_string(&up.path),
        json_string(&up.query),
        headers.join(",")
    );
    let groups = match on_connect(w, &ep, &id_text, rid.as_str(), connect_body.as_bytes(), consumer.as_deref()).await {
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
    switching_protocols(&up.accept, &id_text, &mut out);
    if write_with_deadline(w, snap, &mut client.stream, &mut out).await.is_err() {
        return None;
    }
    finish(w, snap, &up.meta, 101, 0, started);

    let (stream, leftover) = client.into_leftover();
    let mut conn = WsConn::new(id, w.node, w.ws.endpoint_name(ep.name()), peer, &ep.config.limits);
    conn.consumer = consumer;
    conn.key = key_digest;
    let conn = Rc::new(conn);
    w.ws.insert(conn.clone());
    for g in &groups {
        w.ws.join(id, g);
    }
    w.stats.ws_open.fetch_add(1, Relaxed);
    w.stats.ws_accepted.fetch_add(1, Relaxed);
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
