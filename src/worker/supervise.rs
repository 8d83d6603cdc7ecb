//! Panics on worker threads: caught, logged with their backtrace, counted.
//!
//! No input or config should reach a panic, but a bug that does must cost
//! one connection, not a worker, and must be seen. monoio does not catch
//! panics in tasks (one would unwind out of `block_on` and end the thread),
//! so every task a worker spawns goes through [`spawn_guarded`] or
//! [`spawn_service`], which poll it under `catch_unwind`. A caught panic
//! ends that task only: its state is dropped (the connection closes, its
//! guards give back counters), it is logged with its backtrace and counted
//! in `wasp_panics_total`. A panic outside any task (in the worker's own
//! loop) ends the worker: [`abandon`] first ends what the worker still runs,
//! then the panic goes on and the thread dies; `worker::spawn` catches it at
//! the top of the thread, logs it the same way and reports the exit to the
//! supervisor (`restart.rs`), which replaces the worker.
//!
//! The backtrace has to be taken where the panic happens: by the time
//! `catch_unwind` returns, the stack is gone. So [`install_hook`] sets a
//! panic hook that records message, location and backtrace in a
//! thread-local, and the catch site takes the record and logs it. On worker
//! threads every panic is caught, so the hook records quietly there instead
//! of printing the default stderr report; elsewhere it prints as usual.

use super::Worker;
use crate::metrics::WorkerStats;
use ahash::AHashSet;
use futures_util::FutureExt;
use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What the panic hook saw, kept for the code that catches the panic.
pub struct Captured {
    pub location: String,
    pub backtrace: Backtrace,
}

thread_local! {
    /// Set on worker threads, where every panic is caught and logged by
    /// the catch site (a task guard or the thread's own guard).
    static CAUGHT_HERE: Cell<bool> = const { Cell::new(false) };
    /// The last panic the hook recorded on this thread, until taken.
    static LAST: Cell<Option<Captured>> = const { Cell::new(None) };
    /// Client sockets open on this worker thread (kept by `OpenGuard`):
    /// what a dying worker cuts, so its clients see the end.
    static CLIENTS: RefCell<AHashSet<RawFd>> = RefCell::new(AHashSet::default());
    /// Stops the worker-long tasks of a dying worker.
    static STOP: RefCell<Stop> = const { RefCell::new(Stop { stopping: false, wakers: Vec::new() }) };
}

/// Installs the panic hook (once, at start-up, before any worker runs).
pub fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let captured = Captured {
            location: info.location().map(|l| l.to_string()).unwrap_or_default(),
            backtrace: Backtrace::force_capture(),
        };
        let caught = CAUGHT_HERE.try_with(Cell::get).unwrap_or(false);
        // A record nobody took means this panic came while another was
        // still unwinding (a panicking destructor): the process is about to
        // abort and no catch site will log it, so let the default hook say it.
        let earlier = LAST.try_with(|l| l.replace(Some(captured))).ok().flatten();
        if !caught || earlier.is_some() {
            default(info);
        }
    }));
}

/// Marks the current thread as one whose panics are all caught and logged.
pub(super) fn catch_on_this_thread() {
    CAUGHT_HERE.with(|c| c.set(true));
}

/// The hook's record of the panic just caught on this thread.
fn take_captured() -> Option<Captured> {
    LAST.try_with(Cell::take).ok().flatten()
}

/// The text a panic was raised with (`panic!` gives a `&str` or a `String`).
pub fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a panic payload that is not text)"
    }
}

/// Logs and counts a panic caught in a task of worker `w`.
fn task_panicked(w: &Worker, what: &'static str, payload: &(dyn Any + Send)) {
    w.stats.panics.fetch_add(1, Relaxed);
    let panic = payload_text(payload);
    match take_captured() {
        Some(c) => tracing::error!(
            worker = w.id,
            task = what,
            panic,
            location = %c.location,
            backtrace = %c.backtrace,
            "task panicked; it is ended, the worker goes on"
        ),
        None => tracing::error!(worker = w.id, task = what, panic, "task panicked; it is ended, the worker goes on"),
    }
}

/// Logs and counts the panic that ended worker thread `id`.
pub(super) fn thread_died(id: usize, stats: &WorkerStats, payload: &(dyn Any + Send)) {
    stats.panics.fetch_add(1, Relaxed);
    let panic = payload_text(payload);
    match take_captured() {
        Some(c) => tracing::error!(
            worker = id,
            panic,
            location = %c.location,
            backtrace = %c.backtrace,
            "worker thread died"
        ),
        None => tracing::error!(worker = id, panic, "worker thread died"),
    }
}

/// Spawns `fut` on the current worker's runtime under `catch_unwind`: a
/// panic in it ends this task only, and is logged and counted.
///
/// `what` names the task in the log ("connection", "websocket", ...).
pub fn spawn_guarded<F>(w: Rc<Worker>, what: &'static str, fut: F)
where
    F: Future<Output = ()> + 'static,
{
    monoio::spawn(async move {
        // AssertUnwindSafe: after a panic the task's own state is only
        // dropped, never used again. What it shares with other tasks (the
        // worker's tables and counters) is updated in single steps on this
        // thread; losing one connection is the accepted cost of a bug.
        if let Err(payload) = AssertUnwindSafe(fut).catch_unwind().await {
            task_panicked(&w, what, &*payload);
        }
    });
}

/// How long a worker-long task waits before it starts again after a panic,
/// so one that panics at once cannot spin.
const SERVICE_RESTART_PAUSE: Duration = Duration::from_millis(100);

/// Keeps a task that lives as long as the worker (push inbox, sweepers)
/// running: it is polled under `catch_unwind` like any task, and after a
/// panic (logged and counted) a new one is made with `make` and started.
/// It ends for good when a run returns normally.
pub fn spawn_service<M, F>(w: Rc<Worker>, what: &'static str, mut make: M)
where
    M: FnMut() -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    monoio::spawn(async move {
        let mut stop = Stopped { slot: None };
        loop {
            let outcome = monoio::select! {
                r = AssertUnwindSafe(make()).catch_unwind() => r,
                _ = &mut stop => return,
            };
            match outcome {
                Ok(()) => return,
                Err(payload) => task_panicked(&w, what, &*payload),
            }
            monoio::time::sleep(SERVICE_RESTART_PAUSE).await;
        }
    });
}

struct Stop {
    stopping: bool,
    /// One per waiting [`Stopped`], by its slot.
    wakers: Vec<Waker>,
}

/// Resolves once the worker is dying ([`abandon`]). One slot per service
/// task, its waker refreshed only when it changed.
struct Stopped {
    slot: Option<usize>,
}

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        STOP.with(|s| {
            let mut s = s.borrow_mut();
            if s.stopping {
                return Poll::Ready(());
            }
            match self.slot {
                Some(i) if s.wakers[i].will_wake(cx.waker()) => {}
                Some(i) => s.wakers[i] = cx.waker().clone(),
                None => {
                    self.slot = Some(s.wakers.len());
                    s.wakers.push(cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }
}

/// A client socket was accepted on this worker thread (see `OpenGuard`).
pub(super) fn client_opened(fd: RawFd) {
    CLIENTS.with(|c| c.borrow_mut().insert(fd));
}

/// ... and is about to be closed. Called in the same poll as the socket's
/// drop, so its descriptor cannot have been reused when a dying worker cuts
/// the sockets still listed.
pub(super) fn client_closed(fd: RawFd) {
    CLIENTS.with(|c| c.borrow_mut().remove(&fd));
}

/// How long a dying worker waits for its tasks to end once their sockets
/// are cut (they end at once unless something is badly stuck).
const ABANDON_GRACE: Duration = Duration::from_secs(1);

/// Ends what a worker whose own loop panicked still runs, before its thread
/// exits. Without this, monoio leaks it: a task parked on I/O and the
/// driver hold each other, so dropping the runtime closes none of their
/// sockets, and clients would wait on a dead thread until their own
/// timeouts, the descriptors never given back.
pub(super) async fn abandon(w: Rc<Worker>) {
    // Worker-long tasks first: the push inbox lets go of its channel (the
    // replacement's), and none of them keeps the worker alive.
    let wakers = STOP.with(|s| {
        let mut s = s.borrow_mut();
        s.stopping = true;
        std::mem::take(&mut s.wakers)
    });
    wakers.into_iter().for_each(Waker::wake);
    // Cutting a socket ends its pending read or write at once: the owning
    // task goes down its ordinary error path and drops everything it holds.
    let clients: Vec<RawFd> = CLIENTS.with(|c| c.borrow().iter().copied().collect());
    for &fd in &clients {
        crate::sys::shutdown(fd, true);
    }
    // Requests waiting on a service: their pending upstream I/O too.
    let upstream = w.deadlines.cut_all(|_| {});
    let end = Instant::now() + ABANDON_GRACE;
    while (w.open.get() > 0 || w.busy.get() > 0) && Instant::now() < end {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::warn!(
        worker = w.id,
        clients = clients.len(),
        upstream,
        still_open = w.open.get(),
        "dying worker cut its connections"
    );
    // Normally the last reference: the upstream pool closes with it.
    drop(w);
}
