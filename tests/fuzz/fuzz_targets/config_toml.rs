//! The configuration file: `Config::from_toml` on any text, then the
//! snapshot workers would get from it.
//!
//! Checked: no panic; an error names something; a configuration accepted
//! from the file is accepted again, equal, after the control plane's round
//! trip (`Control::start` splits it into base settings plus services and
//! endpoints stored as JSON, and assembles those back into TOML, as every
//! API apply does). Host names are never resolved here (`src/resolver.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use wasp::config::{Config, GatewayConfig};
use wasp::control::Control;
use wasp::metrics::Registry;
use wasp::pipeline::snapshot::Snapshot;
use wasp::store::SqliteStore;

/// Services and endpoints in name order: the store lists them by name.
fn sorted(mut g: GatewayConfig) -> GatewayConfig {
    g.services.sort_by(|a, b| a.name.cmp(&b.name));
    g.endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    g
}

fuzz_target!(|data: &[u8]| {
    wasp_fuzz::install_resolver();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg = match Config::from_toml(text, "fuzz.toml") {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let registry = Arc::new(Registry::new(1));
    let snap = Snapshot::build(1, cfg.gateway.clone(), &registry);
    assert_eq!(snap.gateway, cfg.gateway);
    let store = SqliteStore::open(None).expect("in-memory store");
    let (_control, again) = Control::start(Box::new(store), text, "fuzz.toml", registry, wasp_fuzz::control_jobs())
        .unwrap_or_else(|e| panic!("accepted from the file, refused after the store's round trip: {e}\n{text}"));
    assert_eq!(again.server, cfg.server, "server settings changed by the round trip\n{text}");
    assert_eq!(sorted(again.gateway), sorted(cfg.gateway), "changed by the store's round trip\n{text}");
});
