//! The request phases that run on bytes already read, synchronously:
//!
//! 1. **read head**: [`request_head::parse`] — the head, in place;
//! 2. **framing**: [`RequestHead::framing`] — one meaning, or `400`;
//! 3. **route**: normalise the path, [`Router::route`](crate::router::Router::route);
//! 4. **request filters**: the service's [`Chain`](crate::filters::Chain);
//! 5. **upstream head**: [`forward::write_upstream_head`], after the filters.
//!
//! Benchmarked on its own (`benches/hot_path.rs`). The output is the head
//! the upstream will receive, written into `out`, and a [`Prepared`]
//! summary of what the rest of the exchange needs to know.

use super::forward::{connect_header, write_upstream_head, Upstream};
use crate::config::resilience::{Balance, HashKey};
use crate::config::{IpNet, Underscores};
use crate::error::{ErrorKind, ProxyError};
use crate::filters::{self, Answer, Ctx, Flow, Side};
use crate::pipeline::snapshot::{Service, Snapshot};
use crate::proto::http1::edits::HeaderEdits;
use crate::proto::http1::headers::{list_items, trim};
use crate::proto::http1::inline::{acceptable_request_id, IdGen, Method, RequestId};
use crate::proto::http1::path::route_target;
use crate::proto::http1::request_head::{self, RequestHead, RequestLimits};
use crate::proto::jq::transformable;
use crate::router::Route;
use crate::upstream::Pick;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

pub use crate::proto::http1::head_scan::{HeadScan, ScanLimits};
pub use crate::proto::http1::RequestBody;

/// Per-connection facts the phases need.
pub struct ClientInfo {
    pub peer: IpAddr,
    /// The peer address as text, computed once per connection.
    pub peer_ip: String,
    /// Whether the peer is a trusted proxy whose X-Forwarded-* we extend.
    pub trusted: bool,
    /// This connection, unique in the process (`per = "connection"` limits).
    pub conn: u64,
}

impl ClientInfo {
    pub fn new(peer: IpAddr) -> Self {
        // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d:
        // it is the IPv4 address everywhere (trusted proxies, filters, logs).
        let peer = peer.to_canonical();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let conn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ClientInfo { peer, peer_ip: peer.to_string(), trusted: false, conn }
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy;
    /// then the right-most `X-Forwarded-For` entry that is not itself a
    /// trusted proxy (the first hop no trusted party vouches for). An entry
    /// that is not an address (`unknown`, garbage) makes the client unknown:
    /// `None`, never the proxy's own address.
    pub fn client_ip(&self, head: &RequestHead<'_>, proxies: &[IpNet]) -> Option<IpAddr> {
        if !self.trusted {
            return Some(self.peer);
        }
        let mut ip = self.peer;
        let fields = head.headers.iter().rev().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"));
        for field in fields {
            let items: Vec<&[u8]> = list_items(trim(field.value)).collect();
            for item in items.into_iter().rev() {
                ip = forwarded_ip(item)?.to_canonical();
                if !proxies.iter().any(|n| n.contains(ip)) {
                    return Some(ip);
                }
            }
        }
        Some(ip)
    }
}

/// One `X-Forwarded-For` entry: `a.b.c.d`, `a.b.c.d:port`, an IPv6 address,
/// or `[v6]:port`.
fn forwarded_ip(item: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(item).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'))?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// What the exchange needs from a validated, routed request.
pub struct Prepared {
    /// Bytes of the client buffer the head took.
    pub head_len: usize,
    pub service: Arc<Service>,
    pub body: RequestBody,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    pub is_head: bool,
    pub http10: bool,
    pub meta: Meta,
    /// What the service's filters made of the request; `None` when it has
    /// none (boxed: the common unfiltered request stays small to move).
    pub filtered: Option<Box<Filtered>>,
    /// How the service's instance is chosen (a hash key already worked out).
    pub pick: crate::upstream::Pick,
}

/// The request filters' outcome.
pub struct Filtered {
    /// Their per-request state, for the response phase.
    pub ctx: Ctx,
    /// A filter answered or refused: the service is not called.
    pub early: Option<Early>,
    /// The JSON body goes through a `transform` program before dispatch:
    /// the upstream head in `out` ends without its framing and empty line.
    pub transform_request: bool,
}

impl Prepared {
    /// What a target needs to know of the request.
    pub fn facts(&self) -> crate::targets::RequestFacts<'_> {
        crate::targets::RequestFacts {
            method: &self.meta.method,
            request_id: &self.meta.request_id,
            body: self.body,
            expect_continue: self.expect_continue,
            upgrade: self.upgrade,
            is_head: self.is_head,
            http10: self.http10,
        }
    }
}

/// A request a filter ended before dispatch.
pub enum Early {
    Respond(Answer),
    Reject(ProxyError),
}

/// Identity of a request for logs and error bodies.
#[derive(Debug, Clone)]
pub struct Meta {
    pub method: Method,
    pub request_id: RequestId,
    /// The raw target, kept only when the access log is on.
    pub target: Option<String>,
    /// The routed service name, when routing got that far.
    pub service: Option<Arc<str>>,
}

/// A request for a WebSocket endpoint, handshake validated.
pub struct WsUpgrade {
    pub head_len: usize,
    pub endpoint: Arc<crate::router::endpoint::Endpoint>,
    /// `Sec-WebSocket-Accept` for the 101.
    pub accept: String,
    pub path: String,
    pub query: String,
    /// The client's headers (hop-by-hop and protected ones removed), for `$connect`.
    pub headers: Vec<(String, String)>,
    pub meta: Meta,
    /// The client's address through `server.trusted_proxies` (`per = "ip"`).
    pub client_ip: Option<IpAddr>,
}

/// Where a prepared request goes.
pub enum Routed {
    Http(Prepared),
    WebSocket(Box<WsUpgrade>),
    /// Wait for this, then prepare the same head again (a credential that
    /// needs the network to be checked; see `crate::auth::bearer`).
    Wait(crate::auth::bearer::Pending),
}

/// A request refused before any upstream saw it.
pub struct Rejected {
    pub error: ProxyError,
    pub meta: Meta,
    /// The head's length when the connection can go on after the answer
    /// (a complete, bodiless, keep-alive request): otherwise it is closed.
    pub continue_after: Option<usize>,
}

fn limits_of(snap: &Snapshot) -> RequestLimits {
    let l = &snap.gateway.limits;
    RequestLimits {
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_uri_bytes: l.max_uri_bytes,
        max_body_bytes: l.max_body_bytes,
    }
}

/// Runs the phases on the head in `buf`. `Ok(None)`: not complete yet.
pub fn prepare(
    buf: &[u8],
    snap: &Snapshot,
    client: &ClientInfo,
    ids: &IdGen,
    out: &mut Vec<u8>,
) -> Result<Option<Routed>, Box<Rejected>> {
    // Phase: read head.
    let limits = limits_of(snap);
    let mut storage = request_head::storage();
    let head = match request_head::parse(buf, &mut storage, &limits) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(r) => {
            let meta = Meta {
                method: Method::new(r.method.unwrap_or("-").as_bytes()),
                request_id: ids.next(),
                target: None,
                service: None,
            };
            return Err(Box::new(Rejected { error: r.error, meta, continue_after: None }));
        }
    };
    let request_id = match head.seen.request_id {
        Some(v) if acceptable_request_id(v) => RequestId::new(v),
        _ => ids.next(),
    };
    let mut meta = Meta {
        method: Method::new(head.method.as_bytes()),
        request_id,
        target: (snap.gateway.access_log || snap.gateway.dev_console)
            .then(|| String::from_utf8_lossy(head.target).into_owned()),
        service: None,
    };
    macro_rules! fail {
        ($err:expr) => {
            return Err(Box::new(Rejected { error: $err, meta, continue_after: None }))
        };
    }

    // Phase: framing.
    let framing = match head.framing() {
        Ok(f) => f,
        Err(e) => fail!(e),
    };
    if head.seen.underscored && snap.gateway.underscores == Underscores::Reject {
        fail!(ProxyError::bad_request("a header name contains '_' (refused by headers.underscores = \"reject\")"));
    }

    // Phase: route (normalise the path, then look the service up).
    let routed = match route_target(head.target, snap.gateway.encoded_slash) {
        Ok(r) => r,
        Err(e) => fail!(ProxyError::bad_request(e.message())),
    };
    let (path, query) = (routed.path(), routed.query());
    let service = match snap.router.route(&routed.service, path) {
        Route::Http(s) => s,
        Route::Ws(ep) => {
            meta.service = Some(Arc::from(ep.name()));
            if !framing.websocket {
                fail!(ProxyError::new(ErrorKind::UpgradeRequired, "this path accepts only WebSocket upgrades"));
            }
            if head.seen.ws_version != Some(b"13") {
                fail!(ProxyError::bad_request("Sec-WebSocket-Version must be 13"));
            }
            let key = match head.seen.ws_key {
                Some(k) if crate::proto::ws::handshake::valid_key(k) => k,
                _ => fail!(ProxyError::bad_request("Sec-WebSocket-Key must be the base64 of 16 bytes")),
            };
            let headers = head
                .headers
                .iter()
                .filter(|h| connect_header(h.name.as_bytes(), snap, head.seen.underscored))
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(trim(h.value)).into_owned()))
                .collect();
            let full =
                if path == "/" { format!("/{}", routed.service) } else { format!("/{}{}", routed.service, path) };
            return Ok(Some(Routed::WebSocket(Box::new(WsUpgrade {
                head_len: head.len,
                endpoint: ep.clone(),
                accept: crate::proto::ws::handshake::accept_key(key),
                path: full,
                query: query.unwrap_or("").to_string(),
                headers,
                meta,
                client_ip: client.client_ip(&head, &snap.gateway.trusted_proxies),
            }))));
        }
        Route::None => {
            if !routed.service.is_empty() && routed.service.len() <= 64 {
                meta.service = Some(Arc::from(routed.service.as_str()));
            }
            // A well-formed request for a path we do not route leaves the
            // connection in sync when nothing follows its head.
            let keep = framing.body == RequestBody::None && !framing.upgrade && framing.keep_alive;
            let error = ProxyError::new(ErrorKind::UnknownService, "no service is routed at this path");
            return Err(Box::new(Rejected { error, meta, continue_after: keep.then_some(head.len) }));
        }
    };
    // What filters see besides the head: the body bytes that came with it.
    let body_prefix = match framing.body {
        RequestBody::None => &[][..],
        RequestBody::Length(n) => &buf[head.len..buf.len().min(head.len.saturating_add(n.min(1 << 30) as usize))],
        // Chunk framing is not the body, and the buffer may already hold a
        // pipelined request: nothing is shown of a chunked body.
        RequestBody::Chunked => &[][..],
    };
    // A service's filters, when it has any.
    let chain_of = |s: &Service| snap.filters.get(s.index).filter(|c| !c.is_empty());
    let first = chain_of(service);
    // Worked out only for a service with filters (walking X-Forwarded-For);
    // a routed request started at one, so it has it.
    let client_ip = if first.is_some() { client.client_ip(&head, &snap.gateway.trusted_proxies) } else { None };
    let q = query.unwrap_or("");

    // Phase: routing filters (`route`, `split`). Apply refuses cycles, so
    // this ends; the bound is one hop per service anyway.
    let mut service = service;
    // What an `auth` filter of a service left behind said (its consumer,
    // the key taken out): the request goes on with it.
    let mut carried: Option<Ctx> = None;
    if first.is_some_and(|c| c.routes()) {
        for _ in 0..snap.router.services.len() {
            let Some(chain) = chain_of(service) else { break };
            let view = filter_view(&head, &service.name, path, q, body_prefix, client_ip, client.conn);
            let Some(next) = chain.route(&view).and_then(|to| snap.router.service(to)) else {
                break;
            };
            // Leaving a service that wants a credential: checked here, as
            // its own request filters would. Without one the request stays
            // there, and its filters refuse it (with their challenge).
            if let Some(auth) = chain.auth() {
                if let Some(p) = auth.prepare(&view) {
                    return Ok(Some(Routed::Wait(p)));
                }
                let mut ctx = carried.take().unwrap_or_default();
                match auth.request(&view, &mut ctx) {
                    filters::Action::Pass | filters::Action::Changed => carried = Some(ctx),
                    _ => break,
                }
            }
            // Likewise its rate limits: a request over them stays there and
            // is refused (a refusal spends nothing, so checking again there
            // costs no budget).
            if let Some(limit) = chain.rate_limit() {
                let mut ctx = carried.take().unwrap_or_default();
                let passed = matches!(limit.request(&view, &mut ctx), filters::Action::Pass | filters::Action::Changed);
                carried = Some(ctx);
                if !passed {
                    break;
                }
            }
            service = next;
        }
    }
    meta.service = Some(service.name.clone());
    let pick = match &service.config.balance {
        Balance::RoundRobin => Pick::RoundRobin,
        Balance::P2c => Pick::P2c,
        Balance::Hash(k) => {
            let ip = || client_ip.or_else(|| client.client_ip(&head, &snap.gateway.trusted_proxies));
            let view = filter_view(&head, &service.name, path, q, body_prefix, client_ip, client.conn);
            let ip_text;
            let key: Option<&[u8]> = match k {
                HashKey::Header(name) => head_value(&head, name),
                HashKey::Cookie(name) => filters::route::cookie(&view, name),
                HashKey::Ip => None,
            };
            let key = match key {
                Some(k) => k,
                // No key (or hashing on the address): the client's address.
                None => {
                    ip_text = ip().map(|a| a.to_string()).unwrap_or_default();
                    ip_text.as_bytes()
                }
            };
            Pick::Hash(filters::split::stable_hash(b"balance", key))
        }
    };

    // Phase: request filters (of the service the request ended up with).
    let mut filtered = None;
    if let Some(chain) = chain_of(service) {
        let view = filter_view(&head, &service.name, path, q, body_prefix, client_ip, client.conn);
        // An OAuth2 token that needs the network (a new signing key, an
        // introspection call): the caller waits (bounded) and prepares the
        // request again, and the filters then decide without waiting.
        if let Some(p) = chain.auth().and_then(|a| a.prepare(&view)) {
            return Ok(Some(Routed::Wait(p)));
        }
        let mut f =
            Box::new(Filtered { ctx: carried.take().unwrap_or_default(), early: None, transform_request: false });
        f.early = match chain.request(&view, &mut f.ctx) {
            Flow::Continue => None,
            Flow::Respond(a) => Some(Early::Respond(a)),
            Flow::Reject(e) => Some(Early::Reject(e)),
        };
        if let Some(t) = chain.request_transform() {
            if framing.body != RequestBody::None && !framing.upgrade {
                let json = transformable(head_value(&head, "content-type"), head_value(&head, "content-encoding"));
                f.transform_request = json;
                if !json {
                    t.body_outcome(Side::Request, "skipped");
                }
            }
        }
        filtered = Some(f);
    } else if let Some(ctx) = carried.take() {
        // Routed from a protected service to one without filters: the
        // consumer header and the key's removal still apply.
        filtered = Some(Box::new(Filtered { ctx, early: None, transform_request: false }));
    }

    // The body limit, after the filters: a 413 gets the service's response
    // filters (CORS headers a browser needs to read it) like any refusal.
    if let RequestBody::Length(n) = framing.body {
        if n > limits.max_body_bytes {
            let error = ProxyError::new(ErrorKind::BodyTooLarge, "request body exceeds the size limit");
            match filtered.as_deref_mut() {
                None => fail!(error),
                Some(f) if f.early.is_none() => f.early = Some(Early::Reject(error)),
                Some(_) => {}
            }
        }
    }

    // Dev mode's fallback: a request that came back from the fallback (it
    // points at this gateway, or at one that falls back here) stops here.
    if service.config.whole_path && head_value(&head, FALLBACK_HOP).is_some() {
        fail!(ProxyError::new(
            ErrorKind::LoopDetected,
            "the fallback gateway sent the request back (--fallback loops)"
        ));
    }
    // Phase: upstream head (not needed when a filter ended the request).
    let mut unedited = HeaderEdits::default();
    if service.config.whole_path {
        unedited.add(FALLBACK_HOP, b"1");
    }
    let (edits, rewritten, new_query, ended, defer_framing) = match filtered.as_deref_mut() {
        None => (&unedited, None, None, false, false),
        Some(f) => {
            let path = f.ctx.path.take();
            (&f.ctx.headers, path, f.ctx.query.take(), f.early.is_some(), f.transform_request)
        }
    };
    if let Some(q) = &new_query {
        // A credential left the query: the access log does not see it either.
        if let Some(t) = meta.target.as_mut() {
            let base = t.split('?').next().unwrap_or_default().to_string();
            *t = if q.is_empty() { base } else { format!("{base}?{q}") };
        }
    }
    if !ended {
        let query = match &new_query {
            None => query,
            Some(q) => (!q.is_empty()).then_some(q.as_str()),
        };
        let mut target: Cow<'_, str> = match (rewritten, query, &new_query) {
            (None, _, None) => Cow::Borrowed(&routed.upstream_target),
            (None, None, Some(_)) => Cow::Owned(path.to_string()),
            (None, Some(q), Some(_)) => Cow::Owned(format!("{path}?{q}")),
            (Some(p), None, _) => Cow::Owned(p),
            (Some(p), Some(q), _) => Cow::Owned(format!("{p}?{q}")),
        };
        if service.config.whole_path {
            // Dev mode's fallback: the other gateway routes by the name too.
            target = Cow::Owned(format!("/{}{}", routed.service, target));
        }
        let up = Upstream { target: &target, framing, service, request_id: &meta.request_id, edits, defer_framing };
        write_upstream_head(out, &head, &up, snap, client);
    }

    Ok(Some(Routed::Http(Prepared {
        head_len: head.len,
        service: service.clone(),
        body: framing.body,
        keep_alive: framing.keep_alive,
        expect_continue: framing.expect_continue,
        upgrade: framing.upgrade,
        is_head: head.method == "HEAD",
        http10: head.http10,
        meta,
        filtered,
        pick,
    })))
}

/// Marks a request dev mode sent to its fallback gateway.
const FALLBACK_HOP: &str = "x-wasp-fallback";

/// [`prepare`] when `scan` says the bytes read since the last look can
/// change its answer; `Ok(None)` (read more) without parsing otherwise.
pub fn prepare_when_due(
    scan: &mut HeadScan,
    buf: &[u8],
    snap: &Snapshot,
    client: &ClientInfo,
    ids: &IdGen,
    out: &mut Vec<u8>,
) -> Result<Option<Routed>, Box<Rejected>> {
    let l = &snap.gateway.limits;
    let limits =
        ScanLimits { max_header_bytes: l.max_header_bytes, max_headers: l.max_headers, max_uri_bytes: l.max_uri_bytes };
    if !scan.due(buf, &limits) {
        return Ok(None);
    }
    let r = prepare(buf, snap, client, ids, out);
    if let Ok(None) = r {
        scan.partial(buf.len());
    }
    r
}

/// The first header named `name` (any case), trimmed.
fn head_value<'b>(head: &RequestHead<'b>, name: &str) -> Option<&'b [u8]> {
    head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| trim(h.value))
}

/// What filters see of the request (all borrowed).
fn filter_view<'a>(
    head: &'a RequestHead<'a>,
    service: &'a str,
    path: &'a str,
    query: &'a str,
    body_prefix: &'a [u8],
    client_ip: Option<IpAddr>,
    connection: u64,
) -> filters::Request<'a> {
    filters::Request {
        method: head.method,
        service,
        path,
        query,
        headers: head.headers,
        body_prefix,
        client_ip,
        connection,
    }
}
