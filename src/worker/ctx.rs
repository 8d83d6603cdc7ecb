//! What one worker thread owns: its pool, counters, id generator.

use crate::http::inline::IdGen;
use crate::metrics::WorkerStats;
use crate::snapshot::SharedSnapshot;
use crate::worker::shutdown::Shutdown;
use crossbeam_utils::CachePadded;
use event_listener::{Event, EventListener};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Worker {
    pub id: usize,
    /// The routing snapshot; loaded once per request.
    pub snapshot: SharedSnapshot,
    pub stats: Arc<CachePadded<WorkerStats>>,
    pub ids: IdGen,
    /// Upstream connections and per-service balancing: the one client.
    pub upstream: crate::upstream::Client,
    /// Read and write deadlines of this worker's sockets, swept by one task.
    pub deadlines: crate::deadline::Deadlines,
    pub shutdown: Arc<Shutdown>,
    /// Requests between head and last response byte: what draining waits for.
    pub busy: Cell<usize>,
    /// Open client connections on this worker (for the per-worker cap).
    pub open: Cell<usize>,
    /// This worker's WebSocket connections and groups.
    pub ws: crate::ws::conn::Table,
    /// Read buffers lent to WebSocket sessions while they read.
    pub ws_bufs: std::cell::RefCell<Vec<Vec<u8>>>,
    /// Node number printed in connection ids.
    pub node: u16,
}

impl Worker {
    pub fn new(
        id: usize,
        snapshot: SharedSnapshot,
        stats: Arc<CachePadded<WorkerStats>>,
        shutdown: Arc<Shutdown>,
        seed: u32,
    ) -> Self {
        Worker {
            id,
            snapshot,
            stats,
            ids: IdGen::new(seed),
            upstream: crate::upstream::Client::new(seed as usize),
            deadlines: Default::default(),
            shutdown,
            busy: Cell::new(0),
            open: Cell::new(0),
            ws: Default::default(),
            ws_bufs: Default::default(),
            node: 0,
        }
    }
}

/// Counts a request as busy for as long as the guard lives.
pub struct BusyGuard<'a>(&'a Worker);

impl<'a> BusyGuard<'a> {
    pub fn new(w: &'a Worker) -> Self {
        w.busy.set(w.busy.get() + 1);
        BusyGuard(w)
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.set(self.0.busy.get().saturating_sub(1));
    }
}

/// Like [`BusyGuard`] for spawned tasks that outlive a borrow.
pub struct BusyRc(std::rc::Rc<Worker>);

impl BusyRc {
    pub fn new(w: &std::rc::Rc<Worker>) -> Self {
        w.busy.set(w.busy.get() + 1);
        BusyRc(w.clone())
    }
}

impl Drop for BusyRc {
    fn drop(&mut self) {
        self.0.busy.set(self.0.busy.get().saturating_sub(1));
    }
}

/// One worker's acknowledgement of published snapshots. Every worker reads
/// the same `ArcSwap`, so the pointer alone cannot tell whether a worker has
/// run since a publish; this can: the version is recorded by a task on the
/// worker's own runtime, so a worker whose thread is stuck stays behind, and
/// an apply waiting for it (`reached_all_workers_us`) sees that.
#[derive(Debug, Default)]
pub struct SnapshotAck {
    /// The newest snapshot version the worker's loop has seen.
    version: AtomicU64,
    /// Rung by the control plane after each publish: wakes the ack task.
    published: Event,
    /// Rung by the worker after recording a version: wakes waiting applies.
    acked: Event,
}

impl SnapshotAck {
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// After a publish: the worker acknowledges when its loop next runs.
    pub fn publish(&self) {
        self.published.notify(usize::MAX);
    }

    /// Fires on the worker's next acknowledgement; check [`version`](Self::version)
    /// after taking it, so one that lands in between is not missed.
    pub fn listen_acked(&self) -> EventListener {
        self.acked.listen()
    }
}

/// The worker-side hook: records the snapshot version this worker sees at
/// its start and each time a publish wakes it. One task per worker.
pub async fn acknowledge_snapshots(w: Rc<Worker>) {
    let ack = &w.stats.snapshot_ack;
    loop {
        // Listening before loading: a publish in between still wakes us.
        let next = ack.published.listen();
        ack.version.fetch_max(w.snapshot.load().version, Ordering::AcqRel);
        ack.acked.notify(usize::MAX);
        next.await;
    }
}
