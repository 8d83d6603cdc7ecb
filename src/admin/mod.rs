//! The admin listener: health, readiness and metrics. Bound to localhost by
//! default and never on the public listener.

pub mod assets;
pub mod catalog;
pub mod client;
pub mod config;
pub mod gate;
pub mod keys;
pub mod pointer;
pub mod precondition;
pub mod push;
pub mod server;
pub mod stats;

use crate::metrics::Registry;
use crate::pipeline::snapshot::SharedSnapshot;
use crate::shutdown::Shutdown;
use server::{AdminRequest, AdminResponse};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The OpenAPI document of the admin listener (checked against the router by
/// `tests/config_api.rs`).
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the admin handlers can see.
pub struct AdminState {
    pub registry: Arc<Registry>,
    pub snapshot: SharedSnapshot,
    /// True once every worker listens, false again when draining starts.
    pub ready: AtomicBool,
    pub shutdown: Arc<Shutdown>,
    /// Who may ask: the Host, Origin, media-type and token rules (`gate.rs`).
    pub access: gate::Access,
    /// Configuration changes and their history (absent in unit tests).
    pub control: Option<Arc<crate::control::Control>>,
    /// One inbox per worker, for the push API.
    pub inboxes: Vec<flume::Sender<crate::pipeline::ws::push::Command>>,
    /// Workers that died and are not replaced yet (`/readyz` is 503 meanwhile).
    pub workers: Arc<crate::worker::restart::Health>,
    /// The public listener's address (the UI's test console connects there).
    pub public: std::net::SocketAddr,
    /// When this process started (ms since the epoch).
    pub started_ms: u64,
    /// The live dashboard's samples (`stats.rs`), written by its ticker on
    /// the admin thread.
    pub dashboard: std::sync::Mutex<stats::Dashboard>,
}

/// 503 only while this node cannot serve: starting, draining, or a worker
/// dead and not replaced yet (named in the body); 200 otherwise.
fn readyz(state: &AdminState) -> AdminResponse {
    let version = state.snapshot.load().version;
    if state.shutdown.is_triggered() {
        return AdminResponse::json(503, r#"{"status":"draining"}"#);
    }
    if !state.ready.load(Ordering::SeqCst) {
        return AdminResponse::json(503, r#"{"status":"starting"}"#);
    }
    let dead = state.workers.dead();
    if !dead.is_empty() {
        let ids: Vec<String> = dead.iter().map(|i| i.to_string()).collect();
        let body =
            format!(r#"{{"status":"worker_dead","dead_workers":[{}],"config_version":{version}}}"#, ids.join(","));
        return AdminResponse::json(503, body);
    }
    // A registry that cannot be read keeps its last instances serving: ready,
    // but named, so an operator sees which list may be out of date.
    let snap = state.snapshot.load();
    let mut stale: Vec<String> = snap
        .router
        .services
        .values()
        .filter(|s| s.dynamic.as_ref().is_some_and(|d| d.state().error.is_some()))
        .map(|s| crate::pipeline::ws::conn::json_string(&s.name))
        .collect();
    let mut body = format!(r#"{{"status":"ready","config_version":{version}"#);
    if !stale.is_empty() {
        stale.sort();
        body.push_str(&format!(r#","stale_discovery":[{}]"#, stale.join(",")));
    }
    // Kafka's state is reported, never a reason to be unready: everything
    // that does not need Kafka serves, and what does answers with errors.
    if let Some(k) = crate::kafka::client().readiness_json() {
        body.push_str(&format!(r#","kafka":{k}"#));
    }
    // Likewise key sets and introspection servers: keys already fetched
    // and answers already cached keep working while they are down.
    if let Some(j) = crate::auth::jwks::readiness_json() {
        body.push_str(&format!(r#","jwks":{j}"#));
    }
    if let Some(i) = crate::auth::introspect::readiness_json() {
        body.push_str(&format!(r#","introspection":{i}"#));
    }
    body.push('}');
    AdminResponse::json(200, body)
}

pub async fn handle(state: Arc<AdminState>, mut req: AdminRequest) -> AdminResponse {
    // HEAD is answered wherever GET is (the server sends no body for it).
    if req.method == "HEAD" {
        req.method = "GET".to_string();
    }
    if let Err((why, res)) = state.access.check(&req) {
        state.registry.admin_refused[why.index()].fetch_add(1, Ordering::Relaxed);
        return res;
    }
    if let Some(res) = assets::handle(&req, state.public.port()) {
        return res;
    }
    if let Some(res) = push::handle(&state, &req).await {
        return res;
    }
    if let Some(res) = catalog::handle(&state, &req).await {
        return res;
    }
    if let Some(res) = config::handle(&state, &req).await {
        return res;
    }
    let get = req.method == "GET" || req.method == "HEAD";
    match (get, req.path.as_str()) {
        (true, "/healthz") => AdminResponse::json(200, r#"{"status":"ok"}"#),
        (true, "/readyz") => readyz(&state),
        (true, "/stats") => stats::handle(&state, &req.query),
        (true, "/openapi.json") => AdminResponse::json(200, OPENAPI),
        (true, "/metrics") => AdminResponse {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: {
                let mut text = state.registry.render(state.snapshot.load().version);
                crate::discovery::render(&mut text);
                crate::upstream::outlier::render(&mut text);
                crate::kafka::client().render(&mut text);
                crate::auth::render(&mut text);
                crate::limits::render(&mut text);
                instances_by_state(&state, &mut text);
                text.into_bytes()
            },
            allow: None,
            headers: Vec::new(),
            head_only: false,
        },
        (false, "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/stats") => {
            AdminResponse::method_not_allowed("GET, HEAD")
        }
        _ => AdminResponse::error(404, "not_found", "no such admin endpoint"),
    }
}

/// `wasp_instances{service,state}`: each service's instances now (static or
/// discovered) by state — `serving`, `ejected` (outlier detection) or
/// `unhealthy` (active checks).
fn instances_by_state(state: &AdminState, out: &mut String) {
    use std::fmt::Write;
    let snap = state.snapshot.load();
    let mut services: Vec<_> = snap.router.services.values().collect();
    if services.is_empty() {
        return;
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let now = crate::upstream::outlier::now_ms();
    let _ = writeln!(out, "# HELP wasp_instances A service's instances now, by state.\n# TYPE wasp_instances gauge");
    for s in services {
        let (serving, ejected, unhealthy) = instance_counts_at(s, now);
        for (st, n) in [("serving", serving), ("ejected", ejected), ("unhealthy", unhealthy)] {
            let _ = writeln!(out, "wasp_instances{{service=\"{}\",state=\"{st}\"}} {n}", s.name);
        }
    }
}

/// A service's instances now (static or discovered): (serving, ejected by
/// outlier detection, unhealthy by active checks).
pub fn instance_counts(s: &crate::router::Service) -> (usize, usize, usize) {
    instance_counts_at(s, crate::upstream::outlier::now_ms())
}

fn instance_counts_at(s: &crate::router::Service, now: u64) -> (usize, usize, usize) {
    let discovered = s.dynamic.as_ref().map(|d| d.addrs());
    let list = discovered.as_deref().map_or(&s.config.instances[..], |v| &v[..]);
    let (mut serving, mut ejected, mut unhealthy) = (0, 0, 0);
    for a in list {
        match s.health.get(a) {
            Some(h) if h.unhealthy.load(std::sync::atomic::Ordering::Relaxed) => unhealthy += 1,
            Some(h) if h.ejected_until() > now => ejected += 1,
            _ => serving += 1,
        }
    }
    (serving, ejected, unhealthy)
}
