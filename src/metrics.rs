//! Counters the workers bump and the admin listener renders (Prometheus text).
//!
//! Every counter is sharded per worker on its own cache line and bumped with a
//! relaxed add, so workers never contend; a scrape sums the shards.

use crate::error::ErrorKind;
use crossbeam_utils::CachePadded;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

/// Latency histogram bounds in seconds (Prometheus `le` labels).
pub const LATENCY_BOUNDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// Buckets of a service's latency histogram: four per doubling of the time
/// in microseconds (each bucket at most 25 % wider than its start, so a
/// percentile read from it is within about 12 %), from 1 µs to 2^28 µs
/// (268 s; longer goes in the last).
pub const FINE_BUCKETS: usize = 112;

/// The bucket of a time in microseconds: exact below 4 µs, then the octave
/// (position of the top bit) and the two bits under it.
pub fn fine_bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let sub = ((micros >> (octave - 2)) & 3) as usize;
    (octave * 4 + sub).min(FINE_BUCKETS - 1)
}

/// The times (µs) bucket `i` holds: `[low, high)`.
pub fn fine_bucket_range(i: usize) -> (f64, f64) {
    if i < 8 {
        let i = i.min(4) as f64;
        return (i, i + 1.0);
    }
    let (octave, sub) = (i / 4, (i % 4) as u64);
    let shift = octave - 2;
    (((4 + sub) << shift) as f64, ((5 + sub) << shift) as f64)
}

/// Responses of one service by status class (1xx..5xx) and their latency,
/// per worker.
#[derive(Debug)]
pub struct ServiceStats {
    by_worker: Box<[CachePadded<[AtomicU64; 5]>]>,
    /// Allocated on a worker's first answer for the service: a service
    /// that never serves on a worker costs that worker 16 bytes, not 900.
    latency: Box<[OnceLock<Box<[AtomicU64; FINE_BUCKETS]>>]>,
}

impl ServiceStats {
    fn new(workers: usize) -> Self {
        ServiceStats {
            by_worker: (0..workers).map(|_| CachePadded::new(Default::default())).collect(),
            latency: (0..workers).map(|_| OnceLock::new()).collect(),
        }
    }

    /// One answer: its status class and the time from the request's head
    /// to the answer (both relaxed adds on this worker's own lines).
    pub fn record(&self, worker: usize, status: u16, micros: u64) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        if let Some(w) = self.by_worker.get(worker) {
            w[class].fetch_add(1, Relaxed);
        }
        if let Some(l) = self.latency.get(worker) {
            l.get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))))[fine_bucket(micros)]
                .fetch_add(1, Relaxed);
        }
    }

    /// The latency histogram summed over workers.
    pub fn latency(&self) -> [u64; FINE_BUCKETS] {
        let mut t = [0; FINE_BUCKETS];
        for w in self.latency.iter().filter_map(OnceLock::get) {
            for (i, c) in w.iter().enumerate() {
                t[i] += c.load(Relaxed);
            }
        }
        t
    }

    /// Answers by status class (1xx..5xx), summed over workers.
    pub fn totals(&self) -> [u64; 5] {
        let mut t = [0; 5];
        for w in self.by_worker.iter() {
            for (i, c) in w.iter().enumerate() {
                t[i] += c.load(Relaxed);
            }
        }
        t
    }
}

/// What one WebSocket endpoint did, per worker: open connections and
/// counters indexed by [`EndpointStats::EVENTS`] and the others.
#[derive(Debug)]
pub struct EndpointStats {
    by_worker: Box<[CachePadded<[AtomicI64; 6]>]>,
}

impl EndpointStats {
    /// Connections open now (a gauge: up at the handshake, down at the end).
    pub const OPEN: usize = 0;
    /// Events received from clients.
    pub const EVENTS: usize = 1;
    /// Messages sent to clients: replies and pushes.
    pub const MESSAGES: usize = 2;
    /// Events an integration failed (error event sent to the client).
    pub const FAILURES: usize = 3;
    /// Events a Kafka target confirmed, and events it did not take.
    pub const KAFKA_OK: usize = 4;
    pub const KAFKA_FAILED: usize = 5;

    pub fn new(workers: usize) -> Self {
        EndpointStats { by_worker: (0..workers).map(|_| CachePadded::new(Default::default())).collect() }
    }

    pub fn add(&self, worker: usize, what: usize, n: i64) {
        if let Some(c) = self.by_worker.get(worker).and_then(|w| w.get(what)) {
            c.fetch_add(n, Relaxed);
        }
    }

    /// Every counter summed over workers.
    pub fn totals(&self) -> [i64; 6] {
        let mut t = [0; 6];
        for w in self.by_worker.iter() {
            for (i, c) in w.iter().enumerate() {
                t[i] += c.load(Relaxed);
            }
        }
        t
    }
}

/// One worker's own counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub open_connections: AtomicI64,
    pub accepted: AtomicU64,
    pub upstream_connects: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub errors: [AtomicU64; ErrorKind::ALL.len()],
    pub ws_open: AtomicI64,
    pub ws_accepted: AtomicU64,
    /// Panics caught on this worker: in a task (that task ended) or ending
    /// the worker's thread (the worker was replaced).
    pub panics: AtomicU64,
    /// Operations cut by a deadline, by `deadline::Phase`.
    pub timeouts: [AtomicU64; crate::deadline::Phase::ALL.len()],
    /// Requests sent again under the replay rule.
    pub retries: AtomicU64,
    /// Requests that failed and could have been retried, but the retry
    /// budget or the attempts cap said no.
    pub retries_refused: AtomicU64,
    /// Idle upstream connections closed by the reaper.
    pub pool_reaped: AtomicU64,
    /// The snapshot version this worker acknowledged from its own loop
    /// (what `reached_all_workers_us` waits for).
    pub snapshot_ack: SnapshotAck,
    latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl WorkerStats {
    pub fn observe_latency(&self, micros: u64) {
        let i = LATENCY_BOUNDS_US.iter().position(|b| micros <= *b).unwrap_or(LATENCY_BOUNDS.len());
        self.latency[i].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(micros, Relaxed);
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind.index()].fetch_add(1, Relaxed);
    }
}

/// All counters of the process.
#[derive(Debug)]
pub struct Registry {
    workers: Vec<Arc<CachePadded<WorkerStats>>>,
    /// Per-service counters by name; survives reloads so counters never reset.
    services: Mutex<BTreeMap<String, Arc<ServiceStats>>>,
    /// Per-endpoint counters by name, kept across reloads likewise.
    endpoints: Mutex<BTreeMap<String, Arc<EndpointStats>>>,
    /// When the running configuration was last applied (ms since the epoch;
    /// 0 before the first).
    pub applied_ms: AtomicU64,
    /// Which I/O driver each worker runs ("io_uring" or "epoll").
    drivers: Mutex<Vec<&'static str>>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Dead workers replaced by the supervisor.
    pub worker_restarts: AtomicU64,
    /// Admin requests refused before any handler, by `ADMIN_REFUSALS` reason.
    pub admin_refused: [AtomicU64; ADMIN_REFUSALS.len()],
    /// `wasp_filter_actions_total` by (service, filter kind, action); kept
    /// across reloads like the service counters.
    filter_actions: Mutex<BTreeMap<FilterActionKey, Arc<AtomicU64>>>,
    /// `record` filters: lines written, dropped at a full queue, failed writes.
    pub record_lines: Arc<AtomicU64>,
    pub record_dropped: Arc<AtomicU64>,
    pub record_failed: Arc<AtomicU64>,
}

/// (service, filter kind, action): the labels of one filter counter.
type FilterActionKey = (String, &'static str, &'static str);

/// The `reason` labels of `wasp_admin_refused_total`, indexed by
/// `admin::gate::Refusal`: host (400/421), origin (403), token (401),
/// content_type (415).
pub const ADMIN_REFUSALS: [&str; 4] = ["host", "origin", "token", "content_type"];

impl Registry {
    pub fn new(workers: usize) -> Self {
        Registry {
            workers: (0..workers).map(|_| Arc::new(CachePadded::new(WorkerStats::default()))).collect(),
            services: Mutex::new(BTreeMap::new()),
            endpoints: Mutex::new(BTreeMap::new()),
            applied_ms: AtomicU64::new(0),
            drivers: Mutex::new(vec!["starting"; workers]),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            worker_restarts: AtomicU64::new(0),
            admin_refused: Default::default(),
            filter_actions: Mutex::new(BTreeMap::new()),
            record_lines: Default::default(),
            record_dropped: Default::default(),
            record_failed: Default::default(),
        }
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub fn worker(&self, i: usize) -> Arc<CachePadded<WorkerStats>> {
        self.workers[i % self.workers.len()].clone()
    }

    pub fn service(&self, name: &str) -> Arc<ServiceStats> {
        let mut map = self.services.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string()).or_insert_with(|| Arc::new(ServiceStats::new(self.workers.len()))).clone()
    }

    /// Forgets the counters of services and endpoints the running
    /// configuration no longer has (after each apply): a name's counters
    /// live as long as the name is configured, so names created and deleted
    /// over months cost nothing. A name configured again starts from zero
    /// (Prometheus reads that as a counter reset). The unrouted and
    /// fallback counters (names `""` and `"(…)"`) are kept.
    pub fn forget_unused(&self, service: impl Fn(&str) -> bool, endpoint: impl Fn(&str) -> bool) {
        let kept = |n: &str| n.is_empty() || n.starts_with('(');
        self.services.lock().unwrap_or_else(|p| p.into_inner()).retain(|n, _| kept(n) || service(n));
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).retain(|n, _| endpoint(n));
    }

    pub fn endpoint(&self, name: &str) -> Arc<EndpointStats> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string()).or_insert_with(|| Arc::new(EndpointStats::new(self.workers.len()))).clone()
    }

    /// The counter of one filter action, shared by every worker and every
    /// snapshot that has a filter of this kind on this service.
    pub fn filter_action(&self, service: &str, filter: &'static str, action: &'static str) -> Arc<AtomicU64> {
        let mut map = self.filter_actions.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((service.to_string(), filter, action)).or_default().clone()
    }

    pub fn set_driver(&self, worker: usize, driver: &'static str) {
        let mut d = self.drivers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = d.get_mut(worker) {
            *slot = driver;
        }
    }

    /// WebSocket connections open now.
    pub fn ws_open(&self) -> i64 {
        self.workers.iter().map(|w| w.ws_open.load(Relaxed)).sum()
    }

    pub fn open_connections(&self) -> i64 {
        self.workers.iter().map(|w| w.open_connections.load(Relaxed)).sum()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, snapshot_version: u64) -> String {
        let mut o = String::with_capacity(4096);
        let sum = |f: &dyn Fn(&WorkerStats) -> u64| -> u64 { self.workers.iter().map(|w| f(w)).sum() };

        o.push_str("# HELP wasp_requests_total Requests answered, by service and status class.\n# TYPE wasp_requests_total counter\n");
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        for (name, s) in services.iter() {
            let label = if name.is_empty() { "-" } else { name.as_str() };
            for (i, n) in s.totals().iter().enumerate() {
                let _ = writeln!(o, "wasp_requests_total{{service=\"{label}\",class=\"{}xx\"}} {n}", i + 1);
            }
        }
        drop(services);

        let filters = self.filter_actions.lock().unwrap_or_else(|p| p.into_inner());
        if !filters.is_empty() {
            o.push_str("# HELP wasp_filter_actions_total What each service's filters did, by filter kind and action.\n# TYPE wasp_filter_actions_total counter\n");
            for ((service, filter, action), n) in filters.iter() {
                let _ = writeln!(
                    o,
                    "wasp_filter_actions_total{{service=\"{service}\",filter=\"{filter}\",action=\"{action}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
        drop(filters);
        for (name, help, v) in [
            ("wasp_record_lines_total", "Recorded lines written by the record writer.", &self.record_lines),
            (
                "wasp_record_dropped_total",
                "Recorded lines dropped because the writer's queue was full.",
                &self.record_dropped,
            ),
            ("wasp_record_failed_total", "Recorded lines the writer could not write.", &self.record_failed),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Relaxed));
        }

        o.push_str("# HELP wasp_request_duration_seconds Time from a request's head to its last response byte.\n# TYPE wasp_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
            cumulative += sum(&|w| w.latency[i].load(Relaxed));
            let _ = writeln!(o, "wasp_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += sum(&|w| w.latency[LATENCY_BOUNDS.len()].load(Relaxed));
        let _ = writeln!(o, "wasp_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ =
            writeln!(o, "wasp_request_duration_seconds_sum {}", sum(&|w| w.latency_sum_us.load(Relaxed)) as f64 / 1e6);
        let _ = writeln!(o, "wasp_request_duration_seconds_count {cumulative}");

        o.push_str("# HELP wasp_gateway_errors_total Answers the gateway made itself, by kind.\n# TYPE wasp_gateway_errors_total counter\n");
        for k in ErrorKind::ALL {
            let _ = writeln!(
                o,
                "wasp_gateway_errors_total{{kind=\"{}\",status=\"{}\"}} {}",
                k.code(),
                k.status(),
                sum(&|w| w.errors[k.index()].load(Relaxed))
            );
        }
        o.push_str("# HELP wasp_upstream_errors_total Failed connects, resets and malformed answers from services.\n# TYPE wasp_upstream_errors_total counter\n");
        let _ = writeln!(o, "wasp_upstream_errors_total {}", sum(&|w| w.upstream_errors.load(Relaxed)));
        o.push_str("# HELP wasp_timeouts_total Reads and writes cut by a deadline, by side and phase.\n# TYPE wasp_timeouts_total counter\n");
        for p in crate::deadline::Phase::ALL {
            let (side, phase) = p.labels();
            let n = sum(&|w| w.timeouts[p.index()].load(Relaxed));
            let _ = writeln!(o, "wasp_timeouts_total{{side=\"{side}\",phase=\"{phase}\"}} {n}");
        }
        o.push_str("# HELP wasp_upstream_retries_total Requests sent to a service again, and retries the budget or attempts cap refused.\n# TYPE wasp_upstream_retries_total counter\n");
        let _ = writeln!(o, "wasp_upstream_retries_total{{result=\"sent\"}} {}", sum(&|w| w.retries.load(Relaxed)));
        let _ = writeln!(
            o,
            "wasp_upstream_retries_total{{result=\"refused\"}} {}",
            sum(&|w| w.retries_refused.load(Relaxed))
        );
        o.push_str("# HELP wasp_upstream_pool_reaped_total Idle upstream connections closed because they expired, were closed by the service or left the configuration.\n# TYPE wasp_upstream_pool_reaped_total counter\n");
        let _ = writeln!(o, "wasp_upstream_pool_reaped_total {}", sum(&|w| w.pool_reaped.load(Relaxed)));
        o.push_str("# HELP wasp_upstream_connects_total New connections opened to services.\n# TYPE wasp_upstream_connects_total counter\n");
        let _ = writeln!(o, "wasp_upstream_connects_total {}", sum(&|w| w.upstream_connects.load(Relaxed)));
        o.push_str("# HELP wasp_connections_accepted_total Client connections accepted.\n# TYPE wasp_connections_accepted_total counter\n");
        let _ = writeln!(o, "wasp_connections_accepted_total {}", sum(&|w| w.accepted.load(Relaxed)));
        o.push_str("# HELP wasp_open_connections Client connections open now.\n# TYPE wasp_open_connections gauge\n");
        let _ = writeln!(o, "wasp_open_connections {}", self.open_connections());
        o.push_str("# HELP wasp_ws_connections Open WebSocket connections.\n# TYPE wasp_ws_connections gauge\n");
        let _ =
            writeln!(o, "wasp_ws_connections {}", self.workers.iter().map(|w| w.ws_open.load(Relaxed)).sum::<i64>());
        o.push_str("# HELP wasp_ws_connections_accepted_total WebSocket handshakes completed.\n# TYPE wasp_ws_connections_accepted_total counter\n");
        let _ = writeln!(o, "wasp_ws_connections_accepted_total {}", sum(&|w| w.ws_accepted.load(Relaxed)));
        o.push_str("# HELP wasp_panics_total Panics caught: each ended one task (its connection) or one worker thread.\n# TYPE wasp_panics_total counter\n");
        let _ = writeln!(o, "wasp_panics_total {}", sum(&|w| w.panics.load(Relaxed)));
        o.push_str("# HELP wasp_worker_restarts_total Dead worker threads replaced.\n# TYPE wasp_worker_restarts_total counter\n");
        let _ = writeln!(o, "wasp_worker_restarts_total {}", self.worker_restarts.load(Relaxed));
        o.push_str("# HELP wasp_log_lines_dropped_total Log lines (mostly access log) dropped because the log writer fell behind; a worker never waits for it.\n# TYPE wasp_log_lines_dropped_total counter\n");
        let _ = writeln!(o, "wasp_log_lines_dropped_total {}", crate::logging::dropped_lines());
        o.push_str("# HELP wasp_admin_refused_total Admin API requests refused before any handler: foreign Host, foreign Origin, bad token, non-JSON write.\n# TYPE wasp_admin_refused_total counter\n");
        for (reason, n) in ADMIN_REFUSALS.iter().zip(&self.admin_refused) {
            let _ = writeln!(o, "wasp_admin_refused_total{{reason=\"{reason}\"}} {}", n.load(Relaxed));
        }
        o.push_str("# HELP wasp_worker_config_version Snapshot version each worker acknowledged from its own loop.\n# TYPE wasp_worker_config_version gauge\n");
        for (i, w) in self.workers.iter().enumerate() {
            let _ = writeln!(o, "wasp_worker_config_version{{worker=\"{i}\"}} {}", w.snapshot_ack.version());
        }
        o.push_str("# HELP wasp_io_driver The I/O driver each worker runs.\n# TYPE wasp_io_driver gauge\n");
        for (i, d) in self.drivers.lock().unwrap_or_else(|p| p.into_inner()).iter().enumerate() {
            let _ = writeln!(o, "wasp_io_driver{{worker=\"{i}\",driver=\"{d}\"}} 1");
        }
        o.push_str(
            "# HELP wasp_config_version Version of the routing snapshot in use.\n# TYPE wasp_config_version gauge\n",
        );
        let _ = writeln!(o, "wasp_config_version {snapshot_version}");
        o.push_str("# HELP wasp_config_reloads_total Reloads by result.\n# TYPE wasp_config_reloads_total counter\n");
        let _ = writeln!(o, "wasp_config_reloads_total{{result=\"ok\"}} {}", self.reloads_ok.load(Relaxed));
        let _ = writeln!(o, "wasp_config_reloads_total{{result=\"failed\"}} {}", self.reloads_failed.load(Relaxed));
        o
    }
}

/// One worker's acknowledgement of published snapshots. Every worker reads
/// the same `ArcSwap`, so the pointer alone cannot tell whether a worker has
/// run since a publish; this can: the version is recorded by a task on the
/// worker's own runtime, so a worker whose thread is stuck stays behind, and
/// an apply waiting for it (`reached_all_workers_us`) sees that.
#[derive(Debug, Default)]
pub struct SnapshotAck {
    /// The newest snapshot version the worker's loop has seen.
    pub(crate) version: AtomicU64,
    /// Rung by the control plane after each publish: wakes the ack task.
    pub(crate) published: event_listener::Event,
    /// Rung by the worker after recording a version: wakes waiting applies.
    pub(crate) acked: event_listener::Event,
}

impl SnapshotAck {
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// After a publish: the worker acknowledges when its loop next runs.
    pub fn publish(&self) {
        self.published.notify(usize::MAX);
    }

    /// Fires on the worker's next acknowledgement; check [`version`](Self::version)
    /// after taking it, so one that lands in between is not missed.
    pub fn listen_acked(&self) -> event_listener::EventListener {
        self.acked.listen()
    }
}

#[cfg(test)]
mod fine_tests {
    use super::*;

    #[test]
    fn every_time_falls_in_its_bucket() {
        for micros in (0..5000).chain([65_535, 65_536, 1 << 26, (1 << 27) - 1]) {
            let i = fine_bucket(micros);
            let (lo, hi) = fine_bucket_range(i);
            assert!(lo <= micros as f64 && (micros as f64) < hi, "{micros} in {i}: [{lo}, {hi})");
            assert!(hi / lo.max(1.0) <= 2.0);
        }
        assert_eq!(fine_bucket(u64::MAX), FINE_BUCKETS - 1);
        assert_eq!(fine_bucket((1 << 28) + 5), FINE_BUCKETS - 1);
        assert!(fine_bucket((1 << 28) - 1) == FINE_BUCKETS - 1);
    }
}
