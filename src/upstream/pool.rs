//! Per-worker idle upstream connections and a short memory of instances
//! that refused. Worker-local, so no locks.
//!
//! Idle sockets are expired in the background ([`Pool::reap`]), not only when
//! taken: a socket the service closed would otherwise sit in CLOSE-WAIT for
//! as long as nobody asks for that instance, and an instance that left the
//! configuration would keep its sockets forever.

use crate::sys::{peek, Peek};
use ahash::AHashMap;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long an instance that refused a connection is passed over.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Pool {
    idle: RefCell<AHashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
    down: RefCell<AHashMap<SocketAddr, Instant>>,
}

impl Pool {
    /// The most recently used idle connection (least likely to have been
    /// closed by the service), skipping ones idle longer than `max_idle`.
    /// Also returns how long it was idle.
    pub fn take(&self, addr: SocketAddr, max_idle: Duration, now: Instant) -> Option<(TcpStream, Duration)> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some((stream, since)) = list.pop() {
            let idle_for = now.saturating_duration_since(since);
            if idle_for <= max_idle {
                return Some((stream, idle_for));
            }
        }
        None
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
