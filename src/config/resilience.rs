//! A service's resilience settings: how an instance is chosen (`balance`),
//! how many requests may be in flight (`circuit`), when a failing instance
//! is ejected (`outlier`). Validated here; used by `upstream`.

use super::model::{ConfigError, Source};
use serde::Deserialize;
use std::time::Duration;

/// `balance = "p2c"` or `balance = { hash = "header:X-User" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BalanceSection {
    Name(String),
    Hash { hash: String },
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSection {
    pub max_connections: Option<usize>,
    pub max_pending: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy: Option<u32>,
    pub unhealthy: Option<u32>,
}

/// `[services.X.health]`: active checks from the control thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `GET` this path; a `2xx` or `3xx` passes.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Passes in a row that bring an unhealthy instance back.
    pub healthy: u32,
    /// Failures in a row that take an instance out.
    pub unhealthy: u32,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSection {
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Option<String>,
    pub max_ejected_percent: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Balance {
    /// One cursor per service and worker.
    #[default]
    RoundRobin,
    /// Two random instances, the one with the lower cost (in flight × EWMA latency).
    P2c,
    /// Rendezvous hashing of a request key: the same key, the same instance.
    Hash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header (folded name).
    Header(String),
    Cookie(String),
    /// The client address (through `trusted_proxies`).
    Ip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Circuit {
    /// Requests of this service a worker has at its instances at once.
    pub max_connections: usize,
    /// Requests waiting for one of those places, at most; past it `503`.
    pub max_pending: usize,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit { max_connections: 1024, max_pending: 256 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// Failures in a row (any worker) that eject an instance; 0: never.
    pub consecutive_failures: u32,
    /// The first ejection's length; doubled for each ejection after it.
    pub base_ejection: Duration,
    /// Never more than this share of the instances out at once.
    pub max_ejected_percent: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier { consecutive_failures: 5, base_ejection: Duration::from_secs(10), max_ejected_percent: 50 }
    }
}

pub(super) fn balance(src: &Source<'_>, key: &str, b: Option<&BalanceSection>) -> Result<Balance, ConfigError> {
    let at = format!("{key}.balance");
    match b {
        None => Ok(Balance::RoundRobin),
        Some(BalanceSection::Name(n)) => match n.as_str() {
            "round_robin" => Ok(Balance::RoundRobin),
            "p2c" => Ok(Balance::P2c),
            other => src.err(&at, None, format!("{other:?} is not \"round_robin\", \"p2c\" or {{ hash = \"...\" }}")),
        },
        Some(BalanceSection::Hash { hash }) => {
            let tchars =
                |n: &str| !n.is_empty() && n.len() <= 256 && n.bytes().all(crate::proto::http1::headers::is_tchar);
            match hash.split_once(':') {
                None if hash == "ip" => Ok(Balance::Hash(HashKey::Ip)),
                Some(("header", n)) if tchars(n) => {
                    Ok(Balance::Hash(HashKey::Header(n.to_ascii_lowercase().replace('_', "-"))))
                }
                Some(("cookie", n)) if tchars(n) => Ok(Balance::Hash(HashKey::Cookie(n.to_string()))),
                _ => src.err(
                    &format!("{at}.hash"),
                    None,
                    format!("{hash:?} is not \"header:NAME\", \"cookie:NAME\" or \"ip\""),
                ),
            }
        }
    }
}

pub(super) fn circuit(src: &Source<'_>, key: &str, c: Option<&CircuitSection>) -> Result<Circuit, ConfigError> {
    let d = Circuit::default();
    let Some(c) = c else { return Ok(d) };
    let out = Circuit {
        max_connections: c.max_connections.unwrap_or(d.max_connections),
        max_pending: c.max_pending.unwrap_or(d.max_pending),
    };
    if out.max_connections == 0 || out.max_connections > 1_000_000 {
        return src.err(&format!("{key}.circuit.max_connections"), None, "must be between 1 and 1000000");
    }
    if out.max_pending > 1_000_000 {
        return src.err(&format!("{key}.circuit.max_pending"), None, "must be between 0 and 1000000");
    }
    Ok(out)
}

pub(super) fn outlier(src: &Source<'_>, key: &str, o: Option<&OutlierSection>) -> Result<Outlier, ConfigError> {
    let d = Outlier::default();
    let Some(o) = o else { return Ok(d) };
    let base_ejection = match &o.base_ejection {
        None => d.base_ejection,
        Some(t) => match super::parse_duration(t) {
            Ok(v) if v >= Duration::from_millis(100) && v <= Duration::from_secs(3600) => v,
            Ok(_) => return src.err(&format!("{key}.outlier.base_ejection"), None, "must be between 100ms and 1h"),
            Err(e) => return src.err(&format!("{key}.outlier.base_ejection"), None, e),
        },
    };
    let out = Outlier {
        consecutive_failures: o.consecutive_failures.unwrap_or(d.consecutive_failures),
        base_ejection,
        max_ejected_percent: o.max_ejected_percent.unwrap_or(d.max_ejected_percent),
    };
    if out.consecutive_failures > 1000 {
        return src.err(&format!("{key}.outlier.consecutive_failures"), None, "must be between 0 (off) and 1000");
    }
    if out.max_ejected_percent > 100 {
        return src.err(&format!("{key}.outlier.max_ejected_percent"), None, "must be between 0 and 100");
    }
    Ok(out)
}

pub(super) fn health(
    src: &Source<'_>,
    key: &str,
    h: Option<&HealthSection>,
) -> Result<Option<HealthCheck>, ConfigError> {
    let Some(h) = h else { return Ok(None) };
    let at = |f: &str| format!("{key}.health.{f}");
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.len() > 1024 || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return src.err(&at("path"), None, format!("{path:?} must be a path starting with '/' (no spaces)"));
    }
    let dur = |f: &str, v: &Option<String>, d: Duration| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(d),
            Some(t) => match super::parse_duration(t) {
                Ok(v) if v >= Duration::from_millis(100) && v <= Duration::from_secs(3600) => Ok(v),
                Ok(_) => src.err(&at(f), None, "must be between 100ms and 1h"),
                Err(e) => src.err(&at(f), None, e),
            },
        }
    };
    let interval = dur("interval", &h.interval, Duration::from_secs(2))?;
    let timeout = dur("timeout", &h.timeout, Duration::from_secs(1).min(interval))?;
    if timeout > interval {
        return src.err(&at("timeout"), None, "must not be longer than the interval");
    }
    let healthy = h.healthy.unwrap_or(2);
    let unhealthy = h.unhealthy.unwrap_or(3);
    for (f, v) in [("healthy", healthy), ("unhealthy", unhealthy)] {
        if v == 0 || v > 100 {
            return src.err(&at(f), None, "must be between 1 and 100");
        }
    }
    Ok(Some(HealthCheck { path, interval, timeout, healthy, unhealthy }))
}
