//! The validated internal configuration model.
//!
//! `Config::from_toml` is the only way in: it parses the strict external types,
//! checks every value and reports the first problem as `key (line N): message`.
//! Two parts with different lifetimes:
//! - [`ServerConfig`]: sockets, threads, logging. Needs a restart to change.
//! - [`GatewayConfig`]: everything routed. Swapped live on reload.

use super::duration::parse_duration;
use super::file::FileConfig;
use crate::proto::http1::headers::HeaderMatcher;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use toml::Spanned;

/// The built-in configuration `wasp serve` runs on when no file is given. It
/// needs no other service: the one route is a service that has no instances,
/// so a request shows the gateway's own 503 answer.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// A configuration error, already formatted to name the key and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub use crate::proto::http1::path::EncodedSlash;

/// What happens to a client header whose name contains `_` (`headers.underscores`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underscores {
    /// `400`: CGI-style backends read `X_Foo` as `X-Foo`, so an underscored
    /// name is an alias the gateway's header rules could miss.
    Reject,
    /// Removed before the request is forwarded; the request goes on.
    Drop,
    /// Forwarded; every header rule matches `_` as `-` (`http::headers`).
    Allow,
}

/// Settings bound to sockets and threads: read at start, a change needs a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Resolved worker count (never 0).
    pub workers: usize,
    pub pin_workers: bool,
    /// The CPU time slice workers ask the kernel for (`None`: its default);
    /// see [`crate::sys::set_scheduler_slice`].
    pub scheduler_slice: Option<Duration>,
    pub io_driver: IoDriver,
    pub backlog: u32,
    pub log_format: LogFormat,
    pub log_level: String,
    pub drain_timeout: Duration,
    /// Bearer token for the admin API; `None`: no token (localhost only by default).
    pub admin_token: Option<String>,
    /// Host names the admin API answers to besides IP literals and
    /// `localhost` (lower case, no port): the DNS-rebinding allow-list.
    pub admin_allowed_hosts: Vec<String>,
    /// Where versions of the dynamic configuration live; `None`: in memory.
    pub store_path: Option<std::path::PathBuf>,
    /// This node's number among gateways sharing Kafka topics.
    pub node_id: u8,
    /// The Kafka client (used only when a route, a service or push needs it).
    pub kafka: super::KafkaConfig,
    /// The environment variable holding the API keys' HMAC secret.
    pub key_secret_env: String,
}

/// Limits that keep one client from costing the gateway more than its share.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub max_connections_per_worker: usize,
    /// Idle keep-alive connections kept per service instance and worker
    /// (0: a new connection for every request).
    pub pool_idle_per_instance: usize,
    /// An idempotent request's body is buffered for a retry up to this size.
    pub retry_body_bytes: usize,
    /// Connections a worker keeps open to one backend address, pooled and
    /// in use together: past it a request is refused (`503 overloaded`), so
    /// a flood costs neither unbounded descriptors nor a backend's capacity.
    /// Default 1024, like Envoy's connection circuit breaker: far above what
    /// healthy traffic holds at once, far below the descriptor limit.
    pub backend_connections: usize,
    /// Bytes per second a request body must average, counted over the time
    /// spent waiting for the client once `timeouts.header_read` of such
    /// waiting has passed (0: no floor). Each read's own deadline only
    /// catches silence: a byte every few seconds restarts it, and because
    /// bodies are streamed, such a trickle would hold an upstream connection
    /// (of `backend_connections`) for as long as the client likes.
    pub min_body_rate: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// From a request's first byte to the end of its head (slowloris).
    pub header_read: Duration,
    /// Keep-alive wait for the next request.
    pub idle: Duration,
    pub connect: Duration,
    /// Upstream silence while waiting for a response head or body bytes.
    pub upstream: Duration,
    /// Silence on an upgraded (WebSocket) tunnel before it is closed.
    pub tunnel_idle: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle: Duration,
    /// Every write (client, service, tunnel) must make progress within this.
    pub write: Duration,
}

/// One service reachable at `/{name}/...`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    pub instances: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// `[[services.X.filters]]`, validated, in the order written.
    pub filters: Vec<super::filters::FilterConfig>,
    /// Where instances come from instead of `instances` (see `discovery`).
    pub discovery: Option<super::DiscoveryConfig>,
    /// `[services.X.mock]`: the gateway answers for the service itself when
    /// it has neither instances nor discovery (and, under `wasp dev`, in
    /// place of any instance unless the service is overridden).
    pub mock: Option<super::MockConfig>,
    /// Dev mode: requests go upstream as `/{service}/{path}` (to the
    /// fallback gateway), not as the service-relative path.
    pub whole_path: bool,
    /// Dev mode: where this service is sent (for the console line).
    pub dev: Option<super::dev::DevRoute>,
    /// How an instance is chosen.
    pub balance: super::resilience::Balance,
    /// Requests in flight per worker, at most (past it: `503 overloaded`).
    pub circuit: super::resilience::Circuit,
    /// Passive ejection of failing instances.
    pub outlier: super::resilience::Outlier,
    /// Active checks (none unless configured).
    pub health: Option<super::resilience::HealthCheck>,
    /// `dispatch = { kafka = ... }`: requests travel over Kafka, not HTTP.
    pub bus: Option<super::BusConfig>,
    /// Who may call it.
    pub auth: super::auth::Auth,
    /// `[[services.X.rate_limits]]`, validated.
    pub rate_limits: Vec<super::limits::RateRule>,
}

/// `[services.X.retry]`: how many times, and how often overall, a request
/// that failed may be sent again (only under the replay rule in `upstream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try, at most.
    pub attempts: u32,
    /// Retries stay under this share of the service's requests, per worker.
    pub budget_percent: u32,
    /// `on` has "connect_failure": a failed connect moves on to the next
    /// instance (not a retry: nothing was sent).
    pub on_connect_failure: bool,
    /// `on` has "503": a `503` answer to a replayable request is retried
    /// on another instance, under `attempts` and the budget.
    pub on_503: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 1, budget_percent: 20, on_connect_failure: true, on_503: false }
    }
}

/// An address or network whose forwarding headers are believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Everything on the request path; published to workers as one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub services: Vec<ServiceConfig>,
    pub protected: HeaderMatcher,
    pub underscores: Underscores,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub encoded_slash: EncodedSlash,
    pub access_log: bool,
    /// `[log] record_dir`: where `record` filters write (file config only).
    pub record_dir: Option<std::path::PathBuf>,
    /// `[log] record_queue`: lines waiting for the writer, at most.
    pub record_queue: usize,
    pub endpoints: Vec<super::endpoints::EndpointConfig>,
    /// Dev mode: names no service matches go to this other gateway.
    pub dev_fallback: Option<super::dev::Fallback>,
    /// Dev mode: a console line per request.
    pub dev_console: bool,
    /// Who calls through the gateway (API keys belong to one).
    pub consumers: Vec<super::auth::ConsumerConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub gateway: GatewayConfig,
}

/// The longest timeout any key accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Hard ceiling for `limits.max_headers`: the parser's header array lives on the stack.
pub use crate::proto::http1::MAX_HEADERS_CEILING;

/// Turns byte offsets into line numbers for messages.
pub(super) struct Source<'a> {
    text: &'a str,
    pub(super) origin: &'a str,
}

impl Source<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.text.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
    }

    pub(super) fn err<T>(
        &self,
        key: &str,
        span: Option<std::ops::Range<usize>>,
        msg: impl AsRef<str>,
    ) -> Result<T, ConfigError> {
        let place = match span {
            Some(s) => format!(" (line {})", self.line_of(s.start)),
            None => String::new(),
        };
        Err(ConfigError(format!("{}: {key}{place}: {}", self.origin, msg.as_ref())))
    }

    pub(super) fn duration(
        &self,
        key: &str,
        v: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if d.is_zero() => self.err(key, Some(s.span()), "must be greater than zero"),
                // Deadlines are added to clocks: a value near u64::MAX
                // would overflow (a panic) or wrap (a tiny timeout).
                Ok(d) if d > MAX_DURATION => self.err(key, Some(s.span()), "must be at most 30 days (\"720h\")"),
                Ok(d) => Ok(d),
                Err(e) => self.err(key, Some(s.span()), e),
            },
        }
    }

    fn addr(&self, key: &str, v: &Option<Spanned<String>>, default: &str) -> Result<SocketAddr, ConfigError> {
        let (text, span) = match v {
            Some(s) => (s.get_ref().as_str(), Some(s.span())),
            None => (default, None),
        };
        match text.parse::<SocketAddr>() {
            Ok(a) => Ok(a),
            Err(_) => self.err(key, span, format!("{text:?} is not an IP:port socket address")),
        }
    }
}

/// What an admin token must be, in the words of the error that refuses one.
pub const ADMIN_TOKEN_RULE: &str = "use at least 16 visible ASCII characters";

/// The one rule for an admin token, from the file or `WASP_ADMIN_TOKEN`:
/// long enough not to be guessed, and nothing a header would mangle.
pub fn admin_token_ok(t: &str) -> bool {
    t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic())
}

/// A DNS host name in lower case, or `None` when `s` is not one (a port, a
/// scheme or a `*` would never match a `Host` and only hide a typo).
fn host_name(s: &str) -> Option<String> {
    let ok_label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (s.len() <= 253 && s.split('.').all(ok_label)).then(|| s.to_ascii_lowercase())
}

impl Config {
    /// Parses and validates a TOML document. `origin` names it in messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| Source { text, origin }.line_of(s.start));
            let key = e.span().and_then(|s| super::toml_key::key_at(text, s.start));
            let msg = e.message().to_string();
            match (key, line) {
                (Some(k), Some(l)) => ConfigError(format!("{origin}: {k} (line {l}): {msg}")),
                (None, Some(l)) => ConfigError(format!("{origin}: line {l}: {msg}")),
                _ => ConfigError(format!("{origin}: {msg}")),
            }
        })?;
        let src = Source { text, origin };
        Self::validate(file, &src)
    }

    fn validate(file: FileConfig, src: &Source<'_>) -> Result<Config, ConfigError> {
        let s = &file.server;
        let workers = match s.workers.unwrap_or(0) {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n if n > 1024 => return src.err("server.workers", None, "at most 1024 workers"),
            n => n,
        };
        let io_driver = match s.io_driver.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("auto", _)) => IoDriver::Auto,
            Some(("io_uring", _)) => IoDriver::IoUring,
            Some(("epoll", _)) => IoDriver::Epoll,
            Some((other, span)) => {
                return src.err(
                    "server.io_driver",
                    Some(span),
                    format!("{other:?} is not one of \"auto\", \"io_uring\", \"epoll\""),
                )
            }
        };
        let log_format = match file.log.format.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("text", _)) => LogFormat::Text,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => {
                return src.err("log.format", Some(span), format!("{other:?} is not one of \"text\", \"json\""))
            }
        };
        let t = &file.timeouts;
        let server = ServerConfig {
            listen: src.addr("server.listen", &s.listen, "127.0.0.1:8080")?,
            admin_listen: src.addr("server.admin_listen", &s.admin_listen, "127.0.0.1:9901")?,
            workers,
            pin_workers: s.pin_workers.unwrap_or(false),
            scheduler_slice: super::scheduling::scheduler_slice(src, &s.scheduler_slice)?,
            io_driver,
            backlog: s.backlog.unwrap_or(4096),
            log_format,
            log_level: file.log.level.clone().unwrap_or_else(|| "info".to_string()),
            drain_timeout: src.duration("timeouts.drain", &t.drain, Duration::from_secs(10))?,
            admin_token: match &file.admin.token {
                None => None,
                Some(t) if !admin_token_ok(t.get_ref()) => {
                    return src.err("admin.token", Some(t.span()), ADMIN_TOKEN_RULE);
                }
                Some(t) => Some(t.get_ref().clone()),
            },
            admin_allowed_hosts: match &file.admin.allowed_hosts {
                None => Vec::new(),
                Some(list) => {
                    let mut names = Vec::with_capacity(list.len());
                    for h in list {
                        match host_name(h.get_ref()) {
                            Some(n) => names.push(n),
                            None => {
                                return src.err(
                                    "admin.allowed_hosts",
                                    Some(h.span()),
                                    format!("{:?} is not a host name (letters, digits, '-' and '.', no port, scheme or wildcard)", h.get_ref()),
                                )
                            }
                        }
                    }
                    names
                }
            },
            store_path: file.store.path.as_ref().map(std::path::PathBuf::from),
            node_id: match s.node_id.unwrap_or(0) {
                n @ 0..=255 => n as u8,
                _ => return src.err("server.node_id", None, "must be between 0 and 255"),
            },
            kafka: super::kafka::kafka(src, &file.kafka)?,
            key_secret_env: super::auth::key_secret_env(src, &file.auth)?,
        };

        let l = &file.limits;
        let limits = Limits {
            max_header_bytes: l.max_header_bytes.unwrap_or(16 * 1024),
            max_headers: l.max_headers.unwrap_or(100),
            max_uri_bytes: l.max_uri_bytes.unwrap_or(8 * 1024),
            max_body_bytes: l.max_body_bytes.unwrap_or(16 * 1024 * 1024),
            max_connections_per_worker: s.max_connections_per_worker.unwrap_or(10_000),
            pool_idle_per_instance: l.pool_idle_per_instance.unwrap_or(128),
            retry_body_bytes: l.retry_body_bytes.unwrap_or(64 * 1024),
            backend_connections: l.backend_connections.unwrap_or(1024),
            min_body_rate: l.min_body_rate.unwrap_or(1024),
        };
        if limits.min_body_rate > 1 << 30 {
            return src.err(
                "limits.min_body_rate",
                None,
                "must be at most 1073741824 bytes per second (0 turns it off)",
            );
        }
        if limits.backend_connections == 0 || limits.backend_connections > 100_000 {
            return src.err("limits.backend_connections", None, "must be between 1 and 100000");
        }
        if limits.pool_idle_per_instance > 100_000 {
            return src.err("limits.pool_idle_per_instance", None, "must be at most 100000 (0 turns pooling off)");
        }
        if limits.retry_body_bytes > 16 * 1024 * 1024 {
            return src.err("limits.retry_body_bytes", None, "must be at most 16777216");
        }
        if limits.max_headers == 0 || limits.max_headers > MAX_HEADERS_CEILING {
            return src.err("limits.max_headers", None, format!("must be between 1 and {MAX_HEADERS_CEILING}"));
        }
        if limits.max_header_bytes < 256 || limits.max_header_bytes > 1024 * 1024 {
            return src.err("limits.max_header_bytes", None, "must be between 256 and 1048576");
        }
        if limits.max_uri_bytes < 16 || limits.max_uri_bytes > limits.max_header_bytes {
            return src.err("limits.max_uri_bytes", None, "must be between 16 and limits.max_header_bytes");
        }
        if limits.max_connections_per_worker == 0 {
            return src.err("server.max_connections_per_worker", None, "must be at least 1");
        }
        let timeouts = Timeouts {
            header_read: src.duration("timeouts.header_read", &t.header_read, Duration::from_secs(10))?,
            idle: src.duration("timeouts.idle", &t.idle, Duration::from_secs(60))?,
            connect: src.duration("timeouts.connect", &t.connect, Duration::from_secs(2))?,
            upstream: src.duration("timeouts.upstream", &t.upstream, Duration::from_secs(30))?,
            tunnel_idle: src.duration("timeouts.tunnel_idle", &t.tunnel_idle, Duration::from_secs(600))?,
            pool_idle: src.duration("timeouts.pool_idle", &t.pool_idle, Duration::from_secs(30))?,
            write: src.duration("timeouts.write", &t.write, Duration::from_secs(30))?,
        };

        let mut protected = Vec::new();
        match &file.headers.protected {
            None => protected.push("x-internal-*".to_string()),
            Some(list) => {
                for p in list {
                    if let Err(e) = HeaderMatcher::check_pattern(p.get_ref()) {
                        return src.err("headers.protected", Some(p.span()), e);
                    }
                    protected.push(p.get_ref().clone());
                }
            }
        }

        let mut trusted_proxies = Vec::new();
        for p in s.trusted_proxies.iter().flatten() {
            match parse_net(p.get_ref()) {
                Some(net) => trusted_proxies.push(net),
                None => {
                    return src.err(
                        "server.trusted_proxies",
                        Some(p.span()),
                        format!("{:?} is not an IP address or CIDR network", p.get_ref()),
                    )
                }
            }
        }

        let resolver = match &file.discovery.resolver {
            None => None,
            Some(r) => match r.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    return src.err(
                        "discovery.resolver",
                        Some(r.span()),
                        format!("{:?} is not an IP:port", r.get_ref()),
                    )
                }
            },
        };
        let mut services = Vec::new();
        for (name, svc) in &file.services {
            services.push(super::services::service(src, name, svc, &timeouts, resolver)?);
        }

        let underscores = match file.headers.underscores.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("reject", _)) => Underscores::Reject,
            Some(("drop", _)) => Underscores::Drop,
            Some(("allow", _)) => Underscores::Allow,
            Some((other, span)) => {
                return src.err(
                    "headers.underscores",
                    Some(span),
                    format!("{other:?} is not one of \"reject\", \"drop\", \"allow\""),
                )
            }
        };

        let encoded_slash = match file.paths.encoded_slash.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("reject", _)) => EncodedSlash::Reject,
            Some(("keep", _)) => EncodedSlash::Keep,
            Some((other, span)) => {
                return src.err(
                    "paths.encoded_slash",
                    Some(span),
                    format!("{other:?} is not one of \"reject\", \"keep\""),
                )
            }
        };

        let mut endpoints: Vec<super::endpoints::EndpointConfig> = Vec::new();
        for (name, e) in &file.endpoints {
            let ep = super::endpoints::endpoint(src, name, e, timeouts.upstream)?;
            if let Some(other) = endpoints.iter().find(|o| o.path == ep.path) {
                return src.err(
                    &format!("endpoints.{name}.path"),
                    Some(e.path.span()),
                    format!("{:?} is already the path of endpoint {:?}", ep.path, other.name),
                );
            }
            if services.iter().any(|s| {
                ep.path.trim_start_matches('/').split('/').next() == Some(s.name.as_str())
                    && ep.path.matches('/').count() == 1
            }) {
                return src.err(&format!("endpoints.{name}.path"), Some(e.path.span()), "is the path of a service");
            }
            for r in &ep.routes {
                if let Some(t) =
                    r.http.iter().find(|t| t.service.as_ref().is_some_and(|n| !services.iter().any(|s| &s.name == n)))
                {
                    return src.err(
                        &format!("endpoints.{name}.routes.{:?}.http", r.key),
                        None,
                        format!("{:?}: there is no service {:?}", t.url, t.service.as_deref().unwrap_or_default()),
                    );
                }
            }
            let matcher = HeaderMatcher::new(&protected);
            for r in &ep.routes {
                if let Some((n, _)) = r.headers.iter().find(|(n, _)| matcher.matches(n.as_bytes())) {
                    return src.err(
                        &format!("endpoints.{name}.routes.{:?}.headers", r.key),
                        None,
                        format!("{n:?} is a protected header: services take it as the gateway's word"),
                    );
                }
            }
            endpoints.push(ep);
        }

        let mut consumers = Vec::new();
        for (name, c) in &file.consumers {
            consumers.push(super::auth::consumer(src, name, c)?);
        }
        let record_dir = file.log.record_dir.as_deref().map(std::path::PathBuf::from);
        if let Some(d) = &record_dir {
            if !d.is_absolute() {
                return src.err("log.record_dir", None, "must be an absolute path");
            }
        }
        let record_queue = file.log.record_queue.unwrap_or(4096);
        if record_queue == 0 || record_queue > 1_000_000 {
            return src.err("log.record_queue", None, "must be between 1 and 1000000");
        }
        super::filters::check_across(src.origin, &services, record_dir.as_deref())?;

        Ok(Config {
            server,
            gateway: GatewayConfig {
                services,
                protected: HeaderMatcher::new(&protected),
                underscores,
                trusted_proxies,
                limits,
                timeouts,
                encoded_slash,
                access_log: file.log.access.unwrap_or(true),
                endpoints,
                record_dir,
                record_queue,
                dev_fallback: None,
                dev_console: false,
                consumers,
            },
        })
    }
}

/// Service names are the first path segment, so they are restricted to
/// characters that need no escaping and cannot be confused with path syntax.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(super) fn parse_net(text: &str) -> Option<IpNet> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    if prefix > max {
        return None;
    }
    // `::ffff:10.0.0.0/104` is `10.0.0.0/8`: clients are compared in their
    // canonical form, so networks are stored in it too.
    match addr.to_canonical() {
        IpAddr::V4(v4) if addr.is_ipv6() && prefix >= 96 => Some(IpNet { addr: IpAddr::V4(v4), prefix: prefix - 96 }),
        _ => Some(IpNet { addr, prefix }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let c = Config::from_toml(DEFAULT_CONFIG, "default").expect("default config");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.gateway.access_log);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n", "f.toml").unwrap_err();
        assert!(e.0.contains("line 3"), "{e}");
        assert!(e.0.contains("listne"), "{e}");
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let e = Config::from_toml("[services.echo]\ninstances = [\"127.0.0.1:1\", \"nope\"]\n", "f.toml").unwrap_err();
        assert!(e.0.contains("services.echo.instances (line 2)"), "{e}");
        let e = Config::from_toml("\n[timeouts]\nidle = \"5\"\n", "f.toml").unwrap_err();
        assert!(e.0.contains("timeouts.idle (line 3)"), "{e}");
    }

    #[test]
    fn cidr() {
        let n = parse_net("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.1.2.3".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_none());
        let n = parse_net("::1").unwrap();
        assert!(n.contains("::1".parse().unwrap()));
        let n = parse_net("::ffff:10.0.0.0/104").unwrap();
        assert_eq!((n.addr, n.prefix), ("10.0.0.0".parse().unwrap(), 8));
        assert_eq!(parse_net("::ffff:127.0.0.1").map(|n| n.prefix), Some(32));
    }
}
