//! What one worker thread owns and every phase may use: its snapshot
//! handle, upstream client, deadlines, counters, id generator, WebSocket
//! table. Single-threaded: shared by `Rc`, never sent.

use crate::metrics::WorkerStats;
use crate::pipeline::snapshot::SharedSnapshot;
use crate::proto::http1::inline::IdGen;
use crate::shutdown::Shutdown;
use crossbeam_utils::CachePadded;
use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
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
    pub ws: crate::pipeline::ws::conn::Table,
    /// Read buffers lent to WebSocket sessions while they read.
    pub ws_bufs: std::cell::RefCell<Vec<Vec<u8>>>,
    /// Node number printed in connection ids.
    pub node: u16,
    /// The process's Kafka client.
    pub kafka: &'static crate::kafka::Kafka,
    /// Bus requests of this worker waiting for their replies.
    pub bus: crate::targets::bus::Waits,
}

impl Worker {
    /// What targets may use of this worker.
    pub fn env(&self) -> crate::targets::Env<'_> {
        crate::targets::Env {
            upstream: &self.upstream,
            deadlines: &self.deadlines,
            stats: &self.stats,
            shutdown: &self.shutdown,
            kafka: self.kafka,
            bus: &self.bus,
        }
    }

    pub fn new(
        id: usize,
        snapshot: SharedSnapshot,
        stats: Arc<CachePadded<WorkerStats>>,
        shutdown: Arc<Shutdown>,
        seed: u32,
    ) -> Self {
        let kafka: &'static crate::kafka::Kafka = crate::kafka::client();
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
            node: u16::from(kafka.node()),
            kafka,
            bus: crate::targets::bus::Waits::new(kafka.node(), id, u64::from(seed)),
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

/// Counts an open client connection on the worker and in the metrics, and
/// lists its socket for a dying worker to cut (`supervise::abandon`). It
/// moves with the connection (into the WebSocket session after an upgrade)
/// and drops with it.
pub struct OpenGuard {
    open: Rc<Worker>,
    fd: RawFd,
}

impl OpenGuard {
    pub fn new(w: &Rc<Worker>, fd: RawFd) -> Self {
        w.open.set(w.open.get() + 1);
        w.stats.open_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        super::tasks::client_opened(fd);
        OpenGuard { open: w.clone(), fd }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        super::tasks::client_closed(self.fd);
        let w = &self.open;
        w.open.set(w.open.get().saturating_sub(1));
        w.stats.open_connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
