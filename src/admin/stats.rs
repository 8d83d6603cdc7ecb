//! `GET /stats`: the live dashboard's feed.
//!
//! Once a second the admin thread reads the counters the workers already
//! keep (relaxed atomic loads; the workers do nothing more for it) and turns
//! them into rates over a sliding window of [`WINDOW`] seconds: requests/s
//! by status class, p50/p99 latency from the services' histograms, events
//! and messages/s per endpoint, auth failures, throttling, Kafka. The last
//! [`HISTORY`] samples (15 minutes) are kept for the charts, so opening the
//! dashboard shows the recent past at once, and a poller asking with
//! `?since=SEQ` gets only the samples newer than the last it saw (usually
//! one). Nothing here runs on a worker, and a dashboard left open costs the
//! workers nothing: the sampling happens whether anyone looks or not.

use super::server::AdminResponse;
use super::AdminState;
use crate::metrics::{fine_bucket_range, EndpointStats, FINE_BUCKETS};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Seconds the rates and percentiles are computed over.
pub const WINDOW: usize = 5;
/// Samples kept: one a second for 15 minutes.
pub const HISTORY: usize = 900;
const TICK: Duration = Duration::from_secs(1);
/// Services (and endpoints) kept in each sample of the history: the busiest
/// ones. Bounds the history to about 2 MB however many services there are
/// (and the first `/stats` answer to a few MB); every service still has its
/// current figures.
pub const SERIES_MAX: usize = 50;

/// Counter readings at one tick.
struct Totals {
    /// Monotonic milliseconds (`ws::conn::now_ms`): rates divide by this.
    mono_ms: u64,
    services: HashMap<Arc<str>, ServiceTotals>,
    endpoints: HashMap<Arc<str>, [i64; 6]>,
    auth_failures: u64,
    throttled: u64,
}

struct ServiceTotals {
    classes: [u64; 5],
    latency: Box<[u64; FINE_BUCKETS]>,
    throttled: u64,
}

/// What the dashboard shows of a service at one sample.
#[derive(Clone, Copy)]
struct ServicePoint {
    rps: f64,
    rps_4xx: f64,
    rps_5xx: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    throttled_rps: f64,
}

#[derive(Clone, Copy)]
struct EndpointPoint {
    open: i64,
    events_rps: f64,
    messages_rps: f64,
    failures_rps: f64,
    kafka_ok_rps: f64,
    kafka_failed_rps: f64,
}

struct Sample {
    seq: u64,
    wall_ms: u64,
    services: Vec<(Arc<str>, ServicePoint)>,
    endpoints: Vec<(Arc<str>, EndpointPoint)>,
    auth_failures_rps: f64,
    throttled_rps: f64,
}

/// The dashboard's state, owned by the admin thread.
#[derive(Default)]
pub struct Dashboard {
    /// The last `WINDOW + 1` readings (the window's two ends).
    raw: VecDeque<Totals>,
    samples: VecDeque<Sample>,
    seq: u64,
    /// Every service's and endpoint's figures at the newest sample.
    latest_services: Vec<(Arc<str>, ServicePoint)>,
    latest_endpoints: Vec<(Arc<str>, EndpointPoint)>,
}

/// The `max` entries with the highest `key`, in name order.
fn busiest<T: Copy>(all: &[(Arc<str>, T)], max: usize, key: impl Fn(&T) -> f64) -> Vec<(Arc<str>, T)> {
    let mut v: Vec<(Arc<str>, T)> = all.to_vec();
    if v.len() > max {
        v.sort_by(|a, b| key(&b.1).total_cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
        v.truncate(max);
        v.sort_by(|a, b| a.0.cmp(&b.0));
    }
    v
}

/// Samples the counters every second until the admin thread ends.
pub async fn run(state: Arc<AdminState>) {
    loop {
        let totals = read(&state);
        if let Ok(mut d) = state.dashboard.lock() {
            d.tick(totals);
        }
        monoio::time::sleep(TICK).await;
    }
}

fn read(state: &AdminState) -> Totals {
    let snap = state.snapshot.load();
    let mut throttled_by: HashMap<(&'static str, String), u64> = HashMap::new();
    let mut throttled = 0;
    for (owner, name, n) in crate::limits::throttled_by_owner() {
        throttled += n;
        // A route's rules count for its endpoint (`endpoint/route`).
        let (owner, name) = match owner {
            "route" => ("endpoint", name.split('/').next().unwrap_or_default().to_string()),
            o => (o, name),
        };
        *throttled_by.entry((owner, name)).or_default() += n;
    }
    let services = snap
        .router
        .services
        .iter()
        .map(|(name, s)| {
            let t = ServiceTotals {
                classes: s.stats.totals(),
                latency: Box::new(s.stats.latency()),
                throttled: throttled_by.get(&("service", name.to_string())).copied().unwrap_or(0),
            };
            (name.clone(), t)
        })
        .collect();
    let endpoints = snap.router.endpoints.iter().map(|(name, e)| (name.clone(), e.stats.totals())).collect();
    Totals {
        mono_ms: crate::pipeline::ws::conn::now_ms(),
        services,
        endpoints,
        auth_failures: crate::auth::failures_total(),
        throttled,
    }
}

/// The `q` quantile (0..1) in milliseconds of a histogram of counts, linear
/// within the bucket it falls in; `None` with no observation.
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let next = seen + c as f64;
        if next >= rank {
            let (lo, hi) = fine_bucket_range(i);
            let frac = ((rank - seen) / c as f64).clamp(0.0, 1.0);
            return Some(round((lo + (hi - lo) * frac) / 1000.0, 3));
        }
        seen = next;
    }
    let (lo, _) = fine_bucket_range(counts.len() - 1);
    Some(round(lo / 1000.0, 3))
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl Dashboard {
    fn tick(&mut self, now: Totals) {
        self.raw.push_back(now);
        while self.raw.len() > WINDOW + 1 {
            self.raw.pop_front();
        }
        let (Some(old), Some(new)) = (self.raw.front(), self.raw.back()) else { return };
        // Rates over the time the window really spans (the first tick has
        // nothing before it: all zero).
        let secs = (new.mono_ms.saturating_sub(old.mono_ms) as f64 / 1000.0).max(0.001);
        let rate = |a: u64, b: u64| if self.raw.len() < 2 { 0.0 } else { round(b.saturating_sub(a) as f64 / secs, 2) };
        let mut services: Vec<(Arc<str>, ServicePoint)> = new
            .services
            .iter()
            .map(|(name, n)| {
                let zero = ServiceTotals { classes: [0; 5], latency: Box::new([0; FINE_BUCKETS]), throttled: 0 };
                // A service new in the window counts from zero.
                let o = old.services.get(name).filter(|_| self.raw.len() >= 2).unwrap_or(&zero);
                let all = |t: &ServiceTotals| t.classes.iter().sum::<u64>();
                let delta: Vec<u64> =
                    n.latency.iter().zip(o.latency.iter()).map(|(a, b)| a.saturating_sub(*b)).collect();
                let p = ServicePoint {
                    rps: rate(all(o), all(n)),
                    rps_4xx: rate(o.classes[3], n.classes[3]),
                    rps_5xx: rate(o.classes[4], n.classes[4]),
                    p50_ms: quantile(&delta, 0.5),
                    p99_ms: quantile(&delta, 0.99),
                    throttled_rps: rate(o.throttled, n.throttled),
                };
                (name.clone(), p)
            })
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        let mut endpoints: Vec<(Arc<str>, EndpointPoint)> = new
            .endpoints
            .iter()
            .map(|(name, n)| {
                let o = old.endpoints.get(name).filter(|_| self.raw.len() >= 2).copied().unwrap_or([0; 6]);
                let r = |i: usize| rate(o[i].max(0) as u64, n[i].max(0) as u64);
                let p = EndpointPoint {
                    open: n[EndpointStats::OPEN].max(0),
                    events_rps: r(EndpointStats::EVENTS),
                    messages_rps: r(EndpointStats::MESSAGES),
                    failures_rps: r(EndpointStats::FAILURES),
                    kafka_ok_rps: r(EndpointStats::KAFKA_OK),
                    kafka_failed_rps: r(EndpointStats::KAFKA_FAILED),
                };
                (name.clone(), p)
            })
            .collect();
        endpoints.sort_by(|a, b| a.0.cmp(&b.0));
        self.seq += 1;
        let sample = Sample {
            seq: self.seq,
            wall_ms: crate::pipeline::ws::conn::wall_ms(new.mono_ms),
            services: busiest(&services, SERIES_MAX, |p| p.rps),
            endpoints: busiest(&endpoints, SERIES_MAX, |p| p.open as f64 + p.events_rps + p.messages_rps),
            auth_failures_rps: rate(old.auth_failures, new.auth_failures),
            throttled_rps: rate(old.throttled, new.throttled),
        };
        self.samples.push_back(sample);
        while self.samples.len() > HISTORY {
            self.samples.pop_front();
        }
        self.latest_services = services;
        self.latest_endpoints = endpoints;
    }

    /// The samples after `since` (all kept ones when `since` is not one of
    /// ours: too old, or from before a restart).
    fn after(&self, since: Option<u64>) -> impl Iterator<Item = &Sample> {
        let first = self.samples.front().map_or(0, |s| s.seq);
        let from = match since {
            Some(s) if s + 1 >= first && s <= self.seq => s + 1,
            _ => first,
        };
        self.samples.iter().filter(move |s| s.seq >= from)
    }

    fn series(&self, since: Option<u64>) -> Value {
        let picked: Vec<&Sample> = self.after(since).collect();
        let mut services: Map<String, Value> = Map::new();
        let mut endpoints: Map<String, Value> = Map::new();
        for (i, s) in picked.iter().enumerate() {
            for (name, p) in &s.services {
                let e = services.entry(name.to_string()).or_insert_with(|| {
                    let empty = || Value::Array(vec![Value::Null; picked.len()]);
                    json!({"rps": empty(), "rps_4xx": empty(), "rps_5xx": empty(), "p50_ms": empty(), "p99_ms": empty()})
                });
                e["rps"][i] = p.rps.into();
                e["rps_4xx"][i] = p.rps_4xx.into();
                e["rps_5xx"][i] = p.rps_5xx.into();
                e["p50_ms"][i] = p.p50_ms.into();
                e["p99_ms"][i] = p.p99_ms.into();
            }
            for (name, p) in &s.endpoints {
                let e = endpoints.entry(name.to_string()).or_insert_with(|| {
                    let empty = || Value::Array(vec![Value::Null; picked.len()]);
                    json!({"open": empty(), "events_rps": empty(), "messages_rps": empty(), "failures_rps": empty()})
                });
                e["open"][i] = p.open.into();
                e["events_rps"][i] = p.events_rps.into();
                e["messages_rps"][i] = p.messages_rps.into();
                e["failures_rps"][i] = p.failures_rps.into();
            }
        }
        json!({
            "seq": picked.iter().map(|s| s.seq).collect::<Vec<_>>(),
            "t": picked.iter().map(|s| s.wall_ms).collect::<Vec<_>>(),
            "services": services,
            "endpoints": endpoints,
            "auth_failures_rps": picked.iter().map(|s| s.auth_failures_rps).collect::<Vec<_>>(),
            "throttled_rps": picked.iter().map(|s| s.throttled_rps).collect::<Vec<_>>(),
        })
    }
}

fn since_param(query: &str) -> Result<Option<u64>, AdminResponse> {
    match query.split('&').find_map(|kv| kv.strip_prefix("since=")) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            AdminResponse::error(422, "invalid_since", "since is the seq of an earlier answer (a whole number)")
        }),
    }
}

/// `GET /stats?since=SEQ`.
pub fn handle(state: &AdminState, query: &str) -> AdminResponse {
    let since = match since_param(query) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let snap = state.snapshot.load();
    let d = match state.dashboard.lock() {
        Ok(d) => d,
        Err(p) => p.into_inner(),
    };
    let latest = d.samples.back();
    let services: Vec<Value> = snap
        .router
        .services
        .values()
        .map(|s| {
            let p = d.latest_services.binary_search_by(|(n, _)| n.cmp(&s.name)).ok().map(|i| d.latest_services[i].1);
            let (serving, ejected, unhealthy) = super::instance_counts(s);
            json!({
                "name": &*s.name,
                "rps": p.map_or(0.0, |p| p.rps),
                "rps_4xx": p.map_or(0.0, |p| p.rps_4xx),
                "rps_5xx": p.map_or(0.0, |p| p.rps_5xx),
                "p50_ms": p.and_then(|p| p.p50_ms),
                "p99_ms": p.and_then(|p| p.p99_ms),
                "throttled_rps": p.map_or(0.0, |p| p.throttled_rps),
                "instances": {"serving": serving, "ejected": ejected, "unhealthy": unhealthy},
            })
        })
        .collect();
    let endpoints: Vec<Value> = snap
        .router
        .endpoints
        .values()
        .map(|e| {
            let name = e.config.name.as_str();
            let p = d.latest_endpoints.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| d.latest_endpoints[i].1);
            json!({
                "name": name,
                "path": e.config.path,
                "open": p.map_or(0, |p| p.open),
                "events_rps": p.map_or(0.0, |p| p.events_rps),
                "messages_rps": p.map_or(0.0, |p| p.messages_rps),
                "failures_rps": p.map_or(0.0, |p| p.failures_rps),
                "kafka_delivered_rps": p.map_or(0.0, |p| p.kafka_ok_rps),
                "kafka_failed_rps": p.map_or(0.0, |p| p.kafka_failed_rps),
            })
        })
        .collect();
    let (mut services, mut endpoints) = (services, endpoints);
    services.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    endpoints.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let kafka = crate::kafka::client();
    // `/readyz`'s view of Kafka (absent when no route or push uses it)
    // plus its counters.
    let kafka = kafka.readiness_json().and_then(|j| serde_json::from_str::<Value>(&j).ok()).map(|mut v| {
        let s = &kafka.stats;
        v["delivered_total"] = s.delivered.load(Relaxed).into();
        v["failed_total"] = s.failed.load(Relaxed).into();
        v["push_lag"] = s.push_lag.load(Relaxed).into();
        v["replies_lag"] = s.replies_lag.load(Relaxed).into();
        v
    });
    let r = &state.registry;
    let body = json!({
        "seq": d.seq,
        "interval_ms": TICK.as_millis() as u64,
        "window_s": WINDOW,
        "now_ms": crate::pipeline::ws::conn::wall_ms(crate::pipeline::ws::conn::now_ms()),
        "gateway": {
            "version": env!("CARGO_PKG_VERSION"),
            "node": crate::kafka::client().node(),
            "workers": r.worker_count(),
            "listen": state.public.to_string(),
            "config_version": snap.version,
            "applied_ms": r.applied_ms.load(Relaxed),
            "started_ms": state.started_ms,
            "http_open": r.open_connections(),
            "ws_open": r.ws_open(),
        },
        "services": services,
        "endpoints": endpoints,
        "auth": {
            "failures_rps": latest.map_or(0.0, |l| l.auth_failures_rps),
            "failures_total": crate::auth::failures_total(),
        },
        "throttled": {
            "rps": latest.map_or(0.0, |l| l.throttled_rps),
            "total": d.raw.back().map_or(0, |t| t.throttled),
        },
        "kafka": kafka,
        "series": d.series(since),
    });
    AdminResponse::json(200, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_buckets() {
        let mut h = [0u64; FINE_BUCKETS];
        assert_eq!(quantile(&h, 0.5), None);
        // 99 answers at 1 ms and one at 100 ms.
        h[crate::metrics::fine_bucket(1000)] = 99;
        h[crate::metrics::fine_bucket(100_000)] = 1;
        let p50 = quantile(&h, 0.5).unwrap_or_default();
        let p99 = quantile(&h, 0.99).unwrap_or_default();
        let p100 = quantile(&h, 1.0).unwrap_or_default();
        assert!((0.89..=1.13).contains(&p50), "{p50}");
        assert!(p99 <= 1.13, "{p99}");
        assert!((89.0..=115.0).contains(&p100), "{p100}");
    }

    fn totals(ms: u64, requests: u64, events: i64) -> Totals {
        let mut latency = Box::new([0; FINE_BUCKETS]);
        latency[crate::metrics::fine_bucket(2000)] = requests;
        let services = HashMap::from([(
            Arc::from("shop"),
            ServiceTotals { classes: [0, requests, 0, 0, 0], latency, throttled: 0 },
        )]);
        let endpoints = HashMap::from([(Arc::from("chat"), [3, events, 0, 0, 0, 0])]);
        Totals { mono_ms: ms, services, endpoints, auth_failures: 0, throttled: 0 }
    }

    #[test]
    fn rates_over_the_window_and_since() {
        let mut d = Dashboard::default();
        for i in 0..20u64 {
            d.tick(totals(1000 * i, 100 * i, 10 * i as i64));
        }
        let last = d.samples.back().map(|s| (s.services[0].1, s.endpoints[0].1));
        let Some((svc, ep)) = last else { panic!("no sample") };
        assert_eq!(svc.rps, 100.0);
        assert!(svc.p50_ms.is_some_and(|p| (1.7..2.4).contains(&p)));
        assert_eq!(ep.events_rps, 10.0);
        assert_eq!(ep.open, 3);
        assert_eq!(d.after(Some(d.seq - 1)).count(), 1);
        assert_eq!(d.after(Some(d.seq)).count(), 0);
        assert_eq!(d.after(None).count(), 20);
        assert_eq!(d.after(Some(10_000)).count(), 20, "a seq from before a restart gets everything");
        let s = d.series(Some(d.seq - 2));
        assert_eq!(s["services"]["shop"]["rps"], json!([100.0, 100.0]));
        for _ in 0..HISTORY {
            d.tick(totals(0, 0, 0));
        }
        assert_eq!(d.samples.len(), HISTORY);
    }

    #[test]
    fn history_keeps_the_busiest_services_and_every_current_figure() {
        let mut d = Dashboard::default();
        for tick in 0..3u64 {
            let mut t = totals(1000 * tick, 0, 0);
            t.services.clear();
            for i in 0..(SERIES_MAX as u64 + 30) {
                let classes = [0, tick * i, 0, 0, 0];
                let latency = Box::new([0; FINE_BUCKETS]);
                t.services.insert(Arc::from(format!("s{i:03}")), ServiceTotals { classes, latency, throttled: 0 });
            }
            d.tick(t);
        }
        assert_eq!(d.latest_services.len(), SERIES_MAX + 30);
        let kept = &d.samples.back().map(|s| s.services.clone()).unwrap_or_default();
        assert_eq!(kept.len(), SERIES_MAX);
        assert_eq!(kept.first().map(|k| &*k.0), Some("s030"), "the quietest 30 left out");
        assert!(d.latest_services.windows(2).all(|w| w[0].0 < w[1].0), "sorted for lookups");
    }
}
