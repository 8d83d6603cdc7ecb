//! Deadlines on every read and write without a timer per operation.
//!
//! A timer per read or write costs a timer-wheel insert and removal on the
//! hot path, and a *write* had none at all: a client that never reads held
//! its task, both sockets and the upstream connection forever. Instead each
//! worker keeps one table of [`Watch`]es. Arming one before an I/O operation
//! is two cell writes against a coarse clock; one sweeper task per worker
//! ([`Deadlines::sweep`], every [`TICK`]) finds the watches whose operation
//! made no progress in time and *cuts* their socket with `shutdown(2)`. The
//! pending read then returns 0 and the pending write `EPIPE`, so the owning
//! task unwinds through its ordinary error path, and asks its watch
//! ([`Watch::fired`]) whether that error was a timeout and of which phase.
//!
//! A deadline fires between its timeout and its timeout plus two ticks
//! later, never earlier: precise enough for timeouts counted in seconds.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the sweeper looks; also the clock's resolution.
pub const TICK: Duration = Duration::from_millis(100);

/// What an armed operation is doing: the label of `wasp_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading a request body from the client.
    ClientBody,
    /// Writing an answer (or a `100 Continue`) to the client.
    ClientWrite,
    /// Writing the request (head or body) to the service.
    UpstreamWrite,
    /// Waiting for the service's response head.
    UpstreamHead,
    /// Reading the service's response body.
    UpstreamBody,
    /// Writing to either side of an upgraded tunnel.
    TunnelWrite,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::ClientBody,
        Phase::ClientWrite,
        Phase::UpstreamWrite,
        Phase::UpstreamHead,
        Phase::UpstreamBody,
        Phase::TunnelWrite,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// `(side, phase)` labels.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Phase::ClientBody => ("client", "read_body"),
            Phase::ClientWrite => ("client", "write"),
            Phase::UpstreamWrite => ("upstream", "write"),
            Phase::UpstreamHead => ("upstream", "read_head"),
            Phase::UpstreamBody => ("upstream", "read_body"),
            Phase::TunnelWrite => ("tunnel", "write"),
        }
    }

    /// Reads are cut with `SHUT_RD` (the socket can still carry an error
    /// answer the other way); writes with `SHUT_RDWR` (the peer is not reading,
    /// nothing more can reach it).
    fn cuts_both(self) -> bool {
        matches!(self, Phase::ClientWrite | Phase::UpstreamWrite | Phase::TunnelWrite)
    }
}

/// Not armed.
const NEVER: u64 = u64::MAX;

/// Whole milliseconds, saturating: a huge timeout never wraps to a short one.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct Slot {
    in_use: Cell<bool>,
    fd: Cell<RawFd>,
    /// Coarse milliseconds at which the armed operation is cut.
    until: Cell<u64>,
    phase: Cell<Phase>,
    /// The timeout of the armed operation, for [`Watch::touch`].
    timeout_ms: Cell<u64>,
    /// For writes: when to sample the peer's progress, and the sample
    /// (unacknowledged bytes queued), see [`Deadlines::sweep`].
    sample_at: Cell<u64>,
    sampled: Cell<Option<u64>>,
    /// While set, the armed deadline does not fire (see [`Watch::pause`]).
    paused: Cell<bool>,
    /// Set by the sweeper when it cut the socket; read by the owner.
    fired: Cell<Option<Phase>>,
}

/// One worker's table of deadlines. Worker-local: no locks, no atomics.
#[derive(Debug)]
pub struct Deadlines {
    epoch: Instant,
    /// Milliseconds since `epoch`, refreshed by every sweep.
    now_ms: Cell<u64>,
    slots: RefCell<Vec<Rc<Slot>>>,
    free: RefCell<Vec<usize>>,
    /// Whether the last sweep cut nothing because it came late (see `sweep`).
    held_back: Cell<bool>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            epoch: Instant::now(),
            now_ms: Cell::new(0),
            slots: Default::default(),
            free: Default::default(),
            held_back: Cell::new(false),
        }
    }
}

impl Deadlines {
    /// A watch for one connection or one exchange. Slots are reused, so a
    /// request allocates nothing here once the table has grown.
    pub fn watch(&self) -> Watch<'_> {
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(Rc::new(Slot {
                    in_use: Cell::new(false),
                    fd: Cell::new(-1),
                    until: Cell::new(NEVER),
                    phase: Cell::new(Phase::ClientWrite),
                    timeout_ms: Cell::new(0),
                    paused: Cell::new(false),
                    sample_at: Cell::new(NEVER),
                    sampled: Cell::new(None),
                    fired: Cell::new(None),
                }));
                slots.len() - 1
            }
        };
        let slot = self.slots.borrow()[index].clone();
        slot.in_use.set(true);
        slot.paused.set(false);
        slot.fired.set(None);
        slot.until.set(NEVER);
        Watch { table: self, slot, index }
    }

    /// Cuts every armed operation whose deadline passed. Returns the phases
    /// cut, for the caller to count.
    ///
    /// A sweep that comes much later than its tick found the worker busy
    /// (a long `transform` program, a huge config swap): the reads and
    /// writes that completed meanwhile are waiting in the ring to be seen,
    /// and cutting their sockets now would charge the peer for the worker's
    /// stall. Such a sweep cuts nothing; the next one, a tick later, does
    /// (never two in a row, so a worker late at every tick still cuts).
    pub fn sweep(&self, mut cut: impl FnMut(Phase)) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let late = now.saturating_sub(self.now_ms.get()) > 3 * TICK.as_millis() as u64;
        self.now_ms.set(now);
        if late && !self.held_back.get() {
            self.held_back.set(true);
            return;
        }
        self.held_back.set(false);
        for slot in self.slots.borrow().iter() {
            if !slot.in_use.get() || slot.paused.get() {
                continue;
            }
            if slot.phase.get().cuts_both() && slot.until.get() != NEVER {
                // A write still pending at the first sweep after it began:
                // is the peer taking bytes? The unacknowledged queue is
                // sampled then and compared at the deadline; a queue that
                // shrank buys another timeout. Fast writes never pay these
                // syscalls; a slow one pays one per timeout.
                if slot.sample_at.get() <= now && slot.sampled.get().is_none() {
                    slot.sampled.set(crate::sys::unacked(slot.fd.get()));
                }
                if slot.until.get() <= now {
                    let before = slot.sampled.get();
                    let after = crate::sys::unacked(slot.fd.get());
                    if let (Some(b), Some(a)) = (before, after) {
                        if a < b {
                            slot.sampled.set(Some(a));
                            slot.until.set(now.saturating_add(slot.timeout_ms.get()));
                            continue;
                        }
                    }
                }
            }
            if slot.until.get() <= now {
                let phase = slot.phase.get();
                slot.until.set(NEVER);
                slot.fired.set(Some(phase));
                crate::sys::shutdown(slot.fd.get(), phase.cuts_both());
                cut(phase);
            }
        }
    }

    /// Cuts every armed operation now, whatever its deadline: the end of a
    /// drain. Returns how many were cut.
    pub fn cut_all(&self, mut cut: impl FnMut(Phase)) -> usize {
        let mut n = 0;
        for slot in self.slots.borrow().iter() {
            if slot.in_use.get() && slot.until.get() != NEVER {
                let phase = slot.phase.get();
                slot.until.set(NEVER);
                slot.fired.set(Some(phase));
                crate::sys::shutdown(slot.fd.get(), true);
                cut(phase);
                n += 1;
            }
        }
        n
    }

    /// Watches in use (connections and exchanges being served).
    pub fn in_use(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }

    fn deadline(&self, timeout: Duration) -> u64 {
        // One tick of slack: the clock may be up to a tick old.
        self.now_ms.get().saturating_add(millis(timeout)).saturating_add(millis(TICK))
    }
}

/// A deadline slot held by one task. Armed only around an operation on a
/// socket the task owns ([`Watch::run`]), so the sweeper never touches a
/// descriptor after it was closed.
pub struct Watch<'a> {
    table: &'a Deadlines,
    slot: Rc<Slot>,
    index: usize,
}

impl Watch<'_> {
    /// Runs one operation on `fd` with a deadline: if it makes no progress
    /// within `timeout`, the socket is cut and [`Watch::fired`] says so.
    /// Armed now, disarmed when the operation ends or its future is dropped.
    pub fn run<F: Future>(&self, fd: RawFd, phase: Phase, timeout: Duration, op: F) -> Armed<'_, F> {
        let slot = &self.slot;
        slot.fd.set(fd);
        slot.phase.set(phase);
        slot.timeout_ms.set(millis(timeout));
        slot.until.set(self.table.deadline(timeout));
        slot.sample_at.set(self.table.deadline(Duration::ZERO));
        slot.sampled.set(None);
        Armed { op, disarm: Disarm(slot) }
    }

    /// Restarts the armed operation's deadline (if one is armed): progress
    /// made elsewhere counts for it. While a request body is still being
    /// sent, the service has its timeout from the last body byte to answer.
    pub fn touch(&self) {
        if self.slot.until.get() != NEVER {
            let t = Duration::from_millis(self.slot.timeout_ms.get());
            self.slot.until.set(self.table.deadline(t));
            self.slot.sample_at.set(self.table.deadline(Duration::ZERO));
            self.slot.sampled.set(None);
        }
    }

    /// Holds this watch's deadline until the guard is dropped; then it runs
    /// again from that moment. The answer deadline waits this way while a
    /// request body is still being sent: a slow uploader is not a slow service.
    pub fn pause(&self) -> Paused<'_> {
        self.slot.paused.set(true);
        Paused(self)
    }

    /// The phase whose deadline cut this watch's socket, if one did.
    pub fn fired(&self) -> Option<Phase> {
        self.slot.fired.get()
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.slot.in_use.set(false);
        self.slot.until.set(NEVER);
        self.table.free.borrow_mut().push(self.index);
    }
}

/// Ends a [`Watch::pause`], restarting the deadline.
pub struct Paused<'a>(&'a Watch<'a>);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.slot.paused.set(false);
        self.0.touch();
    }
}

/// Disarms when the operation ends, also when its future is dropped.
struct Disarm<'a>(&'a Slot);

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        self.0.until.set(NEVER);
    }
}

pin_project_lite::pin_project! {
    /// An operation running under a deadline (see [`Watch::run`]). A plain
    /// future rather than an `async fn`: it is on every read and write of
    /// the request path.
    pub struct Armed<'a, F> {
        #[pin]
        op: F,
        disarm: Disarm<'a>,
    }
}

impl<F: Future> Future for Armed<'_, F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.op.poll(cx));
        this.disarm.0.until.set(NEVER);
        std::task::Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_freed() {
        let d = Deadlines::default();
        let a = d.watch();
        let b = d.watch();
        assert_eq!(d.in_use(), 2);
        drop(a);
        assert_eq!(d.in_use(), 1);
        let _c = d.watch();
        assert_eq!(d.slots.borrow().len(), 2);
        drop(b);
    }

    #[test]
    fn a_stalled_read_is_cut_and_reported() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(s);
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
        rt.block_on(async move {
            use monoio::io::AsyncReadRent;
            use std::os::fd::AsRawFd;
            let d = Rc::new(Deadlines::default());
            let d2 = d.clone();
            monoio::spawn(async move {
                loop {
                    monoio::time::sleep(TICK).await;
                    d2.sweep(|_| {});
                }
            });
            let mut s = monoio::net::TcpStream::connect(addr).await.unwrap();
            let w = d.watch();
            let started = Instant::now();
            let fd = s.as_raw_fd();
            let (res, _) = w.run(fd, Phase::UpstreamHead, Duration::from_millis(200), s.read(vec![0u8; 16])).await;
            assert_eq!(res.unwrap(), 0);
            assert_eq!(w.fired(), Some(Phase::UpstreamHead));
            assert!(started.elapsed() >= Duration::from_millis(200));
            assert!(started.elapsed() < Duration::from_secs(2));
        });
    }
}
