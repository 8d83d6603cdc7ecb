//! A floor on how fast a request body arrives (`limits.min_body_rate`).
//!
//! Every body read has a deadline (`timeouts.header_read` of silence), but a
//! client that sends a byte every few seconds never lets it fire. A body
//! that is streamed to the service holds an upstream connection and a slot
//! of `limits.backend_connections` meanwhile: a few thousand tricklers
//! starve a service of connections. Two rules close that:
//!
//! - a sized body of at most [`BUFFER_FIRST`] is read whole before a
//!   connection to the service is taken (nginx buffers every body), so a
//!   trickle of a small body holds nothing upstream;
//! - a body must average at least the floor once `header_read` of waiting
//!   for it has passed (Apache's `mod_reqtimeout` `MinRate`).
//!
//! What counts: payload bytes (chunk framing and extensions, which the
//! gateway drops, pay nothing), including those that came with the head;
//! and only time spent waiting for the client. A service that reads slowly
//! (the pump waits on its writes) does not make its client slow, and a read
//! that found a full buffer's worth waiting was late because the worker was
//! busy, not the client. No timer: the check runs after each client read,
//! which is exactly when a trickle shows itself.

use crate::config::GatewayConfig;
use crate::deadline::{Phase, Watch};
use crate::error::{ErrorKind, ProxyError};
use crate::io::BufStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A sized body up to this is read whole before the service is connected.
pub const BUFFER_FIRST: u64 = 64 * 1024;

/// One read of request body from the client under its deadline
/// (`timeouts.header_read` of silence): how long it waited and how many
/// bytes it brought, for [`BodyRate::read`] once their payload is known.
pub async fn read_more(
    watch: &Watch<'_>,
    client: &mut BufStream,
    g: &GatewayConfig,
) -> Result<(Duration, usize), ProxyError> {
    let asked = Instant::now();
    let fd = client.stream.as_raw_fd();
    match watch.run(fd, Phase::ClientBody, g.timeouts.header_read, client.fill()).await {
        Ok(n) if n > 0 => Ok((asked.elapsed(), n)),
        _ if watch.fired().is_some() => Err(crate::upstream::timed_out(Phase::ClientBody)),
        _ => Err(ProxyError::new(ErrorKind::ClientGone, "client closed the connection")),
    }
}

/// A request body's progress against the floor.
#[derive(Default)]
pub struct BodyRate {
    waited: Duration,
    bytes: u64,
}

impl BodyRate {
    /// Payload bytes that arrived without a wait (with the head, or already
    /// buffered).
    pub fn credit(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// One client read that took `waited` and brought `n` bytes, then
    /// `payload` bytes of body decoded from what is buffered: `Err(408
    /// body_too_slow)` once the body has fallen below the floor.
    pub fn read(&mut self, g: &GatewayConfig, waited: Duration, n: usize, payload: u64) -> Result<(), ProxyError> {
        // A read that filled the room it had found data waiting: the wait
        // was the worker's (busy elsewhere), not the client's.
        if n < crate::io::READ_CHUNK / 2 {
            self.waited = self.waited.saturating_add(waited);
        }
        self.credit(payload);
        self.check(g.limits.min_body_rate, g.timeouts.header_read)
    }

    fn check(&self, min: u64, grace: Duration) -> Result<(), ProxyError> {
        if min == 0 || self.waited <= grace {
            return Ok(());
        }
        // bytes / seconds < min, without floating point or overflow.
        let owed = (min as u128) * self.waited.as_millis() / 1000;
        if (self.bytes as u128) < owed {
            return Err(ProxyError::new(
                ErrorKind::BodyTooSlow,
                "request body arrives slower than limits.min_body_rate allows",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn step(r: &mut BodyRate, min: u64, waited: Duration, n: usize, payload: u64) -> Result<(), ProxyError> {
        if n < crate::io::READ_CHUNK / 2 {
            r.waited += waited;
        }
        r.credit(payload);
        r.check(min, GRACE)
    }

    #[test]
    fn a_trickle_is_cut_after_the_grace_and_a_steady_body_is_not() {
        let mut trickle = BodyRate::default();
        let ms300 = Duration::from_millis(300);
        let reads = (0..100).take_while(|_| step(&mut trickle, 1024, ms300, 1, 1).is_ok()).count();
        assert_eq!(reads, 16, "cut at the first read past 5 s of waiting");
        let mut steady = BodyRate::default();
        let ms100 = Duration::from_millis(100);
        assert!((0..1000).all(|_| step(&mut steady, 1024, ms100, 200, 200).is_ok()), "2,000 B/s over 100 s");
        let mut off = BodyRate::default();
        assert!((0..1000).all(|_| step(&mut off, 0, Duration::from_secs(10), 1, 0).is_ok()), "0 turns it off");
    }

    #[test]
    fn what_counts() {
        // Bytes with the head buy time in proportion, not more.
        let mut r = BodyRate::default();
        r.credit(10_000);
        assert!(step(&mut r, 1000, Duration::from_millis(9_900), 1, 0).is_ok());
        assert!(step(&mut r, 1000, Duration::from_millis(200), 1, 0).is_err());
        // Framing read from the socket pays nothing: only payload counts.
        let mut padded = BodyRate::default();
        let s = Duration::from_millis(500);
        let cut = (0..100).position(|_| step(&mut padded, 1024, s, 1010, 1).is_err());
        assert_eq!(cut, Some(10), "1,010 bytes read, 1 of body, every 500 ms");
        // A full buffer found waiting: the worker was late, not the client.
        let mut busy = BodyRate::default();
        assert!((0..10).all(|_| step(&mut busy, 65536, Duration::from_secs(3), 8192, 8192).is_ok()));
    }
}
