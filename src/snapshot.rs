//! The immutable routing snapshot workers read on every request.
//!
//! The control plane builds a new [`Snapshot`] from a validated
//! [`GatewayConfig`] and publishes it with one `ArcSwap::store`; a worker loads
//! it with one atomic operation and keeps that `Arc` for the whole request, so
//! a request never sees half of one version and half of another.

use crate::config::{GatewayConfig, ServiceConfig};
use crate::metrics::{Registry, ServiceStats};
use crate::ws::endpoint::Endpoint;
use ahash::AHashMap;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// How a service's requests leave the gateway. HTTP is the first strategy;
/// a message-bus strategy is another variant here, not a change to routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Http,
}

#[derive(Debug)]
pub struct Service {
    pub name: Arc<str>,
    pub config: ServiceConfig,
    pub strategy: Strategy,
    /// Position in the configuration: keys per-worker state such as the
    /// round-robin cursor and the retry budget (valid for this version).
    pub index: usize,
    /// Request counters, kept across reloads for as long as the name exists.
    pub stats: Arc<ServiceStats>,
}

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful publish.
    pub version: u64,
    pub gateway: GatewayConfig,
    pub services: AHashMap<Arc<str>, Arc<Service>>,
    /// Counters for requests that matched no service.
    pub unrouted: Arc<ServiceStats>,
    /// WebSocket endpoints by name.
    pub endpoints: AHashMap<Arc<str>, Arc<Endpoint>>,
    /// WebSocket endpoints by upgrade path.
    pub endpoint_paths: AHashMap<String, Arc<Endpoint>>,
}

impl Snapshot {
    pub fn build(version: u64, gateway: GatewayConfig, registry: &Registry) -> Snapshot {
        let services = gateway
            .services
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let name: Arc<str> = Arc::from(s.name.as_str());
                let svc = Service {
                    name: name.clone(),
                    config: s.clone(),
                    strategy: Strategy::Http,
                    index,
                    stats: registry.service(&s.name),
                };
                (name, Arc::new(svc))
            })
            .collect();
        let mut endpoints = AHashMap::new();
        let mut endpoint_paths = AHashMap::new();
        for e in &gateway.endpoints {
            let ep = Arc::new(Endpoint::new(e.clone()));
            endpoints.insert(Arc::from(e.name.as_str()), ep.clone());
            endpoint_paths.insert(e.path.clone(), ep);
        }
        Snapshot { version, gateway, services, unrouted: registry.service(""), endpoints, endpoint_paths }
    }
}

/// The one publication point shared by the control plane and all workers.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
