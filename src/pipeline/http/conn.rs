//! One client connection: the request loop and its phases (see `http/mod.rs`).

use crate::error::{error_body, reason, ErrorKind, ProxyError};
use crate::filters::Answer;
use crate::filters::Done;
use crate::io::{flush, BufStream};
use crate::pipeline::ctx::{BusyGuard, Worker};
use crate::pipeline::http::request::{
    prepare_when_due, ClientInfo, Early, HeadScan, Meta, Prepared, RequestBody, Routed, WsUpgrade,
};
use crate::pipeline::http::tunnel::tunnel;
use crate::pipeline::snapshot::Snapshot;
use crate::proto::http1::edits::HeaderEdits;
use crate::proto::http1::itoa;
use crate::targets::{dispatch, Exchange, Failed, Outcome, ResponseHook, ResponseView};
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

#[allow(clippy::large_enum_variant)] // built once per request, never copied around
enum Head {
    Ready(Prepared),
    WebSocket(Box<WsUpgrade>),
    /// The client closed, or stayed silent between requests: close quietly.
    Closed,
    Rejected(Box<crate::pipeline::http::request::Rejected>),
}

/// Serves requests on one accepted connection until it closes.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    w: Rc<Worker>,
    guard: crate::pipeline::ctx::OpenGuard,
) {
    let _ = stream.set_nodelay(true);
    let mut info = ClientInfo::new(peer.ip());
    let mut client = BufStream::new(stream, Vec::with_capacity(8 * 1024));
    // Allocated on first use: a connection that upgrades to WebSocket never
    // needs them, and an idle one should not hold them.
    let mut out = Vec::new();
    let mut upstream_buf = Vec::new();
    let mut first = true;
    loop {
        // Phase: read head; parse, validate, route, rewrite.
        let (head, snap) = read_head(&w, &mut client, &mut info, &mut out, first).await;
        let req = match head {
            Head::Ready(p) => p,
            Head::Closed => return,
            Head::WebSocket(up) => {
                client.consume(up.head_len);
                drop((out, upstream_buf));
                if let Some(session) = crate::pipeline::ws::accept::handshake(&w, &snap, client, peer, *up).await {
                    // The session gets a task of its own, sized for it alone:
                    // this HTTP task (and its state) ends here.
                    crate::pipeline::tasks::spawn_guarded(
                        w.clone(),
                        "websocket",
                        crate::pipeline::ws::session::run(w.clone(), session, guard),
                    );
                }
                return;
            }
            Head::Rejected(r) => {
                let started = Instant::now();
                let stats = r
                    .meta
                    .service
                    .as_deref()
                    .and_then(|s| snap.router.services.get(s))
                    .map(|s| &s.stats)
                    .unwrap_or(&snap.router.unrouted);
                stats.record(w.id, r.error.status(), 0);
                w.stats.error(r.error.kind);
                finish(&w, &snap, &r.meta, r.error.status(), 0, started);
                let keep = r.continue_after.filter(|_| !w.shutdown.is_triggered());
                let sent = r.error.answerable()
                    && answer_error(&w, &mut client.stream, &mut out, &r.error, &r.meta, keep.is_some(), None)
                        .await
                        .is_ok();
                match keep {
                    // A well-formed request for a path we do not route: the
                    // connection is in sync and stays open.
                    Some(n) if sent => {
                        client.consume(n);
                        first = false;
                        continue;
                    }
                    _ if sent => linger_close(client).await,
                    _ => {}
                }
                return;
            }
        };
        first = false;
        let _busy = BusyGuard::new(&w);
        let started = Instant::now();
        client.consume(req.head_len);
        let keep_client = req.keep_alive && !w.shutdown.is_triggered();
        let chain = snap.filters.get(req.service.index);
        let hook = match (chain, req.filtered.as_deref()) {
            (Some(c), Some(f)) => c.response_hook(&f.ctx),
            _ => None,
        };
        let hook: Option<&dyn ResponseHook> = hook.as_ref().map(|h| h as &dyn ResponseHook);

        // Phase: dispatch (and relay), unless a filter ended the request.
        let result = match req.filtered.as_deref().and_then(|f| f.early.as_ref()) {
            None => {
                let mut facts = req.facts();
                // Phase: request body transform (a JSON body, whole).
                let transform = match (chain, req.filtered.as_deref()) {
                    (Some(c), Some(f)) if f.transform_request => c.request_transform(),
                    _ => None,
                };
                let transformed = match transform {
                    None => Ok(()),
                    Some(t) => {
                        facts.body = RequestBody::None;
                        facts.expect_continue = false;
                        super::body::transform_request(
                            &w,
                            &snap,
                            &mut client,
                            req.body,
                            req.expect_continue,
                            t,
                            &mut out,
                        )
                        .await
                    }
                };
                match transformed {
                    Err(e) => Err(Failed::before(e)),
                    Ok(()) => {
                        // Discovered instances: one atomic load, this request keeps them.
                        let discovered = req.service.dynamic.as_ref().map(|l| l.addrs());
                        let mut x = Exchange {
                            env: w.env(),
                            gateway: &snap.gateway,
                            service: &req.service.config,
                            service_name: &req.service.name,
                            instances: discovered.as_deref().map_or(&req.service.config.instances[..], |v| &v[..]),
                            balance: (snap.version, req.service.index),
                            pick: req.pick,
                            health: &req.service.health,
                            req: facts,
                            response_hook: hook,
                            client: &mut client,
                            out: &mut out,
                            upstream_buf: &mut upstream_buf,
                            keep_client,
                        };
                        dispatch(req.service.strategy, &mut x).await
                    }
                }
            }
            Some(Early::Respond(a)) => {
                if !a.delay.is_zero() {
                    monoio::time::sleep(a.delay).await;
                }
                // The client's body (if any) is not read: close after the
                // answer; so does a drain that began during a mock's delay.
                let keep = keep_client && req.body == RequestBody::None && !w.shutdown.is_triggered();
                match answer(&w, &mut client.stream, &mut out, a, &req.meta, keep, hook).await {
                    Ok(()) => Ok(Outcome {
                        status: a.status,
                        bytes: a.body.len() as u64,
                        keep_alive: keep,
                        upgraded: None,
                        linger: req.body != RequestBody::None,
                    }),
                    Err(_) => Err(Failed {
                        error: ProxyError::new(ErrorKind::ClientGone, "client closed the connection"),
                        answered: true,
                        status: a.status,
                    }),
                }
            }
            Some(Early::Reject(e)) => Err(Failed::before(e.clone())),
        };

        // Phase: log and count (the filters' log phase first: `record`).
        if let (Some(c), Some(f)) = (chain, req.filtered.as_deref()) {
            let (status, bytes) = match &result {
                Ok(d) => (d.status, d.bytes),
                Err(e) => (if e.answered { e.status } else { e.error.status() }, 0),
            };
            c.log(&f.ctx, &Done { status, bytes, micros: started.elapsed().as_micros() as u64 });
        }
        match result {
            Ok(done) => {
                req.service.stats.record(w.id, done.status, started.elapsed().as_micros() as u64);
                finish(&w, &snap, &req.meta, done.status, done.bytes, started);
                if let Some(up) = done.upgraded {
                    drop(_busy);
                    let t = &snap.gateway.timeouts;
                    tunnel(&w.deadlines, client, up, t.tunnel_idle, t.write).await;
                    return;
                }
                if done.linger {
                    drop(_busy);
                    linger_close(client).await;
                    return;
                }
                if !done.keep_alive {
                    return;
                }
                // A buffer grown for a large body is not kept by an idle connection.
                client.shrink_to(8 * 1024);
            }
            Err(f) => {
                w.stats.error(f.error.kind);
                let status = if f.answered { f.status } else { f.error.status() };
                req.service.stats.record(w.id, status, started.elapsed().as_micros() as u64);
                if f.answered || !f.error.answerable() {
                    finish(&w, &snap, &req.meta, status, 0, started);
                    return;
                }
                // Keep the connection only when no request body is left unread.
                let keep = keep_client
                    && req.body == RequestBody::None
                    && matches!(
                        f.error.kind,
                        ErrorKind::NoInstance
                            | ErrorKind::UpstreamTimeout
                            | ErrorKind::BadGateway
                            | ErrorKind::Forbidden
                    );
                let ok = answer_error(&w, &mut client.stream, &mut out, &f.error, &req.meta, keep, hook).await.is_ok();
                finish(&w, &snap, &req.meta, status, 0, started);
                if !(keep && ok) {
                    if ok {
                        drop(_busy);
                        linger_close(client).await;
                    }
                    return;
                }
            }
        }
    }
}

/// Reads until a complete head is prepared, the client leaves, or time is up.
///
/// The snapshot is loaded after bytes arrive, not before waiting: a
/// connection parked between requests serves its next request on the
/// configuration current at that moment. One atomic load per read; the
/// request then keeps that one version to its end.
async fn read_head(
    w: &Worker,
    client: &mut BufStream,
    info: &mut ClientInfo,
    out: &mut Vec<u8>,
    first: bool,
) -> (Head, Arc<Snapshot>) {
    let mut snap = w.snapshot.load_full();
    // The head must be complete within `header_read` of its first byte (or
    // of the accept, for a new connection); silence between requests may
    // last `idle`.
    let mut deadline = (first || !client.data().is_empty()).then(|| Instant::now() + snap.gateway.timeouts.header_read);
    // This head's parse resumes where the last read left it (nothing is
    // consumed until the head is done); the next head starts a new one.
    let mut scan = HeadScan::default();
    // Waits for a credential's check (a key set fetch, an introspection
    // call): each is bounded, and a head is prepared again at most this
    // often (the auth module needs two).
    let mut waits = 0;
    loop {
        if !client.data().is_empty() {
            let proxies = &snap.gateway.trusted_proxies;
            info.trusted = !proxies.is_empty() && proxies.iter().any(|n| n.contains(info.peer));
            match prepare_when_due(&mut scan, client.data(), &snap, info, &w.ids, out) {
                Ok(Some(Routed::Http(p))) => return (Head::Ready(p), snap),
                Ok(Some(Routed::WebSocket(u))) => return (Head::WebSocket(u), snap),
                Ok(Some(Routed::Wait(p))) if waits < 3 => {
                    waits += 1;
                    p.wait().await;
                    // The same head again, parsed from the start.
                    scan = HeadScan::default();
                    continue;
                }
                Ok(Some(Routed::Wait(_))) => {
                    let meta = Meta {
                        method: crate::proto::http1::inline::Method::new(b"-"),
                        request_id: w.ids.next(),
                        target: None,
                        service: None,
                    };
                    let error = crate::auth::Fail::Unavailable.error();
                    let r = crate::pipeline::http::request::Rejected { error, meta, continue_after: None };
                    return (Head::Rejected(Box::new(r)), snap);
                }
                Ok(None) => {}
                Err(r) => return (Head::Rejected(r), snap),
            }
        }
        let t = &snap.gateway.timeouts;
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => t.idle,
        };
        // A timed-out read takes the buffer with it, so note first whether a
        // head had started: that decides between a quiet close and a 408.
        let started = !client.data().is_empty();
        match monoio::time::timeout(wait, client.fill()).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (Head::Closed, snap),
            Ok(Ok(_)) => {
                deadline.get_or_insert_with(|| Instant::now() + t.header_read);
                snap = w.snapshot.load_full();
            }
            Err(_) if !started => return (Head::Closed, snap),
            Err(_) => {
                let error = ProxyError::new(ErrorKind::HeaderTimeout, "request head not received in time");
                let meta = Meta {
                    method: crate::proto::http1::inline::Method::new(b"-"),
                    request_id: w.ids.next(),
                    target: None,
                    service: None,
                };
                return (
                    Head::Rejected(Box::new(crate::pipeline::http::request::Rejected {
                        error,
                        meta,
                        continue_after: None,
                    })),
                    snap,
                );
            }
        }
    }
}

/// Closes after an error answer without losing it: a client still sending
/// (a body we refused, a pipelined request) would otherwise get a reset that
/// makes its kernel drop our answer unread. We stop writing, then read and
/// discard for a short while (as nginx's lingering close does).
async fn linger_close(mut client: BufStream) {
    use monoio::io::AsyncWriteRent;
    let _ = client.stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        // Ends when the client pauses (it took the hint), or at the cap.
        let left = deadline.saturating_duration_since(Instant::now()).min(LINGER_IDLE);
        match monoio::time::timeout(left, client.fill()).await {
            Ok(Ok(n)) if n > 0 => {
                drained += n;
                let all = client.data().len();
                client.consume(all);
            }
            _ => return,
        }
    }
}

/// How long, and how much, a lingering close reads before giving up.
///
/// Like nginx's `lingering_time`/`lingering_timeout`: reading stops once the
/// client has been silent for `LINGER_IDLE`, and in any case after `LINGER`
/// or `LINGER_BYTES` (the default `limits.max_body_bytes`). A client that
/// uploads at full speed while the answer (an early `413`) is on its way must
/// be drained to the end of its body, or our close becomes a reset that makes
/// its kernel drop the answer unread; a slow machine may need seconds for it.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Writes a gateway-made error answer with a JSON body. `hook`: the
/// response filters of the routed service (CORS headers on a 403, ...).
pub async fn answer_error(
    w: &Worker,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    err: &ProxyError,
    meta: &Meta,
    keep_alive: bool,
    hook: Option<&dyn ResponseHook>,
) -> std::io::Result<()> {
    let body = error_body(err, meta.service.as_deref(), meta.request_id.as_str());
    let mut edits = HeaderEdits::default();
    if let Some(h) = hook {
        h.response(&ResponseView { status: err.status(), headers: &[] }, &mut edits);
    }
    write_answer(out, err.status(), Some("application/json"), &edits, &body, meta, keep_alive);
    send(w, stream, out).await
}

/// Writes an answer a filter gave (a CORS preflight), through the response
/// filters like any answer.
async fn answer(
    w: &Worker,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    a: &Answer,
    meta: &Meta,
    keep_alive: bool,
    hook: Option<&dyn ResponseHook>,
) -> std::io::Result<()> {
    // A filter's answers are JSON unless it says otherwise (a mock's file).
    let kind = (!a.body.is_empty() && !a.headers.adds("content-type")).then_some("application/json");
    let mut headers = a.headers.clone();
    if let Some(h) = hook {
        let mut edits = HeaderEdits::default();
        h.response(&ResponseView { status: a.status, headers: &[] }, &mut edits);
        headers.merge(&edits);
    }
    write_answer(out, a.status, kind, &headers, &a.body, meta, keep_alive);
    send(w, stream, out).await
}

/// The head and body of an answer the gateway makes itself.
fn write_answer(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    edits: &HeaderEdits,
    body: &[u8],
    meta: &Meta,
    keep_alive: bool,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa(u64::from(status), &mut [0u8; 20]));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(t) = content_type {
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(edits.added());
    // 204 and 304 carry no body and no length.
    if status != 204 && status != 304 {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa(body.len() as u64, &mut [0u8; 20]));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(meta.request_id.as_bytes());
    out.extend_from_slice(if keep_alive { b"\r\n\r\n" as &[u8] } else { b"\r\nconnection: close\r\n\r\n" });
    if meta.method.as_bytes() != b"HEAD" && status != 204 && status != 304 {
        out.extend_from_slice(body);
    }
}

/// Sends `out` to the client within `timeouts.write`.
async fn send(w: &Worker, stream: &mut TcpStream, out: &mut Vec<u8>) -> std::io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&*stream);
    let timeout = w.snapshot.load().gateway.timeouts.write;
    w.deadlines.watch().run(fd, crate::deadline::Phase::ClientWrite, timeout, flush(stream, out)).await
}

/// The target as logged: an API key in the query string of a service or
/// endpoint that takes one there is left out, even from a request refused
/// before its `auth` ran (a bad head, a missing upgrade).
pub(crate) fn logged_target<'a>(snap: &Snapshot, meta: &'a Meta) -> std::borrow::Cow<'a, str> {
    use crate::config::auth::Auth;
    let Some(t) = meta.target.as_deref() else { return "-".into() };
    let Some((base, query)) = t.split_once('?') else { return t.into() };
    let first = base.trim_start_matches('/').split('/').next().unwrap_or_default();
    let name = meta.service.as_deref().unwrap_or(first);
    let auth = match snap.router.service(name) {
        Some(s) => Some(&s.config.auth),
        None => {
            snap.router.endpoints.get(name).or_else(|| snap.router.endpoint_paths.get(base)).map(|e| &e.config.auth)
        }
    };
    match auth.and_then(Auth::query) {
        Some(q) => {
            let (_, rest) = crate::filters::api_key::take_param(query, q);
            if rest.is_empty() {
                base.to_string().into()
            } else {
                format!("{base}?{rest}").into()
            }
        }
        None => t.into(),
    }
}

/// Counts the request and writes its access-log line.
pub(crate) fn finish(w: &Worker, snap: &Snapshot, meta: &Meta, status: u16, bytes: u64, started: Instant) {
    let micros = started.elapsed().as_micros() as u64;
    w.stats.observe_latency(micros);
    if snap.gateway.dev_console {
        super::dev::line(snap, meta, status, micros);
    }
    if snap.gateway.access_log {
        tracing::info!(
            target: "wasp::access",
            method = meta.method.as_str(),
            path = &*logged_target(snap, meta),
            service = meta.service.as_deref().unwrap_or("-"),
            status,
            bytes,
            duration_us = micros,
            request_id = meta.request_id.as_str(),
        );
    }
}
