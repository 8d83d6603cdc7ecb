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

/// How the first instance to try is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The service's cursor on this worker.
    RoundRobin,
    /// Two at random; the one with the lower cost, (in flight + 1) ×
    /// (EWMA latency + 1 µs), on this worker.
    P2c,
    /// Rendezvous hashing of this key: the instance with the highest
    /// `hash(key, address)`, so adding an instance moves only the keys it
    /// now wins (about 1/N of them).
    Hash(u64),
}

/// Where a request goes: a service's instances (balanced) or one address.
pub struct Target<'a> {
    pub instances: &'a [SocketAddr],
    /// `(snapshot version, service index)` for per-service balancing;
    /// `None` for a single fixed address.
    pub balance: Option<(u64, usize)>,
    pub pick: Pick,
    /// `retry.on` has "connect_failure": a failed connect moves on to the
    /// next instance (nothing was sent); else the first failure is the answer.
    pub failover: bool,
    /// Instances ejected by outlier detection are tried last.
    pub health: Option<&'a super::outlier::ServiceHealth>,
    pub outlier: Option<&'a crate::config::resilience::Outlier>,
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
///
/// `avoid`: an instance that just failed this request (a `503` retried, a
/// failed write): tried last, and the others are tried whatever `failover`
/// says — a retry goes to another instance.
pub async fn connect(
    c: &Client,
    stats: &WorkerStats,
    t: &Target<'_>,
    fresh: bool,
    avoid: Option<SocketAddr>,
) -> Result<Conn, ProxyError> {
    let n = t.instances.len();
    if n == 0 {
        return Err(ProxyError::new(ErrorKind::NoInstance, "the service has no instances"));
    }
    let now = Instant::now();
    let start = match t.balance {
        Some((version, index)) if n > 1 => match t.pick {
            Pick::RoundRobin => c.balance.next(version, index),
            Pick::P2c => {
                let r = c.balance.random();
                let i = (r % n as u64) as usize;
                // A second, different one.
                let j = (i + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
                let cost = |k: usize| {
                    let a = t.instances[k];
                    (c.pool.in_use(a) as f64 + 1.0) * (c.balance.latency_us(a, now) + 1.0)
                };
                if cost(j) < cost(i) {
                    j
                } else {
                    i
                }
            }
            Pick::Hash(_) => 0,
        },
        _ => 0,
    };
    // `hash`: every instance in rendezvous order, so when a key's instance
    // is out its keys spread over the others as evenly as the hash does
    // (the next in the list would take them all). Allocated for `hash`
    // services only.
    let ranked: Option<Vec<usize>> = match (t.pick, t.balance) {
        (Pick::Hash(key), Some(_)) if n > 1 => {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_unstable_by_key(|k| std::cmp::Reverse(rendezvous(key, &t.instances[*k])));
            Some(order)
        }
        _ => None,
    };
    let at = |k: usize| match &ranked {
        Some(order) => order[k % n],
        None => (start + k) % n,
    };
    // Two passes from the chosen one, no allocation (but for `hash`):
    // instances neither marked down nor ejected first, then the others (a
    // recovered one is found at once, and when every instance is sick,
    // traffic still goes somewhere).
    let candidates = (0..2 * n).filter_map(|k| {
        let addr = t.instances[at(k)];
        let sick = avoid == Some(addr) || c.pool.is_down(addr, now) || t.health.is_some_and(|h| h.is_out(addr, now));
        (sick == (k >= n)).then_some(addr)
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
                fail(c, t, addr);
            }
            Err(_) => {
                tracing::debug!(%addr, "connect timed out");
                stats.upstream_errors.fetch_add(1, Relaxed);
                c.pool.mark_down(addr, now);
                fail(c, t, addr);
            }
        }
        if !t.failover && avoid.is_none() {
            break;
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

/// A failure of `addr` for outlier detection: this worker's run and the
/// shared count.
#[cold]
pub fn fail(c: &Client, t: &Target<'_>, addr: SocketAddr) {
    if let (Some(h), Some(policy)) = (t.health, t.outlier) {
        c.balance.failed(addr);
        h.failed(addr, policy, t.instances);
    }
}

/// A success of `addr`: ends this worker's run of failures, if it had one.
#[inline]
pub fn succeed(c: &Client, t: &Target<'_>, addr: SocketAddr) {
    if let Some(h) = t.health {
        let streak = c.balance.succeeded(addr);
        if streak > 0 {
            h.recovered(addr, streak);
        }
    }
}

/// The rendezvous weight of `addr` for `key` (FNV-1a over both, mixed).
fn rendezvous(key: u64, addr: &SocketAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ key;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().into_iter().for_each(&mut eat),
        std::net::IpAddr::V6(ip) => ip.octets().into_iter().for_each(&mut eat),
    }
    addr.port().to_be_bytes().into_iter().for_each(&mut eat);
    // splitmix64 finaliser: neighbouring addresses get unrelated weights.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::rendezvous;
    use std::net::SocketAddr;

    #[test]
    fn adding_an_instance_moves_about_one_nth_of_keys() {
        let four: Vec<SocketAddr> = (1..=4).map(|p| SocketAddr::from(([10, 0, 0, p], 80))).collect();
        let mut five = four.clone();
        five.push(SocketAddr::from(([10, 0, 0, 5], 80)));
        let best = |list: &[SocketAddr], key: u64| *list.iter().max_by_key(|a| rendezvous(key, a)).unwrap();
        let keys = 10_000u64;
        let moved = (0..keys).filter(|k| best(&four, *k) != best(&five, *k)).count();
        // 1/5 of the keys move (to the new instance), give or take.
        assert!((1_700..2_300).contains(&moved), "{moved} of {keys} moved");
        assert!((0..keys).all(|k| best(&four, k) == best(&five, k) || best(&five, k) == five[4]));
        // And the keys spread evenly over four.
        for a in &four {
            let share = (0..keys).filter(|k| best(&four, *k) == *a).count();
            assert!((2_200..2_800).contains(&share), "{a}: {share}");
        }
    }
}
