//! Phase "route": which service or WebSocket endpoint a request is for.
//!
//! The tables are built once per snapshot; a lookup is one hash probe on
//! the first path segment (services) or on the whole path (endpoints).

pub mod endpoint;

use crate::config::{GatewayConfig, ServiceConfig};
use crate::metrics::{Registry, ServiceStats};
use crate::targets::Strategy;
use ahash::AHashMap;
use endpoint::Endpoint;
use std::sync::Arc;

/// One service as workers use it.
#[derive(Debug)]
pub struct Service {
    pub name: Arc<str>,
    pub config: ServiceConfig,
    pub strategy: Strategy,
    /// Position in the configuration: keys per-worker state such as the
    /// round-robin cursor and the retry budget (valid for this version), and
    /// the service's filter chain in the snapshot.
    pub index: usize,
    /// Request counters, kept across reloads for as long as the name exists.
    pub stats: Arc<ServiceStats>,
    /// Discovered instances (`discovery = {...}`), read per request instead
    /// of `config.instances`; the same cell across snapshots.
    pub dynamic: Option<Arc<crate::discovery::Live>>,
    /// Its instances' outlier state, shared by the workers, across snapshots.
    pub health: Arc<crate::upstream::outlier::ServiceHealth>,
}

/// Where a request goes.
pub enum Route<'r> {
    Http(&'r Arc<Service>),
    Ws(&'r Arc<Endpoint>),
    /// Nothing is routed at this path.
    None,
}

#[derive(Debug)]
pub struct Router {
    pub services: AHashMap<Arc<str>, Arc<Service>>,
    /// Counters for requests that matched no service.
    pub unrouted: Arc<ServiceStats>,
    /// WebSocket endpoints by name.
    pub endpoints: AHashMap<Arc<str>, Arc<Endpoint>>,
    /// WebSocket endpoints by upgrade path.
    pub endpoint_paths: AHashMap<String, Arc<Endpoint>>,
    /// Dev mode's `--fallback`: where a name no service matches goes.
    pub fallback: Option<Arc<Service>>,
}

impl Router {
    pub fn build(gateway: &GatewayConfig, registry: &Registry) -> Router {
        let services = gateway
            .services
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let name: Arc<str> = Arc::from(s.name.as_str());
                let svc = Service {
                    name: name.clone(),
                    config: s.clone(),
                    strategy: if s.bus.is_some() { Strategy::Bus } else { Strategy::Http },
                    index,
                    stats: registry.service(&s.name),
                    dynamic: s.discovery.as_ref().map(|_| crate::discovery::live(&s.name)),
                    health: crate::upstream::outlier::service(&s.name),
                };
                (name, Arc::new(svc))
            })
            .collect();
        let mut endpoints = AHashMap::new();
        let mut endpoint_paths = AHashMap::new();
        for e in &gateway.endpoints {
            let mut ep = Endpoint::new(e.clone(), gateway);
            ep.stats = registry.endpoint(&e.name);
            let ep = Arc::new(ep);
            endpoints.insert(Arc::from(e.name.as_str()), ep.clone());
            endpoint_paths.insert(e.path.clone(), ep);
        }
        let fallback = gateway.dev_fallback.as_ref().map(|f| {
            let config = ServiceConfig {
                name: "(fallback)".into(),
                instances: vec![f.addr],
                connect_timeout: gateway.timeouts.connect,
                timeout: gateway.timeouts.upstream,
                retry: Default::default(),
                filters: Vec::new(),
                discovery: None,
                mock: None,
                whole_path: true,
                balance: Default::default(),
                circuit: Default::default(),
                outlier: Default::default(),
                health: None,
                bus: None,
                auth: Default::default(),
                rate_limits: Vec::new(),
                dev: Some(crate::config::dev::DevRoute::Fallback(Arc::from(f.url.as_str()))),
            };
            Arc::new(Service {
                name: Arc::from("(fallback)"),
                config,
                strategy: Strategy::Http,
                // One past the services: no filter chain, its own balance slot.
                index: gateway.services.len(),
                stats: registry.service("(fallback)"),
                dynamic: None,
                health: crate::upstream::outlier::service("(fallback)"),
            })
        });
        Router { services, unrouted: registry.service(""), endpoints, endpoint_paths, fallback }
    }

    /// Routes a normalised request: `service` is the first path segment,
    /// `rest` the path after it (`/` when none). A WebSocket endpoint's
    /// path wins over a service of the same first segment.
    pub fn route(&self, service: &str, rest: &str) -> Route<'_> {
        if !self.endpoint_paths.is_empty() {
            let full = if rest == "/" { format!("/{service}") } else { format!("/{service}{rest}") };
            if let Some(ep) = self.endpoint_paths.get(&full) {
                return Route::Ws(ep);
            }
        }
        match (self.services.get(service), &self.fallback) {
            (Some(s), _) => Route::Http(s),
            // Only a name that could be a service goes on: the name becomes
            // part of the fallback's request line (it was percent-decoded).
            (None, Some(f)) if crate::config::valid_service_name(service) => Route::Http(f),
            (None, _) => Route::None,
        }
    }

    /// A service by name (a filter may send a request to another one).
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.get(name)
    }
}
