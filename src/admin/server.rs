//! A small HTTP/1.1 server for the admin listener.
//!
//! Admin traffic is rare and never on the hot path, so this favours plainness:
//! one task per connection, whole bodies read (bounded), keep-alive supported.

use crate::error::reason;
use crate::io::{flush, BufStream};
use crate::proto::http1::{itoa, parse_content_length};
use crate::shutdown::Shutdown;
use futures_util::FutureExt;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Largest admin request body accepted.
pub const MAX_ADMIN_BODY: usize = 8 * 1024 * 1024;

pub struct AdminRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl AdminRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a header that may be repeated (`If-Match` lists).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[cfg(test)]
    pub fn for_test(method: &str, target: &str, headers: &[(&str, &str)]) -> AdminRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        AdminRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        }
    }
}

pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The `Allow` header of a 405 (RFC 9110 requires it).
    pub allow: Option<&'static str>,
    /// Further header lines, written as given (the UI's caching and
    /// security headers).
    pub headers: Vec<(&'static str, String)>,
    /// The answer to a `HEAD`: every header as for `GET`, no body bytes.
    pub head_only: bool,
}

impl AdminResponse {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        AdminResponse {
            status,
            content_type: "application/json",
            body: body.into(),
            allow: None,
            headers: Vec::new(),
            head_only: false,
        }
    }

    /// `405` naming the methods the path accepts.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut r = Self::error(405, "method_not_allowed", &format!("this path accepts {allow}"));
        r.allow = Some(allow);
        r
    }

    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let mut b = Vec::new();
        b.extend_from_slice(b"{\"error\":\"");
        crate::error::json_escape_into(&mut b, code);
        b.extend_from_slice(b"\",\"message\":\"");
        crate::error::json_escape_into(&mut b, message);
        b.extend_from_slice(b"\"}");
        Self::json(status, b)
    }
}

/// How long one admin answer may take to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the admin listener until shutdown. `handle` answers each request.
pub async fn run<H, F>(listener: std::net::TcpListener, shutdown: Arc<Shutdown>, handle: H)
where
    H: Fn(AdminRequest) -> F + 'static,
    F: Future<Output = AdminResponse> + 'static,
{
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin listener failed");
            return;
        }
    };
    let handle = Rc::new(handle);
    let stop = shutdown.wait();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = &mut stop => None,
        };
        match accepted {
            None => return,
            Some(Ok((stream, _))) => {
                let handle = handle.clone();
                monoio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let mut conn = BufStream::new(stream, Vec::with_capacity(4096));
                    let mut out = Vec::new();
                    while let Some((req, keep)) = read_request(&mut conn).await {
                        let res = match req {
                            Ok(r) => {
                                let head = r.method == "HEAD";
                                // A bug in one handler costs its request a
                                // 500, not the admin listener (health,
                                // metrics, config) for the life of the process.
                                let answered = std::panic::AssertUnwindSafe(handle(r)).catch_unwind().await;
                                let mut res = answered.unwrap_or_else(|_| {
                                    tracing::error!("admin handler panicked; answered 500");
                                    AdminResponse::error(500, "internal", "the admin handler failed; see the log")
                                });
                                res.head_only |= head;
                                res
                            }
                            Err(msg) => AdminResponse::error(400, "bad_request", msg),
                        };
                        let close = !keep || res.status == 400;
                        write_response(&mut out, &res, close);
                        // A client that does not take its answer is dropped.
                        let sent = monoio::time::timeout(WRITE_TIMEOUT, flush(&mut conn.stream, &mut out)).await;
                        if !matches!(sent, Ok(Ok(()))) || close {
                            return;
                        }
                    }
                });
            }
            Some(Err(_)) => monoio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

type ReadResult = Option<(Result<AdminRequest, &'static str>, bool)>;

async fn read_request(conn: &mut BufStream) -> ReadResult {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(conn.data()) {
            Ok(httparse::Status::Complete(n)) => {
                let method = req.method.unwrap_or("").to_string();
                let target = req.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let (path, query) = (path.to_string(), query.to_string());
                let keep = req.version == Some(1)
                    && !req
                        .headers
                        .iter()
                        .any(|h| h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close"));
                let hs: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let chunked = hs.iter().any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
                let len = match hs.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
                    Some((_, v)) => match parse_content_length(v.trim().as_bytes()) {
                        Some(l) => l as usize,
                        None => return Some((Err("invalid Content-Length"), false)),
                    },
                    None => 0,
                };
                if chunked {
                    return Some((Err("send admin bodies with Content-Length"), false));
                }
                if len > MAX_ADMIN_BODY {
                    return Some((Err("admin request body too large"), false));
                }
                conn.consume(n);
                while conn.data().len() < len {
                    match monoio::time::timeout(Duration::from_secs(10), conn.fill()).await {
                        Ok(Ok(k)) if k > 0 => {}
                        _ => return None,
                    }
                }
                let body = conn.data()[..len].to_vec();
                conn.consume(len);
                return Some((Ok(AdminRequest { method, path, query, headers: hs, body }), keep));
            }
            Ok(httparse::Status::Partial) if conn.data().len() > 64 * 1024 => {
                return Some((Err("request head too large"), false))
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Some((Err("malformed request"), false)),
        }
        match monoio::time::timeout(Duration::from_secs(60), conn.fill()).await {
            Ok(Ok(k)) if k > 0 => {}
            _ => return None,
        }
    }
}

fn write_response(out: &mut Vec<u8>, res: &AdminResponse, close: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa(u64::from(res.status), &mut [0u8; 20]));
    out.push(b' ');
    out.extend_from_slice(reason(res.status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(res.content_type.as_bytes());
    // A 304 has no body and names no length (RFC 9110 8.6: it would have
    // to be the full answer's).
    if res.status != 304 {
        out.extend_from_slice(b"\r\ncontent-length: ");
        out.extend_from_slice(itoa(res.body.len() as u64, &mut [0u8; 20]));
    }
    if let Some(allow) = res.allow {
        out.extend_from_slice(b"\r\nallow: ");
        out.extend_from_slice(allow.as_bytes());
    }
    for (name, value) in &res.headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !res.head_only {
        out.extend_from_slice(&res.body);
    }
}
