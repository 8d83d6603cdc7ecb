//! Per-worker idle upstream connections, a count of the ones in use, and a
//! short memory of instances that refused. Worker-local, so no locks.
//!
//! Connections open to one address (idle here plus in use, each in use one
//! held by a [`Lease`]) stay under `limits.backend_connections`: a flood of
//! requests or WebSocket events costs neither unbounded descriptors nor
//! more of a backend than the cap; past it callers are refused at once.
//!
//! Idle sockets are expired in the background ([`Pool::reap`]), not only when
//! taken: a socket the service closed would otherwise sit in CLOSE-WAIT for
//! as long as nobody asks for that instance, and an instance that left the
//! configuration would keep its sockets forever.

use crate::sys::{peek, Peek};
use ahash::AHashMap;
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long an instance that refused a connection is passed over.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// Counts one connection to an address as in use while it lives: from the
/// moment it is taken from the pool or a connect starts, until the caller
/// drops it (after closing the connection or putting it back).
pub struct Lease(Rc<Cell<usize>>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

#[derive(Default)]
pub struct Pool {
    idle: RefCell<AHashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
    down: RefCell<AHashMap<SocketAddr, Instant>>,
    /// Connections in use per address (the [`Lease`]s held).
    in_use: RefCell<AHashMap<SocketAddr, Rc<Cell<usize>>>>,
}

impl Pool {
    /// The most recently used idle connection (least likely to have been
    /// closed by the service), skipping ones idle longer than `max_idle`.
    /// Also returns how long it was idle, and its lease: it now counts as
    /// in use.
    pub fn take(&self, addr: SocketAddr, max_idle: Duration, now: Instant) -> Option<(TcpStream, Duration, Lease)> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some((stream, since)) = list.pop() {
            let idle_for = now.saturating_duration_since(since);
            if idle_for <= max_idle {
                drop(idle);
                return Some((stream, idle_for, self.lease_unchecked(addr)));
            }
        }
        None
    }

    /// A lease for a new connection to `addr`, or `None` when `cap`
    /// connections to it are in use already. Taken before the connect
    /// starts, so connects in progress count. At the cap an idle connection
    /// (the oldest) is closed to make room: one the caller would not use
    /// (a retry wants a fresh one) must not refuse it.
    pub fn lease(&self, addr: SocketAddr, cap: usize) -> Option<Lease> {
        if self.open_count(addr) >= cap {
            let mut idle = self.idle.borrow_mut();
            let list = idle.get_mut(&addr).filter(|l| !l.is_empty())?;
            list.remove(0);
        }
        Some(self.lease_unchecked(addr))
    }

    fn lease_unchecked(&self, addr: SocketAddr) -> Lease {
        let count = self.in_use.borrow_mut().entry(addr).or_default().clone();
        count.set(count.get() + 1);
        Lease(count)
    }

    /// Connections to `addr` in use (requests in flight there, on this worker).
    pub fn in_use(&self, addr: SocketAddr) -> usize {
        self.in_use.borrow().get(&addr).map_or(0, |c| c.get())
    }

    /// Connections open to `addr`: idle here plus in use.
    pub fn open_count(&self, addr: SocketAddr) -> usize {
        let idle = self.idle.borrow().get(&addr).map_or(0, Vec::len);
        idle + self.in_use.borrow().get(&addr).map_or(0, |c| c.get())
    }

    /// Keeps `stream` for reuse; `cap` idle connections per instance at most
    /// (0: no keep-alive to services, the stream is closed).
    pub fn put(&self, addr: SocketAddr, stream: TcpStream, cap: usize, now: Instant) {
        if cap == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= cap {
            // Drop the oldest: it is the likeliest to be closed by the service.
            list.remove(0);
        }
        list.push((stream, now));
    }

    /// Closes idle connections that expired, that the service closed (or
    /// wrote to unasked), and every one to an address `live` no longer names.
    /// Returns how many were closed.
    pub fn reap(&self, max_idle: Duration, now: Instant, live: impl Fn(&SocketAddr) -> bool) -> usize {
        let mut closed = 0;
        let mut idle = self.idle.borrow_mut();
        idle.retain(|addr, list| {
            let before = list.len();
            if live(addr) {
                list.retain(|(s, since)| {
                    now.saturating_duration_since(*since) <= max_idle && peek(s.as_raw_fd()) == Peek::Idle
                });
            } else {
                list.clear();
            }
            closed += before - list.len();
            !list.is_empty()
        });
        drop(idle);
        self.down.borrow_mut().retain(|addr, until| *until > now && live(addr));
        // No lease refers to a count at zero: the entry can go.
        self.in_use.borrow_mut().retain(|_, count| count.get() > 0);
        closed
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }

    pub fn mark_down(&self, addr: SocketAddr, now: Instant) {
        self.down.borrow_mut().insert(addr, now + DOWN_FOR);
        self.idle.borrow_mut().remove(&addr);
    }

    pub fn is_down(&self, addr: SocketAddr, now: Instant) -> bool {
        let down = self.down.borrow();
        !down.is_empty() && down.get(&addr).is_some_and(|until| *until > now)
    }

    pub fn mark_up(&self, addr: SocketAddr) {
        let mut down = self.down.borrow_mut();
        if !down.is_empty() {
            down.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_count_connections_in_use_up_to_the_cap() {
        let pool = Pool::default();
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        let first = pool.lease(a, 2).expect("under the cap");
        let second = pool.lease(a, 2).expect("under the cap");
        assert!(pool.lease(a, 2).is_none(), "two in use, cap 2");
        assert!(pool.lease(b, 2).is_some(), "the cap is per address");
        assert_eq!(pool.open_count(a), 2);
        drop(first);
        let third = pool.lease(a, 2).expect("a lease given back frees its place");
        drop((second, third));
        assert_eq!(pool.open_count(a), 0);
        pool.reap(Duration::from_secs(1), Instant::now(), |_| true);
        assert!(pool.in_use.borrow().is_empty(), "counts at zero are forgotten");
    }
}
