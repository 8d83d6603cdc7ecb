//! The supervisor: starts the workers, and replaces one whose thread died.
//!
//! Each worker thread reports its exit (a drop guard, so a panic reports
//! too). An exit while the process is not shutting down is a death: the
//! worker is marked dead (`/readyz` answers 503 naming it), then a
//! replacement is started on a fresh `SO_REUSEPORT` socket bound to the
//! port actually in use and on the same push inbox (the supervisor keeps a
//! receiver of every inbox, so the admin side's senders stay valid and what
//! was queued meanwhile is served). Once it listens, the worker is live
//! again and `wasp_worker_restarts_total` counts it. Exits during shutdown
//! are only counted down until every worker is gone.
//!
//! The dead worker's own socket closes as its runtime unwinds, so the
//! kernel sends new connections to the live workers in the meantime.

use super::{listener, WorkerSpec};
use crate::config::IoDriver;
use crate::metrics::Registry;
use crate::pipeline::snapshot::SharedSnapshot;
use crate::pipeline::ws::push::Command;
use crate::shutdown::Shutdown;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which workers are dead and not replaced yet; read by `/readyz`.
#[derive(Debug)]
pub struct Health {
    dead: Box<[AtomicBool]>,
}

impl Health {
    pub fn new(workers: usize) -> Self {
        Health { dead: (0..workers).map(|_| AtomicBool::new(false)).collect() }
    }

    /// Ids of the dead workers, in order (empty when every worker is live).
    pub fn dead(&self) -> Vec<usize> {
        self.dead.iter().enumerate().filter(|(_, d)| d.load(Ordering::SeqCst)).map(|(i, _)| i).collect()
    }

    fn set_dead(&self, id: usize, dead: bool) {
        if let Some(d) = self.dead.get(id) {
            d.store(dead, Ordering::SeqCst);
        }
    }
}

/// A worker thread has ended. `generation` tells a worker from an earlier
/// attempt at the same id whose exit was already dealt with.
pub struct Exit {
    pub id: usize,
    pub generation: u64,
}

/// Sends the [`Exit`] when the worker thread ends, however it ends.
pub(super) struct ExitNotice {
    pub exit: Option<Exit>,
    pub to: mpsc::Sender<Exit>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        if let Some(e) = self.exit.take() {
            let _ = self.to.send(e);
        }
    }
}

/// What every worker is started with, kept to start replacements.
pub struct Settings {
    /// The public address actually bound (port 0 already resolved).
    pub addr: SocketAddr,
    pub backlog: u32,
    pub snapshot: SharedSnapshot,
    pub registry: Arc<Registry>,
    pub shutdown: Arc<Shutdown>,
    pub driver: IoDriver,
    /// Cores to pin workers to (empty: no pinning).
    pub cores: Vec<core_affinity::CoreId>,
    /// The scheduler slice workers ask for (`server.scheduler_slice`).
    pub scheduler_slice: Option<Duration>,
    pub drain_timeout: Duration,
}

/// A replacement that dies sooner than this after its start counts as a
/// quick death: the next restart waits longer (up to [`MAX_PAUSE`]).
const QUICK_DEATH: Duration = Duration::from_secs(10);
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub struct Supervisor {
    settings: Settings,
    /// A receiver of each worker's inbox: a replacement gets the same channel.
    inboxes: Vec<flume::Receiver<Command>>,
    health: Arc<Health>,
    handles: Vec<Option<JoinHandle<()>>>,
    /// Bumped on every start of a worker id; see [`Exit`].
    generations: Vec<u64>,
    started: Vec<Instant>,
    /// Wait before the next restart of each worker (grows on quick deaths).
    pause: Vec<Duration>,
    exits_tx: mpsc::Sender<Exit>,
    exits: mpsc::Receiver<Exit>,
}

impl Supervisor {
    /// Starts one worker per listener and waits until each one listens.
    /// Returns the driver each runs. On failure, shutdown is triggered so
    /// the workers that did start stop again.
    pub fn start(
        settings: Settings,
        listeners: Vec<TcpListener>,
        inboxes: Vec<flume::Receiver<Command>>,
    ) -> Result<(Supervisor, Vec<&'static str>), String> {
        let n = listeners.len();
        let (exits_tx, exits) = mpsc::channel();
        let mut s = Supervisor {
            settings,
            inboxes,
            health: Arc::new(Health::new(n)),
            handles: (0..n).map(|_| None).collect(),
            generations: vec![0; n],
            started: vec![Instant::now(); n],
            pause: vec![Duration::ZERO; n],
            exits_tx,
            exits,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for (id, l) in listeners.into_iter().enumerate() {
            if let Err(e) = s.launch(id, l, ready_tx.clone()) {
                s.settings.shutdown.trigger();
                return Err(format!("cannot start worker {id}: {e}"));
            }
        }
        drop(ready_tx);
        let mut drivers = Vec::with_capacity(n);
        for _ in 0..n {
            let failure = match ready_rx.recv() {
                Ok(Ok(d)) => {
                    drivers.push(d);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(_) => "a worker exited during start-up".to_string(),
            };
            s.settings.shutdown.trigger();
            return Err(failure);
        }
        Ok((s, drivers))
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Starts worker `id` on `listener`; it reports on `ready` once it listens.
    fn launch(
        &mut self,
        id: usize,
        listener: TcpListener,
        ready: mpsc::Sender<Result<&'static str, String>>,
    ) -> std::io::Result<()> {
        let s = &self.settings;
        self.generations[id] += 1;
        let spec = WorkerSpec {
            id,
            listener,
            snapshot: s.snapshot.clone(),
            registry: s.registry.clone(),
            shutdown: s.shutdown.clone(),
            driver: s.driver,
            core: (!s.cores.is_empty()).then(|| s.cores[id % s.cores.len()]),
            scheduler_slice: s.scheduler_slice,
            drain_timeout: s.drain_timeout,
            inbox: self.inboxes[id].clone(),
            ready,
        };
        let notice =
            ExitNotice { exit: Some(Exit { id, generation: self.generations[id] }), to: self.exits_tx.clone() };
        self.handles[id] = Some(super::spawn(spec, notice)?);
        self.started[id] = Instant::now();
        Ok(())
    }

    /// Watches the workers until shutdown has stopped every one of them.
    /// Run it on a thread of its own: it blocks.
    pub fn run(mut self) {
        let mut live = self.handles.iter().filter(|h| h.is_some()).count();
        while live > 0 {
            let Ok(exit) = self.exits.recv() else { return };
            if exit.generation != self.generations.get(exit.id).copied().unwrap_or(0) {
                continue; // a failed restart attempt, already joined
            }
            if let Some(h) = self.handles.get_mut(exit.id).and_then(Option::take) {
                let _ = h.join();
            }
            live -= 1;
            if self.settings.shutdown.is_triggered() {
                continue;
            }
            self.health.set_dead(exit.id, true);
            tracing::error!(worker = exit.id, "worker is dead; starting a replacement");
            if self.replace(exit.id) {
                live += 1;
            }
        }
    }

    /// Starts a replacement for worker `id`, retrying with a growing pause
    /// until one listens. False when shutdown started first.
    fn replace(&mut self, id: usize) -> bool {
        let quick = self.started[id].elapsed() < QUICK_DEATH;
        self.pause[id] = if quick { (self.pause[id] * 2).clamp(FIRST_PAUSE, MAX_PAUSE) } else { Duration::ZERO };
        let mut wait = self.pause[id] + debug_restart_delay();
        loop {
            if !self.sleep_unless_shutdown(wait) {
                return false;
            }
            match self.try_replace(id) {
                Ok(driver) => {
                    self.health.set_dead(id, false);
                    self.settings.registry.worker_restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(worker = id, driver, "worker restarted");
                    return true;
                }
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "worker replacement failed; trying again");
                    wait = (wait * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
                }
            }
        }
    }

    fn try_replace(&mut self, id: usize) -> Result<&'static str, String> {
        let s = &self.settings;
        let l = listener::bind_reuseport(s.addr, s.backlog).map_err(|e| format!("cannot listen on {}: {e}", s.addr))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        self.launch(id, l, ready_tx).map_err(|e| format!("cannot start thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(driver)) => Ok(driver),
            failed => {
                // The attempt's thread ends on its own: join it here, and
                // retire its generation so `run` ignores its exit notice.
                if let Some(h) = self.handles[id].take() {
                    let _ = h.join();
                }
                self.generations[id] += 1;
                Err(match failed {
                    Ok(Err(e)) => e,
                    _ => "the replacement exited during start-up".to_string(),
                })
            }
        }
    }

    /// Sleeps `d`, waking early (false) when shutdown starts.
    fn sleep_unless_shutdown(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.settings.shutdown.is_triggered() {
                return false;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}

/// Test-only: `WASP_DEBUG_RESTART_DELAY_MS` holds every restart back so a
/// test can watch the not-ready window without racing it. Debug builds only.
#[cfg(debug_assertions)]
fn debug_restart_delay() -> Duration {
    std::env::var("WASP_DEBUG_RESTART_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::ZERO)
}

#[cfg(not(debug_assertions))]
fn debug_restart_delay() -> Duration {
    Duration::ZERO
}
