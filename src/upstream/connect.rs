//! Picking an instance and getting a connection to it.

use super::pool::Lease;
use super::Client;
use crate::error::{ErrorKind, ProxyError};
use crate::metrics::WorkerStats;
use crate::sys::{peek, Peek};
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// A pooled connection idle at least this long is looked at before use.
///
/// Under load a connection goes back to work within a millisecond or two and
/// the look (a syscall, ~7 % of a proxied request's CPU) would be paid on
/// every request; a service closes an idle connection after seconds, not
/// milliseconds, and bytes it sends after an answer arrive within this window
/// or not at all before the next request would read them either way. The
/// reaper looks at every idle connection each second besides.
pub const PEEK_AFTER: Duration = Duration::from_millis(10);

/// Where a request goes: a service's instances (balanced) or one address.
pub struct Target<'a> {
    pub instances: &'a [SocketAddr],
    /// `(snapshot version, service index)` for per-service balancing;
    /// `None` for a single fixed address.
    pub balance: Option<(u64, usize)>,
    pub connect_timeout: Duration,
    /// Idle pooled connections older than this are not used.
    pub pool_idle: Duration,
    /// `limits.backend_connections`: connections this worker may have open
    /// to one address, pooled and in use together.
    pub max_conns: usize,
}

/// A connection to an instance.
pub struct Conn {
    pub addr: SocketAddr,
    pub stream: TcpStream,
    /// Taken from the pool: the service may have closed it meanwhile.
    pub reused: bool,
    /// Counts the connection against `max_conns` while it is in use: the
    /// caller keeps it as long as it uses `stream` and drops it after
    /// closing the stream or putting it back in the pool.
    pub lease: Lease,
}

/// Returns a pooled or new connection to an instance of `t`, round robin
/// per service. Instances that refused recently are tried last; each is
/// tried once.
///
/// `fresh`: do not take a pooled connection (a retry after a stale one).
///
/// An instance with `max_conns` connections open and none idle is passed
/// over; when every instance was, the answer is `Overloaded` (`503`) at
/// once, not a wait: the caller's client is told to come back.
///
/// A pooled connection idle for [`PEEK_AFTER`] or more is looked at (one
/// non-blocking `recv(MSG_PEEK)`) before it is handed out and skipped if the
/// service closed it or sent bytes nobody asked for: a request is not
/// written on a connection already known to be dead, and a client does not
/// read what a service sent after another client's answer.
pub async fn connect(c: &Client, stats: &WorkerStats, t: &Target<'_>, fresh: bool) -> Result<Conn, ProxyError> {
    let n = t.instances.len();
    if n == 0 {
        return Err(ProxyError::new(ErrorKind::NoInstance, "the service has no instances"));
    }
    let now = Instant::now();
    let start = match t.balance {
        Some((version, index)) if n > 1 => c.balance.next(version, index),
        _ => 0,
    };
    // Two passes in round-robin order, no allocation: instances not marked
    // down first, then the ones that are (a recovered one is found at once).
    let candidates = (0..2 * n).filter_map(|k| {
        let addr = t.instances[(start + k) % n];
        (c.pool.is_down(addr, now) == (k >= n)).then_some(addr)
    });
    let mut at_cap = false;
    for addr in candidates {
        if !fresh {
            while let Some((s, idle_for, lease)) = c.pool.take(addr, t.pool_idle, now) {
                if idle_for < PEEK_AFTER || peek(s.as_raw_fd()) == Peek::Idle {
                    return Ok(Conn { addr, stream: s, reused: true, lease });
                }
                // Closed (or written to) by the service while idle: nothing
                // was sent on it, so the request may go elsewhere.
            }
        }
        let Some(lease) = c.pool.lease(addr, t.max_conns) else {
            at_cap = true;
            continue;
        };
        match monoio::time::timeout(t.connect_timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                stats.upstream_connects.fetch_add(1, Relaxed);
                c.pool.mark_up(addr);
                return Ok(Conn { addr, stream: s, reused: false, lease });
            }
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "connect failed");
                stats.upstream_errors.fetch_add(1, Relaxed);
                c.pool.mark_down(addr, now);
            }
            Err(_) => {
                tracing::debug!(%addr, "connect timed out");
                stats.upstream_errors.fetch_add(1, Relaxed);
                c.pool.mark_down(addr, now);
            }
        }
    }
    if at_cap {
        return Err(ProxyError::new(
            ErrorKind::Overloaded,
            "every connection the gateway may open to the service is in use (limits.backend_connections)",
        ));
    }
    Err(ProxyError::new(ErrorKind::NoInstance, "no reachable instance of the service"))
}
