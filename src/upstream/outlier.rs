//! Passive outlier ejection, on every worker's observations.
//!
//! Each worker counts, per instance, its own run of consecutive failures
//! (a refused or timed-out connect, a reset or timeout before the answer, a
//! `5xx` answer); the instance's shared count is the sum of those runs, and
//! a worker's success takes its own run back out. When the sum reaches
//! `consecutive_failures` the instance is ejected for `base_ejection`,
//! doubled for each ejection before it (up to 64×; a spell of health four
//! times the base long forgets them) — unless `max_ejected_percent` of the
//! service's instances are out already: then it stays, and traffic still
//! goes somewhere (`wasp_outlier_ejections_total{result="refused"}` says so).
//!
//! The shared state is per service name and outlives snapshots (like the
//! discovery cells); the request path reads one atomic (`until`, the end of
//! the latest ejection) and looks instances up only while one may be out.

use crate::config::resilience::Outlier;
use ahash::AHashMap;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds since the process started: ejection times in one atomic.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] of an instant the caller already has (no clock read).
pub fn ms_at(at: Instant) -> u64 {
    at.saturating_duration_since(start()).as_millis() as u64 + 1
}

#[derive(Debug, Default)]
pub struct InstanceHealth {
    /// The sum of every worker's current run of failures.
    failures: AtomicU32,
    /// Ejected until (ms, [`now_ms`]); 0: never ejected.
    until: AtomicU64,
    /// Ejections in a row (the back-off exponent).
    ejections: AtomicU32,
    /// Ejections ever, for the admin view.
    pub ejected_total: AtomicU64,
    /// Active checks: out after `unhealthy` failures in a row, back after
    /// `healthy` passes (see `health`).
    pub unhealthy: std::sync::atomic::AtomicBool,
    pub check_passes: AtomicU32,
    pub check_fails: AtomicU32,
}

impl InstanceHealth {
    pub fn ejected_until(&self) -> u64 {
        self.until.load(Relaxed)
    }

    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }
}

/// One service's instances' health.
#[derive(Debug, Default)]
pub struct ServiceHealth {
    instances: ArcSwap<AHashMap<SocketAddr, Arc<InstanceHealth>>>,
    /// Serializes inserts (copy, insert, store).
    grow: Mutex<()>,
    /// The end of the latest ejection (ms): before it, some instance may be out.
    until: AtomicU64,
    pub ejections: AtomicU64,
    pub refused: AtomicU64,
    /// Instances the active checks hold out now.
    pub unhealthy: std::sync::atomic::AtomicUsize,
    pub checks_passed: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Requests its circuit refused (`503 overloaded`), every worker.
    pub circuit_refused: AtomicU64,
}

fn table() -> &'static Mutex<AHashMap<String, Arc<ServiceHealth>>> {
    static TABLE: OnceLock<Mutex<AHashMap<String, Arc<ServiceHealth>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// The health of service `name`'s instances (made on first use).
pub fn service(name: &str) -> Arc<ServiceHealth> {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    t.entry(name.to_string()).or_default().clone()
}

/// `wasp_outlier_ejections_total{service,result}` and
/// `wasp_outlier_ejected{service}` (instances out now), for `/metrics`.
pub fn render(out: &mut String) {
    use std::fmt::Write;
    let mut all: Vec<(String, Arc<ServiceHealth>)> =
        table().lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(n, h)| (n.clone(), h.clone())).collect();
    if all.is_empty() {
        return;
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let now = now_ms();
    let _ = writeln!(out, "# HELP wasp_outlier_ejections_total Instances ejected after consecutive failures, and ejections refused by max_ejected_percent.\n# TYPE wasp_outlier_ejections_total counter");
    for (name, h) in &all {
        let _ = writeln!(
            out,
            "wasp_outlier_ejections_total{{service=\"{name}\",result=\"ejected\"}} {}",
            h.ejections.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "wasp_outlier_ejections_total{{service=\"{name}\",result=\"refused\"}} {}",
            h.refused.load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP wasp_circuit_refused_total Requests answered 503 overloaded because the service's circuit was full.\n# TYPE wasp_circuit_refused_total counter"
    );
    for (name, h) in &all {
        let _ = writeln!(out, "wasp_circuit_refused_total{{service=\"{name}\"}} {}", h.circuit_refused.load(Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP wasp_health_checks_total Active health checks, by result.\n# TYPE wasp_health_checks_total counter"
    );
    for (name, h) in &all {
        let _ = writeln!(
            out,
            "wasp_health_checks_total{{service=\"{name}\",result=\"pass\"}} {}",
            h.checks_passed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "wasp_health_checks_total{{service=\"{name}\",result=\"fail\"}} {}",
            h.checks_failed.load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP wasp_health_unhealthy Instances the active checks hold out now.\n# TYPE wasp_health_unhealthy gauge"
    );
    for (name, h) in &all {
        let _ = writeln!(out, "wasp_health_unhealthy{{service=\"{name}\"}} {}", h.unhealthy.load(Relaxed));
    }
    let _ = writeln!(out, "# HELP wasp_outlier_ejected Instances ejected now.\n# TYPE wasp_outlier_ejected gauge");
    for (name, h) in &all {
        let n = h.instances.load().values().filter(|i| i.until.load(Relaxed) > now).count();
        let _ = writeln!(out, "wasp_outlier_ejected{{service=\"{name}\"}} {n}");
    }
}

impl ServiceHealth {
    fn instance(&self, addr: SocketAddr) -> Arc<InstanceHealth> {
        if let Some(h) = self.instances.load().get(&addr) {
            return h.clone();
        }
        let _g = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = AHashMap::clone(&self.instances.load());
        let h = map.entry(addr).or_default().clone();
        self.instances.store(Arc::new(map));
        h
    }

    /// What is known of `addr`, if anything.
    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<InstanceHealth>> {
        self.instances.load().get(addr).cloned()
    }

    /// Whether `addr` is out now: ejected, or failing its active checks.
    /// Two atomic reads while nothing is.
    #[inline(never)]
    pub fn is_ejected(&self, addr: SocketAddr, now: u64) -> bool {
        if self.until.load(Relaxed) <= now && self.unhealthy.load(Relaxed) == 0 {
            return false;
        }
        self.instances.load().get(&addr).is_some_and(|h| h.until.load(Relaxed) > now || h.unhealthy.load(Relaxed))
    }

    /// [`is_ejected`](Self::is_ejected) at `at`, converting the time only
    /// when some instance of the service was ever out (the common case
    /// costs two atomic reads).
    #[inline]
    pub fn is_out(&self, addr: SocketAddr, at: Instant) -> bool {
        if self.until.load(Relaxed) == 0 && self.unhealthy.load(Relaxed) == 0 {
            return false;
        }
        self.is_ejected(addr, ms_at(at))
    }

    /// An active check of `addr` passed (`ok`) or failed; `healthy` passes
    /// or `unhealthy` failures in a row change its state. Returns the new
    /// state when it changed.
    pub fn checked(&self, addr: SocketAddr, ok: bool, healthy: u32, unhealthy: u32) -> Option<bool> {
        let h = self.instance(addr);
        if ok {
            self.checks_passed.fetch_add(1, Relaxed);
            h.check_fails.store(0, Relaxed);
            let passes = h.check_passes.fetch_add(1, Relaxed).saturating_add(1);
            if passes >= healthy && h.unhealthy.swap(false, Relaxed) {
                self.unhealthy.fetch_sub(1, Relaxed);
                tracing::info!(instance = %addr, "instance healthy again (active checks)");
                return Some(true);
            }
        } else {
            self.checks_failed.fetch_add(1, Relaxed);
            h.check_passes.store(0, Relaxed);
            let fails = h.check_fails.fetch_add(1, Relaxed).saturating_add(1);
            if fails >= unhealthy && !h.unhealthy.swap(true, Relaxed) {
                self.unhealthy.fetch_add(1, Relaxed);
                tracing::warn!(instance = %addr, "instance unhealthy (active checks)");
                return Some(false);
            }
        }
        None
    }

    /// Every instance held out by active checks serves again (the checks
    /// were removed or replaced).
    pub fn clear_checked(&self) {
        for h in self.instances.load().values() {
            h.check_fails.store(0, Relaxed);
            h.check_passes.store(0, Relaxed);
            if h.unhealthy.swap(false, Relaxed) {
                self.unhealthy.fetch_sub(1, Relaxed);
            }
        }
    }

    /// Forgets the check state of instances `live` no longer names (so a
    /// removed unhealthy instance does not keep the slow path on).
    pub fn retain_checked(&self, live: &[SocketAddr]) {
        for (addr, h) in self.instances.load().iter() {
            if !live.contains(addr) && h.unhealthy.swap(false, Relaxed) {
                self.unhealthy.fetch_sub(1, Relaxed);
            }
        }
    }

    /// A worker saw `addr` fail; `instances` are the service's instances
    /// now. Returns whether this ejected it.
    pub fn failed(&self, addr: SocketAddr, policy: &Outlier, instances: &[SocketAddr]) -> bool {
        if policy.consecutive_failures == 0 {
            return false;
        }
        let h = self.instance(addr);
        let n = h.failures.fetch_add(1, Relaxed).saturating_add(1);
        let now = now_ms();
        if n < policy.consecutive_failures || h.until.load(Relaxed) > now {
            return false;
        }
        // At most this many out at once (rounded down: one of two at 50 %).
        let cap = instances.len() * policy.max_ejected_percent as usize / 100;
        let out = instances.iter().filter(|a| **a != addr && self.is_ejected(**a, now)).count();
        if out >= cap {
            self.refused.fetch_add(1, Relaxed);
            return false;
        }
        let base = policy.base_ejection.as_millis() as u64;
        // Healthy four times the base since the last ejection ended: start over.
        let last = h.until.load(Relaxed);
        if last != 0 && now.saturating_sub(last) > 4 * base {
            h.ejections.store(0, Relaxed);
        }
        let k = h.ejections.fetch_add(1, Relaxed).min(6);
        let until = now + base.saturating_mul(1 << k);
        h.until.store(until, Relaxed);
        h.failures.store(0, Relaxed);
        h.ejected_total.fetch_add(1, Relaxed);
        self.ejections.fetch_add(1, Relaxed);
        self.until.fetch_max(until, Relaxed);
        tracing::warn!(instance = %addr, for_ms = until - now, "instance ejected after consecutive failures");
        true
    }

    /// A worker whose run of `streak` failures on `addr` ended with a success.
    pub fn recovered(&self, addr: SocketAddr, streak: u32) {
        if let Some(h) = self.instances.load().get(&addr) {
            let _ = h.failures.fetch_update(Relaxed, Relaxed, |f| Some(f.saturating_sub(streak)));
        }
    }

    /// For tests and the admin view: how long `addr` stays out.
    pub fn ejected_for(&self, addr: &SocketAddr) -> Option<Duration> {
        let until = self.get(addr)?.until.load(Relaxed);
        let now = now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
    }

    #[test]
    fn ejects_after_the_sum_of_runs_and_never_more_than_the_share() {
        let h = ServiceHealth::default();
        let p = Outlier { consecutive_failures: 3, base_ejection: Duration::from_secs(10), max_ejected_percent: 50 };
        let all = addrs(4);
        assert!(!h.failed(all[0], &p, &all));
        assert!(!h.failed(all[0], &p, &all));
        // Another worker's success takes its own run (none) out: no reset.
        h.recovered(all[0], 0);
        assert!(h.failed(all[0], &p, &all), "third failure in a row ejects");
        assert!(h.is_ejected(all[0], now_ms()));
        assert!(!h.is_ejected(all[1], now_ms()));
        for _ in 0..3 {
            h.failed(all[1], &p, &all);
        }
        assert!(h.is_ejected(all[1], now_ms()));
        // Two of four out: 50 %, no more.
        for _ in 0..5 {
            assert!(!h.failed(all[2], &p, &all));
        }
        assert!(!h.is_ejected(all[2], now_ms()));
        assert!(h.refused.load(Relaxed) >= 1);
        // A run taken back out by the worker that had it.
        let one = ServiceHealth::default();
        one.failed(all[0], &p, &all);
        one.failed(all[0], &p, &all);
        one.recovered(all[0], 2);
        assert!(!one.failed(all[0], &p, &all), "the run started over");
    }

    #[test]
    fn a_single_instance_is_never_ejected_at_fifty_percent() {
        let h = ServiceHealth::default();
        let p = Outlier::default();
        let all = addrs(1);
        for _ in 0..20 {
            assert!(!h.failed(all[0], &p, &all));
        }
    }
}
