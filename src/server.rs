//! The process: load config, start workers and the admin listener, then
//! serve signals — `SIGHUP` reloads, `SIGTERM`/`SIGINT` drain and exit.
//!
//! Reload follows diff → build → check → swap: the new file is parsed and
//! validated completely, a new snapshot is built off the hot path, and only
//! then published with one atomic store. Any failure leaves the running
//! snapshot untouched.

use crate::admin::{self, AdminState};
use crate::config::{admin_token_ok, Config, ConfigError, ADMIN_TOKEN_RULE, DEFAULT_CONFIG};
use crate::control::runtime::ControlRuntime;
use crate::control::Control;
use crate::metrics::Registry;
use crate::pipeline::snapshot::SharedSnapshot;
use crate::shutdown::Shutdown;
use crate::store::SqliteStore;
use crate::systemd;
use crate::worker::listener;
use crate::worker::restart::{Settings, Supervisor};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Command-line settings that win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub workers: Option<usize>,
}

/// The file's text and its name for messages (or the built-in default's).
pub fn read_text(path: Option<&Path>) -> Result<(String, String), ConfigError> {
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| ConfigError(format!("{}: cannot read: {e}", p.display())))?;
            Ok((text, p.display().to_string()))
        }
        None => Ok((DEFAULT_CONFIG.to_string(), "built-in default config".to_string())),
    }
}

/// Reads and validates the file (or the built-in default), then applies overrides.
pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigError> {
    let (text, origin) = read_text(path)?;
    let mut cfg = Config::from_toml(&text, &origin)?;
    if let Some(l) = ov.listen {
        cfg.server.listen = l;
    }
    // The environment wins over the file and obeys the same rule: a set but
    // empty or short variable is a mistake to report, not a reason to run
    // without the token the operator meant to set.
    if let Some(t) = std::env::var_os("WASP_ADMIN_TOKEN") {
        match t.into_string() {
            Ok(t) if admin_token_ok(&t) => cfg.server.admin_token = Some(t),
            _ => return Err(ConfigError(format!("WASP_ADMIN_TOKEN: {ADMIN_TOKEN_RULE}"))),
        }
    }
    if let Some(a) = ov.admin_listen {
        cfg.server.admin_listen = a;
    }
    // Without a token the admin API trusts whoever can connect: that is only
    // this machine's users when it listens on loopback.
    let admin = cfg.server.admin_listen;
    if !admin.ip().is_loopback() && cfg.server.admin_token.is_none() {
        return Err(ConfigError(format!(
            "server.admin_listen = {admin} is not a loopback address and no admin token is set: \
             set admin.token (or WASP_ADMIN_TOKEN) to at least 16 visible ASCII characters, \
             or listen on 127.0.0.1 / [::1]"
        )));
    }
    if crate::config::dev::mode().is_some() {
        // Dev mode never writes to a store a production gateway may share.
        cfg.server.store_path = None;
    }
    match ov.workers {
        Some(0) => cfg.server.workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        Some(n) => cfg.server.workers = n,
        None => {}
    }
    Ok(cfg)
}

/// Runs the gateway until `SIGTERM`/`SIGINT`; returns after draining.
pub fn serve(path: Option<PathBuf>, ov: Overrides) -> Result<(), String> {
    let config = load(path.as_deref(), &ov).map_err(|e| e.to_string())?;
    let _log_guard = crate::logging::init(&config.server);
    // Before any worker runs: panics are logged with their backtrace.
    crate::pipeline::tasks::install_hook();
    let s = &config.server;
    // Signals are registered before any thread starts so every thread
    // inherits the mask and no signal is lost during start-up.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT]).map_err(|e| format!("signals: {e}"))?;

    let registry = Arc::new(Registry::new(s.workers));
    // Before the first snapshot: routes and workers find Kafka's settings here.
    if !crate::auth::init_secret(&s.key_secret_env) {
        tracing::info!(env = %s.key_secret_env, "no API key secret (32 bytes or more) in the environment: API keys can be neither created nor checked");
    }
    let kafka = crate::kafka::init(s.kafka.clone(), s.node_id);
    if !s.kafka.push_topics.is_empty() || crate::kafka::needed_by(&config.gateway) {
        kafka.start_producer();
    }
    // Versions of services and endpoints: the file seeds the store, and the
    // routed configuration is built from the store's active versions.
    let store = SqliteStore::open(s.store_path.as_deref()).map_err(|e| e.to_string())?;
    let (text, origin) = read_text(path.as_deref()).map_err(|e| e.to_string())?;
    // The control thread: later changes (API applies, reloads) and their
    // slow work run there, never on the admin listener's thread. The first
    // seeding below runs here, before anything listens.
    let control_rt = ControlRuntime::start()?;
    let (control, _) = Control::start(Box::new(store), &text, &origin, registry.clone(), control_rt.handle())
        .map_err(|e| e.to_string())?;
    let control = Arc::new(control);
    let snapshot: SharedSnapshot = control.snapshot();
    let shutdown = Arc::new(Shutdown::default());

    let listeners = listener::bind_all(s.listen, s.workers, s.backlog)
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    let public = listeners[0].local_addr().map_err(|e| e.to_string())?;
    let admin_listener = listener::bind_single(s.admin_listen)
        .map_err(|e| format!("cannot listen on {} (admin): {e}", s.admin_listen))?;
    let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;

    let cores = if s.pin_workers { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    // Bounded: a flood of admin pushes waits here, not in worker memory.
    let (inboxes, inbox_rxs): (Vec<_>, Vec<_>) = (0..listeners.len()).map(|_| flume::bounded(4096)).unzip();
    let settings = Settings {
        addr: public,
        backlog: s.backlog,
        snapshot: snapshot.clone(),
        registry: registry.clone(),
        shutdown: shutdown.clone(),
        driver: s.io_driver,
        cores,
        scheduler_slice: s.scheduler_slice,
        drain_timeout: s.drain_timeout,
    };
    let (supervisor, drivers) = Supervisor::start(settings, listeners, inbox_rxs)?;
    crate::control::kafka::start(kafka, inboxes.clone(), &control_rt.handle());
    let workers = drivers.len();

    let state = Arc::new(AdminState {
        registry: registry.clone(),
        snapshot: snapshot.clone(),
        ready: Default::default(),
        shutdown: shutdown.clone(),
        inboxes,
        access: admin::gate::Access::new(config.server.admin_token.as_deref(), &s.admin_allowed_hosts),
        control: Some(control.clone()),
        workers: supervisor.health(),
        public,
        started_ms: crate::pipeline::ws::conn::wall_ms(crate::pipeline::ws::conn::now_ms()),
        dashboard: Default::default(),
    });
    let admin_state = state.clone();
    let admin_thread = std::thread::Builder::new()
        .name("wasp-admin".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build();
            match rt {
                Ok(mut rt) => rt.block_on(async move {
                    // The dashboard's sampler: on this thread, never a worker's.
                    monoio::spawn(admin::stats::run(admin_state.clone()));
                    admin::server::run(admin_listener, admin_state.shutdown.clone(), move |req| {
                        admin::handle(admin_state.clone(), req)
                    })
                    .await
                }),
                Err(e) => tracing::error!(error = %e, "admin runtime failed"),
            }
        })
        .map_err(|e| format!("cannot start admin thread: {e}"))?;
    // Its own thread: the signal loop below blocks in `forever()`.
    let supervisor_thread = std::thread::Builder::new()
        .name("wasp-supervisor".into())
        .spawn(move || supervisor.run())
        .map_err(|e| format!("cannot start supervisor thread: {e}"))?;

    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(public = %public, admin = %admin_addr, workers, driver = drivers.first().copied().unwrap_or("?"), "wasp ready");
    systemd::notify("READY=1");

    let mut current = config;
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                systemd::notify("RELOADING=1");
                // On the control thread, like every change: one after another
                // with API applies (see `control`), and its DNS lookups and
                // store commits off this thread too.
                let (p, o, c, ctl) = (path.clone(), ov.clone(), current.clone(), control.clone());
                match control.jobs().run_wait(move || reload(p.as_deref(), &o, c, &ctl)) {
                    Ok(next) => current = next,
                    Err(e) => tracing::error!(error = %e, "reload not run"),
                }
                systemd::notify("READY=1");
            }
            _ => break,
        }
    }

    tracing::info!("draining");
    systemd::notify("STOPPING=1");
    state.ready.store(false, Ordering::SeqCst);
    shutdown.trigger();
    // The supervisor returns once every worker has drained and exited
    // (none is restarted now that shutdown has started).
    if supervisor_thread.join().is_err() {
        tracing::error!("the supervisor thread panicked; workers may not have drained");
    }
    let _ = admin_thread.join();
    drop(state);
    control_rt.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads the file; on success its services and endpoints are seeded
/// into the store and the snapshot swapped, on failure nothing changes.
/// Returns the configuration now running (`current` when nothing changed).
fn reload(path: Option<&Path>, ov: &Overrides, mut current: Config, control: &Control) -> Config {
    let Some(path) = path else {
        tracing::info!("reload requested, but wasp runs on the built-in config: nothing to re-read");
        return current;
    };
    let registry = control.registry();
    let version = control.snapshot().load().version;
    let rejected = |e: &dyn std::fmt::Display| {
        registry.reloads_failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, version, "reload rejected; the running configuration stays");
    };
    let new = match load(Some(path), ov) {
        Ok(c) => c,
        Err(e) => {
            rejected(&e);
            return current;
        }
    };
    if new.server != current.server {
        tracing::warn!(
            "server settings (listen, workers, log, driver, store) changed: they take effect after a restart"
        );
    }
    let (text, origin) = match read_text(Some(path)) {
        Ok(t) => t,
        Err(e) => {
            rejected(&e);
            return current;
        }
    };
    match control.seed(&text, &origin) {
        Ok(_) => {
            let now = control.snapshot().load().version;
            if now == version {
                tracing::info!(version, "reload: no change");
            } else {
                tracing::info!(version = now, "configuration reloaded");
            }
            current.gateway = new.gateway;
        }
        Err(e) => rejected(&e),
    }
    current
}
