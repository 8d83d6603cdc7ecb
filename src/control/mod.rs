//! The control plane's configuration changes: the file's base settings plus
//! the store's active services and endpoints make the routed configuration.
//!
//! Every change — a reload of the file, an API write, applying an old
//! version — goes validate → commit → swap: the whole candidate
//! configuration is assembled and validated first, the new versions are
//! committed in one store transaction, and only then is the snapshot swapped.
//! A failure at any step leaves the running configuration and the store as
//! they were.
//!
//! Changes are serialized: the store and the file's settings sit under one
//! lock, taken once per change, so an API apply and a `SIGHUP` reload that
//! race end as one after the other — neither builds on a copy of the file's
//! settings that the other has replaced. The work itself runs on the control
//! thread ([`runtime`]): callers on the admin listener await [`Control::run`].

pub mod diff;
pub mod kafka;
pub mod runtime;

use crate::config::{Config, ConfigError};
use crate::metrics::Registry;
use crate::pipeline::snapshot::{SharedSnapshot, Snapshot};
use crate::store::{Change, ConfigStore, Kind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Who wrote versions that came from the file.
pub const FILE_AUTHOR: &str = "file";

/// The result of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Snapshot version now running.
    pub snapshot_version: u64,
    /// (kind, name, new store version) of each change.
    pub changed: Vec<(Kind, String, u64)>,
    /// Validate + commit + swap, in microseconds.
    pub apply_us: u64,
}

#[derive(Debug)]
pub enum ApplyError {
    /// The candidate configuration is invalid (names the key).
    Invalid(ConfigError),
    /// The store failed; nothing changed.
    Store(String),
    NotFound(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Invalid(e) => write!(f, "{e}"),
            ApplyError::Store(e) => write!(f, "config store: {e}"),
            ApplyError::NotFound(e) => write!(f, "{e}"),
        }
    }
}

/// One entity's kind, name and canonical JSON.
type Entity = (Kind, String, String);

/// The file's settings without `services` and `endpoints`.
#[derive(Clone)]
struct Base {
    table: toml::Table,
    origin: String,
}

/// What a change reads and writes, under one lock (see the module doc).
struct State {
    store: Box<dyn ConfigStore>,
    base: Base,
}

pub struct Control {
    state: Mutex<State>,
    registry: Arc<Registry>,
    snapshot: SharedSnapshot,
    /// The control thread, where callers on other threads run changes.
    jobs: runtime::Handle,
}

/// Canonical JSON text of one entity (key order as written: routes keep theirs).
pub fn entity_json(v: &toml::Value) -> Result<String, ConfigError> {
    serde_json::to_string(v).map_err(|e| ConfigError(format!("cannot encode as JSON: {e}")))
}

fn kind_table(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "services",
        Kind::Endpoint => "endpoints",
        Kind::Consumer => "consumers",
    }
}

/// Splits a validated file into its base settings and its entities.
fn split(text: &str, origin: &str) -> Result<(Base, Vec<Entity>), ConfigError> {
    let mut table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ConfigError(format!("{origin}: {}", e.message())))?;
    let mut entities = Vec::new();
    for kind in Kind::ALL {
        if let Some(toml::Value::Table(t)) = table.remove(kind_table(kind)) {
            for (name, v) in t {
                entities.push((kind, name, entity_json(&v)?));
            }
        }
    }
    Ok((Base { table, origin: origin.to_string() }, entities))
}

/// Builds and validates the whole configuration: base + entities.
fn assemble(base: &Base, entities: &[Entity]) -> Result<Config, ConfigError> {
    let mut table = base.table.clone();
    for kind in Kind::ALL {
        let mut t = toml::Table::new();
        for (k, name, json) in entities.iter().filter(|(k, _, _)| *k == kind) {
            let v: toml::Value =
                serde_json::from_str(json).map_err(|e| ConfigError(format!("{} {name:?}: {e}", k.as_str())))?;
            t.insert(name.clone(), v);
        }
        if !t.is_empty() {
            table.insert(kind_table(kind).to_string(), toml::Value::Table(t));
        }
    }
    let text = toml::to_string(&table).map_err(|e| ConfigError(format!("cannot assemble the configuration: {e}")))?;
    let mut config = Config::from_toml(&text, &base.origin)?;
    if let Some(dev) = crate::config::dev::mode() {
        dev.apply(&mut config.gateway)?;
    }
    Ok(config)
}

impl Control {
    /// Seeds an (empty or existing) store from the file and builds the first
    /// snapshot from the store's active entities.
    pub fn start(
        store: Box<dyn ConfigStore>,
        file_text: &str,
        origin: &str,
        registry: Arc<Registry>,
        jobs: runtime::Handle,
    ) -> Result<(Control, Config), ConfigError> {
        let (base, _) = split(file_text, origin)?;
        // A placeholder until the first assemble: never published.
        let first = Config::from_toml(file_text, origin)?;
        let snapshot: SharedSnapshot =
            Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::build(0, first.gateway.clone(), &registry)));
        let control = Control { state: Mutex::new(State { store, base }), registry, snapshot, jobs };
        let config = control.seed(file_text, origin).map_err(|e| ConfigError(e.to_string()))?;
        control.sync_discovery(&config.gateway);
        if control.snapshot.load().version == 0 {
            // The placeholder matched: publish version 1 all the same.
            control.snapshot.store(Arc::new(Snapshot::build(1, config.gateway.clone(), &control.registry)));
        } else {
            // The start is not a reload.
            control.registry.reloads_ok.store(0, Ordering::Relaxed);
        }
        control
            .registry
            .applied_ms
            .store(crate::pipeline::ws::conn::wall_ms(crate::pipeline::ws::conn::now_ms()), Ordering::Relaxed);
        Ok((control, config))
    }

    pub fn snapshot(&self) -> SharedSnapshot {
        self.snapshot.clone()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The control thread's handle (for work that is not a change: fetches).
    pub fn jobs(&self) -> &runtime::Handle {
        &self.jobs
    }

    /// Runs `f` on the control thread; the answer comes through a future
    /// any runtime can await (the admin listener's monoio thread does).
    pub fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Control) -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, runtime::Gone>> + 'static {
        let me = self.clone();
        self.jobs.run(move || f(&me))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the store (under the one lock: never half of a change).
    pub fn with_store<T>(&self, f: impl FnOnce(&dyn ConfigStore) -> T) -> T {
        f(self.lock().store.as_ref())
    }

    fn active(store: &dyn ConfigStore) -> Result<Vec<(Kind, String, String, String)>, ApplyError> {
        let rows = store.active().map_err(|e| ApplyError::Store(e.0))?;
        Ok(rows.into_iter().filter_map(|(k, n, v)| v.content.map(|c| (k, n, c, v.meta.author))).collect())
    }

    /// The file seeds the store: whatever differs from the active versions
    /// becomes new versions; entities the file put there and no longer names
    /// are deleted; entities written through the API are left alone.
    pub fn seed(&self, file_text: &str, origin: &str) -> Result<Config, ApplyError> {
        let (base, file_entities) = split(file_text, origin).map_err(ApplyError::Invalid)?;
        let mut state = self.lock();
        let active = Self::active(state.store.as_ref())?;
        let mut changes = Vec::new();
        for (kind, name, json) in &file_entities {
            if !active.iter().any(|(k, n, c, _)| k == kind && n == name && c == json) {
                changes.push(Change {
                    kind: *kind,
                    name: name.clone(),
                    content: Some(json.clone()),
                    author: FILE_AUTHOR.into(),
                    comment: format!("from {origin}"),
                });
            }
        }
        for (kind, name, _, author) in &active {
            if author == FILE_AUTHOR && !file_entities.iter().any(|(k, n, _)| k == kind && n == name) {
                changes.push(Change {
                    kind: *kind,
                    name: name.clone(),
                    content: None,
                    author: FILE_AUTHOR.into(),
                    comment: format!("removed from {origin}"),
                });
            }
        }
        let started = Instant::now();
        let config = self.validate_commit_swap(&mut state.store, &base, &active, changes, started)?.1;
        // Still under the lock: the next change builds on this file's settings.
        state.base = base;
        Ok(config)
    }

    /// Applies changes written through the API.
    pub fn apply(&self, changes: Vec<Change>) -> Result<Applied, ApplyError> {
        self.apply_planned(|_| Ok::<_, ApplyError>(changes))?
    }

    /// Applies the changes `plan` works out from the store, under the same
    /// lock: nothing can land between reading and applying (an import's
    /// "make it exactly this document"). `plan`'s own error comes back as
    /// the outer one.
    pub fn apply_planned<E>(
        &self,
        plan: impl FnOnce(&dyn ConfigStore) -> Result<Vec<Change>, E>,
    ) -> Result<Result<Applied, ApplyError>, E> {
        let started = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let changes = plan(state.store.as_ref())?;
        let applied = Self::active(state.store.as_ref()).and_then(|active| {
            self.validate_commit_swap(&mut state.store, &state.base, &active, changes, started).map(|(a, _)| a)
        });
        Ok(applied)
    }

    /// Makes an existing version active again.
    pub fn activate(&self, kind: Kind, name: &str, version: u64) -> Result<Applied, ApplyError> {
        self.activate_checked(kind, name, version, |_| Ok::<(), ApplyError>(()))?
    }

    /// [`Control::activate`] once `check` passes, under the same lock (an
    /// `If-Match` on a rollback); `check`'s error comes back as the outer one.
    pub fn activate_checked<E>(
        &self,
        kind: Kind,
        name: &str,
        version: u64,
        check: impl FnOnce(&dyn ConfigStore) -> Result<(), E>,
    ) -> Result<Result<Applied, ApplyError>, E> {
        let started = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        check(state.store.as_ref())?;
        Ok(self.activate_locked(state, kind, name, version, started))
    }

    fn activate_locked(
        &self,
        state: &mut State,
        kind: Kind,
        name: &str,
        version: u64,
        started: Instant,
    ) -> Result<Applied, ApplyError> {
        let v = state
            .store
            .get(kind, name, version)
            .map_err(|e| ApplyError::Store(e.0))?
            .ok_or_else(|| ApplyError::NotFound(format!("{} {name:?} has no version {version}", kind.as_str())))?;
        let mut entities: Vec<Entity> = Self::active(state.store.as_ref())?
            .into_iter()
            .filter(|(k, n, _, _)| !(*k == kind && n == name))
            .map(|(k, n, c, _)| (k, n, c))
            .collect();
        if let Some(c) = v.content {
            entities.push((kind, name.to_string(), c));
        }
        let config = assemble(&state.base, &entities).map_err(ApplyError::Invalid)?;
        state.store.activate(kind, name, version).map_err(|e| ApplyError::Store(e.0))?;
        revoke_deleted(&mut state.store, &config.gateway);
        publish_keys(state.store.as_ref(), &config.gateway);
        let snapshot_version = self.swap(config);
        Ok(Applied {
            snapshot_version,
            changed: vec![(kind, name.to_string(), version)],
            apply_us: started.elapsed().as_micros() as u64,
        })
    }

    /// A new API key for `consumer`: `(id, key, created_ms)`. The key is
    /// shown here once; the store keeps only its HMAC.
    pub fn key_create(&self, consumer: &str) -> Result<(String, String, u64), ApplyError> {
        let mut state = self.lock();
        let gateway = self.snapshot.load().gateway.clone();
        if !gateway.consumers.iter().any(|c| c.name == consumer) {
            return Err(ApplyError::NotFound(format!("no consumer named {consumer:?}")));
        }
        let (id, key) = crate::auth::new_key().map_err(ApplyError::Store)?;
        let Some(digest) = crate::auth::digest(key.as_bytes()) else {
            return Err(ApplyError::Invalid(ConfigError(
                "auth.key_secret_env: the key secret is not set (at least 32 bytes in the environment variable it names, at start)".into(),
            )));
        };
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let stored = crate::store::StoredKey {
            id: id.clone(),
            consumer: consumer.to_string(),
            hmac: crate::auth::to_hex(&digest),
            created_ms,
        };
        state.store.key_add(&stored).map_err(|e| ApplyError::Store(e.0))?;
        publish_keys(state.store.as_ref(), &gateway);
        Ok((id, key, created_ms))
    }

    /// The live keys of `consumer` (ids and creation times; never the keys).
    pub fn key_list(&self, consumer: &str) -> Result<Vec<crate::store::StoredKey>, ApplyError> {
        self.lock().store.keys(Some(consumer)).map_err(|e| ApplyError::Store(e.0))
    }

    /// Revokes a key; effective on every worker at its next request.
    pub fn key_revoke(&self, consumer: &str, id: &str) -> Result<bool, ApplyError> {
        let mut state = self.lock();
        let found = state.store.key_revoke(consumer, id).map_err(|e| ApplyError::Store(e.0))?;
        publish_keys(state.store.as_ref(), &self.snapshot.load().gateway);
        Ok(found)
    }

    /// Validates changes against the active set without storing anything.
    pub fn validate(&self, changes: &[Change]) -> Result<(), ApplyError> {
        let state = self.lock();
        let active = Self::active(state.store.as_ref())?;
        assemble(&state.base, &merged(&active, changes)).map(|_| ()).map_err(ApplyError::Invalid)
    }

    fn validate_commit_swap(
        &self,
        store: &mut Box<dyn ConfigStore>,
        base: &Base,
        active: &[(Kind, String, String, String)],
        changes: Vec<Change>,
        started: Instant,
    ) -> Result<(Applied, Config), ApplyError> {
        let config = assemble(base, &merged(active, &changes)).map_err(ApplyError::Invalid)?;
        let numbers =
            if changes.is_empty() { Vec::new() } else { store.commit(&changes).map_err(|e| ApplyError::Store(e.0))? };
        let unchanged = changes.is_empty() && self.snapshot.load().gateway == config.gateway;
        // A deleted consumer's keys are revoked, not hidden: a consumer made
        // later under the same name starts with none.
        revoke_deleted(store, &config.gateway);
        let snapshot_version = if unchanged { self.snapshot.load().version } else { self.swap(config.clone()) };
        publish_keys(store.as_ref(), &config.gateway);
        let changed = changes.iter().zip(numbers).map(|(c, n)| (c.kind, c.name.clone(), n)).collect();
        Ok((Applied { snapshot_version, changed, apply_us: started.elapsed().as_micros() as u64 }, config))
    }

    /// Discovery watchers for exactly the services that have settings.
    fn sync_discovery(&self, gateway: &crate::config::GatewayConfig) {
        crate::discovery::sync(gateway, self.jobs.http(), &|w| self.jobs.spawn_detached(w));
        crate::upstream::health::sync(gateway, &|c| self.jobs.spawn_detached(c));
        crate::kafka::client().sync(gateway);
        crate::auth::sync(gateway, self.jobs.http(), &|t| self.jobs.spawn_detached(t));
    }

    fn swap(&self, config: Config) -> u64 {
        let version = self.snapshot.load().version + 1;
        self.sync_discovery(&config.gateway);
        // Rate-limit budgets of rules the new configuration no longer
        // names are forgotten once it is built (the others carry over).
        crate::limits::mark_unused();
        self.snapshot.store(Arc::new(Snapshot::build(version, config.gateway, &self.registry)));
        crate::limits::sweep();
        let snap = self.snapshot.load();
        self.registry
            .forget_unused(|s| snap.router.services.contains_key(s), |e| snap.router.endpoints.contains_key(e));
        self.registry.reloads_ok.fetch_add(1, Ordering::Relaxed);
        self.registry
            .applied_ms
            .store(crate::pipeline::ws::conn::wall_ms(crate::pipeline::ws::conn::now_ms()), Ordering::Relaxed);
        // Each worker acknowledges the new version from its own loop.
        for i in 0..self.registry.worker_count() {
            self.registry.worker(i).snapshot_ack.publish();
        }
        version
    }
}

/// Revokes the keys of consumers that no longer exist.
fn revoke_deleted(store: &mut Box<dyn ConfigStore>, g: &crate::config::GatewayConfig) {
    let Ok(keys) = store.keys(None) else { return };
    let mut gone: Vec<String> =
        keys.into_iter().map(|k| k.consumer).filter(|c| !g.consumers.iter().any(|x| &x.name == c)).collect();
    gone.sort();
    gone.dedup();
    for c in gone {
        if let Err(e) = store.keys_revoke_all(&c) {
            tracing::error!(consumer = %c, error = %e, "the keys of a deleted consumer could not be revoked");
        }
    }
}

/// Publishes the API key index: live keys of consumers that exist.
fn publish_keys(store: &dyn ConfigStore, g: &crate::config::GatewayConfig) {
    match store.keys(None) {
        Ok(keys) => crate::auth::publish(
            keys.into_iter().filter(|k| g.consumers.iter().any(|c| c.name == k.consumer)).map(|k| (k.hmac, k.consumer)),
        ),
        // The last index stays (revocations since are not seen): say so.
        Err(e) => tracing::error!(error = %e, "API keys could not be read; the last list stays in force"),
    }
}

/// The active entities with `changes` applied on top.
fn merged(active: &[(Kind, String, String, String)], changes: &[Change]) -> Vec<Entity> {
    let mut out: Vec<Entity> = active.iter().map(|(k, n, c, _)| (*k, n.clone(), c.clone())).collect();
    for c in changes {
        out.retain(|(k, n, _)| !(*k == c.kind && *n == c.name));
        if let Some(content) = &c.content {
            out.push((c.kind, c.name.clone(), content.clone()));
        }
    }
    out
}
