//! `wasp-loadtest`: a load generator for HTTP/1.1 servers and proxies.
//!
//! Keep-alive connections spread over threads (one monoio runtime each), run
//! for a duration or a request count, optionally at a fixed total rate.
//! At a fixed rate, latency is measured from when each request was *due*,
//! not when it was sent, so a stalled server cannot hide its stall
//! (coordinated omission). Prints a live progress line, a summary a person
//! can read, and optionally a JSON summary for scripts.

mod http;
mod report;
mod ws;

use clap::Parser;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(name = "wasp-loadtest", version, about = "HTTP/1.1 load generator with HDR latency percentiles")]
pub struct Args {
    /// Target URL, e.g. http://127.0.0.1:8080/echo/
    pub url: String,
    /// Open connections (kept alive).
    #[arg(short, long, default_value_t = 64)]
    pub connections: usize,
    /// Threads, each with its own event loop.
    #[arg(short, long, default_value_t = 1)]
    pub threads: usize,
    /// Run time ("10s", "500ms", "2m"); ignored when --requests is given.
    #[arg(short, long, default_value = "10s")]
    pub duration: String,
    /// Stop after this many requests instead of after a duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Fixed total rate in requests per second (0: as fast as possible).
    #[arg(short = 'R', long, default_value_t = 0)]
    pub rate: u64,
    /// Request method.
    #[arg(short, long, default_value = "GET")]
    pub method: String,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body (sent with Content-Length).
    #[arg(long)]
    pub body: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// Write the JSON summary to this file ("-" for stdout).
    #[arg(long)]
    pub json: Option<String>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// WebSocket: the event each connection sends (round-trip mode) or the
    /// message POSTed to the push API (broadcast mode).
    #[arg(long, default_value = r#"{"action":"send","text":"hello"}"#)]
    pub message: String,
    /// WebSocket: source addresses 127.0.0.2.. to spread connections over.
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// WebSocket: broadcast mode; the push-API URL to POST to, e.g.
    /// http://127.0.0.1:9901/endpoints/chat/messages.
    #[arg(long)]
    pub broadcast: Option<String>,
    /// WebSocket broadcast: POSTs in flight at once.
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// WebSocket broadcast: undelivered messages allowed per connection
    /// before the producer waits (closed loop).
    #[arg(long, default_value_t = 8)]
    pub backlog: u64,
    /// WebSocket: open the connections and keep them idle for the duration.
    #[arg(long)]
    pub hold: bool,
}

/// Counters shared by all connections, read by the progress line.
#[derive(Default)]
pub struct Live {
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
    pub status: [AtomicU64; 6],
    pub issued: AtomicU64,
    pub stop: AtomicBool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{s:?}: add a unit (ms, s, m)"))?;
    let n: u64 = s[..split].parse().map_err(|_| format!("{s:?}: not a number"))?;
    match &s[split..] {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        u => Err(format!("{s:?}: unknown unit {u:?}")),
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("wasp-loadtest: {e}");
        std::process::exit(2);
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.url.starts_with("ws://") {
        return run_ws(args);
    }
    let target = http::Target::parse(&args.url)?;
    let request = Arc::new(http::build_request(&target, &args)?);
    let duration = parse_duration(&args.duration)?;
    let timeout = parse_duration(&args.timeout)?;
    let threads = args.threads.max(1).min(args.connections.max(1));
    let conns = args.connections.max(1);
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let deadline = args.requests.is_none().then_some(start + duration);
    // Per-connection spacing at a fixed rate: each connection sends every
    // `conns / rate` seconds, offset so they do not fire together.
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(conns as f64 / args.rate as f64));

    let mut handles = Vec::new();
    for t in 0..threads {
        let my_conns: Vec<usize> = (0..conns).filter(|c| c % threads == t).collect();
        let plan = http::Plan {
            addr: target.addr,
            request: request.clone(),
            deadline,
            limit: args.requests,
            interval,
            timeout,
            start,
            total_conns: conns,
        };
        let live = live.clone();
        handles.push(std::thread::spawn(move || http::run_thread(plan, my_conns, live)));
    }
    let progress = (!args.quiet).then(|| report::spawn_progress(live.clone(), start));
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    for h in handles {
        match h.join() {
            Ok(Ok(part)) => hist.add(part).map_err(|e| e.to_string())?,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a load thread panicked".into()),
        }
    }
    live.stop.store(true, Ordering::SeqCst);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let elapsed = start.elapsed();
    let summary = report::Summary::new(&args, &live, &hist, elapsed);
    println!("{}", summary.text());
    write_json(args.json.as_deref(), &summary)
}

fn run_ws(args: Args) -> Result<(), String> {
    let duration = parse_duration(&args.duration)?;
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let progress = (!args.quiet).then(|| report::spawn_progress(live.clone(), start));
    let out = ws::run(&args, live.clone(), duration)?;
    live.stop.store(true, Ordering::SeqCst);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let summary = report::WsSummary::new(&args, &out, &live, duration);
    println!("{}", summary.text());
    write_json(args.json.as_deref(), &summary)
}

/// Writes the JSON summary to a file, or to stdout for "-".
fn write_json(path: Option<&str>, summary: &impl serde::Serialize) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let json = serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?;
    if path == "-" {
        println!("{json}");
        Ok(())
    } else {
        std::fs::write(path, json).map_err(|e| format!("{path}: {e}"))
    }
}
