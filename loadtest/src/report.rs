//! Progress line and summaries.

use crate::{Args, Live};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn spawn_progress(live: Arc<Live>, start: Instant) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = 0;
        let mut tick = Instant::now();
        while !live.stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if tick.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let done = live.done.load(Relaxed);
            let rate = (done - last) as f64 / tick.elapsed().as_secs_f64();
            last = done;
            tick = Instant::now();
            eprint!(
                "\r[{:>5.1}s] {done:>10} requests  {rate:>10.0}/s  errors {:<8}",
                start.elapsed().as_secs_f64(),
                live.errors.load(Relaxed)
            );
            let _ = std::io::stderr().flush();
        }
        eprintln!();
    })
}

#[derive(Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

#[derive(Serialize)]
pub struct Summary {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub target_rate: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    pub body_bytes: u64,
    pub status_1xx: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub latency: Latency,
}

impl Summary {
    pub fn new(args: &Args, live: &Live, h: &Histogram<u64>, elapsed: Duration) -> Summary {
        let requests = live.done.load(Relaxed);
        let s = |i: usize| live.status[i].load(Relaxed);
        Summary {
            url: args.url.clone(),
            connections: args.connections,
            threads: args.threads,
            target_rate: args.rate,
            duration_s: elapsed.as_secs_f64(),
            requests,
            errors: live.errors.load(Relaxed),
            requests_per_s: requests as f64 / elapsed.as_secs_f64().max(1e-9),
            body_bytes: live.bytes.load(Relaxed),
            status_1xx: s(1),
            status_2xx: s(2),
            status_3xx: s(3),
            status_4xx: s(4),
            status_5xx: s(5),
            latency: Latency::of(h),
        }
    }

    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.latency;
        format!(
            "{url}\n  {conns} connections, {threads} threads, {dur:.1}s{rate}\n  requests   {req} ({rps:.0}/s), errors {err}\n  status     2xx {s2}  3xx {s3}  4xx {s4}  5xx {s5}\n  latency    p50 {p50:.3} ms  p90 {p90:.3} ms  p99 {p99:.3} ms  p99.9 {p999:.3} ms  max {max:.3} ms",
            url = self.url,
            conns = self.connections,
            threads = self.threads,
            dur = self.duration_s,
            rate = if self.target_rate > 0 { format!(", target {} req/s", self.target_rate) } else { String::new() },
            req = self.requests,
            rps = self.requests_per_s,
            err = self.errors,
            s2 = self.status_2xx,
            s3 = self.status_3xx,
            s4 = self.status_4xx,
            s5 = self.status_5xx,
            p50 = ms(l.p50_us),
            p90 = ms(l.p90_us),
            p99 = ms(l.p99_us),
            p999 = ms(l.p999_us),
            max = ms(l.max_us),
        )
    }
}

#[derive(Serialize)]
pub struct WsSummary {
    pub url: String,
    pub mode: &'static str,
    pub connections_opened: u64,
    pub connections_failed: u64,
    /// Connections lost or events unanswered during the run.
    pub errors: u64,
    pub duration_s: f64,
    /// Round trips (round-trip mode) or frames delivered (broadcast, hold).
    pub received: u64,
    pub per_s: f64,
    pub broadcasts_posted: u64,
    /// Broadcast mode: deliveries / (broadcasts × connections).
    pub delivery_ratio: Option<f64>,
    pub latency: Option<Latency>,
}

impl WsSummary {
    pub fn new(args: &Args, o: &crate::ws::WsOutcome, live: &Live, d: Duration) -> WsSummary {
        let mode = if args.broadcast.is_some() {
            "broadcast"
        } else if args.hold {
            "hold"
        } else {
            "round-trip"
        };
        let h = &o.hist;
        let expected = o.broadcasts * o.opened;
        WsSummary {
            url: args.url.clone(),
            mode,
            connections_opened: o.opened,
            connections_failed: o.failed,
            errors: live.errors.load(Relaxed),
            duration_s: d.as_secs_f64(),
            received: o.received,
            per_s: o.received as f64 / d.as_secs_f64().max(1e-9),
            broadcasts_posted: o.broadcasts,
            delivery_ratio: (expected > 0).then(|| o.received as f64 / expected as f64),
            latency: (mode == "round-trip" && !h.is_empty()).then(|| Latency::of(h)),
        }
    }

    pub fn text(&self) -> String {
        let mut t = format!(
            "{url} ({mode})\n  connections {open} open, {failed} failed, {dur:.1}s\n  received   {recv} ({rate:.0}/s), errors {errors}",
            url = self.url,
            mode = self.mode,
            open = self.connections_opened,
            failed = self.connections_failed,
            errors = self.errors,
            dur = self.duration_s,
            recv = self.received,
            rate = self.per_s
        );
        if let Some(r) = self.delivery_ratio {
            t.push_str(&format!("\n  broadcasts {} posted, delivered {:.4} of expected", self.broadcasts_posted, r));
        }
        if let Some(l) = &self.latency {
            t.push_str(&format!(
                "\n  latency    p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                l.p50_us as f64 / 1000.0,
                l.p90_us as f64 / 1000.0,
                l.p99_us as f64 / 1000.0,
                l.max_us as f64 / 1000.0
            ));
        }
        t
    }
}
