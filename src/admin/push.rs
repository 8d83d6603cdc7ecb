//! Push API on the admin listener (never on the public one):
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /connections/{id}` | 200 `{"queued":1}`, 404 `{"error":"gone"}`, 413 over `max_message_bytes`, 503 send queue full |
//! | `GET /connections/{id}` | endpoint, remote address, connected at, last active, groups |
//! | `DELETE /connections/{id}?code=&reason=` | close (default 1000) |
//! | `GET /connections?endpoint=&group=&limit=&cursor=` | a page of connections, `next` cursor |
//! | `PUT`/`DELETE /connections/{id}/groups/{group}` | join / leave |
//! | `POST /groups/{group}/messages` | to every member: `{"queued":N}` |
//! | `POST /endpoints/{name}/messages` | to everyone on the endpoint: `{"queued":N}` |
//!
//! A message larger than a target's `max_message_bytes` is refused for that
//! target and nothing else happens to it (no close): `413` when no target
//! could take it, else `"too_large":M` beside the count.

use super::server::{AdminRequest, AdminResponse};
use super::AdminState;
use crate::pipeline::ws::conn::{json_string, ConnId};
use crate::pipeline::ws::push::{Command, Delivered, SendOutcome};
use std::sync::Arc;
use std::time::Duration;

/// How long a worker may take to answer a command.
const WORKER_ANSWER: Duration = Duration::from_secs(5);

fn gone() -> AdminResponse {
    AdminResponse::json(404, r#"{"error":"gone"}"#)
}

fn busy() -> AdminResponse {
    AdminResponse::error(503, "worker_busy", "the owning worker did not answer in time")
}

/// `413`: the message is larger than the endpoint's `max_message_bytes`.
fn too_large(size: usize, limit: usize) -> AdminResponse {
    AdminResponse::error(
        413,
        "message_too_large",
        &format!("the message ({size} bytes) is larger than the endpoint's max_message_bytes ({limit})"),
    )
}

/// Decodes a `%XX`-escaped path segment or query value.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn query_param(q: &str, name: &str) -> Option<String> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| unescape(v)).flatten()
    })
}

async fn ask<T>(state: &AdminState, worker: usize, make: impl FnOnce(flume::Sender<T>) -> Command) -> Option<T> {
    let inbox = state.inboxes.get(worker)?;
    let (tx, rx) = flume::bounded(1);
    // Awaited, never blocking: a stalled worker's full inbox must not stop
    // the admin thread (health probes, metrics) from answering.
    monoio::time::timeout(WORKER_ANSWER, inbox.send_async(make(tx))).await.ok()?.ok()?;
    monoio::time::timeout(WORKER_ANSWER, rx.recv_async()).await.ok()?.ok()
}

pub(crate) async fn ask_all<T>(state: &AdminState, make: impl Fn(flume::Sender<T>) -> Command) -> Option<Vec<T>> {
    let mut rxs = Vec::new();
    for inbox in &state.inboxes {
        let (tx, rx) = flume::bounded(1);
        monoio::time::timeout(WORKER_ANSWER, inbox.send_async(make(tx))).await.ok()?.ok()?;
        rxs.push(rx);
    }
    let mut out = Vec::new();
    for rx in rxs {
        out.push(monoio::time::timeout(WORKER_ANSWER, rx.recv_async()).await.ok()?.ok()?);
    }
    Some(out)
}

/// Answers push-API requests; `None` when the path is not one of them.
pub async fn handle(state: &Arc<AdminState>, req: &AdminRequest) -> Option<AdminResponse> {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = req.method.as_str();
    let node = u16::from(crate::kafka::client().node());
    let conn_id = |s: &str| ConnId::parse(s, node).filter(|id| id.worker() < state.inboxes.len());
    let res = match (m, parts.as_slice()) {
        ("GET", ["connections"]) => list(state, &req.query).await,
        ("POST", ["connections", id]) => {
            let Some(id) = conn_id(id) else { return Some(gone()) };
            let body = Arc::new(req.body.clone());
            match ask(state, id.worker(), |reply| Command::Send { id, body, reply }).await {
                Some(SendOutcome::Queued) => AdminResponse::json(200, r#"{"queued":1}"#),
                Some(SendOutcome::Gone) => gone(),
                Some(SendOutcome::Full) => AdminResponse::error(
                    503,
                    "send_queue_full",
                    "the connection's send queue is full; it is being closed",
                ),
                Some(SendOutcome::TooLarge(limit)) => too_large(req.body.len(), limit),
                None => busy(),
            }
        }
        ("GET", ["connections", id]) => {
            let Some(id) = conn_id(id) else { return Some(gone()) };
            match ask(state, id.worker(), |reply| Command::Info { id, reply }).await {
                Some(Some(info)) => AdminResponse::json(200, info),
                Some(None) => gone(),
                None => busy(),
            }
        }
        ("DELETE", ["connections", id]) => {
            let Some(id) = conn_id(id) else { return Some(gone()) };
            let code = match query_param(&req.query, "code").map(|c| c.parse::<u16>()) {
                None => 1000,
                Some(Ok(c)) if c == 1000 || (3000..=4999).contains(&c) => c,
                Some(_) => return Some(AdminResponse::error(422, "invalid_code", "code must be 1000 or 3000-4999")),
            };
            let reason: String = query_param(&req.query, "reason").unwrap_or_default().chars().take(100).collect();
            match ask(state, id.worker(), |reply| Command::Close { id, code, reason, reply }).await {
                Some(true) => AdminResponse::json(200, r#"{"closing":true}"#),
                Some(false) => gone(),
                None => busy(),
            }
        }
        ("PUT" | "DELETE", ["connections", id, "groups", group]) => {
            let Some(id) = conn_id(id) else { return Some(gone()) };
            let Some(group) = unescape(group).filter(|g| !g.is_empty() && g.len() <= 128) else {
                return Some(AdminResponse::error(422, "invalid_group", "group names have 1 to 128 characters"));
            };
            let join = m == "PUT";
            let r = ask(state, id.worker(), |reply| {
                if join {
                    Command::Join { id, group, reply }
                } else {
                    Command::Leave { id, group, reply }
                }
            })
            .await;
            match r {
                Some(true) => AdminResponse::json(200, r#"{"ok":true}"#),
                Some(false) => gone(),
                None => busy(),
            }
        }
        ("POST", ["groups", group, "messages"]) => {
            let Some(group) = unescape(group) else {
                return Some(AdminResponse::error(422, "invalid_group", "bad escape"));
            };
            let body = Arc::new(req.body.clone());
            broadcast(state, body.len(), |reply| Command::Broadcast {
                group: Some(group.clone()),
                endpoint: None,
                body: body.clone(),
                reply,
            })
            .await
        }
        ("POST", ["endpoints", name, "messages"]) => {
            let limit = match state.snapshot.load().router.endpoints.get(*name) {
                None => return Some(AdminResponse::error(404, "unknown_endpoint", "no such endpoint")),
                Some(ep) => ep.config.limits.max_message_bytes,
            };
            // Refused here without waking a worker. Connections opened
            // before a reload keep their own limit: workers check too.
            if req.body.len() > limit {
                return Some(too_large(req.body.len(), limit));
            }
            let body = Arc::new(req.body.clone());
            let name = name.to_string();
            broadcast(state, body.len(), |reply| Command::Broadcast {
                group: None,
                endpoint: Some(name.clone()),
                body: body.clone(),
                reply,
            })
            .await
        }
        (_, ["connections"]) => AdminResponse::method_not_allowed("GET"),
        (_, ["connections", _]) => AdminResponse::method_not_allowed("GET, POST, DELETE"),
        (_, ["connections", _, "groups", _]) => AdminResponse::method_not_allowed("PUT, DELETE"),
        (_, ["groups", _, "messages"]) | (_, ["endpoints", _, "messages"]) => AdminResponse::method_not_allowed("POST"),
        _ => return None,
    };
    Some(res)
}

async fn broadcast(
    state: &AdminState,
    size: usize,
    make: impl Fn(flume::Sender<Delivered>) -> Command,
) -> AdminResponse {
    let Some(counts) = ask_all(state, make).await else { return busy() };
    let queued: usize = counts.iter().map(|d| d.queued).sum();
    let too_large_for: usize = counts.iter().map(|d| d.too_large).sum();
    if too_large_for == 0 {
        return AdminResponse::json(200, format!(r#"{{"queued":{queued}}}"#));
    }
    if queued == 0 {
        let limit = counts.iter().filter(|d| d.too_large > 0).map(|d| d.limit).min().unwrap_or(0);
        return too_large(size, limit);
    }
    // Members of several endpoints, some of which take messages this large.
    AdminResponse::json(200, format!(r#"{{"queued":{queued},"too_large":{too_large_for}}}"#))
}

async fn list(state: &AdminState, query: &str) -> AdminResponse {
    let endpoint = query_param(query, "endpoint").filter(|e| !e.is_empty());
    let group = query_param(query, "group").filter(|g| !g.is_empty());
    let limit = match query_param(query, "limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => return AdminResponse::error(422, "invalid_limit", "limit is a whole number from 1 to 1000"),
    };
    let after = match query_param(query, "cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match ConnId::parse(&c, u16::from(crate::kafka::client().node())) {
            Some(id) => id.0,
            None => {
                return AdminResponse::error(422, "invalid_cursor", "cursor is a connection id from a previous page")
            }
        },
    };
    // One more than a page from each worker: whether a next page exists is
    // known even when one worker holds them all.
    let pages = ask_all(state, |reply| Command::List {
        endpoint: endpoint.clone(),
        group: group.clone(),
        after,
        limit: limit + 1,
        reply,
    })
    .await;
    let Some(pages) = pages else { return busy() };
    let mut all: Vec<(u64, String)> = pages.into_iter().flatten().collect();
    all.sort_by_key(|(id, _)| *id);
    let more = all.len() > limit;
    all.truncate(limit);
    let next = match (more, all.last()) {
        (true, Some((id, _))) => json_string(&ConnId(*id).display(u16::from(crate::kafka::client().node()))),
        _ => "null".to_string(),
    };
    let items: Vec<&str> = all.iter().map(|(_, j)| j.as_str()).collect();
    AdminResponse::json(200, format!(r#"{{"connections":[{}],"next":{next}}}"#, items.join(",")))
}
