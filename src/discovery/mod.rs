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
//! instances).
//!
//! Each registry is one file implementing [`Discovery`]: `file.rs`,
//! `dns.rs` (A/AAAA), `srv.rs` (DNS SRV), `consul.rs`, `eureka.rs`,
//! `etcd.rs`. A registry only answers "what are the instances now"; when to
//! publish, when to stop and what to keep on failure is decided here, once.

pub mod consul;
pub mod dns;
pub mod etcd;
pub mod eureka;
pub mod file;
pub mod srv;

use crate::config::{DiscoveryConfig, GatewayConfig};
use crate::fetch::HttpClient;
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
    watchers: HashMap<String, (DiscoveryConfig, Arc<Stop>)>,
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

/// A registry a service's instances come from.
pub trait Discovery: Send {
    /// Waits for the registry's next answer and returns it: the instances
    /// now (empty when the registry says there are none), or why there is
    /// no answer to take (the last good list then stays in use).
    ///
    /// The first call answers as soon as it can; later calls wait first —
    /// for a change (a watch, a blocking query), for the last answer's TTL
    /// or for the poll interval — and back off after a failure, so the
    /// caller can simply loop. Dropping the future cancels the wait.
    fn next(&mut self) -> Next<'_>;
}

/// What [`Discovery::next`] returns.
pub type Next<'a> = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, String>> + Send + 'a>>;

/// A running watcher's stop signal: set by [`sync`], seen at once by the
/// watcher even in the middle of a minute-long blocking query.
#[derive(Default)]
struct Stop {
    flag: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Stop {
    fn stop(&self) {
        self.flag.store(true, Relaxed);
        self.wake.notify_waiters();
    }
}

/// Asks the registry of `settings` until stopped, publishing each answer
/// in `cell` under `generation` (an answer of a replaced watcher is dropped
/// there). A registry that panics is reported as failing (the last list
/// stays, the registry shows stale) and started afresh after a pause: a
/// bug in one adapter never silently ends discovery for a service.
async fn drive(settings: DiscoveryConfig, http: HttpClient, cell: Arc<Live>, generation: u64, stop: Arc<Stop>) {
    use futures_util::future::{select, Either};
    use futures_util::FutureExt;
    let mut registry = registry(&settings, &http);
    loop {
        // Registered before the flag is read: a stop between the two still wakes us.
        let stopped = stop.wake.notified();
        if stop.flag.load(Relaxed) {
            return;
        }
        let next = std::panic::AssertUnwindSafe(registry.next()).catch_unwind();
        let answer = match select(std::pin::pin!(stopped), next).await {
            Either::Left(_) => return,
            Either::Right((answer, _)) => answer,
        };
        match answer {
            Ok(Ok(addrs)) => cell.publish(generation, addrs),
            Ok(Err(why)) => cell.failed(generation, why),
            Err(_) => {
                cell.failed(
                    generation,
                    format!("the {} adapter failed (a bug; logged); restarting it", settings.source()),
                );
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                registry = self::registry(&settings, &http);
            }
        }
    }
}

/// The registry for `settings`.
fn registry(settings: &DiscoveryConfig, http: &HttpClient) -> Box<dyn Discovery> {
    match settings {
        DiscoveryConfig::File(path) => Box::new(file::File::new(path.clone())),
        DiscoveryConfig::Dns { name, port, resolver } => Box::new(dns::Dns::new(name.clone(), *port, *resolver)),
        DiscoveryConfig::DnsSrv { name, resolver } => Box::new(srv::Srv::new(name.clone(), *resolver)),
        DiscoveryConfig::Consul(c) => Box::new(consul::Consul::new(c.clone(), http.clone())),
        DiscoveryConfig::Eureka(e) => Box::new(eureka::Eureka::new(e.clone(), http.clone())),
        DiscoveryConfig::Etcd(e) => Box::new(etcd::Etcd::new(e.clone(), http.clone())),
    }
}

/// A watcher future, to run on the control thread until it is stopped.
pub type Watcher = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts and stops watchers so that exactly the services of `gateway`
/// with discovery settings have one, watching those settings. Called after
/// every publish; `spawn` runs a watcher on the control thread, where
/// `http` (the control plane's client) may be used.
pub fn sync(gateway: &GatewayConfig, http: &HttpClient, spawn: &dyn Fn(Watcher)) {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    let wanted: HashMap<&str, &DiscoveryConfig> =
        gateway.services.iter().filter_map(|s| s.discovery.as_ref().map(|d| (s.name.as_str(), d))).collect();
    t.watchers.retain(|name, (settings, stop)| {
        let keep = wanted.get(name.as_str()).is_some_and(|w| *w == settings);
        if !keep {
            stop.stop();
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
        let stop = Arc::new(Stop::default());
        let generation = cell.restart(settings.source());
        t.watchers.insert(name.to_string(), (settings.clone(), stop.clone()));
        spawn(Box::pin(drive(settings.clone(), http.clone(), cell, generation, stop)));
    }
}

/// At most this many instances per service, whatever a registry lists.
pub const MAX_INSTANCES: usize = 10_000;

/// How long resolving one host name may take.
const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Instances as a registry lists them: in its order, each address once.
#[derive(Default)]
pub struct Found {
    list: Vec<SocketAddr>,
    seen: std::collections::HashSet<SocketAddr>,
}

impl Found {
    pub fn into_vec(self) -> Vec<SocketAddr> {
        self.list
    }
}

/// Host-name lookups running at once: the system resolver blocks a thread
/// of the control runtime's small blocking pool per lookup, and the admin
/// API's store work must always find one free.
fn lookups() -> &'static tokio::sync::Semaphore {
    static LOOKUPS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    LOOKUPS.get_or_init(|| tokio::sync::Semaphore::new(2))
}

/// Adds every address of `host` (an IP address, `[v6]`, or a name for the
/// system resolver) at `port` to `out`, each once. Registries that list
/// names (file, Consul, Eureka, etcd) resolve them here; a name that does
/// not resolve fails the refresh, so a half-resolved list never replaces a
/// good one.
pub async fn resolve(host: &str, port: u16, out: &mut Found) -> Result<(), String> {
    if port == 0 {
        return Err(format!("{host}: port 0"));
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let found: Vec<SocketAddr> = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_)
            if bare.is_empty() || bare.len() > 253 || bare.contains(|c: char| c.is_whitespace() || c.is_control()) =>
        {
            return Err(format!("{host:?} is not a host name or IP address"))
        }
        Err(_) => {
            let lookup = async {
                let _turn = lookups().acquire().await.map_err(|_| format!("{host}: no resolver"))?;
                tokio::net::lookup_host((bare, port)).await.map_err(|e| format!("{host}: {e}"))
            };
            match tokio::time::timeout(RESOLVE_WITHIN, lookup).await {
                Ok(Ok(it)) => it.collect(),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(format!("{host}: not resolved within {} s", RESOLVE_WITHIN.as_secs())),
            }
        }
    };
    for a in found {
        if out.seen.insert(a) {
            if out.list.len() >= MAX_INSTANCES {
                return Err(format!("more than {MAX_INSTANCES} instances"));
            }
            out.list.push(a);
        }
    }
    Ok(())
}

/// `host:port` split (`[v6]:port` too), for registries that store the pair
/// as one string.
pub fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    Some((host, port.parse().ok()?))
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
