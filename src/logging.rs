//! Logs through `tracing`: text or JSON on stdout, written by a background
//! thread so a slow terminal or journal never stalls a worker.

use crate::config::{LogFormat, ServerConfig};
use tracing_subscriber::EnvFilter;

/// Keep the returned guard alive: dropping it flushes and stops the writer.
pub fn init(server: &ServerConfig) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stdout());
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
