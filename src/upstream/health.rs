//! Active health checks, on the control thread (never on a worker).
//!
//! Each service with `[services.X.health]` has one checker task: every
//! `interval` it takes the service's instances now (its static list, or
//! what discovery found) and checks each once, the checks spread evenly
//! over the interval (no thundering herd on the service, nor on the
//! gateway). A check is `GET path` on a new connection, its answer's head
//! read by the one response-head parser the data plane uses, within
//! `timeout`; a `2xx` or `3xx` passes. Results go into the instance's
//! shared state (`outlier::ServiceHealth`): out after `unhealthy` failures
//! in a row, back after `healthy` passes; workers try instances that are
//! out last, as they do ejected ones.
//!
//! Checkers start and stop with the settings, like discovery watchers:
//! [`sync`] is called after every publish.

use super::outlier::ServiceHealth;
use crate::config::resilience::HealthCheck;
use crate::config::GatewayConfig;
use crate::proto::http1::response_head::{self as head, Asked, HeadLimits, Parsed};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

/// A checker task, run on the control thread.
pub type Checker = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The running checkers: the settings and instance source they follow.
type Running = HashMap<String, ((HealthCheck, Vec<SocketAddr>, bool), Arc<Stop>)>;

#[derive(Default)]
struct Stop {
    flag: AtomicBool,
    wake: tokio::sync::Notify,
}

fn running() -> &'static Mutex<Running> {
    static RUNNING: OnceLock<Mutex<Running>> = OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// Starts and stops checkers so that exactly the services of `gateway`
/// with `[health]` have one, following their settings.
pub fn sync(gateway: &GatewayConfig, spawn: &dyn Fn(Checker)) {
    let mut run = running().lock().unwrap_or_else(|p| p.into_inner());
    let wanted: HashMap<&str, (HealthCheck, Vec<SocketAddr>, bool)> = gateway
        .services
        .iter()
        .filter_map(|s| {
            let h = s.health.clone()?;
            Some((s.name.as_str(), (h, s.instances.clone(), s.discovery.is_some())))
        })
        .collect();
    run.retain(|name, (settings, stop)| {
        let keep = wanted.get(name.as_str()).is_some_and(|w| w == settings);
        if !keep {
            stop.flag.store(true, Relaxed);
            stop.wake.notify_waiters();
            // What the old checks decided goes with them: an instance they
            // held out serves again (the new settings, if any, judge anew).
            super::outlier::service(name).clear_checked();
        }
        keep
    });
    for (name, settings) in wanted {
        if run.contains_key(name) {
            continue;
        }
        let stop = Arc::new(Stop::default());
        run.insert(name.to_string(), (settings.clone(), stop.clone()));
        let (check, fixed, discovered) = settings;
        let service = super::outlier::service(name);
        let name = name.to_string();
        spawn(Box::pin(async move {
            checker(name, check, fixed, discovered, service, stop).await;
        }));
    }
}

async fn checker(
    name: String,
    check: HealthCheck,
    fixed: Vec<SocketAddr>,
    discovered: bool,
    service: Arc<ServiceHealth>,
    stop: Arc<Stop>,
) {
    use futures_util::future::{select, Either};
    loop {
        let stopped = stop.wake.notified();
        if stop.flag.load(Relaxed) {
            return;
        }
        let instances: Vec<SocketAddr> =
            if discovered { crate::discovery::live(&name).addrs().to_vec() } else { fixed.clone() };
        service.retain_checked(&instances);
        let (check, service, name, stop) = (&check, &service, &name, &stop);
        let round = async move {
            let n = instances.len().max(1) as u32;
            let step = check.interval / n;
            let mut checks = Vec::with_capacity(instances.len());
            for (i, addr) in instances.iter().copied().enumerate() {
                let (check, service, host) = (check.clone(), service.clone(), name.clone());
                let stop = stop.clone();
                // Each check runs to its own timeout (at most one interval),
                // even past the end of this round: a late instance in the
                // list is judged like the first. At most two rounds overlap.
                checks.push(tokio::spawn(async move {
                    // Spread over the interval: instance i at i/n of it.
                    tokio::time::sleep(step * i as u32).await;
                    if stop.flag.load(Relaxed) {
                        return;
                    }
                    let ok = probe(addr, &host, &check).await;
                    // A checker stopped meanwhile no longer decides anything.
                    if !stop.flag.load(Relaxed) {
                        service.checked(addr, ok, check.healthy, check.unhealthy);
                    }
                }));
            }
            tokio::time::sleep(check.interval).await;
            checks
        };
        if let Either::Left(_) = select(std::pin::pin!(stopped), std::pin::pin!(round)).await {
            return;
        }
    }
}

/// One check: `GET path` on a new connection, the head within `timeout`.
pub async fn probe(addr: SocketAddr, host: &str, check: &HealthCheck) -> bool {
    matches!(tokio::time::timeout(check.timeout, exchange(addr, host, &check.path)).await, Ok(Some(status)) if (200..400).contains(&status))
}

async fn exchange(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req =
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: wasp-health-check\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::with_capacity(1024);
    let limits = HeadLimits { max_bytes: 16 * 1024, max_headers: 100 };
    loop {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut st = head::storage();
        match head::parse(&buf, &mut st, limits, Asked::default()).ok()? {
            Parsed::Final(h) => return Some(h.status),
            Parsed::Interim(skip) => {
                buf.drain(..skip);
            }
            Parsed::Partial if buf.len() > limits.max_bytes => return None,
            Parsed::Partial => {}
        }
    }
}
