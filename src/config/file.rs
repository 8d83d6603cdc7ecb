//! The external configuration: what a person writes in TOML.
//!
//! Every table is `deny_unknown_fields` so a typo is an error naming the key and
//! line, never a silently ignored setting. These types are converted into the
//! validated internal model (`model.rs`) before anything runs; the data plane
//! never sees them (the River split).

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub headers: HeadersSection,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSection>,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    #[serde(default)]
    pub paths: PathsSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub store: StoreSection,
    /// WebSocket endpoints, by name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSection>,
    #[serde(default)]
    pub discovery: DiscoveryGlobalSection,
    #[serde(default)]
    pub kafka: super::kafka::KafkaSection,
    #[serde(default)]
    pub auth: super::auth::AuthSection,
    /// Who calls through the gateway, by name.
    #[serde(default)]
    pub consumers: BTreeMap<String, super::auth::ConsumerSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    /// 0 or absent: one worker per core.
    pub workers: Option<usize>,
    pub pin_workers: Option<bool>,
    /// Workers' scheduler slice: a duration from "100us" to "100ms", or
    /// "off" for the kernel's default.
    pub scheduler_slice: Option<Spanned<String>>,
    /// "auto" (io_uring, else epoll), "io_uring" or "epoll".
    pub io_driver: Option<Spanned<String>>,
    pub backlog: Option<u32>,
    pub max_connections_per_worker: Option<usize>,
    /// Peers whose X-Forwarded-* headers are believed ("10.0.0.0/8", "127.0.0.1").
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// 0..=255, unique per gateway node: in connection ids, Kafka consumer
    /// groups and bus reply routing.
    pub node_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersSection {
    pub protected: Option<Vec<Spanned<String>>>,
    /// Client header names containing `_`: "reject" (default, 400), "drop"
    /// or "allow" (like nginx's `underscores_in_headers`).
    pub underscores: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    #[serde(default)]
    pub instances: Vec<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retry: Option<RetrySection>,
    /// Run in the order written (`cors` first wherever it is written).
    #[serde(default)]
    pub filters: Vec<super::filters::FilterSection>,
    /// Where the instances come from when they are not listed.
    pub discovery: Option<DiscoverySection>,
    /// Answers the gateway gives itself while no instance runs.
    pub mock: Option<super::mocks::MockSection>,
    /// `"round_robin"`, `"p2c"` or `{ hash = "header:X-User" }`.
    pub balance: Option<super::resilience::BalanceSection>,
    pub circuit: Option<super::resilience::CircuitSection>,
    pub outlier: Option<super::resilience::OutlierSection>,
    pub health: Option<super::resilience::HealthSection>,
    /// How requests reach the service when not over HTTP: `{ kafka = {...} }`.
    pub dispatch: Option<super::kafka::DispatchSection>,
    /// `"none"` (default) or `{ api_key = { header = "X-Api-Key" } }`.
    pub auth: Option<super::auth::AuthChoice>,
    /// `[[services.X.rate_limits]]`: every rule must pass.
    pub rate_limits: Option<Vec<super::limits::RateLimitSection>>,
}

/// `discovery = { file = "/etc/wasp/shop.json" }` (one registry per service).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySection {
    /// A watched JSON array of "host:port" strings.
    pub file: Option<String>,
    /// A name whose A/AAAA records are the instances (with `port`).
    pub dns: Option<String>,
    pub port: Option<u16>,
    /// An SRV name: the lowest priority's targets, weighted.
    pub dns_srv: Option<String>,
    /// A Consul agent's passing instances of a service, by blocking queries.
    pub consul: Option<ConsulSection>,
    /// A Eureka server's UP instances of an app, polled.
    pub eureka: Option<EurekaSection>,
    /// The values under an etcd key prefix, watched.
    pub etcd: Option<EtcdSection>,
}

/// `consul = { url = "http://127.0.0.1:8500", service = "shop", tag = "v2" }`.
/// Every field is optional here so that a missing one is reported by its
/// key (`services.shop.discovery.consul.service`), not by serde.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulSection {
    pub url: Option<String>,
    pub service: Option<String>,
    pub tag: Option<String>,
    pub datacenter: Option<String>,
    /// The environment variable holding the ACL token (default `CONSUL_HTTP_TOKEN`).
    pub token_env: Option<String>,
}

/// `eureka = { url = "http://127.0.0.1:8761/eureka", app = "SHOP", interval = "30s" }`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EurekaSection {
    pub url: Option<String>,
    pub app: Option<String>,
    pub interval: Option<String>,
}

/// `etcd = { url = "http://127.0.0.1:2379", prefix = "/services/shop/" }`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    pub url: Option<String>,
    pub prefix: Option<String>,
}

/// `[discovery]`: settings every registry of a kind shares.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryGlobalSection {
    /// The DNS server for `dns` and `dns_srv` ("127.0.0.1:5353"); default:
    /// the system's resolv.conf.
    pub resolver: Option<Spanned<String>>,
}

/// When a failed request may be sent again (see `upstream` for the rule).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Retries after the first try, at most (0: never retry).
    pub attempts: Option<u32>,
    /// Retries stay under this share of the service's requests.
    pub budget_percent: Option<u32>,
    /// What may be retried: "connect_failure" (another instance when a
    /// connect fails; the default) and "503" (an answer of 503, only for
    /// requests the replay rule allows).
    pub on: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub access: Option<bool>,
    /// "text" or "json".
    pub format: Option<Spanned<String>>,
    /// A tracing filter such as "info" or "wasp=debug"; RUST_LOG wins when set.
    pub level: Option<String>,
    /// The folder `record` filters write into (file config only).
    pub record_dir: Option<String>,
    /// Recorded lines waiting for the writer thread, at most; more are dropped.
    pub record_queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub pool_idle_per_instance: Option<usize>,
    /// An idempotent request whose body is at most this is kept for a retry.
    pub retry_body_bytes: Option<usize>,
    /// Connections open to one backend address per worker (pooled + in use).
    pub backend_connections: Option<usize>,
    /// Bytes per second a request body must average (0: no floor).
    pub min_body_rate: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    pub header_read: Option<Spanned<String>>,
    pub idle: Option<Spanned<String>>,
    pub connect: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    pub tunnel_idle: Option<Spanned<String>>,
    pub pool_idle: Option<Spanned<String>>,
    pub drain: Option<Spanned<String>>,
    /// Every write to a client, a service or a tunnel must progress within this.
    pub write: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSection {
    /// "reject" (default: 400 for %2F, %5C and `\`) or "keep" (forwarded as sent,
    /// never treated as a separator).
    pub encoded_slash: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Upgrade path on the public listener, e.g. "/ws/chat".
    pub path: Spanned<String>,
    /// JSON path whose value names the route, e.g. "$.action".
    pub route_selection: Option<Spanned<String>>,
    /// "routes" (default) or "echo" (a diagnostic endpoint that sends every
    /// message back unchanged: for conformance suites and client checks).
    pub mode: Option<Spanned<String>>,
    pub max_frame_bytes: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub send_queue_bytes: Option<usize>,
    /// Bytes of one connection's events and integration calls in flight.
    pub max_inflight_bytes: Option<usize>,
    pub messages_per_second: Option<u32>,
    pub idle_timeout: Option<Spanned<String>>,
    pub ping_interval: Option<Spanned<String>>,
    /// Routes in the order written: `match` routes are tried in this order.
    #[serde(default)]
    pub routes: indexmap::IndexMap<String, RouteSection>,
    /// Who may upgrade: `"none"` (default) or `{ api_key = {...} }`.
    pub auth: Option<super::auth::AuthChoice>,
    /// `[[endpoints.X.rate_limits]]`: count events (messages), not upgrades.
    pub rate_limits: Option<Vec<super::limits::RateLimitSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    #[serde(default)]
    pub http: Vec<Spanned<String>>,
    /// Topics the route's events are produced to.
    #[serde(default)]
    pub kafka: Vec<super::kafka::KafkaTargetSection>,
    #[serde(rename = "match")]
    pub matches: Option<indexmap::IndexMap<String, toml::Value>>,
    /// `false`, `true` (at once) or `"delivered"` (after every target confirmed).
    pub ack: Option<super::kafka::AckSection>,
    pub reply: Option<bool>,
    pub timeout: Option<Spanned<String>>,
    /// jq programs for the event sent to targets and the reply sent back.
    pub transform: Option<RouteTransformSection>,
    /// Integration request headers taken from the event: name → JSON path.
    pub headers: Option<indexmap::IndexMap<String, String>>,
    /// Scopes the connection's credential must hold to use this route.
    pub scopes: Option<Vec<String>>,
    /// `[[endpoints.X.routes.Y.rate_limits]]`: this route's events.
    pub rate_limits: Option<Vec<super::limits::RateLimitSection>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTransformSection {
    pub request: Option<String>,
    pub reply: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Bearer token the admin API requires (`WASP_ADMIN_TOKEN` overrides).
    /// Health, readiness and metrics stay open.
    pub token: Option<Spanned<String>>,
    /// Host names (no port) the admin API answers to besides IP literals and
    /// `localhost`; any other `Host` is refused with 421 (DNS rebinding).
    pub allowed_hosts: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// SQLite file holding every version of services and endpoints; absent:
    /// kept in memory (history lasts as long as the process).
    pub path: Option<String>,
}
