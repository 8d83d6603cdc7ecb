//! Per-worker upstream connections: an idle pool per instance and a short
//! memory of instances that refused connections. Worker-local, so no locks.

use ahash::AHashMap;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::net::SocketAddr;
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
    pub fn take(&self, addr: SocketAddr, max_idle: Duration, now: Instant) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some((stream, since)) = list.pop() {
            if now.duration_since(since) <= max_idle {
                return Some(stream);
            }
        }
        None
    }

    pub fn put(&self, addr: SocketAddr, stream: TcpStream, cap: usize, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= cap {
            // Drop the oldest: it is the likeliest to be closed by the service.
            list.remove(0);
        }
        list.push((stream, now));
    }

    pub fn mark_down(&self, addr: SocketAddr, now: Instant) {
        self.down.borrow_mut().insert(addr, now + DOWN_FOR);
        self.idle.borrow_mut().remove(&addr);
    }

    pub fn is_down(&self, addr: SocketAddr, now: Instant) -> bool {
        let down = self.down.borrow();
        down.get(&addr).is_some_and(|until| *until > now)
    }

    pub fn mark_up(&self, addr: SocketAddr) {
        let mut down = self.down.borrow_mut();
        if !down.is_empty() {
            down.remove(&addr);
        }
    }
}
