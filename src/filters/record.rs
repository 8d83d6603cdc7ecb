//! `record`: sampled JSON lines of requests and their answers, written off
//! the workers.
//!
//! A sampled request's line (time, service, method, path, query, status,
//! duration, request and response headers, a prefix of the request body)
//! goes through a bounded queue (`[log] record_queue` lines) to one writer
//! thread, which appends it to `[log] record_dir`/`file` (created `0600`).
//! A full queue drops the line and counts it (`wasp_record_dropped_total`):
//! recording never blocks a request. Secrets are redacted before the line
//! leaves the worker: protected headers, `Authorization`,
//! `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and query parameters that
//! carry credentials (`token`, `access_token`, `api_key`, `password`, ...).

use super::{Action, Ctx, Done, Filter, Request};
use crate::config::{GatewayConfig, RecordConfig};
use crate::metrics::Registry;
use crate::proto::http1::edits::HeaderEdits;
use crate::proto::http1::headers::{is_name, HeaderMatcher};
use crate::targets::ResponseView;
use crossbeam_channel::{Sender, TrySendError};
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
pub struct Record {
    /// Sampled when a uniform draw in [0, 2^32) is below this.
    threshold: u64,
    path: Arc<PathBuf>,
    body_bytes: usize,
    protected: HeaderMatcher,
    service: Arc<str>,
    queue: Sender<Line>,
    lines: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

/// One line for the writer: where, and the JSON text.
type Line = (Arc<PathBuf>, Vec<u8>);

/// What the request phase kept of a sampled request.
struct Entry {
    at_ms: u128,
    line: RefCell<serde_json::Map<String, serde_json::Value>>,
}

impl Record {
    pub fn new(c: &RecordConfig, service: &str, gateway: &GatewayConfig, registry: &Registry) -> Self {
        // Validated: a record filter is only accepted with a record_dir.
        let dir = gateway.record_dir.clone().unwrap_or_else(|| PathBuf::from("/nonexistent"));
        Record {
            threshold: (c.sample * f64::from(u32::MAX) + c.sample) as u64,
            path: Arc::new(dir.join(&c.file)),
            body_bytes: c.body_bytes,
            protected: gateway.protected.clone(),
            service: Arc::from(service),
            queue: writer(gateway.record_queue, registry),
            lines: registry.record_lines.clone(),
            dropped: registry.record_dropped.clone(),
        }
    }

    fn secret_header(&self, name: &[u8]) -> bool {
        const SECRET: [&[u8]; 4] = [b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"];
        SECRET.iter().any(|s| is_name(name, s))
            || self.protected.matches(name)
            || std::str::from_utf8(name).is_ok_and(secret_name)
    }

    /// `removed`: headers an earlier filter took out (an `auth` filter's key
    /// header, whatever its name): written redacted too.
    fn headers(&self, headers: &[httparse::Header<'_>], removed: &HeaderEdits) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for h in headers {
            let v = if self.secret_header(h.name.as_bytes()) || removed.removes(h.name.as_bytes()) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(crate::proto::http1::headers::trim(h.value)).into_owned()
            };
            m.entry(h.name.to_ascii_lowercase())
                .and_modify(|old| {
                    if let serde_json::Value::String(s) = old {
                        s.push_str(", ");
                        s.push_str(&v);
                    }
                })
                .or_insert(serde_json::Value::String(v.clone()));
        }
        serde_json::Value::Object(m)
    }
}

const REDACTED: &str = "[redacted]";

/// Names (of query parameters or headers) whose values are credentials:
/// the list below, or any name containing `token`, `secret`, `password`,
/// `passwd`, `api-key`/`apikey`, `auth` or `session` (`X-Auth-Token`,
/// `X-Api-Key`, `client_secret`, `sessionid`).
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('-', "_");
    secret_param(&n)
        || ["token", "secret", "password", "passwd", "api_key", "apikey", "auth", "session"]
            .iter()
            .any(|w| n.contains(w))
}

/// Query parameter names whose values are credentials.
fn secret_param(name: &str) -> bool {
    const SECRET: [&str; 14] = [
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "signature",
        "sig",
        "code",
    ];
    let n = name.to_ascii_lowercase().replace('-', "_");
    SECRET.contains(&n.as_str()) || n.ends_with("_token") || n.ends_with("_secret") || n.ends_with("password")
}

/// The query string with credential values replaced. Names are compared
/// decoded (`%74oken`), without array brackets (`token[]`), and `;` counts
/// as a separator like `&` (old parsers read it so).
fn redact_query(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let kv = &rest[..end];
        match kv.split_once('=') {
            Some((k, _)) if secret_name(&param_name(k)) => {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(kv),
        }
        if end == rest.len() {
            return out;
        }
        out.push_str(&rest[end..end + 1]);
        rest = &rest[end + 1..];
    }
}

/// A query parameter's name as an application reads it: `+` as space,
/// escapes decoded, array brackets dropped.
fn param_name(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (char::from(b[i + 1]).to_digit(16), char::from(b[i + 2]).to_digit(16)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    let name = String::from_utf8_lossy(&out).into_owned();
    name.split('[').next().unwrap_or_default().to_string()
}

thread_local! {
    /// xorshift64 state for sampling: per thread, no lock, no syscall.
    static RNG: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let here = &t as *const u64 as u64;
        (t ^ here.rotate_left(32)) | 1
    });
}

fn draw() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x >> 32
    })
}

impl Filter for Record {
    fn kind(&self) -> &'static str {
        "record"
    }

    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action {
        if draw() >= self.threshold {
            return Action::Pass;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let mut m = serde_json::Map::new();
        m.insert("time_ms".into(), serde_json::json!(now as u64));
        m.insert("service".into(), serde_json::json!(&*self.service));
        m.insert("method".into(), serde_json::json!(req.method));
        m.insert("path".into(), serde_json::json!(req.path));
        // The query as forwarded: an `auth` filter (always before this one)
        // took its key out, whatever the parameter's name.
        m.insert("query".into(), serde_json::json!(redact_query(ctx.query.as_deref().unwrap_or(req.query))));
        m.insert("client".into(), serde_json::json!(req.client_ip.map(|ip| ip.to_string())));
        m.insert("request_headers".into(), self.headers(req.headers, &ctx.headers));
        let prefix = &req.body_prefix[..req.body_prefix.len().min(self.body_bytes)];
        m.insert("request_body".into(), serde_json::json!(String::from_utf8_lossy(prefix)));
        ctx.insert(Entry { at_ms: now, line: RefCell::new(m) });
        Action::Changed
    }

    fn wants_response(&self) -> bool {
        true
    }

    fn response(&self, resp: &ResponseView<'_>, ctx: &Ctx, _edits: &mut HeaderEdits) {
        if let Some(e) = ctx.get::<Entry>() {
            e.line.borrow_mut().insert("response_headers".into(), self.headers(resp.headers, &HeaderEdits::default()));
        }
    }

    fn logs(&self) -> bool {
        true
    }

    fn log(&self, ctx: &Ctx, done: &Done) {
        let Some(e) = ctx.get::<Entry>() else { return };
        let mut m = e.line.take();
        let _ = e.at_ms;
        m.insert("status".into(), serde_json::json!(done.status));
        m.insert("response_bytes".into(), serde_json::json!(done.bytes));
        m.insert("duration_us".into(), serde_json::json!(done.micros));
        let mut text = serde_json::Value::Object(m).to_string().into_bytes();
        text.push(b'\n');
        match self.queue.try_send((self.path.clone(), text)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
        let _ = &self.lines;
    }
}

/// The one writer thread, started on first use with a queue of `capacity`.
fn writer(capacity: usize, registry: &Registry) -> Sender<Line> {
    static QUEUE: OnceLock<Sender<Line>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = crossbeam_channel::bounded::<Line>(capacity);
            let written = registry.record_lines.clone();
            let failed = registry.record_failed.clone();
            let spawned = std::thread::Builder::new().name("wasp-record".into()).spawn(move || {
                let mut files: std::collections::HashMap<Arc<PathBuf>, std::fs::File> = Default::default();
                for (path, line) in rx {
                    // A file renamed or removed (rotated) is reopened: one
                    // stat per line, on this thread, never on a worker.
                    if files.get(&path).is_some_and(|f| !still_there(&path, f)) {
                        files.remove(&path);
                    }
                    if !files.contains_key(&path) {
                        match open(&path) {
                            Ok(f) => {
                                files.insert(path.clone(), f);
                            }
                            Err(e) => {
                                if failed.fetch_add(1, Relaxed) % 1000 == 0 {
                                    tracing::warn!(file = %path.display(), error = %e, "cannot open the record file");
                                }
                                continue;
                            }
                        }
                    }
                    let ok = files.get_mut(&path).is_some_and(|f| f.write_all(&line).is_ok());
                    if ok {
                        written.fetch_add(1, Relaxed);
                    } else {
                        failed.fetch_add(1, Relaxed);
                        files.remove(&path);
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the record writer thread: records are dropped");
            }
            tx
        })
        .clone()
}

/// Opens a record file for appending: created `0600` (its folder `0700`),
/// made `0600` if it existed, never through a symbolic link (`O_NOFOLLOW`:
/// a link planted at the name cannot send lines elsewhere).
fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let f =
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Whether `file` is still what `path` names (after a logrotate rename it
/// is not, and the writer opens the new file).
fn still_there(path: &std::path::Path, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_queries_are_redacted() {
        assert_eq!(
            redact_query("a=1&token=abc&API_KEY=k&x-auth-token=t&page=2&password"),
            "a=1&token=[redacted]&API_KEY=[redacted]&x-auth-token=[redacted]&page=2&password"
        );
        assert_eq!(redact_query(""), "");
        assert_eq!(
            redact_query("%74oken=a&access%5Ftoken=b&pass%77ord=c&token[]=d&x=1;token=e&q=+ok"),
            "%74oken=[redacted]&access%5Ftoken=[redacted]&pass%77ord=[redacted]&token[]=[redacted]&x=1;token=[redacted]&q=+ok"
        );
        assert!(secret_name("X-Auth-Token") && secret_name("X-Api-Key") && !secret_name("X-Trace"));
    }
}
