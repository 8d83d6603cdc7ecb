//! Logs through `tracing`: text or JSON on stdout, written by a background
//! thread so a slow terminal or journal never stalls a worker.
//!
//! Lines wait in a bounded queue for that thread. When a sink stops reading
//! (a full pipe, a stuck journal) the queue fills, and a worker that logs
//! then drops its line instead of waiting for room: losing access-log lines
//! is better than stopping to serve. Every dropped line is counted
//! ([`dropped_lines`], exported as `wasp_log_lines_dropped_total`).

use crate::config::{LogFormat, ServerConfig};
use std::sync::OnceLock;
use tracing_appender::non_blocking::ErrorCounter;
use tracing_subscriber::EnvFilter;

/// Lines held for the writer thread: a burst this long is absorbed, a sink
/// that falls further behind loses lines.
const QUEUE_LINES: usize = 64 * 1024;

/// The writer's count of lines dropped because the queue was full.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keep the returned guard alive: dropping it flushes and stops the writer.
pub fn init(server: &ServerConfig) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .finish(std::io::stdout());
    let _ = DROPPED.set(writer.error_counter());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&server.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
    let result = match server.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("wasp: logging already initialised: {e}");
    }
    guard
}

/// Log lines dropped so far because the writer's queue was full.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}
