//! The validated discovery settings of a service (`[services.X]
//! discovery = {...}`): which registry, and what to ask it. Checked in
//! `services.rs`; watched by `crate::discovery`.

use std::net::SocketAddr;
use std::time::Duration;

/// A service's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryConfig {
    /// A watched JSON file of "host:port" strings.
    File(std::path::PathBuf),
    /// Every A/AAAA address of `name`, at `port`.
    Dns {
        name: String,
        port: u16,
        resolver: Option<SocketAddr>,
    },
    /// The targets of an SRV name.
    DnsSrv {
        name: String,
        resolver: Option<SocketAddr>,
    },
    Consul(ConsulDiscovery),
    Eureka(EurekaDiscovery),
    Etcd(EtcdDiscovery),
}

/// A Consul agent's passing instances of `service` (with `tag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulDiscovery {
    /// `http://127.0.0.1:8500`, no trailing `/`.
    pub url: String,
    pub service: String,
    pub tag: Option<String>,
    pub datacenter: Option<String>,
    /// Read when the watcher starts; unset means no token.
    pub token_env: String,
}

/// A Eureka server's UP instances of `app`, asked every `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EurekaDiscovery {
    /// `http://127.0.0.1:8761/eureka`, no trailing `/`.
    pub url: String,
    pub app: String,
    pub interval: Duration,
}

/// The values under `prefix` in etcd (v3 JSON gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdDiscovery {
    /// `http://127.0.0.1:2379`, no trailing `/`.
    pub url: String,
    pub prefix: String,
}

impl DiscoveryConfig {
    /// Names the source in the admin API and logs: `file:/etc/wasp/shop.json`.
    pub fn source(&self) -> String {
        match self {
            DiscoveryConfig::File(p) => format!("file:{}", p.display()),
            DiscoveryConfig::Dns { name, port, .. } => format!("dns:{name}:{port}"),
            DiscoveryConfig::DnsSrv { name, .. } => format!("dns_srv:{name}"),
            DiscoveryConfig::Consul(c) => match &c.tag {
                Some(tag) => format!("consul:{}/{} tag {tag}", c.url, c.service),
                None => format!("consul:{}/{}", c.url, c.service),
            },
            DiscoveryConfig::Eureka(e) => format!("eureka:{}/apps/{}", e.url, e.app),
            DiscoveryConfig::Etcd(e) => format!("etcd:{} prefix {}", e.url, e.prefix),
        }
    }
}
