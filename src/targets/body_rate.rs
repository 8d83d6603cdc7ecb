//! A floor on how fast a request body arrives (`limits.min_body_rate`).
//!
//! Every body read has a deadline (`timeouts.header_read` of silence), but a
//! client that sends a byte every few seconds never lets it fire. Bodies are
//! streamed to the service, so such a trickle holds an upstream connection
//! and a slot of `limits.backend_connections` for as long as the client
//! likes: a few thousand of them starve a service of connections. nginx
//! avoids it by buffering whole bodies first; Apache's `mod_reqtimeout`
//! `MinRate` is the rule kept here: after a grace period, the body must
//! average at least the floor.
//!
//! Only time spent waiting for the client counts: a service that reads the
//! body slowly (the pump waits on its writes) does not make the client look
//! slow. No timer: the check runs after each client read, which is exactly
//! when a trickle shows itself.

use crate::config::GatewayConfig;
use crate::error::{ErrorKind, ProxyError};
use std::time::Duration;

/// The body's progress against the floor.
pub struct BodyRate {
    /// Bytes per second (0: no floor).
    min: u64,
    grace: Duration,
    waited: Duration,
    bytes: u64,
}

impl BodyRate {
    pub fn new(g: &GatewayConfig) -> BodyRate {
        BodyRate { min: g.limits.min_body_rate, grace: g.timeouts.header_read, waited: Duration::ZERO, bytes: 0 }
    }

    /// Records one client read that took `waited` and brought `n` bytes;
    /// `Err(408 body_too_slow)` once the body has fallen below the floor.
    pub fn read(&mut self, waited: Duration, n: usize) -> Result<(), ProxyError> {
        if self.min == 0 {
            return Ok(());
        }
        self.waited = self.waited.saturating_add(waited);
        self.bytes = self.bytes.saturating_add(n as u64);
        if self.waited <= self.grace {
            return Ok(());
        }
        // bytes / seconds < min, without floating point or overflow.
        let owed = (self.min as u128) * self.waited.as_millis() / 1000;
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

    fn rate(min: u64, grace_s: u64) -> BodyRate {
        BodyRate { min, grace: Duration::from_secs(grace_s), waited: Duration::ZERO, bytes: 0 }
    }

    #[test]
    fn a_trickle_is_cut_after_the_grace_and_a_steady_body_is_not() {
        let mut trickle = rate(1024, 5);
        let step = Duration::from_millis(300);
        let reads = (0..100).take_while(|_| trickle.read(step, 1).is_ok()).count();
        assert_eq!(reads, 16, "cut at the first read past 5 s of waiting");
        let mut steady = rate(1024, 5);
        assert!((0..1000).all(|_| steady.read(Duration::from_millis(100), 200).is_ok()), "2,000 B/s over 100 s");
        let mut off = rate(0, 5);
        assert!((0..1000).all(|_| off.read(Duration::from_secs(10), 0).is_ok()), "0 turns the floor off");
    }

    #[test]
    fn a_fast_start_buys_time_in_proportion() {
        let mut r = rate(1000, 1);
        assert!(r.read(Duration::from_millis(10), 10_000).is_ok());
        // 10,000 bytes cover 10 s of waiting at 1,000 B/s, not more.
        assert!(r.read(Duration::from_millis(9_900), 0).is_ok());
        assert!(r.read(Duration::from_millis(200), 0).is_err());
    }
}
