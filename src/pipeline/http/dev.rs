//! `wasp dev`'s console: one line per request saying where it went —
//! `override`, `mock`, `fallback` or `instance` — coloured on a terminal.
//!
//! Written to stderr from the worker, a blocking write per request: fine
//! for one developer's traffic, which is all dev mode is for.

use super::request::Meta;
use crate::config::dev::DevRoute;
use crate::pipeline::snapshot::Snapshot;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

fn colour() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}

/// The line for one request. Cold: out of the way of the serving path.
#[cold]
#[inline(never)]
pub fn line(snap: &Snapshot, meta: &Meta, status: u16, micros: u64) {
    let route = meta.service.as_deref().and_then(|name| match snap.router.service(name) {
        Some(s) => s.config.dev.clone(),
        None if name == "(fallback)" => snap.router.fallback.as_ref().and_then(|f| f.config.dev.clone()),
        None => None,
    });
    let (word, to, paint) = match &route {
        Some(DevRoute::Override(a)) => ("override", a.to_string(), "32"),
        Some(DevRoute::Mock) => ("mock", "its mock".to_string(), "35"),
        Some(DevRoute::Fallback(url)) => ("fallback", url.to_string(), "34"),
        Some(DevRoute::Instances) => ("instance", "its instances".to_string(), "36"),
        None => ("gateway", "the gateway itself".to_string(), "33"),
    };
    let target = super::conn::logged_target(snap, meta);
    let ms = micros as f64 / 1000.0;
    let status_paint = if status >= 500 {
        "31"
    } else if status >= 400 {
        "33"
    } else {
        "32"
    };
    let text = if colour() {
        format!(
            "\x1b[{paint}m{word:<8}\x1b[0m {} {target} -> {to} \x1b[{status_paint}m{status}\x1b[0m {ms:.1} ms\n",
            meta.method.as_str()
        )
    } else {
        format!("{word:<8} {} {target} -> {to} {status} {ms:.1} ms\n", meta.method.as_str())
    };
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
