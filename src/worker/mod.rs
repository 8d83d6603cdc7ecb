//! Worker threads: one monoio runtime per core, each with its own listener,
//! upstream pool and connections. Nothing on the request path is shared
//! between workers except the snapshot pointer and relaxed counters.

#[cfg(debug_assertions)]
mod fault;
pub mod listener;
pub mod restart;
mod snapshot_ack;
pub mod supervise;
pub mod upkeep;

pub use crate::metrics::SnapshotAck;
pub use crate::pipeline::ctx::{BusyGuard, BusyRc, OpenGuard, Worker};

use crate::config::IoDriver;
use crate::metrics::Registry;
use crate::pipeline::http::conn::serve_connection;
use crate::pipeline::snapshot::SharedSnapshot;
use crate::shutdown::Shutdown;
use futures_util::FutureExt;
use monoio::net::{TcpListener, TcpStream};
use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Runtime = monoio::FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Everything a worker thread is started with.
pub struct WorkerSpec {
    pub id: usize,
    pub listener: std::net::TcpListener,
    pub snapshot: SharedSnapshot,
    pub registry: Arc<Registry>,
    pub shutdown: Arc<Shutdown>,
    pub driver: IoDriver,
    /// Core to pin the thread to, when pinning is on.
    pub core: Option<core_affinity::CoreId>,
    /// The CPU time slice to ask the kernel for (`server.scheduler_slice`).
    pub scheduler_slice: Option<Duration>,
    pub drain_timeout: Duration,
    /// Commands from the admin thread (push API).
    pub inbox: flume::Receiver<crate::pipeline::ws::push::Command>,
    /// Reports the driver that runs, or why the worker could not start.
    pub ready: mpsc::Sender<Result<&'static str, String>>,
}

/// Builds the runtime: io_uring with the cheap-completion flags when the
/// kernel has them, plain io_uring when not, epoll when io_uring is off.
fn build_runtime(driver: IoDriver) -> std::io::Result<(Runtime, &'static str)> {
    if driver != IoDriver::Epoll && monoio::utils::detect_uring() {
        // COOP_TASKRUN + SINGLE_ISSUER + DEFER_TASKRUN: completions run when
        // the worker enters the kernel anyway, not through interrupts.
        // Measured: ~20 % less CPU per proxied request than the default setup.
        let mut tuned = io_uring::IoUring::builder();
        tuned.setup_coop_taskrun().setup_single_issuer().setup_defer_taskrun();
        match RuntimeBuilder::<IoUringDriver>::new().with_entries(1024).uring_builder(tuned).enable_timer().build() {
            Ok(rt) => return Ok((rt.into(), "io_uring")),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring with DEFER_TASKRUN unavailable; using default io_uring setup")
            }
        }
        match RuntimeBuilder::<IoUringDriver>::new().with_entries(1024).enable_timer().build() {
            Ok(rt) => return Ok((rt.into(), "io_uring")),
            Err(e) if driver == IoDriver::IoUring => return Err(e),
            Err(e) => tracing::warn!(error = %e, "io_uring unavailable; falling back to epoll"),
        }
    } else if driver == IoDriver::IoUring {
        return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "io_uring is not available on this kernel"));
    }
    let rt = RuntimeBuilder::<LegacyDriver>::new().enable_timer().build()?;
    Ok((rt.into(), "epoll"))
}

/// Starts the worker thread. However the thread ends, `notice` tells the
/// supervisor; a panic that ends it is logged with its backtrace first.
fn spawn(spec: WorkerSpec, notice: restart::ExitNotice) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(format!("wasp-worker-{}", spec.id)).spawn(move || {
        let _notice = notice;
        crate::pipeline::tasks::catch_on_this_thread();
        let (id, stats) = (spec.id, spec.registry.worker(spec.id));
        // By the time this returns, unwinding has dropped the runtime, its
        // tasks and the listener: nothing of the worker is used again, so
        // its unwind safety does not matter.
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| run_thread(spec))) {
            supervise::thread_died(id, &stats, &*payload);
        }
    })
}

fn run_thread(spec: WorkerSpec) {
    if let Some(core) = spec.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(worker = spec.id, "could not pin worker to its core");
        }
    }
    if let Some(slice) = spec.scheduler_slice {
        // Not fatal: the worker serves with the kernel's default slice.
        if let Err(e) = crate::sys::set_scheduler_slice(slice) {
            tracing::warn!(worker = spec.id, error = %e, "could not set the worker's scheduler slice");
        }
    }
    let (mut rt, driver) = match build_runtime(spec.driver) {
        Ok(v) => v,
        Err(e) => {
            let _ = spec.ready.send(Err(format!("worker {}: cannot start runtime: {e}", spec.id)));
            return;
        }
    };
    spec.registry.set_driver(spec.id, driver);
    tracing::info!(worker = spec.id, driver, "worker started");
    let died = rt.block_on(async move {
        let seed = ahash::RandomState::new().hash_one(spec.id) as u32;
        let stats = spec.registry.worker(spec.id);
        let w = Rc::new(Worker::new(spec.id, spec.snapshot.clone(), stats, spec.shutdown.clone(), seed));
        // `run` is the worker's own loop, outside every task guard: a panic
        // there ends the worker. It is caught here only so the worker's
        // connections are ended first, then it goes on and the thread dies.
        let outcome = AssertUnwindSafe(run(spec, w.clone(), driver)).catch_unwind().await;
        match outcome {
            Ok(()) => None,
            Err(payload) => {
                supervise::abandon(w).await;
                Some(payload)
            }
        }
    });
    drop(rt);
    if let Some(payload) = died {
        std::panic::resume_unwind(payload);
    }
}

/// The worker's life: accept until shutdown, then drain.
async fn run(spec: WorkerSpec, w: Rc<Worker>, driver: &'static str) {
    #[cfg(debug_assertions)]
    let faults = fault::Faults::from_env(&spec.listener);
    #[cfg(not(debug_assertions))]
    let faults = ();
    let listener = match TcpListener::from_std(spec.listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = spec.ready.send(Err(format!("worker {}: listener: {e}", spec.id)));
            return;
        }
    };
    // Worker-long tasks, one line each: a panic restarts just that task.
    let (w2, inbox) = (w.clone(), spec.inbox);
    supervise::spawn_service(w.clone(), "push inbox", move || {
        crate::pipeline::ws::push::serve_inbox(w2.clone(), inbox.clone())
    });
    let (w2, drain) = (w.clone(), spec.drain_timeout);
    supervise::spawn_service(w.clone(), "websocket sweeper", move || sweep_websockets(w2.clone(), drain));
    let w2 = w.clone();
    supervise::spawn_service(w.clone(), "upkeep", move || upkeep::run(w2.clone()));
    let w2 = w.clone();
    supervise::spawn_service(w.clone(), "snapshot ack", move || snapshot_ack::acknowledge_snapshots(w2.clone()));
    let _ = spec.ready.send(Ok(driver));

    let stop = spec.shutdown.wait();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = monoio::select! {
            r = accept(&listener, &faults, &w) => Some(r),
            _ = &mut stop => None,
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                w.stats.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let cap = w.snapshot.load().gateway.limits.max_connections_per_worker;
                if w.open.get() >= cap {
                    // Over the cap: close at once rather than queue without bound.
                    drop(stream);
                    w.stats.error(crate::error::ErrorKind::Overloaded);
                    continue;
                }
                let guard = OpenGuard::new(&w, stream.as_raw_fd());
                crate::pipeline::tasks::spawn_guarded(
                    w.clone(),
                    "connection",
                    serve_connection(stream, peer, w.clone(), guard),
                );
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(worker = w.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(listener);
    // WebSocket clients are told to go away (1001) and get their close handshake.
    for c in w.ws.all(None) {
        c.request_close(crate::proto::ws::frame::close::GOING_AWAY, "server shutting down");
    }
    let deadline = Instant::now() + spec.drain_timeout;
    while (w.busy.get() > 0 || !w.ws.is_empty()) && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if w.busy.get() > 0 {
        // Stalled peers (a client that never reads, a service that never
        // answers) would hold their tasks until their own deadlines: cut
        // them, and give the tasks a moment to unwind and log.
        let cut = upkeep::cut_all(&w);
        tracing::warn!(worker = w.id, cut, "drain timeout: cutting stalled connections");
        let grace = Instant::now() + Duration::from_millis(200);
        while w.busy.get() > 0 && Instant::now() < grace {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tracing::info!(worker = w.id, unfinished = w.busy.get(), "worker drained");
}

/// Fault injection for tests (debug builds only; see `fault.rs`).
#[cfg(debug_assertions)]
type Faults = Option<fault::Faults>;
#[cfg(not(debug_assertions))]
type Faults = ();

/// The next connection. Debug builds with `WASP_DEBUG_FAULTS=1` accept
/// through the fault module, which may act on the connection first.
async fn accept(listener: &TcpListener, faults: &Faults, w: &Rc<Worker>) -> std::io::Result<(TcpStream, SocketAddr)> {
    #[cfg(debug_assertions)]
    if let Some(f) = faults {
        return f.accept(listener, w).await;
    }
    #[cfg(not(debug_assertions))]
    let _ = (faults, w);
    listener.accept().await
}

/// Pings, idle timeouts and close-handshake timeouts of every WebSocket
/// connection of the worker, checked ten times a second by one task instead
/// of a timer per connection (each would cost memory and timer-wheel work).
async fn sweep_websockets(w: Rc<Worker>, drain: Duration) {
    let mut seen_version = w.snapshot.load().version;
    // Endpoints removed by a reload, and when their connections must go.
    let mut removed: Vec<(std::rc::Rc<str>, u64)> = Vec::new();
    loop {
        monoio::time::sleep(Duration::from_millis(100)).await;
        if w.ws.is_empty() {
            removed.clear();
            continue;
        }
        let now = crate::pipeline::ws::conn::now_ms();
        let snap = w.snapshot.load();
        if snap.version != seen_version {
            seen_version = snap.version;
            // Open connections keep working on a changed endpoint (their next
            // event uses the new routes); a removed endpoint's connections get
            // the drain period, then a 1001.
            for name in w.ws.endpoint_names() {
                if !snap.router.endpoints.contains_key(&*name) && !removed.iter().any(|(n, _)| *n == name) {
                    removed.push((name, now + drain.as_millis() as u64));
                }
            }
            removed.retain(|(n, _)| !snap.router.endpoints.contains_key(&**n));
        }
        drop(snap);
        removed.retain(|(name, at)| {
            if now < *at {
                return true;
            }
            for c in w.ws.all(Some(name)) {
                c.request_close(crate::proto::ws::frame::close::GOING_AWAY, "endpoint removed");
            }
            false
        });
        w.ws.sweep(now);
    }
}
