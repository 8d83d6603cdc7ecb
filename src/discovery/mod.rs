//! Service discovery: where a service's instances come from when they are
//! not a static list.
//!
//! Discovered instances are runtime state, not configuration: a watcher on
//! the control thread (never on a worker) publishes each service's list in
//! its own [`Live`] cell, which the service in every snapshot points to. An
//! instance change is one `ArcSwap::store`, not a new config version; the
//! discovery *settings* (`[services.X] discovery = {...}`) are versioned
//! with the rest of the service, and a change of them restarts the watcher.
//!
//! A registry that cannot be read keeps the last good list in use (logged,
//! counted, shown by `GET /services/{name}/instances`); a registry that
//! answers "none" empties the list (`503` as for a service with no
//! instances). One file per registry: `file.rs`, `dns.rs` (A/AAAA and SRV).

pub mod dns;
pub mod file;

use crate::config::{DiscoveryConfig, GatewayConfig};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// One service's discovered instances and what is known of their source.
#[derive(Debug, Default)]
pub struct Live {
    /// What workers read, once per request.
    addrs: ArcSwap<Vec<SocketAddr>>,
    state: Mutex<State>,
    pub refreshes: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, Default, Clone)]
pub struct State {
    /// Which watcher may publish: bumped each time one is started, so an
    /// answer from a replaced watcher landing late is dropped.
    pub generation: u64,
    /// `file:/etc/wasp/shop.json`.
    pub source: String,
    /// When the source last answered with a list.
    pub last_seen: Option<SystemTime>,
    /// Why the last refresh failed, while the last good list stays in use.
    pub error: Option<String>,
}

impl Live {
    pub fn addrs(&self) -> Arc<Vec<SocketAddr>> {
        self.addrs.load_full()
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A good answer from the source, from the watcher of `generation`.
    pub fn publish(&self, generation: u64, addrs: Vec<SocketAddr>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.generation != generation {
            return;
        }
        self.refreshes.fetch_add(1, Relaxed);
        if *self.addrs.load_full() != addrs {
            self.addrs.store(Arc::new(addrs));
        }
        s.last_seen = Some(SystemTime::now());
        s.error = None;
    }

    /// A failed refresh from the watcher of `generation`: the last good list stays.
    pub fn failed(&self, generation: u64, why: String) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.generation != generation {
            return;
        }
        self.errors.fetch_add(1, Relaxed);
        if s.error.as_deref() != Some(why.as_str()) {
            tracing::warn!(source = %s.source, error = %why, "discovery failed; the last known instances stay in use");
        }
        s.error = Some(why);
    }

    /// A new watcher takes the cell: nothing of the old source's list is
    /// kept (new settings mean other instances), and until the first answer
    /// the service has none and is shown as waiting. Returns its generation.
    fn restart(&self, source: String) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.generation += 1;
        s.source = source;
        s.last_seen = None;
        s.error = Some("waiting for the registry's first answer".into());
        self.addrs.store(Arc::new(Vec::new()));
        s.generation
    }
}

/// The process's live instance cells, by service name, and their watchers.
#[derive(Default)]
struct Table {
    cells: HashMap<String, Arc<Live>>,
    /// Running watchers: the settings they watch and their stop flag.
    watchers: HashMap<String, (DiscoveryConfig, Arc<AtomicBool>)>,
}

fn table() -> &'static Mutex<Table> {
    // One per process, like the metrics registry: cells outlive snapshots.
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// The live cell of service `name` (made on first use).
pub fn live(name: &str) -> Arc<Live> {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    t.cells.entry(name.to_string()).or_default().clone()
}

/// Every service's cell, for the admin API and the metrics.
pub fn all() -> Vec<(String, Arc<Live>)> {
    let t = table().lock().unwrap_or_else(|p| p.into_inner());
    t.cells.iter().map(|(n, l)| (n.clone(), l.clone())).collect()
}

/// What a watcher writes to and when it must stop.
pub struct Watch {
    cell: Arc<Live>,
    generation: u64,
    stop: Arc<AtomicBool>,
}

impl Watch {
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    pub fn publish(&self, addrs: Vec<SocketAddr>) {
        self.cell.publish(self.generation, addrs);
    }

    pub fn failed(&self, why: String) {
        self.cell.failed(self.generation, why);
    }
}

/// A watcher future, to run on the control thread until its flag is set.
pub type Watcher = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts and stops watchers so that exactly the services of `gateway`
/// with discovery settings have one, watching those settings. Called after
/// every publish; `spawn` runs a watcher on the control thread.
pub fn sync(gateway: &GatewayConfig, spawn: &dyn Fn(Watcher)) {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    let wanted: HashMap<&str, &DiscoveryConfig> =
        gateway.services.iter().filter_map(|s| s.discovery.as_ref().map(|d| (s.name.as_str(), d))).collect();
    t.watchers.retain(|name, (settings, stop)| {
        let keep = wanted.get(name.as_str()).is_some_and(|w| *w == settings);
        if !keep {
            stop.store(true, Relaxed);
        }
        keep
    });
    // Cells of services that no longer discover anything go (their metrics
    // too); snapshots still holding one keep it alive until they end.
    t.cells.retain(|name, _| wanted.contains_key(name.as_str()));
    for (name, settings) in wanted {
        if t.watchers.contains_key(name) {
            continue;
        }
        let cell = t.cells.entry(name.to_string()).or_default().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let generation = cell.restart(settings.source());
        let w = Watch { cell, generation, stop: stop.clone() };
        let watcher: Watcher = match settings {
            DiscoveryConfig::File(path) => Box::pin(file::watch(path.clone(), w)),
            DiscoveryConfig::Dns { name, port, resolver } => {
                Box::pin(dns::watch(dns::Query::Addresses { name: name.clone(), port: *port }, *resolver, w))
            }
            DiscoveryConfig::DnsSrv { name, resolver } => {
                Box::pin(dns::watch(dns::Query::Srv { name: name.clone() }, *resolver, w))
            }
        };
        t.watchers.insert(name.to_string(), (settings.clone(), stop));
        spawn(watcher);
    }
}

/// The discovery metrics, appended to `/metrics`: refreshes and errors per
/// service's registry, and how many instances each has now.
pub fn render(out: &mut String) {
    use std::fmt::Write;
    let mut cells = all();
    if cells.is_empty() {
        return;
    }
    cells.sort_by(|a, b| a.0.cmp(&b.0));
    let _ = writeln!(out, "# HELP wasp_discovery_refreshes_total Good answers from a service's registry.\n# TYPE wasp_discovery_refreshes_total counter");
    for (name, l) in &cells {
        let _ = writeln!(out, "wasp_discovery_refreshes_total{{service=\"{name}\"}} {}", l.refreshes.load(Relaxed));
    }
    let _ = writeln!(out, "# HELP wasp_discovery_errors_total Failed refreshes (the last known instances stay).\n# TYPE wasp_discovery_errors_total counter");
    for (name, l) in &cells {
        let _ = writeln!(out, "wasp_discovery_errors_total{{service=\"{name}\"}} {}", l.errors.load(Relaxed));
    }
    let _ = writeln!(out, "# HELP wasp_discovery_instances Instances a service's registry lists now.\n# TYPE wasp_discovery_instances gauge");
    for (name, l) in &cells {
        let _ = writeln!(out, "wasp_discovery_instances{{service=\"{name}\"}} {}", l.addrs().len());
    }
}
