//! `server.scheduler_slice`: the CPU time slice workers ask the kernel for.
//!
//! Why a gateway cares: on Linux 6.6+ (EEVDF) a task that wakes does not
//! always preempt the one running; the running task may first finish its
//! slice (`RUN_TO_PARITY`), 0.75 ms × (1 + log2 CPUs) by default: 1.5 ms on
//! two cores. A worker that wakes for a request on a core where a batch job,
//! a log shipper or a backup is running then waits out that slice, and the
//! request's latency with it. A shorter slice of its own (Linux 6.12+,
//! `sched_setattr` `sched_runtime` on a normal task) gives the worker an
//! earlier deadline, so its wake-up preempts (`PREEMPT_SHORT`). Its CPU
//! share does not change: that is weight (nice), not slice.

use super::duration::parse_duration;
use super::model::ConfigError;
use super::model::Source;
use std::time::Duration;
use toml::Spanned;

/// The default: the shortest slice the kernel accepts. A worker runs in
/// bursts of tens of microseconds and then waits on its ring.
pub const DEFAULT_SLICE: Duration = Duration::from_micros(100);
/// The kernel clamps a requested slice to this range; a value outside it is
/// refused rather than silently changed.
pub const MIN_SLICE: Duration = Duration::from_micros(100);
pub const MAX_SLICE: Duration = Duration::from_millis(100);

/// `None`: leave the kernel's default (`"off"`).
pub(super) fn scheduler_slice(src: &Source<'_>, v: &Option<Spanned<String>>) -> Result<Option<Duration>, ConfigError> {
    const KEY: &str = "server.scheduler_slice";
    let Some(v) = v else { return Ok(Some(DEFAULT_SLICE)) };
    let text = v.get_ref().trim();
    if text == "off" {
        return Ok(None);
    }
    match parse_duration(text) {
        Ok(d) if (MIN_SLICE..=MAX_SLICE).contains(&d) => Ok(Some(d)),
        Ok(_) => {
            src.err(KEY, Some(v.span()), "must be from \"100us\" to \"100ms\" (the range the kernel takes), or \"off\"")
        }
        Err(e) => src.err(KEY, Some(v.span()), format!("{e}, or \"off\" for the kernel's default")),
    }
}
