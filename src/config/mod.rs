//! Configuration: strict TOML in (`file`), a validated model out (`model`).

pub mod auth;
pub mod dev;
mod discovery;
mod duration;
mod endpoints;
mod file;
mod filters;
mod kafka;
pub mod limits;
mod mocks;
mod model;
mod oauth;
pub mod resilience;
mod scheduling;
mod services;
mod small_file;
mod toml_key;
pub use small_file::{read_small_file, SmallFileError};

pub use discovery::{ConsulDiscovery, DiscoveryConfig, EtcdDiscovery, EurekaDiscovery};
pub use duration::parse_duration;
pub use endpoints::{parse_http_target, EndpointConfig, EndpointMode, HttpTarget, MatchValue, RouteConfig, WsLimits};
pub use filters::{
    Conditions, CorsConfig, FilterConfig, HeaderRules, PathPattern, RecordConfig, RewriteConfig, RouteRule,
    SplitConfig, Sticky, TransformConfig, WhenSource,
};
pub use kafka::{topic_error, Ack, BusConfig, KafkaConfig, KafkaTarget};
pub use mocks::{MockConfig, MockRoute};
pub use model::*;
