//! Panics that end a worker thread, and the worker-long tasks.
//!
//! A panic inside a task ends that task only (`pipeline::tasks`). A panic
//! outside any task (in the worker's own loop) ends the worker: [`abandon`]
//! first ends what the worker still runs, then the panic goes on and the
//! thread dies; `worker::spawn` catches it at the top of the thread, logs it
//! the same way and reports the exit to the supervisor (`restart.rs`), which
//! replaces the worker. Tasks that live as long as the worker (push inbox,
//! sweepers) run under [`spawn_service`], which starts them again after a
//! panic.

use super::Worker;
use crate::metrics::WorkerStats;
use futures_util::FutureExt;
use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Logs and counts the panic that ended worker thread `id`.
pub(super) fn thread_died(id: usize, stats: &WorkerStats, payload: &(dyn Any + Send)) {
    stats.panics.fetch_add(1, Relaxed);
    let panic = crate::pipeline::tasks::payload_text(payload);
    match crate::pipeline::tasks::take_captured() {
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

thread_local! {
    /// Stops the worker-long tasks of a dying worker.
    static STOP: RefCell<Stop> = const { RefCell::new(Stop { stopping: false, wakers: Vec::new() }) };
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
                Err(payload) => crate::pipeline::tasks::task_panicked(&w, what, &*payload),
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
    let clients: Vec<RawFd> = crate::pipeline::tasks::open_clients();
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
