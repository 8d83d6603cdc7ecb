//! One rule's budgets: a fixed table of atomics shared by every worker, no
//! lock on the request path.
//!
//! Each key (a consumer, an address, a connection) has a slot holding its
//! GCRA "theoretical arrival time" (TAT). A request at `now` is allowed when
//! `max(TAT, now) + T - now <= burst × T` (T: the interval between requests
//! at the rate), and moves the TAT there with a compare-and-swap, so workers
//! spending one key's budget at once never let more through than the rule
//! allows: the limit is exact across workers, whatever connection or
//! worker the requests arrive on.
//!
//! Bounded: room for `max_keys` keys in twice as many slots (a power of
//! two; kept at most half full so a key's 16 probed slots almost never
//! are all taken before the bound), found by probing from the key's
//! hash. A new key takes an empty slot or an
//! idle one (its TAT has passed: its budget is full, so forgetting it loses
//! nothing). A throttled key's slot is never taken: when all 8 are busy, the
//! new key spends one budget shared by every key in that situation (the
//! overflow slot). Eviction therefore never hands a throttled key a fresh
//! budget; the cost of the bound is that, with more than `max_keys` keys
//! busy at once, newcomers share a budget.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const PROBE: usize = 16;

pub struct Table {
    keys: Box<[AtomicU64]>,
    tats: Box<[AtomicU64]>,
    mask: usize,
    overflow: AtomicU64,
}

/// What a request got from one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests that could still come at once after this one.
    pub remaining: u32,
    /// Nanoseconds until the budget is full again.
    pub reset_ns: u64,
    /// Nanoseconds until a refused request would be allowed (0 when allowed).
    pub retry_ns: u64,
}

impl Table {
    pub fn new(max_keys: u32) -> Table {
        let n = (max_keys as usize).max(PROBE).next_power_of_two() * 2;
        Table {
            keys: (0..n).map(|_| AtomicU64::new(0)).collect(),
            tats: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            overflow: AtomicU64::new(0),
        }
    }

    /// Spends one request of `key`'s budget (`key` is a hash; 0 is mapped
    /// to 1: 0 marks an empty slot). `now` in ns on a monotonic clock
    /// shared by the workers.
    pub fn acquire(&self, key: u64, interval: u64, burst: u32, now: u64) -> Verdict {
        gcra(self.slot(key.max(1), now), interval, burst, now)
    }

    /// Gives back one request of `key`'s budget: it was spent, then a later
    /// rule refused the request. GCRA is additive, so this undoes exactly
    /// the spend (never below `now`: a refund cannot make a budget fuller
    /// than full).
    pub fn refund(&self, key: u64, interval: u64, now: u64) {
        let tat = self.slot(key.max(1), now);
        let _ = tat.fetch_update(Relaxed, Relaxed, |t| Some(t.saturating_sub(interval).max(now.min(t))));
    }

    /// A new table for `max_keys` holding the busy keys of `old` (an apply
    /// that resizes a rule keeps every budget in use).
    pub fn resized(old: &Table, max_keys: u32, now: u64) -> Table {
        let t = Table::new(max_keys);
        for (k, tat) in old.keys.iter().zip(old.tats.iter()) {
            let (k, tat) = (k.load(Relaxed), tat.load(Relaxed));
            if k != 0 && tat > now {
                t.slot(k, now).fetch_max(tat, Relaxed);
            }
        }
        t.overflow.store(old.overflow.load(Relaxed), Relaxed);
        t
    }

    fn slot(&self, key: u64, now: u64) -> &AtomicU64 {
        let start = (key as usize) & self.mask;
        let mut free = None;
        for i in 0..PROBE {
            let at = (start + i) & self.mask;
            match self.keys[at].load(Relaxed) {
                k if k == key => return &self.tats[at],
                0 if free.is_none() => free = Some((at, 0)),
                k if free.is_none() && self.tats[at].load(Relaxed) <= now => free = Some((at, k)),
                _ => {}
            }
        }
        if let Some((at, old)) = free {
            // Claimed by one worker; another that raced for it probes again
            // next time (and spends the overflow budget this once).
            if self.keys[at].compare_exchange(old, key, Relaxed, Relaxed).is_ok() {
                self.tats[at].store(0, Relaxed);
                return &self.tats[at];
            }
            if self.keys[at].load(Relaxed) == key {
                return &self.tats[at];
            }
        }
        &self.overflow
    }
}

fn gcra(tat: &AtomicU64, interval: u64, burst: u32, now: u64) -> Verdict {
    // Bounded at validation (interval × burst ≤ 30 days): no overflow.
    let tolerance = interval.saturating_mul(u64::from(burst));
    let mut seen = tat.load(Relaxed);
    loop {
        // A TAT further ahead than this rule allows comes from a stricter
        // rule before an apply: taken as "one request left" under this one,
        // so a new rate applies at the next request without handing out a
        // fresh budget.
        // (Under one rule a TAT is at most `now + tolerance`.)
        let base = if seen > now.saturating_add(tolerance) { now + tolerance - interval.min(tolerance) } else { seen };
        let next = base.max(now).saturating_add(interval);
        let ahead = next - now;
        if ahead > tolerance {
            let wait = ahead - tolerance;
            let reset = seen.max(now) - now;
            return Verdict { allowed: false, remaining: 0, reset_ns: reset, retry_ns: wait };
        }
        match tat.compare_exchange_weak(seen, next, Relaxed, Relaxed) {
            Ok(_) => {
                let remaining = ((tolerance - ahead) / interval.max(1)).min(u64::from(u32::MAX)) as u32;
                return Verdict { allowed: true, remaining, reset_ns: ahead, retry_ns: 0 };
            }
            Err(now_seen) => seen = now_seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let t = Table::new(16);
        // 10/s, burst 5: five at once, the sixth waits 100 ms.
        for i in 0..5 {
            let v = t.acquire(42, S / 10, 5, S);
            assert!(v.allowed, "{i}");
            assert_eq!(v.remaining, 4 - i);
        }
        let v = t.acquire(42, S / 10, 5, S);
        assert!(!v.allowed);
        assert_eq!(v.retry_ns, S / 10);
        assert!(t.acquire(42, S / 10, 5, S + S / 10).allowed, "after the interval");
        assert!(t.acquire(7, S / 10, 5, S).allowed, "another key has its own budget");
    }

    #[test]
    fn a_throttled_key_is_never_evicted_and_newcomers_share_the_overflow() {
        let t = Table::new(8);
        // Fill every slot (8 keys' room: 32 slots) with a key that is
        // throttled (TAT far ahead).
        for k in 1..=32u64 {
            for _ in 0..3 {
                t.acquire(k, S, 3, S);
            }
            assert!(!t.acquire(k, S, 3, S).allowed);
        }
        // A newcomer cannot take their slots: the overflow budget.
        assert!(t.acquire(1000, S, 1, S).allowed);
        assert!(!t.acquire(2000, S, 1, S).allowed, "the second newcomer shares the overflow budget");
        for k in 1..=32u64 {
            assert!(!t.acquire(k, S, 3, S).allowed, "key {k} kept its state");
        }
        // Once they are idle their slots are taken by new keys.
        assert!(t.acquire(3000, S, 1, 100 * S).allowed);
        assert!(!t.acquire(3000, S, 1, 100 * S).allowed);
        assert!(t.acquire(4000, S, 1, 100 * S).allowed, "its own slot, not the overflow");
    }

    #[test]
    fn a_looser_rule_after_an_apply_lets_the_next_request_through_but_no_burst() {
        let t = Table::new(16);
        // 1/min, spent: the TAT is a minute ahead.
        assert!(t.acquire(5, 60 * S, 1, S).allowed);
        assert!(!t.acquire(5, 60 * S, 1, S).allowed);
        // 100/s, burst 50 from now on: one request at once, then the rate.
        assert!(t.acquire(5, S / 100, 50, S + 1).allowed);
        assert!(!t.acquire(5, S / 100, 50, S + 2).allowed, "not a fresh burst");
        assert!(t.acquire(5, S / 100, 50, S + 2 + S / 100).allowed, "the new rate");
    }

    #[test]
    fn a_refund_undoes_a_spend_and_a_resize_keeps_busy_budgets() {
        let t = Table::new(16);
        assert!(t.acquire(5, S, 1, S).allowed);
        t.refund(5, S, S);
        assert!(t.acquire(5, S, 1, S).allowed, "refunded");
        assert!(!t.acquire(5, S, 1, S).allowed);
        let big = Table::resized(&t, 1024, S);
        assert!(!big.acquire(5, S, 1, S).allowed, "still spent after the resize");
        assert!(big.acquire(6, S, 1, S).allowed);
    }

    #[test]
    fn exact_across_threads() {
        let t = std::sync::Arc::new(Table::new(64));
        let allowed = std::sync::Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (t, a) = (t.clone(), allowed.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if t.acquire(9, S, 100, S).allowed {
                            a.fetch_add(1, Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(allowed.load(Relaxed), 100, "exactly the burst at one instant");
    }
}
