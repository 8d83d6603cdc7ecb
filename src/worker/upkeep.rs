//! A worker's background upkeep, one task: deadlines swept every tick, idle
//! upstream connections reaped every second.

use super::Worker;
use crate::deadline::TICK;
use ahash::AHashSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How often idle upstream connections are looked at.
const REAP_EVERY: Duration = Duration::from_secs(1);

pub async fn run(w: Rc<Worker>) {
    let mut next_reap = Instant::now() + REAP_EVERY;
    let mut live: AHashSet<SocketAddr> = AHashSet::new();
    let mut live_version = u64::MAX;
    loop {
        monoio::time::sleep(TICK).await;
        w.deadlines.sweep(|phase| {
            w.stats.timeouts[phase.index()].fetch_add(1, Relaxed);
        });
        let now = Instant::now();
        if now < next_reap {
            continue;
        }
        next_reap = now + REAP_EVERY;
        let snap = w.snapshot.load();
        // Discovered lists change without a new version: looked at each time.
        let discovered = snap.router.services.values().any(|s| s.dynamic.is_some());
        if snap.version != live_version || discovered {
            // Every address a service or an integration may use: idle sockets
            // to anything else belong to a removed instance.
            live_version = snap.version;
            live.clear();
            live.extend(snap.router.services.values().flat_map(|s| s.config.instances.iter().copied()));
            for s in snap.router.services.values() {
                if let Some(d) = &s.dynamic {
                    live.extend(d.addrs().iter().copied());
                }
            }
            for e in &snap.gateway.endpoints {
                live.extend(e.routes.iter().flat_map(|r| r.http.iter().map(|t| t.addr)));
            }
        }
        let closed = w.upstream.pool.reap(snap.gateway.timeouts.pool_idle, now, |a| live.contains(a));
        w.upstream.balance.forget(|a| live.contains(a));
        if closed > 0 {
            w.stats.pool_reaped.fetch_add(closed as u64, Relaxed);
        }
    }
}

/// The end of a drain: every read or write still pending is cut, so the
/// tasks that wait on stalled peers finish now instead of at their deadline.
pub fn cut_all(w: &Worker) -> usize {
    w.deadlines.cut_all(|phase| {
        w.stats.timeouts[phase.index()].fetch_add(1, Relaxed);
    })
}
