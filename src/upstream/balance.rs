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

use std::cell::{Cell, RefCell};

/// Retries a service can save up, per worker.
pub const MAX_SAVED: u32 = 10;
/// Budget unit: one retry is 100 credits (one per percent).
const RETRY: u32 = 100;

#[derive(Debug)]
struct ServiceState {
    rr: Cell<usize>,
    /// Retry credits, 100 per retry.
    credits: Cell<u32>,
}

/// State for every service of the snapshot version it was built for.
#[derive(Debug, Default)]
pub struct Balance {
    version: Cell<u64>,
    services: RefCell<Vec<ServiceState>>,
    seed: Cell<usize>,
}

impl Balance {
    pub fn new(seed: usize) -> Self {
        Balance { seed: Cell::new(seed), ..Default::default() }
    }

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
            list.push(ServiceState { rr: Cell::new(seed), credits: Cell::new(RETRY) });
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
        self.with(version, index, |s| s.credits.set((s.credits.get() + percent.min(100)).min(MAX_SAVED * RETRY)));
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
