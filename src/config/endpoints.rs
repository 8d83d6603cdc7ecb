//! Validation of `[endpoints.*]`: WebSocket endpoints and their routes.

use super::file::{EndpointSection, RouteSection};
use super::model::{ConfigError, Source};
use crate::proto::jsonpath::JsonPath;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMode {
    Routes,
    Echo,
}

/// Per-connection limits of an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WsLimits {
    /// Largest single frame (close 1009 above).
    pub max_frame_bytes: usize,
    /// Largest reassembled message (close 1009 above).
    pub max_message_bytes: usize,
    /// Bytes waiting for one client (beyond the write in progress) at
    /// which it counts as too slow (close 1013). A message is queued while
    /// fewer wait, so one large message is never taken for a slow reader.
    pub send_queue_bytes: usize,
    /// Bytes one connection may have in flight: its events being handled
    /// plus their copies to each backend, `$error` and `$disconnect` calls.
    /// Past it events are refused with an error event (see `ws::inflight`).
    pub max_inflight_bytes: usize,
    /// Events per second a client may send (close 1008 above; 0 = no limit).
    pub messages_per_second: u32,
    /// Silence after which the connection is closed (1001).
    pub idle_timeout: Duration,
    /// Silence after which the server pings.
    pub ping_interval: Duration,
}

/// An HTTP integration: where a route's events are POSTed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub url: String,
    pub addr: SocketAddr,
    /// Host header value.
    pub host: String,
    /// Path and query sent in the request line.
    pub path: String,
    /// `service:NAME/path`: the instances of service NAME (static or
    /// discovered), balanced round-robin; `addr` is then unused.
    pub service: Option<String>,
}

/// A value a `match` path must hold: strings compare as decoded strings,
/// numbers and booleans by their JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchValue {
    Str(String),
    Raw(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// The route key: `$connect`, `$disconnect`, `$error`, `$default` or a custom name.
    pub key: String,
    pub matches: Vec<(JsonPath, MatchValue)>,
    pub http: Vec<HttpTarget>,
    /// Topics the events are produced to (beside `http`).
    pub kafka: Vec<super::KafkaTarget>,
    pub ack: super::Ack,
    pub reply: bool,
    pub timeout: Duration,
    /// jq program for the event before it goes to the targets.
    pub transform_request: Option<String>,
    /// jq program for the reply before it goes to the client.
    pub transform_reply: Option<String>,
    /// Integration request headers taken from the event by JSON path.
    pub headers: Vec<(String, JsonPath)>,
    /// Scopes the connection's credential must hold (besides the endpoint's).
    pub scopes: Vec<String>,
    /// This route's own limits on events.
    pub rate_limits: Vec<super::limits::RateRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub name: String,
    pub path: String,
    pub route_selection: Option<JsonPath>,
    pub mode: EndpointMode,
    /// In the order written.
    pub routes: Vec<RouteConfig>,
    pub limits: WsLimits,
    /// Who may upgrade.
    pub auth: super::auth::Auth,
    /// Limits on the endpoint's events (all routes).
    pub rate_limits: Vec<super::limits::RateRule>,
}

/// Parses `http://host:port/path` (no TLS, no user info) and resolves it once.
pub fn parse_http_target(url: &str) -> Result<HttpTarget, String> {
    if let Some(rest) = url.strip_prefix("service:") {
        let (name, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if !super::model::valid_service_name(name) {
            return Err(format!("{url:?}: write service:NAME/path with a service's name"));
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
            return Err(format!("{url:?}: the path has spaces, control bytes or a fragment"));
        }
        return Ok(HttpTarget {
            url: url.to_string(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            host: name.to_string(),
            path: path.to_string(),
            service: Some(name.to_string()),
        });
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: integrations are http:// URLs or service:NAME/path"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?}: needs host:port and no user info"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
        return Err(format!("{url:?}: the path has spaces, control bytes or a fragment"));
    }
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("{url:?}: {authority} does not resolve"))?;
    Ok(HttpTarget { url: url.to_string(), addr, host: authority.to_string(), path: path.to_string(), service: None })
}

/// `max_message_bytes` when not set.
const DEFAULT_MESSAGE_BYTES: usize = 1024 * 1024;

const RESERVED: [&str; 4] = ["$connect", "$disconnect", "$error", "$default"];

pub(super) fn endpoint(
    src: &Source<'_>,
    name: &str,
    e: &EndpointSection,
    default_timeout: Duration,
) -> Result<EndpointConfig, ConfigError> {
    let key = format!("endpoints.{name}");
    if !super::model::valid_service_name(name) {
        return src.err(&key, None, "endpoint names use only letters, digits, '-', '_' and '.' (at most 64)");
    }
    let path = e.path.get_ref();
    if !path.starts_with('/')
        || path.contains("//")
        || path.contains("/.")
        || path.contains('?')
        || path.contains('%')
        || path.len() > 256
    {
        return src.err(
            &format!("{key}.path"),
            Some(e.path.span()),
            "must be a normalized absolute path such as \"/ws/chat\" (no '//', dot segments, '?' or '%')",
        );
    }
    let route_selection = match &e.route_selection {
        None => None,
        Some(s) => Some(
            JsonPath::parse(s.get_ref()).or_else(|m| src.err(&format!("{key}.route_selection"), Some(s.span()), m))?,
        ),
    };
    let mode = match e.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("routes", _)) => EndpointMode::Routes,
        Some(("echo", _)) => EndpointMode::Echo,
        Some((other, span)) => {
            return src.err(&format!("{key}.mode"), Some(span), format!("{other:?} is not one of \"routes\", \"echo\""))
        }
    };
    let limits = WsLimits {
        max_frame_bytes: e.max_frame_bytes.unwrap_or(1024 * 1024),
        max_message_bytes: e.max_message_bytes.unwrap_or(DEFAULT_MESSAGE_BYTES),
        send_queue_bytes: e.send_queue_bytes.unwrap_or(1024 * 1024),
        // By default room for at least one whole message, however large
        // messages may be.
        max_inflight_bytes: e
            .max_inflight_bytes
            .unwrap_or_else(|| e.max_message_bytes.unwrap_or(DEFAULT_MESSAGE_BYTES).max(1024 * 1024)),
        messages_per_second: e.messages_per_second.unwrap_or(0),
        idle_timeout: src.duration(&format!("{key}.idle_timeout"), &e.idle_timeout, Duration::from_secs(600))?,
        ping_interval: src.duration(&format!("{key}.ping_interval"), &e.ping_interval, Duration::from_secs(30))?,
    };
    if limits.max_frame_bytes < 125 || limits.max_message_bytes < limits.max_frame_bytes.min(125) {
        return src.err(&format!("{key}.max_frame_bytes"), None, "must be at least 125 (a control frame's size)");
    }
    if limits.send_queue_bytes < 1024 {
        return src.err(&format!("{key}.send_queue_bytes"), None, "must be at least 1024");
    }
    // An endpoint that accepts messages it could not have in flight is a
    // mistake in the file, not a limit: say so at load.
    if limits.max_inflight_bytes < limits.max_message_bytes {
        return src.err(
            &format!("{key}.max_inflight_bytes"),
            None,
            format!("must be at least max_message_bytes ({})", limits.max_message_bytes),
        );
    }
    let auth = super::auth::auth(src, &format!("{key}.auth"), e.auth.as_ref())?;
    let has_auth = auth != super::auth::Auth::None;
    let mut routes = Vec::new();
    for (rkey, r) in &e.routes {
        let rk = format!("{key}.routes.\"{rkey}\"");
        let mut rc = route(src, &rk, rkey, r, default_timeout)?;
        // The gateway's own routes are not the client's events: nothing to
        // count there (limit upgrades at a proxy or with the endpoint's rules).
        if ["$connect", "$disconnect", "$error"].contains(&rkey.as_str()) && r.rate_limits.is_some() {
            return src.err(
                &format!("{rk}.rate_limits"),
                None,
                "rate limits count client events: put them on the endpoint or on its event routes",
            );
        }
        rc.rate_limits = super::limits::rules(src, &format!("{rk}.rate_limits"), r.rate_limits.as_deref(), has_auth)?;
        routes.push(rc);
    }
    let rate_limits = super::limits::rules(src, &format!("{key}.rate_limits"), e.rate_limits.as_deref(), has_auth)?;
    // A route's scopes need a credential that can carry scopes.
    if let Some(r) = routes.iter().find(|r| !r.scopes.is_empty()) {
        if auth == super::auth::Auth::None {
            return src.err(
                &format!("{key}.routes.\"{}\".scopes", r.key),
                None,
                "scopes need the endpoint's auth (api_key, jwt or introspection)",
            );
        }
    }
    Ok(EndpointConfig {
        name: name.to_string(),
        path: path.clone(),
        route_selection,
        mode,
        routes,
        limits,
        auth,
        rate_limits,
    })
}

fn route(
    src: &Source<'_>,
    key: &str,
    rkey: &str,
    r: &RouteSection,
    default_timeout: Duration,
) -> Result<RouteConfig, ConfigError> {
    if rkey.starts_with('$') && !RESERVED.contains(&rkey) {
        return src.err(key, None, format!("route keys starting with '$' are reserved: use one of {RESERVED:?}"));
    }
    if rkey.is_empty() || rkey.len() > 128 {
        return src.err(key, None, "route keys have 1 to 128 characters");
    }
    let mut http = Vec::new();
    for u in &r.http {
        http.push(parse_http_target(u.get_ref()).or_else(|m| src.err(&format!("{key}.http"), Some(u.span()), m))?);
    }
    let mut matches = Vec::new();
    for (p, v) in r.matches.iter().flatten() {
        let path = JsonPath::parse(p).or_else(|m| src.err(&format!("{key}.match"), None, m))?;
        let value = match v {
            toml::Value::String(s) => MatchValue::Str(s.clone()),
            toml::Value::Integer(i) => MatchValue::Raw(i.to_string()),
            toml::Value::Boolean(b) => MatchValue::Raw(b.to_string()),
            _ => {
                return src.err(
                    &format!("{key}.match"),
                    None,
                    format!("{p:?}: match values are strings, integers or booleans"),
                )
            }
        };
        matches.push((path, value));
    }
    if !matches.is_empty() && rkey.starts_with('$') {
        return src.err(&format!("{key}.match"), None, "the $-routes are chosen by the gateway, not by `match`");
    }
    Ok(RouteConfig {
        key: rkey.to_string(),
        matches,
        http,
        kafka: super::kafka::targets(src, &format!("{key}.kafka"), &r.kafka)?,
        ack: super::kafka::ack(src, &format!("{key}.ack"), r.ack.as_ref())?,
        reply: r.reply.unwrap_or(false),
        timeout: src.duration(&format!("{key}.timeout"), &r.timeout, default_timeout)?,
        transform_request: program(
            src,
            &format!("{key}.transform.request"),
            r.transform.as_ref().and_then(|t| t.request.clone()),
        )?,
        transform_reply: program(
            src,
            &format!("{key}.transform.reply"),
            r.transform.as_ref().and_then(|t| t.reply.clone()),
        )?,
        headers: event_headers(src, key, r.headers.as_ref())?,
        scopes: super::auth::scopes(src, &format!("{key}.scopes"), r.scopes.as_deref())?,
        rate_limits: Vec::new(),
    })
}

/// A jq program, compiled once here to refuse what does not compile.
fn program(src: &Source<'_>, key: &str, text: Option<String>) -> Result<Option<String>, ConfigError> {
    match text {
        None => Ok(None),
        Some(t) => match crate::proto::jq::Program::compile(&t) {
            Ok(_) => Ok(Some(t)),
            Err(e) => src.err(key, None, e),
        },
    }
}

/// `headers = { "X-Chat-Room" = "$.room" }`: names a service may take as
/// the gateway's word (hop-by-hop, framing, forwarding, request id,
/// `X-Wasp-*`) are refused here; protected names in `GatewayConfig` checks.
fn event_headers(
    src: &Source<'_>,
    key: &str,
    h: Option<&indexmap::IndexMap<String, String>>,
) -> Result<Vec<(String, JsonPath)>, ConfigError> {
    use crate::proto::http1::headers::{is_gateway_header, is_hop_by_hop, is_name, is_regenerated, is_tchar};
    let mut out = Vec::new();
    for (name, path) in h.into_iter().flatten() {
        let n = name.as_bytes();
        if n.is_empty() || n.len() > 256 || !n.iter().all(|b| is_tchar(*b)) {
            return src.err(&format!("{key}.headers"), None, format!("{name:?} is not a header name"));
        }
        // `wasp-*` (and `wasp_*`): the names the gateway gives Kafka messages.
        let wasp = n.len() > 5 && n[..4].eq_ignore_ascii_case(b"wasp") && (n[4] == b'-' || n[4] == b'_');
        if wasp || is_hop_by_hop(n) || is_regenerated(n) || is_gateway_header(n) || is_name(n, b"content-type") {
            return src.err(
                &format!("{key}.headers"),
                None,
                format!("{name:?} is set by the gateway itself (framing, forwarding, ids, X-Wasp-*, wasp-*)"),
            );
        }
        let p = JsonPath::parse(path).or_else(|m| src.err(&format!("{key}.headers"), None, m))?;
        out.push((name.to_ascii_lowercase(), p));
    }
    if out.len() > 32 {
        return src.err(&format!("{key}.headers"), None, "at most 32 headers");
    }
    Ok(out)
}
