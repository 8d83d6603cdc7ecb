//! Tasks on a worker: every one is polled under `catch_unwind`.
//!
//! No input or config should reach a panic, but a bug that does must cost
//! one connection, not a worker, and must be seen. monoio does not catch
//! panics in tasks (one would unwind out of `block_on` and end the thread),
//! so every task the pipeline spawns goes through [`spawn_guarded`]: a
//! caught panic ends that task only; its state is dropped (the connection
//! closes, its guards give back counters), it is logged with its backtrace
//! and counted in `wasp_panics_total`. Panics outside any task are the
//! worker's (`worker::supervise`).
//!
//! The backtrace has to be taken where the panic happens: by the time
//! `catch_unwind` returns, the stack is gone. So [`install_hook`] sets a
//! panic hook that records message, location and backtrace in a
//! thread-local, and the catch site takes the record and logs it. On worker
//! threads every panic is caught, so the hook records quietly there instead
//! of printing the default stderr report; elsewhere it prints as usual.

use super::ctx::Worker;
use ahash::AHashSet;
use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

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
pub fn catch_on_this_thread() {
    CAUGHT_HERE.with(|c| c.set(true));
}

/// The hook's record of the panic just caught on this thread.
pub fn take_captured() -> Option<Captured> {
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
pub fn task_panicked(w: &Worker, what: &'static str, payload: &(dyn Any + Send)) {
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

/// Spawns `fut` on the current worker's runtime under `catch_unwind`: a
/// panic in it ends this task only, and is logged and counted.
///
/// `what` names the task in the log ("connection", "websocket", ...).
pub fn spawn_guarded<F>(w: Rc<Worker>, what: &'static str, fut: F)
where
    F: Future<Output = ()> + 'static,
{
    monoio::spawn(guarded(w, what, fut));
}

/// `fut` under `catch_unwind` (what [`spawn_guarded`] spawns).
pub fn guarded<F: Future<Output = ()>>(w: Rc<Worker>, what: &'static str, fut: F) -> Guarded<F> {
    Guarded::Running { fut, w, what }
}

pin_project_lite::pin_project! {
    /// A task's future polled under `catch_unwind`: `fut` and 24 bytes.
    ///
    /// Written out rather than as `async move { AssertUnwindSafe(fut)
    /// .catch_unwind().await ... }`: such a block keeps both the future it
    /// captured and the `CatchUnwind` it moved that future into (rustc does
    /// not overlap a coroutine's captures with its locals), so every task
    /// held two copies of its state for its whole life: for an idle
    /// WebSocket session, over 500 of its ~1,800 bytes. (An enum rather than
    /// an `Option<F>`: `Done` takes the niche of `w`, no discriminant.)
    #[project = GuardedProj]
    pub enum Guarded<F> {
        Running {
            #[pin]
            fut: F,
            w: Rc<Worker>,
            what: &'static str,
        },
        /// A panic was caught: the task's state is dropped.
        Done,
    }
}

impl<F: Future<Output = ()>> Future for Guarded<F> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let GuardedProj::Running { fut, w, what } = self.as_mut().project() else {
            return std::task::Poll::Ready(());
        };
        // AssertUnwindSafe: after a panic the task's own state is only
        // dropped, never used again. What it shares with other tasks (the
        // worker's tables and counters) is updated in single steps on this
        // thread; losing one connection is the accepted cost of a bug.
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(done) => done,
            Err(payload) => {
                // As `catch_unwind().await` did: the task's state (its
                // guards) goes first, then the panic is logged.
                let (w, what) = (w.clone(), *what);
                self.set(Guarded::Done);
                task_panicked(&w, what, &*payload);
                std::task::Poll::Ready(())
            }
        }
    }
}

/// A client socket was accepted on this worker thread (see `OpenGuard`).
pub fn client_opened(fd: RawFd) {
    CLIENTS.with(|c| c.borrow_mut().insert(fd));
}

/// ... and is about to be closed. Called in the same poll as the socket's
/// drop, so its descriptor cannot have been reused when a dying worker cuts
/// the sockets still listed.
pub fn client_closed(fd: RawFd) {
    CLIENTS.with(|c| c.borrow_mut().remove(&fd));
}

/// The client sockets still open on this worker thread.
pub fn open_clients() -> Vec<RawFd> {
    CLIENTS.with(|c| c.borrow().iter().copied().collect())
}
