//! `[services.NAME.mock]`: answers the gateway gives for a service without
//! any instance running — a developer's stand-in for a service they do not
//! run locally, and the built-in demo.
//!
//! ```toml
//! [services.pricing.mock]
//! routes = [
//!   { method = "GET", path = "/price/*", status = 200, json = { price = 42 } },
//!   { path = "/*", status = 404, file = "mocks/pricing/404.json" },
//! ]
//! ```
//!
//! Validated here into [`MockConfig`]; a `file` is read now (relative to
//! the config file's folder, at most 1 MiB), so a missing file is a config
//! error naming its key, not a surprise on the first request.

use super::model::ConfigError;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockSection {
    #[serde(default)]
    pub routes: Vec<MockRouteSection>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockRouteSection {
    /// Any method when left out; `GET` also answers `HEAD`.
    pub method: Option<String>,
    /// A path glob (`*` matches anything, `/` included), matched against the
    /// service-relative path without its query; default `/*`.
    pub path: Option<String>,
    pub status: Option<u16>,
    /// The body as JSON (`content-type: application/json`).
    pub json: Option<serde_json::Value>,
    /// The body from a file (its type from its extension).
    pub file: Option<String>,
    /// The body as text (`text/plain; charset=utf-8`).
    pub body: Option<String>,
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: indexmap::IndexMap<String, String>,
    /// Answer after this long ("20ms"): a stand-in for a slow service.
    pub delay: Option<String>,
}

/// A service's mock, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    pub routes: Vec<MockRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockRoute {
    /// Upper case; `None` is any method.
    pub method: Option<String>,
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Arc<[u8]>,
    pub delay: std::time::Duration,
}

/// Routes a mock may have.
const MAX_ROUTES: usize = 256;
/// A mock body larger than this is refused.
const MAX_BODY: u64 = 1 << 20;

/// Headers the gateway writes itself on every answer.
const OWN_HEADERS: [&str; 5] = ["content-length", "transfer-encoding", "connection", "x-request-id", "content-type"];

pub(super) fn validate(origin: &str, key: &str, m: &MockSection) -> Result<MockConfig, ConfigError> {
    let err = |at: &str, msg: String| Err(ConfigError(format!("{origin}: {key}.mock.{at}: {msg}")));
    if m.routes.len() > MAX_ROUTES {
        return err("routes", format!("at most {MAX_ROUTES} routes"));
    }
    let mut routes = Vec::with_capacity(m.routes.len());
    for (i, r) in m.routes.iter().enumerate() {
        let at = |field: &str| format!("routes.{i}.{field}");
        let method = match &r.method {
            None => None,
            Some(m) if !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(m.to_ascii_uppercase())
            }
            Some(m) => return err(&at("method"), format!("{m:?} is not an HTTP method")),
        };
        let path = r.path.clone().unwrap_or_else(|| "/*".into());
        if !path.starts_with('/') || path.len() > 1024 || path.chars().any(|c| c.is_control() || c == ' ' || c == '?') {
            return err(&at("path"), format!("{path:?} must start with '/' (a glob of the path, no query)"));
        }
        let status = r.status.unwrap_or(200);
        if !(200..=599).contains(&status) {
            return err(&at("status"), format!("{status} must be between 200 and 599"));
        }
        let given = [r.json.is_some(), r.file.is_some(), r.body.is_some()].iter().filter(|x| **x).count();
        if given > 1 {
            return err(&format!("routes.{i}"), "give one of json, file and body".into());
        }
        let (body, mut content_type): (Vec<u8>, Option<String>) = if let Some(j) = &r.json {
            (j.to_string().into_bytes(), Some("application/json".into()))
        } else if let Some(text) = &r.body {
            (text.clone().into_bytes(), Some("text/plain; charset=utf-8".into()))
        } else if let Some(f) = &r.file {
            let path = match resolve(origin, f) {
                Ok(p) => p,
                Err(why) => return err(&at("file"), why),
            };
            match read(&path) {
                Ok(b) => (b, Some(type_of(&path).into())),
                Err(why) => return err(&at("file"), format!("{f}: {why}")),
            }
        } else {
            (Vec::new(), None)
        };
        if let Some(t) = &r.content_type {
            if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return err(&at("content_type"), format!("{t:?} is not a media type"));
            }
            content_type = Some(t.clone());
        }
        let mut headers = Vec::new();
        for (name, value) in &r.headers {
            let lower = name.to_ascii_lowercase().replace('_', "-");
            if name.is_empty() || name.len() > 256 || !name.bytes().all(crate::proto::http1::headers::is_tchar) {
                return err(&at("headers"), format!("{name:?} is not a header name"));
            }
            if OWN_HEADERS.contains(&lower.as_str()) {
                return err(
                    &at("headers"),
                    format!("{name} is written by the gateway (use content_type for its type)"),
                );
            }
            if !value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                return err(&at("headers"), format!("the value of {name} must be printable ASCII"));
            }
            headers.push((lower, value.clone()));
        }
        let delay = match &r.delay {
            None => std::time::Duration::ZERO,
            Some(t) => match super::parse_duration(t) {
                Ok(d) if d <= std::time::Duration::from_secs(60) => d,
                Ok(_) => return err(&at("delay"), "must be at most 60s".into()),
                Err(e) => return err(&at("delay"), e),
            },
        };
        routes.push(MockRoute { method, path, status, content_type, headers, body: body.into(), delay });
    }
    Ok(MockConfig { routes })
}

/// `file` inside the config file's folder: a relative path without `..`,
/// still inside the folder once symbolic links are followed. A mock's body
/// is published on the public listener, and mocks may come through the
/// admin API: a path outside the folder (`/proc/self/environ`,
/// `../../etc/passwd`) would publish any file the gateway can read.
fn resolve(origin: &str, file: &str) -> Result<std::path::PathBuf, String> {
    use std::path::{Component, Path};
    let p = Path::new(file);
    if file.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!("{file:?} must be a path inside the config file's folder (relative, no '..')"));
    }
    let config = Path::new(origin);
    let dir = match config.parent() {
        Some(dir) if config.is_file() => {
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }
        }
        _ => return Err("a mock file needs the configuration to come from a file (its folder holds the mocks)".into()),
    };
    let full = dir.join(p);
    let (real_dir, real) = match (dir.canonicalize(), full.canonicalize()) {
        (Ok(d), Ok(f)) => (d, f),
        (_, Err(e)) => return Err(format!("{file}: {e}")),
        (Err(e), _) => return Err(format!("{}: {e}", dir.display())),
    };
    if !real.starts_with(&real_dir) {
        return Err(format!("{file:?} leads outside the config file's folder (a symbolic link)"));
    }
    Ok(real)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use super::SmallFileError::*;
    super::read_small_file(path, MAX_BODY).map_err(|e| match e {
        Io(e) => e.to_string(),
        NotRegular => "not a regular file".into(),
        TooLarge => "larger than 1 MiB".into(),
    })
}

/// A media type from a file's extension.
fn type_of(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
