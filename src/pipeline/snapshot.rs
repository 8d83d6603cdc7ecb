//! The immutable snapshot workers read on every request: the validated
//! config, the routing tables and the filter chains built from it.
//!
//! The control plane builds a new [`Snapshot`] from a validated
//! [`GatewayConfig`] and publishes it with one `ArcSwap::store`; a worker loads
//! it with one atomic operation and keeps that `Arc` for the whole request, so
//! a request never sees half of one version and half of another (filters
//! included: they are built here, so a reload swaps them with the routes).

use crate::config::GatewayConfig;
use crate::filters::Chain;
use crate::metrics::Registry;
use crate::router::Router;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub use crate::router::Service;

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful publish.
    pub version: u64,
    pub gateway: GatewayConfig,
    pub router: Router,
    /// Each service's filter chain, by `Service::index`.
    pub filters: Vec<Chain>,
}

impl Snapshot {
    pub fn build(version: u64, gateway: GatewayConfig, registry: &Registry) -> Snapshot {
        let router = Router::build(&gateway, registry);
        let filters = gateway.services.iter().map(|s| Chain::build(s, &gateway, registry)).collect();
        Snapshot { version, gateway, router, filters }
    }
}

/// The one publication point shared by the control plane and all workers.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
