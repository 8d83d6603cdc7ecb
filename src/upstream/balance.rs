//! Per-worker, per-service balancing and retry state.
//!
//! Round robin keeps one cursor per service: with one cursor per worker
//! shared by every service, traffic alternating between two services sent
//! each service's requests to one instance only.
//!
//! The retry budget follows Finagle's: every request earns
//! `budget_percent / 100` of a retry and every retry spends one, so retries
//! stay under that share of the service's requests however sick the service
//! is (no retry storm). One retry is there from the start and at most
//! [`MAX_SAVED`] can be saved, so a quiet service still gets its stale
//! keep-alive connection retried, and a long healthy spell cannot fund a
//! burst.

use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Retries a service can save up, per worker.
pub const MAX_SAVED: u32 = 10;
/// Budget unit: one retry is 100 credits (one per percent).
const RETRY: u32 = 100;

#[derive(Debug)]
struct ServiceState {
    rr: Cell<usize>,
    /// Retry credits, 100 per retry.
    credits: Cell<u32>,
    /// The circuit: requests at the service's instances, and waiting
    /// (looked up by name on first use in a version: it outlives versions).
    circuit: RefCell<Option<Rc<CircuitState>>>,
}

#[derive(Debug, Default)]
struct CircuitState {
    active: Cell<usize>,
    pending: Cell<usize>,
    freed: event_listener::Event,
}

/// A place in a service's circuit, given back when dropped.
pub struct Slot(Rc<CircuitState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
        // Nobody waits in the common case: no notification to pay for.
        if self.0.pending.get() > 0 {
            self.0.freed.notify(1);
        }
    }
}

struct Pending<'a>(&'a Cell<usize>);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// How long an EWMA latency takes to halve when nothing refreshes it: an
/// instance that was slow is tried again once it has been left alone.
const EWMA_HALF_LIFE: Duration = Duration::from_secs(5);
/// Weight of a new latency sample.
const EWMA_WEIGHT: f64 = 0.3;

/// State for every service of the snapshot version it was built for, and
/// per instance (by address, across versions): latency for `p2c`, this
/// worker's runs of failures for outlier ejection.
#[derive(Debug, Default)]
pub struct Balance {
    version: Cell<u64>,
    services: RefCell<Vec<ServiceState>>,
    seed: Cell<usize>,
    rng: Cell<u64>,
    /// EWMA of time to the answer's head (µs), and when it was updated.
    latency: RefCell<AHashMap<SocketAddr, (f64, Instant)>>,
    /// This worker's current run of consecutive failures per instance
    /// (only instances with one).
    streaks: RefCell<AHashMap<SocketAddr, u32>>,
    /// Circuits by service name: a reload or an apply must not empty a
    /// circuit while the requests it counts are still in flight.
    circuits: RefCell<AHashMap<std::sync::Arc<str>, Rc<CircuitState>>>,
}

impl Balance {
    pub fn new(seed: usize) -> Self {
        Balance { seed: Cell::new(seed), rng: Cell::new(seed as u64 | 1), ..Default::default() }
    }

    /// A pseudo-random number (xorshift64*): enough to pick two instances.
    pub fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Records how long `addr` took to start answering.
    pub fn observe_latency(&self, addr: SocketAddr, took: Duration, now: Instant) {
        let sample = took.as_micros() as f64;
        let mut m = self.latency.borrow_mut();
        let e = m.entry(addr).or_insert((sample, now));
        let decayed = decay(e.0, now.saturating_duration_since(e.1));
        *e = (decayed + EWMA_WEIGHT * (sample - decayed), now);
    }

    /// The EWMA latency of `addr` now (µs; 0 when never measured).
    pub fn latency_us(&self, addr: SocketAddr, now: Instant) -> f64 {
        self.latency.borrow().get(&addr).map_or(0.0, |(v, at)| decay(*v, now.saturating_duration_since(*at)))
    }

    /// A failure of `addr` on this worker: its run grows by one.
    pub fn failed(&self, addr: SocketAddr) {
        *self.streaks.borrow_mut().entry(addr).or_insert(0) += 1;
    }

    /// A success of `addr`: its run on this worker ends; returns its length
    /// (nothing to do for the shared count when 0). Free while no instance
    /// failed on this worker.
    #[inline]
    pub fn succeeded(&self, addr: SocketAddr) -> u32 {
        let mut s = self.streaks.borrow_mut();
        if s.is_empty() {
            return 0;
        }
        s.remove(&addr).unwrap_or(0)
    }

    /// Forgets instances `live` no longer names (with the pool's reaping),
    /// and circuits nothing uses (a removed service's, once idle).
    pub fn forget(&self, live: impl Fn(&SocketAddr) -> bool) {
        self.latency.borrow_mut().retain(|a, _| live(a));
        self.streaks.borrow_mut().retain(|a, _| live(a));
        self.circuits.borrow_mut().retain(|_, c| Rc::strong_count(c) > 1 || c.active.get() > 0 || c.pending.get() > 0);
    }

    /// A request to the service is about to go out: it earns its share of
    /// a retry (`percent`) and asks for a place in the circuit of service
    /// `index` (one lookup of the service's state for both): at once while
    /// fewer than `max_connections` requests are at its instances; else a
    /// wait (at most `max_pending` wait) for one to finish; else refused
    /// (`503 overloaded` at once).
    ///
    /// Synchronous in the common case (a place is free): `Ok(slot)`;
    /// `Err(Some(wait))` when the caller must await [`Wait::place`], and
    /// `Err(None)` when refused. The wait is a future of its own so the
    /// request path does not build one when nothing waits.
    pub fn admit(
        &self,
        version: u64,
        index: usize,
        name: &std::sync::Arc<str>,
        percent: u32,
        c: &crate::config::resilience::Circuit,
    ) -> Result<Slot, Option<Wait>> {
        let s = self.with(version, index, |s| {
            earn_in(s, percent);
            s.circuit
                .borrow_mut()
                .get_or_insert_with(|| self.circuits.borrow_mut().entry(name.clone()).or_default().clone())
                .clone()
        });
        if s.active.get() < c.max_connections {
            s.active.set(s.active.get() + 1);
            return Ok(Slot(s));
        }
        if s.pending.get() >= c.max_pending {
            return Err(None);
        }
        Err(Some(Wait { s, max: c.max_connections }))
    }
}

/// A request waiting for a place in a full circuit.
pub struct Wait {
    s: Rc<CircuitState>,
    max: usize,
}

impl Wait {
    /// Waits at most `wait` for a place; `None` when none came.
    pub async fn place(self, wait: Duration) -> Option<Slot> {
        let Wait { s, max } = self;
        s.pending.set(s.pending.get() + 1);
        let _pending = Pending(&s.pending);
        let deadline = Instant::now() + wait;
        loop {
            let freed = s.freed.listen();
            if s.active.get() < max {
                s.active.set(s.active.get() + 1);
                return Some(Slot(s.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || monoio::time::timeout(left, freed).await.is_err() {
                // One last look: a place freed as the wait ran out is taken.
                if s.active.get() < max {
                    s.active.set(s.active.get() + 1);
                    return Some(Slot(s.clone()));
                }
                return None;
            }
        }
    }
}

impl Balance {
    /// Runs `f` on the state of service number `index` in snapshot `version`.
    /// A new snapshot version starts every service afresh (indexes move).
    fn with<T>(&self, version: u64, index: usize, f: impl FnOnce(&ServiceState) -> T) -> T {
        let mut list = self.services.borrow_mut();
        if self.version.get() != version {
            self.version.set(version);
            list.clear();
        }
        while list.len() <= index {
            // Workers start at different instances.
            let seed = self.seed.get().wrapping_mul(31).wrapping_add(list.len());
            list.push(ServiceState { rr: Cell::new(seed), credits: Cell::new(RETRY), circuit: RefCell::new(None) });
        }
        f(&list[index])
    }

    /// The next round-robin position for the service.
    pub fn next(&self, version: u64, index: usize) -> usize {
        self.with(version, index, |s| {
            let v = s.rr.get().wrapping_add(1);
            s.rr.set(v);
            v
        })
    }

    /// A request to the service was sent: it earns its share of a retry.
    pub fn earn(&self, version: u64, index: usize, percent: u32) {
        self.with(version, index, |s| earn_in(s, percent));
    }

    /// Spends one retry if the budget has it.
    pub fn spend(&self, version: u64, index: usize) -> bool {
        self.with(version, index, |s| match s.credits.get().checked_sub(RETRY) {
            Some(left) => {
                s.credits.set(left);
                true
            }
            None => false,
        })
    }
}

/// A request's share of a retry (`percent` credits), up to `MAX_SAVED`.
fn earn_in(s: &ServiceState, percent: u32) {
    s.credits.set((s.credits.get() + percent.min(100)).min(MAX_SAVED * RETRY));
}

/// `v` after `age` of halving every `EWMA_HALF_LIFE`.
fn decay(v: f64, age: Duration) -> f64 {
    if age.is_zero() {
        return v;
    }
    v * 0.5f64.powf(age.as_secs_f64() / EWMA_HALF_LIFE.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_per_service() {
        let b = Balance::new(0);
        let a1 = b.next(1, 0);
        let _ = b.next(1, 1);
        let a2 = b.next(1, 0);
        assert_eq!(a2, a1 + 1, "another service's request does not move this cursor");
    }

    #[test]
    fn retries_stay_within_the_share() {
        let b = Balance::new(0);
        let mut retries = 0;
        for _ in 0..1000 {
            b.earn(1, 0, 20);
            if b.spend(1, 0) {
                retries += 1;
            }
        }
        // 20 % of 1000, plus the one retry there from the start.
        assert!(retries <= 201, "{retries}");
        assert!(retries >= 199, "{retries}");
        let b = Balance::new(0);
        assert!(b.spend(1, 0));
        assert!(!b.spend(1, 0), "no budget left without requests");
    }
}
