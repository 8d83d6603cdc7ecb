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
use crate::pipeline::ws::conn::json_string;
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
    /// The latency histogram's non-empty buckets (index, count): an idle
    /// service holds nothing, a busy one a few dozen pairs.
    latency: Vec<(u8, u64)>,
    throttled: u64,
}

/// Slots in each ring of readings: the window's two ends and what lies
/// between.
const SLOTS: usize = WINDOW + 1;

/// One name's readings over the window, kept in place from tick to tick
/// (nothing the size of all services is allocated per tick but the
/// reading itself).
struct Track<R> {
    /// The tick of its first reading (a name configured again starts anew).
    first: u64,
    /// The tick of its newest reading; names not read at a tick are dropped.
    last: u64,
    ring: [R; SLOTS],
}

#[derive(Default)]
struct ServiceReading {
    classes: [u64; 5],
    latency: Vec<(u8, u64)>,
    throttled: u64,
}

impl<R: Default> Track<R> {
    fn new(first: u64) -> Self {
        Track { first, last: first, ring: std::array::from_fn(|_| R::default()) }
    }
}

fn sparse(dense: &[u64; FINE_BUCKETS]) -> Vec<(u8, u64)> {
    dense.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| (i as u8, *c)).collect()
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
    /// Ticks so far; tick `t` writes slot `t % SLOTS` of every ring.
    ticks: u64,
    /// When each slot was read (monotonic ms), and the process-wide
    /// counters then (auth failures, throttled).
    times: [u64; SLOTS],
    globals: [(u64, u64); SLOTS],
    services: HashMap<Arc<str>, Track<ServiceReading>>,
    endpoints: HashMap<Arc<str>, Track<[i64; 6]>>,
    samples: VecDeque<Sample>,
    seq: u64,
    /// Every service's and endpoint's figures at the newest sample.
    latest_services: Vec<(Arc<str>, ServicePoint)>,
    latest_endpoints: Vec<(Arc<str>, EndpointPoint)>,
    /// The JSON of the current services and endpoints for (seq, snapshot
    /// version): built at the first poll of a second, shared by the rest.
    current_json: Option<(u64, u64, String)>,
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
        // A panic elsewhere while the lock was held must not stop the
        // sampling for good: the state is a cache of counters.
        state.dashboard.lock().unwrap_or_else(|p| p.into_inner()).tick(totals);
        monoio::time::sleep(TICK).await;
    }
}

fn read(state: &AdminState) -> Totals {
    let snap = state.snapshot.load();
    // Refusals by service (the dashboard's throttled/s per service); routes'
    // and endpoints' count in the total only.
    let mut throttled_by_service: HashMap<String, u64> = HashMap::new();
    let mut throttled = 0;
    for (owner, name, n) in crate::limits::throttled_by_owner() {
        throttled += n;
        if owner == "service" {
            *throttled_by_service.entry(name).or_default() += n;
        }
    }
    let services = snap
        .router
        .services
        .iter()
        .map(|(name, s)| {
            let t = ServiceTotals {
                classes: s.stats.totals(),
                latency: sparse(&s.stats.latency()),
                throttled: throttled_by_service.get(&**name).copied().unwrap_or(0),
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
        let t = self.ticks;
        self.ticks += 1;
        let slot = (t % SLOTS as u64) as usize;
        self.times[slot] = now.mono_ms;
        self.globals[slot] = (now.auth_failures, now.throttled);
        // Each name's rates run from its first reading in the window: a
        // service created (or deleted and created again) a second ago has
        // one second of history, not the lifetime totals of its name. At its
        // first reading: no rate yet. A counter that went down was started
        // again (its name forgotten and reused): no rate either.
        let window_start = t.saturating_sub(WINDOW as u64);
        let times = self.times;
        let span = |base: u64| {
            let from = times[(base % SLOTS as u64) as usize];
            (now.mono_ms.saturating_sub(from) as f64 / 1000.0).max(0.001)
        };
        let rate = |a: u64, b: u64, secs: f64| round(b.saturating_sub(a) as f64 / secs, 2);
        for (name, r) in now.services {
            let track = self.services.entry(name).or_insert_with(|| Track::new(t));
            track.last = t;
            track.ring[slot] = ServiceReading { classes: r.classes, latency: r.latency, throttled: r.throttled };
        }
        self.services.retain(|_, k| k.last == t);
        for (name, r) in now.endpoints {
            let track = self.endpoints.entry(name).or_insert_with(|| Track::new(t));
            track.last = t;
            track.ring[slot] = r;
        }
        self.endpoints.retain(|_, k| k.last == t);
        let mut services: Vec<(Arc<str>, ServicePoint)> = self
            .services
            .iter()
            .map(|(name, k)| {
                let all = |r: &ServiceReading| r.classes.iter().sum::<u64>();
                let base = k.first.max(window_start);
                let (o, n) = (&k.ring[(base % SLOTS as u64) as usize], &k.ring[slot]);
                if base == t || all(o) > all(n) {
                    let idle = ServicePoint {
                        rps: 0.0,
                        rps_4xx: 0.0,
                        rps_5xx: 0.0,
                        p50_ms: None,
                        p99_ms: None,
                        throttled_rps: 0.0,
                    };
                    return (name.clone(), idle);
                }
                let secs = span(base);
                let mut delta = [0u64; FINE_BUCKETS];
                for &(i, c) in &n.latency {
                    delta[usize::from(i)] += c;
                }
                for &(i, c) in &o.latency {
                    delta[usize::from(i)] = delta[usize::from(i)].saturating_sub(c);
                }
                let p = ServicePoint {
                    rps: rate(all(o), all(n), secs),
                    rps_4xx: rate(o.classes[3], n.classes[3], secs),
                    rps_5xx: rate(o.classes[4], n.classes[4], secs),
                    p50_ms: quantile(&delta, 0.5),
                    p99_ms: quantile(&delta, 0.99),
                    throttled_rps: rate(o.throttled, n.throttled, secs),
                };
                (name.clone(), p)
            })
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        let mut endpoints: Vec<(Arc<str>, EndpointPoint)> = self
            .endpoints
            .iter()
            .map(|(name, k)| {
                let base = k.first.max(window_start);
                let (o, n) = (k.ring[(base % SLOTS as u64) as usize], k.ring[slot]);
                let restarted = (1..6).any(|i| o[i] > n[i]);
                let secs = span(base);
                let r = |i: usize| {
                    if base == t || restarted {
                        0.0
                    } else {
                        rate(o[i].max(0) as u64, n[i].max(0) as u64, secs)
                    }
                };
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
        let (old, new) = (self.globals[(window_start % SLOTS as u64) as usize], self.globals[slot]);
        let global = |i: usize| {
            let (a, b) = if i == 0 { (old.0, new.0) } else { (old.1, new.1) };
            if window_start == t {
                0.0
            } else {
                rate(a, b, span(window_start))
            }
        };
        self.seq += 1;
        let sample = Sample {
            seq: self.seq,
            wall_ms: crate::pipeline::ws::conn::wall_ms(now.mono_ms),
            services: busiest(&services, SERIES_MAX, |p| p.rps),
            endpoints: busiest(&endpoints, SERIES_MAX, |p| p.open as f64 + p.events_rps + p.messages_rps),
            auth_failures_rps: global(0),
            throttled_rps: global(1),
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
            Some(s) if s < self.seq && s.saturating_add(1) >= first => s + 1,
            Some(s) if s == self.seq => s.saturating_add(1),
            _ => first,
        };
        self.samples.iter().filter(move |s| s.seq >= from)
    }

    fn series(&self, since: Option<u64>) -> Value {
        let picked: Vec<&Sample> = self.after(since).collect();
        // At most SERIES_MAX series of each kind, however often the busiest
        // set changed over the range: the busiest over the whole range.
        let mut weight: HashMap<&Arc<str>, f64> = HashMap::new();
        for s in &picked {
            for (name, p) in &s.services {
                *weight.entry(name).or_default() += p.rps + 1e-9;
            }
        }
        let keep_services = top_names(weight, SERIES_MAX);
        let mut weight: HashMap<&Arc<str>, f64> = HashMap::new();
        for s in &picked {
            for (name, p) in &s.endpoints {
                *weight.entry(name).or_default() += p.open as f64 + p.events_rps + p.messages_rps + 1e-9;
            }
        }
        let keep_endpoints = top_names(weight, SERIES_MAX);
        let mut services: Map<String, Value> = Map::new();
        let mut endpoints: Map<String, Value> = Map::new();
        for (i, s) in picked.iter().enumerate() {
            for (name, p) in s.services.iter().filter(|(n, _)| keep_services.contains(&**n)) {
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
            for (name, p) in s.endpoints.iter().filter(|(n, _)| keep_endpoints.contains(&**n)) {
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

/// The `max` names of highest weight.
fn top_names(weight: HashMap<&Arc<str>, f64>, max: usize) -> std::collections::HashSet<String> {
    let mut v: Vec<(&Arc<str>, f64)> = weight.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter().take(max).map(|(n, _)| n.to_string()).collect()
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
    let mut d = state.dashboard.lock().unwrap_or_else(|p| p.into_inner());
    // The current figures change once a second (or at an apply): every poll
    // in between gets the same text, built once.
    let current = match &d.current_json {
        Some((seq, version, text)) if *seq == d.seq && *version == snap.version => text.clone(),
        _ => {
            let text = current_json(&d, &snap);
            d.current_json = Some((d.seq, snap.version, text.clone()));
            text
        }
    };
    let latest = d.samples.back();
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
        "auth": {
            "failures_rps": latest.map_or(0.0, |l| l.auth_failures_rps),
            "failures_total": crate::auth::failures_total(),
        },
        "throttled": {
            "rps": latest.map_or(0.0, |l| l.throttled_rps),
            "total": d.globals[(d.ticks.saturating_sub(1) % SLOTS as u64) as usize].1,
        },
        "kafka": kafka,
        "series": d.series(since),
    });
    // `body` is an object: its text ends in `}`; the cached members go
    // before it.
    let mut text = body.to_string();
    text.pop();
    text.push(',');
    text.push_str(&current);
    text.push('}');
    AdminResponse::json(200, text)
}

/// `"services":[…],"endpoints":[…]`: every service and endpoint of the
/// running snapshot with its newest figures, by name. Written straight into
/// text: with thousands of services a tree of JSON values would cost ten
/// times the answer's size on the way.
fn current_json(d: &Dashboard, snap: &crate::pipeline::snapshot::Snapshot) -> String {
    use std::fmt::Write as _;
    let num = |x: f64| Value::from(x).to_string();
    let opt = |x: Option<f64>| x.map_or_else(|| "null".to_string(), num);
    let mut services: Vec<_> = snap.router.services.values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::with_capacity(160 * (services.len() + snap.router.endpoints.len()) + 32);
    out.push_str(r#""services":["#);
    for (i, s) in services.iter().enumerate() {
        let p = d.latest_services.binary_search_by(|(n, _)| n.cmp(&s.name)).ok().map(|i| d.latest_services[i].1);
        let (serving, ejected, unhealthy) = super::instance_counts(s);
        let _ = write!(
            out,
            r#"{}{{"name":{},"rps":{},"rps_4xx":{},"rps_5xx":{},"p50_ms":{},"p99_ms":{},"throttled_rps":{},"instances":{{"serving":{serving},"ejected":{ejected},"unhealthy":{unhealthy}}}}}"#,
            if i == 0 { "" } else { "," },
            json_string(&s.name),
            num(p.map_or(0.0, |p| p.rps)),
            num(p.map_or(0.0, |p| p.rps_4xx)),
            num(p.map_or(0.0, |p| p.rps_5xx)),
            opt(p.and_then(|p| p.p50_ms)),
            opt(p.and_then(|p| p.p99_ms)),
            num(p.map_or(0.0, |p| p.throttled_rps)),
        );
    }
    out.push_str(r#"],"endpoints":["#);
    let mut endpoints: Vec<_> = snap.router.endpoints.values().collect();
    endpoints.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    for (i, e) in endpoints.iter().enumerate() {
        let name = e.config.name.as_str();
        let p = d.latest_endpoints.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| d.latest_endpoints[i].1);
        let _ = write!(
            out,
            r#"{}{{"name":{},"path":{},"open":{},"events_rps":{},"messages_rps":{},"failures_rps":{},"kafka_delivered_rps":{},"kafka_failed_rps":{}}}"#,
            if i == 0 { "" } else { "," },
            json_string(name),
            json_string(&e.config.path),
            p.map_or(0, |p| p.open),
            num(p.map_or(0.0, |p| p.events_rps)),
            num(p.map_or(0.0, |p| p.messages_rps)),
            num(p.map_or(0.0, |p| p.failures_rps)),
            num(p.map_or(0.0, |p| p.kafka_ok_rps)),
            num(p.map_or(0.0, |p| p.kafka_failed_rps)),
        );
    }
    out.push(']');
    out
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
        let latency = vec![(crate::metrics::fine_bucket(2000) as u8, requests)];
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
        assert_eq!(d.after(Some(u64::MAX)).count(), 20, "no overflow");
        let s = d.series(Some(d.seq - 2));
        assert_eq!(s["services"]["shop"]["rps"], json!([100.0, 100.0]));
        for _ in 0..HISTORY {
            d.tick(totals(0, 0, 0));
        }
        assert_eq!(d.samples.len(), HISTORY);
    }

    #[test]
    fn a_name_new_in_the_window_counts_from_its_first_reading() {
        let mut d = Dashboard::default();
        for i in 0..6u64 {
            let mut t = totals(1000 * i, 0, 0);
            t.services.clear();
            t.endpoints.clear();
            d.tick(t);
        }
        // `shop` appears with a lifetime total of 10,000 (its name was
        // used before): no rate at its first reading, then only what it
        // did since.
        d.tick(totals(6000, 10_000, 10_000));
        let first = d.samples.back().map(|s| (s.services[0].1, s.endpoints[0].1));
        let Some((svc, ep)) = first else { panic!("no sample") };
        assert_eq!((svc.rps, svc.p50_ms, ep.events_rps), (0.0, None, 0.0));
        d.tick(totals(7000, 10_050, 10_020));
        let next = d.samples.back().map(|s| (s.services[0].1, s.endpoints[0].1));
        let Some((svc, ep)) = next else { panic!("no sample") };
        assert_eq!((svc.rps, ep.events_rps), (50.0, 20.0));
        // Counters that went down (a name forgotten and reused): no rate.
        d.tick(totals(8000, 3, 1));
        let reset = d.samples.back().map(|s| (s.services[0].1, s.endpoints[0].1));
        let Some((svc, ep)) = reset else { panic!("no sample") };
        assert_eq!((svc.rps, ep.events_rps), (0.0, 0.0));
    }

    #[test]
    fn history_keeps_the_busiest_services_and_every_current_figure() {
        let mut d = Dashboard::default();
        for tick in 0..3u64 {
            let mut t = totals(1000 * tick, 0, 0);
            t.services.clear();
            for i in 0..(SERIES_MAX as u64 + 30) {
                let classes = [0, tick * i, 0, 0, 0];
                let latency = Vec::new();
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
