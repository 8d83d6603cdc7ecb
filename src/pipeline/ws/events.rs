//! What happens to one client event: validate, pick a route, ack, forward to
//! the route's backends in parallel, send back the reply or an error event.
//! Also the `$connect`, `$disconnect` and `$error` calls.

use crate::config::Ack;
use crate::error::{ErrorKind, ProxyError};
use crate::metrics::EndpointStats;
use crate::pipeline::ctx::{BusyRc, Worker};
use crate::pipeline::ws::conn::{json_string, WsConn};
use crate::pipeline::ws::inflight::{cleared, cost, strike, Reserved};
use crate::proto::jq::RunError;
use crate::proto::jsonpath::is_valid_json;
use crate::proto::ws::frame::{OP_BINARY, OP_TEXT};
use crate::proto::ws::message::Message;
use crate::router::endpoint::Endpoint;
use crate::router::endpoint::Route;
use crate::targets::{Delivered, EventInfo};
use futures_util::future::join_all;
use std::rc::Rc;
use std::sync::Arc;

/// `{"type":"error","error":CODE,"message":...,"route":...,"request_id":...}`
pub fn error_event(code: &str, message: &str, route: Option<&str>, request_id: &str, status: Option<u16>) -> Vec<u8> {
    let mut s = format!(r#"{{"type":"error","error":{},"message":{}"#, json_string(code), json_string(message));
    if let Some(r) = route {
        s.push_str(&format!(r#","route":{}"#, json_string(r)));
    }
    s.push_str(&format!(r#","request_id":{}"#, json_string(request_id)));
    if let Some(st) = status {
        s.push_str(&format!(r#","status":{st}"#));
    }
    s.push('}');
    s.into_bytes()
}

/// The event's own `id` (a string or a number) as JSON text, if it has one.
fn event_id(event: &[u8]) -> Option<String> {
    let v = sonic_rs::get_from_slice(event, ["id"]).ok()?;
    let raw = v.as_raw_str();
    let ok = raw.starts_with('"') || raw.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.');
    (ok && raw.len() <= 256).then(|| raw.to_string())
}

/// Handles one complete data message of a `routes` endpoint.
pub fn on_event(w: &Rc<Worker>, conn: &Rc<WsConn>, _at_connect: &Arc<Endpoint>, msg: Message) {
    let request_id = w.ids.next();
    let rid = request_id.as_str();
    // The endpoint as of now: a reload applies to the next event.
    let snap = w.snapshot.load();
    let Some(ep) = snap.router.endpoints.get(&*conn.endpoint).cloned() else {
        // Removed by a reload: the worker's sweeper closes the connection
        // (1001) when the drain period ends; until then events are refused.
        let _ = conn.send(
            OP_TEXT,
            &error_event(
                "endpoint_removed",
                "this endpoint was removed; the connection will be closed",
                None,
                rid,
                None,
            ),
        );
        return;
    };
    drop(snap);
    ep.stats.add(w.id, EndpointStats::EVENTS, 1);
    // The key that opened the connection was revoked (or its consumer
    // deleted): nothing more goes through, and the client is told why.
    if conn.key_revoked() {
        let _ = conn.send(
            OP_TEXT,
            &error_event("unauthorized", "the API key of this connection was revoked", None, rid, Some(401)),
        );
        conn.request_close(crate::proto::ws::frame::close::POLICY, "the API key was revoked");
        return;
    }
    // Every event spends the endpoint's budgets, a malformed one too (it
    // would otherwise reach `$error` unlimited).
    if let Some(retry_ns) = throttled(conn, &ep, None) {
        refuse_throttled(conn, None, retry_ns, rid);
        return;
    }
    if !msg.text {
        let _ =
            conn.send(OP_TEXT, &error_event("binary_not_supported", "events are JSON text messages", None, rid, None));
        return;
    }
    if !is_valid_json(&msg.data) {
        let e = error_event("invalid_json", "the event is not a JSON document", None, rid, None);
        let _ = conn.send(OP_TEXT, &e);
        notify_error(w, conn, &ep, e, rid);
        return;
    }
    // A fresh token for the connection (OAuth2 endpoints).
    if is_auth_event(&msg.data) {
        renew(w, conn, &ep, &msg.data, rid);
        return;
    }
    // The endpoint's auth as of now (a reload may have protected it, or
    // changed its method or scopes): a connection that no longer qualifies
    // is told why and closed.
    if let Some(why) = auth_lapsed(conn, &ep) {
        let _ = conn.send(OP_TEXT, &error_event("unauthorized", why, None, rid, Some(401)));
        conn.request_close(crate::proto::ws::frame::close::POLICY, why);
        return;
    }
    // An expired token lets nothing through but a `$auth` (the sweeper has
    // told the client, and closes the connection after the grace period).
    if conn.expired(crate::pipeline::ws::conn::now_ms()) {
        let e = error_event(
            "token_expired",
            "the connection's token has expired: send a $auth event",
            None,
            rid,
            Some(401),
        );
        let _ = conn.send(OP_TEXT, &e);
        return;
    }
    let Some(route) = ep.select(&msg.data) else {
        let e = error_event(
            "no_route",
            "no route matches the event and the endpoint has no $default route",
            None,
            rid,
            None,
        );
        let _ = conn.send(OP_TEXT, &e);
        notify_error(w, conn, &ep, e, rid);
        return;
    };
    if let Some(missing) = route_scope_missing(conn, &route.scopes) {
        let e = format!("the connection's credential lacks the scope {missing:?} this route requires");
        let _ = conn.send(OP_TEXT, &error_event("insufficient_scope", &e, Some(&route.key), rid, Some(403)));
        return;
    }
    if let Some(retry_ns) = throttled(conn, &ep, Some(route)) {
        refuse_throttled(conn, Some(&route.key), retry_ns, rid);
        return;
    }
    conn.throttle_streak.set(0);
    if route.ack == Ack::Routed || route.ack == Ack::Delivered && route.targets.is_empty() {
        send_ack(conn, route, &msg.data, rid);
    }
    if route.targets.is_empty() {
        return;
    }
    let bytes = cost(msg.data.len(), route.targets.len());
    let Some(reserved) = Reserved::try_new(conn, bytes, ep.config.limits.max_inflight_bytes) else {
        let _ = conn.send(
            OP_TEXT,
            &error_event(
                "too_many_inflight",
                "this connection has too much in flight (max_inflight_bytes); send again later",
                Some(&route.key),
                rid,
                None,
            ),
        );
        strike(conn);
        return;
    };
    let (w, conn, rid) = (w.clone(), conn.clone(), rid.to_string());
    let route_key = route.key.clone();
    crate::pipeline::tasks::spawn_guarded(w.clone(), "websocket event", async move {
        // Guards: given back however the task ends, a caught panic included.
        let _busy = BusyRc::new(&w);
        let _reserved = reserved;
        if crate::pipeline::ws::session::injected_fault(&msg.data, b"\"__wasp_fault/event\"") {
            panic!("injected fault: websocket event task (WASP_DEBUG_FAULTS)");
        }
        if crate::pipeline::ws::session::injected_fault(&msg.data, b"\"__wasp_fault/kafka_fatal\"") {
            w.kafka.inject_fatal();
        }
        if !still_active(&conn, &ep, &rid).await {
            return;
        }
        if let Some(route) = ep.route(&route_key) {
            forward(&w, &conn, &ep, route, &msg.data, &rid).await;
        }
    });
}

/// Why a connection no longer meets its endpoint's `auth`, if it does not.
fn auth_lapsed(conn: &WsConn, ep: &Endpoint) -> Option<&'static str> {
    use crate::auth::Method;
    use crate::config::auth::Auth;
    let method = match &ep.config.auth {
        Auth::None => return None,
        Auth::ApiKey(_) => Method::ApiKey,
        Auth::Bearer(b) => crate::auth::bearer::method(b),
    };
    match conn.identity() {
        None => Some("this endpoint now requires a credential"),
        Some(id) if id.method != method => Some("this endpoint now requires another kind of credential"),
        Some(id) if id.missing_scope(ep.config.auth.scopes()).is_some() => {
            Some("the connection's credential lacks a scope this endpoint now requires")
        }
        Some(_) => None,
    }
}

/// An introspected token is asked about again once its answer is no longer
/// remembered: inactive (revoked) now closes the connection (1008).
async fn still_active(conn: &Rc<WsConn>, ep: &Endpoint, rid: &str) -> bool {
    let crate::config::auth::Auth::Bearer(b) = &ep.config.auth else { return true };
    let Some(token) = conn.token() else { return true };
    match crate::auth::bearer::verify(b, &token).await {
        Ok(_) => true,
        // Not known now: the event is refused, the connection stays.
        Err(crate::auth::Fail::Unavailable) => {
            let m = crate::auth::Fail::Unavailable.message();
            let _ = conn.send(OP_TEXT, &error_event("auth_unavailable", m, None, rid, Some(503)));
            false
        }
        Err(f) => {
            let _ = conn.send(OP_TEXT, &error_event("unauthorized", f.message(), None, rid, Some(401)));
            conn.request_close(crate::proto::ws::frame::close::POLICY, "the token is no longer valid");
            false
        }
    }
}

/// `{"type":"ack","route":KEY,"id":ID}`: the event's own `id`, else the request id.
fn send_ack(conn: &WsConn, route: &Route, event: &[u8], rid: &str) {
    let id = event_id(event).unwrap_or_else(|| json_string(rid));
    let ack = format!(r#"{{"type":"ack","route":{},"id":{id}}}"#, json_string(&route.key));
    let _ = conn.send(OP_TEXT, ack.as_bytes());
}

/// Counts what the calls' results say about flooding: a call refused at the
/// backend's connection cap is a strike, work done otherwise clears them.
fn tally(conn: &WsConn, results: &[Result<Delivered, ProxyError>]) {
    if results.iter().any(|r| matches!(r, Err(e) if e.kind == ErrorKind::Overloaded)) {
        strike(conn);
    } else {
        cleared(conn);
    }
}

/// Sends the event to every backend of the route at once.
async fn forward(w: &Rc<Worker>, conn: &Rc<WsConn>, ep: &Arc<Endpoint>, route: &Route, event: &[u8], rid: &str) {
    let conn_id = conn.id.display(w.node);
    let max = ep.config.limits.max_message_bytes;
    // The route's transformation of the event, then its headers (both from
    // the event as the client sent it).
    let body: std::borrow::Cow<'_, [u8]> = match &route.request_program {
        None => event.into(),
        Some(p) => match p.run(event, max) {
            Ok(b) => b.into(),
            Err(e) => return transform_failed(w, conn, ep, route, &e, rid),
        },
    };
    let headers = event_headers(route, event);
    let identity = conn.identity();
    let info = EventInfo {
        event,
        headers: &headers,
        connection_id: &conn_id,
        endpoint: ep.name(),
        route: &route.key,
        request_id: rid,
        identity: identity.as_deref(),
    };
    let calls = route.targets.iter().map(|t| t.deliver(w.env(), &info, &body, route.timeout));
    let results: Vec<Result<Delivered, ProxyError>> = join_all(calls).await;
    tally(conn, &results);
    if route.reply {
        if let Some(Ok(a)) = results.first() {
            if (200..300).contains(&a.status) && !a.body.is_empty() {
                let reply: std::borrow::Cow<'_, [u8]> = match &route.reply_program {
                    None => (&a.body[..]).into(),
                    Some(p) => match p.run(&a.body, max) {
                        Ok(b) => b.into(),
                        Err(e) => return transform_failed(w, conn, ep, route, &e, rid),
                    },
                };
                let op = if std::str::from_utf8(&reply).is_ok() { OP_TEXT } else { OP_BINARY };
                if conn.send(op, &reply).is_ok() {
                    ep.stats.add(w.id, EndpointStats::MESSAGES, 1);
                }
            }
        }
    }
    for (r, _) in results.iter().zip(&route.targets).filter(|(_, t)| t.is_kafka()) {
        let ok = matches!(r, Ok(a) if (200..300).contains(&a.status));
        ep.stats.add(w.id, if ok { EndpointStats::KAFKA_OK } else { EndpointStats::KAFKA_FAILED }, 1);
    }
    let failed = results.iter().zip(&route.targets).find_map(|(r, t)| match r {
        Ok(a) if (200..300).contains(&a.status) => None,
        Ok(a) => Some((a.status, false, format!("{} answered {}", t.name(), a.status))),
        Err(e) => Some((e.status(), t.is_kafka(), format!("{}: {}", t.name(), e.message))),
    });
    match failed {
        // Every target confirmed: now the sender may count on it.
        None if route.ack == Ack::Delivered => send_ack(conn, route, event, rid),
        None => {}
        Some((status, kafka, message)) => {
            ep.stats.add(w.id, EndpointStats::FAILURES, 1);
            // Under `ack = "delivered"` any failure means "not delivered";
            // otherwise a Kafka target that did not take the event does.
            let code = if kafka || route.ack == Ack::Delivered { "delivery_failed" } else { "integration_failed" };
            let mut e = error_event(code, &message, Some(&route.key), rid, Some(status));
            // The event's own `id`, as in its ack: the client knows which
            // event this is about without keeping request ids.
            if let Some(id) = event_id(event) {
                e.pop();
                e.extend_from_slice(format!(r#","id":{id}}}"#).as_bytes());
            }
            let _ = conn.send(OP_TEXT, &e);
            notify_error(w, conn, ep, e, rid);
        }
    }
}

/// A route's transformation failed: the client gets an error event naming
/// the route (and `$error` hears of it), never a crash.
fn transform_failed(w: &Rc<Worker>, conn: &Rc<WsConn>, ep: &Arc<Endpoint>, route: &Route, e: &RunError, rid: &str) {
    let ev = error_event("transform_failed", &e.message(), Some(&route.key), rid, None);
    let _ = conn.send(OP_TEXT, &ev);
    notify_error(w, conn, ep, ev, rid);
}

/// The route's `headers`, valued from the event: a string (its text) or a
/// number or boolean (as written), of visible ASCII; other values, and
/// values that could not be a header, leave the header out.
fn event_headers(route: &Route, event: &[u8]) -> Vec<(String, String)> {
    route
        .headers
        .iter()
        .filter_map(|(name, path)| {
            let v = path.get(event)?;
            let raw = v.as_raw_str();
            let text = if raw.starts_with('"') {
                path.get_str(event)?
            } else if raw.bytes().all(|b| b.is_ascii_digit() || b"-+.eE".contains(&b))
                || raw == "true"
                || raw == "false"
            {
                raw.to_string()
            } else {
                return None;
            };
            let ok = text.len() <= 1024 && text.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
            ok.then(|| (name.clone(), text.trim().to_string()))
        })
        .collect()
}

/// Tells the `$error` route (when configured) about a failed event. The
/// call shares the connection's in-flight bound: with no room it is skipped
/// (the client already has its error event) and counts as a strike.
fn notify_error(w: &Rc<Worker>, conn: &Rc<WsConn>, ep: &Arc<Endpoint>, error: Vec<u8>, rid: &str) {
    let Some(route) = ep.route("$error").filter(|r| !r.targets.is_empty()) else {
        return;
    };
    let bytes = cost(error.len(), route.targets.len());
    let Some(reserved) = Reserved::try_new(conn, bytes, ep.config.limits.max_inflight_bytes) else {
        tracing::debug!(endpoint = ep.name(), "$error call skipped: the connection has too much in flight");
        strike(conn);
        return;
    };
    let (ep, conn, rid) = (ep.clone(), conn.clone(), rid.to_string());
    let w = w.clone();
    crate::pipeline::tasks::spawn_guarded(w.clone(), "websocket $error", async move {
        let _busy = BusyRc::new(&w);
        let _reserved = reserved;
        let Some(route) = ep.route("$error") else { return };
        let conn_id = conn.id.display(w.node);
        let identity = conn.identity();
        let info = EventInfo {
            event: &error,
            headers: &[],
            connection_id: &conn_id,
            endpoint: ep.name(),
            route: "$error",
            request_id: &rid,
            identity: identity.as_deref(),
        };
        let calls = route.targets.iter().map(|t| t.deliver(w.env(), &info, &error, route.timeout));
        let results = join_all(calls).await;
        tally(&conn, &results);
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            // At the backend's connection cap the refusal is the design
            // working, counted as a strike: not worth a line per event.
            if e.kind == ErrorKind::Overloaded {
                tracing::debug!(endpoint = ep.name(), error = %e, "$error integration refused");
            } else {
                tracing::warn!(endpoint = ep.name(), error = %e, "$error integration failed");
            }
        }
    });
}

/// Calls `$connect`: every backend must answer 2xx. Returns the groups to
/// join, or the status that refuses the handshake.
pub async fn on_connect(
    w: &Worker,
    ep: &Endpoint,
    conn_id: &str,
    rid: &str,
    body: &[u8],
    identity: Option<&crate::auth::Identity>,
) -> Result<Vec<String>, (u16, String)> {
    let Some(route) = ep.route("$connect").filter(|r| !r.targets.is_empty()) else {
        return Ok(Vec::new());
    };
    let info = EventInfo {
        event: body,
        headers: &[],
        connection_id: conn_id,
        endpoint: ep.name(),
        route: "$connect",
        request_id: rid,
        identity,
    };
    let results = join_all(route.targets.iter().map(|t| t.deliver(w.env(), &info, body, route.timeout))).await;
    let mut groups = Vec::new();
    for r in results {
        match r {
            Ok(a) if (200..300).contains(&a.status) => {
                for g in a.groups.iter().flat_map(|g| g.split(',')) {
                    let g = g.trim();
                    if !g.is_empty() && g.len() <= 128 {
                        groups.push(g.to_string());
                    }
                }
            }
            Ok(a) => return Err((a.status.clamp(400, 599), String::from_utf8_lossy(&a.body).into_owned())),
            Err(e) => return Err((e.status(), e.message.to_string())),
        }
    }
    Ok(groups)
}

/// Calls `$disconnect` in the background. It is never refused (one per
/// connection), but shares the connection's in-flight bound: it waits for
/// room behind the connection's events still in flight.
pub fn on_disconnect(w: &Rc<Worker>, conn: Rc<WsConn>, ep: Arc<Endpoint>, code: u16, reason: String) {
    if ep.route("$disconnect").is_none_or(|r| r.targets.is_empty()) {
        return;
    }
    let w = w.clone();
    crate::pipeline::tasks::spawn_guarded(w.clone(), "websocket $disconnect", async move {
        let _busy = BusyRc::new(&w);
        let Some(route) = ep.route("$disconnect") else { return };
        let rid = w.ids.next();
        let conn_id = conn.id.display(w.node);
        let body = format!(
            r#"{{"connection_id":"{conn_id}","endpoint":{},"close_code":{code},"reason":{}}}"#,
            json_string(ep.name()),
            json_string(&reason)
        );
        let bytes = cost(body.len(), route.targets.len());
        let _reserved = Reserved::wait(&conn, bytes, ep.config.limits.max_inflight_bytes).await;
        let identity = conn.identity();
        let info = EventInfo {
            event: body.as_bytes(),
            headers: &[],
            connection_id: &conn_id,
            endpoint: ep.name(),
            route: "$disconnect",
            request_id: rid.as_str(),
            identity: identity.as_deref(),
        };
        for r in join_all(route.targets.iter().map(|t| t.deliver(w.env(), &info, body.as_bytes(), route.timeout))).await
        {
            if let Err(e) = r {
                tracing::warn!(endpoint = ep.name(), error = %e, "$disconnect integration failed");
            }
        }
    });
}

/// The first of a route's scopes the connection's credential lacks.
fn route_scope_missing<'a>(conn: &WsConn, scopes: &'a [String]) -> Option<&'a str> {
    if scopes.is_empty() {
        return None;
    }
    match conn.identity() {
        Some(id) => id.missing_scope(scopes),
        None => scopes.first().map(String::as_str),
    }
}

/// `{"action":"$auth", ...}`: whatever the endpoint's route selection.
fn is_auth_event(event: &[u8]) -> bool {
    sonic_rs::get_from_slice(event, ["action"]).is_ok_and(|v| v.as_raw_str() == "\"$auth\"")
}

/// `{"action":"$auth","token":…}`: a fresh token for the same subject
/// replaces the connection's (and its expiry); anything else leaves the
/// connection as it was, with an error event saying why.
fn renew(w: &Rc<Worker>, conn: &Rc<WsConn>, ep: &Arc<Endpoint>, event: &[u8], rid: &str) {
    use crate::config::auth::Auth;
    let Auth::Bearer(b) = &ep.config.auth else {
        let m = "this endpoint does not use OAuth2 tokens";
        let _ = conn.send(OP_TEXT, &error_event("auth_failed", m, None, rid, Some(400)));
        return;
    };
    let token = sonic_rs::get_from_slice(event, ["token"]).ok().and_then(|v| {
        let raw = v.as_raw_str();
        // A token is base64url and dots: no escapes to undo.
        (raw.len() > 2 && raw.starts_with('"') && raw.ends_with('"') && !raw.contains('\\'))
            .then(|| raw[1..raw.len() - 1].to_string())
    });
    let Some(token) = token else {
        let _ = conn.send(
            OP_TEXT,
            &error_event("auth_failed", "a $auth event carries \"token\": a string", None, rid, Some(400)),
        );
        return;
    };
    // Counted in flight like an event: a flood of `$auth` is refused, not
    // queued.
    let Some(reserved) = Reserved::try_new(conn, cost(token.len(), 1), ep.config.limits.max_inflight_bytes) else {
        let m = "this connection has too much in flight (max_inflight_bytes); send again later";
        let _ = conn.send(OP_TEXT, &error_event("too_many_inflight", m, None, rid, None));
        strike(conn);
        return;
    };
    let (w, conn, b, rid) = (w.clone(), conn.clone(), b.clone(), rid.to_string());
    crate::pipeline::tasks::spawn_guarded(w.clone(), "websocket $auth", async move {
        let _busy = BusyRc::new(&w);
        let _reserved = reserved;
        let method = crate::auth::bearer::method(&b);
        let checked = crate::auth::bearer::verify(&b, &token).await.and_then(|id| {
            let old = conn.identity();
            let same = old.as_ref().is_none_or(|o| o.subject.is_some() && o.subject == id.subject);
            if !same {
                return Err(crate::auth::Fail::Invalid);
            }
            match id.missing_scope(&b.scopes) {
                Some(_) => Err(crate::auth::Fail::InsufficientScope),
                None => Ok(id),
            }
        });
        match checked {
            Ok(id) => {
                crate::auth::count(method, Ok(()));
                let exp = id.exp.map_or("null".to_string(), |e| e.to_string());
                conn.set_identity(Some(id), b.expiry_grace.as_millis() as u64);
                if method == crate::auth::Method::Introspection {
                    conn.set_token(Some(token.into_boxed_str()));
                }
                let ack = format!(r#"{{"type":"auth","expires_at":{exp},"request_id":{}}}"#, json_string(&rid));
                let _ = conn.send(OP_TEXT, ack.as_bytes());
            }
            Err(f) => {
                crate::auth::count(method, Err(f));
                let m = if f == crate::auth::Fail::Invalid { "the token is for another subject" } else { f.message() };
                let _ = conn.send(OP_TEXT, &error_event("auth_failed", m, None, &rid, Some(f.error().status())));
            }
        }
    });
}

/// Events refused in a row by a rate limit after which the connection is
/// closed (`1008`): a client this far over its limit ignores the
/// `throttled` events it gets.
pub const THROTTLE_CLOSE: u16 = 20;

/// Spends the event's budgets (endpoint rules, the route's, the consumer's
/// own); `Some(ns to wait)` when one refuses.
fn throttled(conn: &WsConn, ep: &Endpoint, route: Option<&Route>) -> Option<u64> {
    let route_limits = route.map_or(&[][..], |r| &r.limits[..]);
    if ep.limits.is_empty() && route_limits.is_empty() && ep.consumer_limits.is_empty() {
        return None;
    }
    let now = crate::limits::now_ns();
    let id = conn.identity();
    // Without a route: the endpoint's and the consumer's budgets (every
    // event, a malformed one too); with one: the route's.
    let consumer = id.as_ref().and_then(|i| i.consumer.as_deref()).and_then(|c| ep.consumer_limits.get(c));
    let (first, rest) = match route {
        None => (consumer, &ep.limits[..]),
        Some(_) => (None, route_limits),
    };
    let keyed = first.into_iter().chain(rest).map(|l| {
        (&**l, crate::filters::rate_limit::key_of(l.rule.per, id.as_deref(), conn.client_ip.get(), conn.id.0))
    });
    match crate::limits::check(keyed, now) {
        Some((v, _)) if !v.allowed => Some(v.retry_ns),
        _ => None,
    }
}

/// Tells the client it is throttled; closes it when it keeps at it.
fn refuse_throttled(conn: &WsConn, route: Option<&str>, retry_ns: u64, rid: &str) {
    let retry_ms = retry_ns.div_ceil(1_000_000).max(1);
    let route = route.map_or("null".to_string(), json_string);
    let e = format!(
        r#"{{"type":"error","error":"throttled","message":"over the rate limit; send again after retry_after_ms","route":{route},"retry_after_ms":{retry_ms},"request_id":{}}}"#,
        json_string(rid)
    );
    let _ = conn.send(OP_TEXT, e.as_bytes());
    let streak = conn.throttle_streak.get().saturating_add(1);
    conn.throttle_streak.set(streak);
    if streak > THROTTLE_CLOSE {
        conn.request_close(crate::proto::ws::frame::close::POLICY, "far over the rate limit");
    }
}
