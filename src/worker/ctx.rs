//! What one worker thread owns: its pool, counters, id generator.

use crate::http::inline::IdGen;
use crate::http::pool::Pool;
use crate::metrics::WorkerStats;
use crate::snapshot::SharedSnapshot;
use crate::worker::shutdown::Shutdown;
use crossbeam_utils::CachePadded;
use std::cell::Cell;
use std::sync::Arc;

pub struct Worker {
    pub id: usize,
    /// The routing snapshot; loaded once per request.
    pub snapshot: SharedSnapshot,
    pub stats: Arc<CachePadded<WorkerStats>>,
    pub ids: IdGen,
    pub pool: Pool,
    pub shutdown: Arc<Shutdown>,
    /// Requests between head and last response byte: what draining waits for.
    pub busy: Cell<usize>,
    /// Open client connections on this worker (for the per-worker cap).
    pub open: Cell<usize>,
    /// Round-robin cursor over a service's instances.
    pub rr: Cell<usize>,
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
            pool: Pool::default(),
            shutdown,
            busy: Cell::new(0),
            open: Cell::new(0),
            rr: Cell::new(seed as usize),
            ws: Default::default(),
            ws_bufs: Default::default(),
            node: 0,
        }
    }

    pub fn next_rr(&self) -> usize {
        let v = self.rr.get().wrapping_add(1);
        self.rr.set(v);
        v
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
