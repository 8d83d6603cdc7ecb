//! The admin UI's files, embedded in the binary and served under `/ui/`.
//!
//! A fresh `cargo build` needs no Node toolchain: the UI is plain modern
//! JavaScript modules plus vendored Preact and htm (`ui/vendor/README.md`
//! says which versions and why). Each file is compressed once (gzip) and
//! given an `ETag` the first time it is asked for; browsers revalidate
//! (`Cache-Control: no-cache`) and get `304` until the binary changes.
//!
//! The pages themselves are public code, so they are served without the
//! admin token (a browser cannot add one to a navigation); everything they
//! show comes from the API, which asks for it. The `Host` and `Origin`
//! rules still apply (`gate.rs`), and the security headers below keep other
//! pages from framing the UI or running anything but these files in it.

use super::server::{AdminRequest, AdminResponse};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

/// Scripts only from these files (no inline code, no `eval`), styles only
/// from `style.css`, nothing framed or framing. `connect-src` names the one
/// WebSocket origin the test console needs (see [`csp`]).
const CSP_BEFORE_CONNECT: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; ";
const CSP_AFTER_CONNECT: &str = "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The policy for a page asked for as `host` (the request's `Host`, which
/// the gate has held to an IP literal, `localhost` or an allowed name): the
/// test console's WebSocket goes to the public listener on `public_port` of
/// the same host (another port, so another origin), and nowhere else. Where
/// the host cannot be written as a CSP source (an IPv6 literal), any
/// WebSocket origin is allowed, as scripts still come only from `'self'`.
pub fn csp(host: Option<&str>, public_port: u16) -> String {
    let name = host.map(|h| {
        h.rsplit_once(':').map_or(h, |(n, port)| if port.bytes().all(|b| b.is_ascii_digit()) { n } else { h })
    });
    let ws = match name {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') => {
            format!("ws://{n}:{public_port} wss://{n}:{public_port}")
        }
        _ => "ws: wss:".to_string(),
    };
    format!("{CSP_BEFORE_CONNECT}connect-src 'self' {ws}{CSP_AFTER_CONNECT}")
}

/// (path, media type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    ("/ui/", "text/html; charset=utf-8", include_bytes!("ui/index.html")),
    ("/ui/style.css", "text/css; charset=utf-8", include_bytes!("ui/style.css")),
    ("/ui/app.js", JS, include_bytes!("ui/app.js")),
    ("/ui/api.js", JS, include_bytes!("ui/api.js")),
    ("/ui/json.js", JS, include_bytes!("ui/json.js")),
    ("/ui/chart.js", JS, include_bytes!("ui/chart.js")),
    ("/ui/dashboard.js", JS, include_bytes!("ui/dashboard.js")),
    ("/ui/entities.js", JS, include_bytes!("ui/entities.js")),
    ("/ui/editor.js", JS, include_bytes!("ui/editor.js")),
    ("/ui/versions.js", JS, include_bytes!("ui/versions.js")),
    ("/ui/connections.js", JS, include_bytes!("ui/connections.js")),
    ("/ui/console.js", JS, include_bytes!("ui/console.js")),
    ("/ui/consumers.js", JS, include_bytes!("ui/consumers.js")),
    ("/ui/transfer.js", JS, include_bytes!("ui/transfer.js")),
    ("/ui/favicon.svg", "image/svg+xml", include_bytes!("ui/favicon.svg")),
    ("/ui/vendor/preact.module.js", JS, include_bytes!("ui/vendor/preact.module.js")),
    ("/ui/vendor/hooks.module.js", JS, include_bytes!("ui/vendor/hooks.module.js")),
    ("/ui/vendor/htm.module.js", JS, include_bytes!("ui/vendor/htm.module.js")),
    ("/ui/vendor/LICENSE-preact", TEXT, include_bytes!("ui/vendor/LICENSE-preact")),
    ("/ui/vendor/LICENSE-htm", TEXT, include_bytes!("ui/vendor/LICENSE-htm")),
];

const JS: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

struct Prepared {
    path: &'static str,
    mime: &'static str,
    plain: &'static [u8],
    gzip: Vec<u8>,
    etag: String,
}

fn prepared() -> &'static [Prepared] {
    static ALL: OnceLock<Vec<Prepared>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(path, mime, plain)| {
                let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                // Writing to a Vec cannot fail; an empty body would only be
                // served uncompressed.
                let gzip = z.write_all(plain).and_then(|_| z.finish()).unwrap_or_default();
                let sum = Sha256::digest(plain);
                let etag = format!("\"{}\"", sum[..12].iter().map(|b| format!("{b:02x}")).collect::<String>());
                Prepared { path, mime, plain, gzip, etag }
            })
            .collect()
    })
}

/// Whether `path` is the UI's (served without the admin token).
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Answers `/ui` and `/ui/...`; `None` for other paths.
pub fn handle(req: &AdminRequest, public_port: u16) -> Option<AdminResponse> {
    if !is_ui_path(&req.path) {
        return None;
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Some(AdminResponse::method_not_allowed("GET, HEAD"));
    }
    if req.path == "/ui" {
        let mut r = AdminResponse::error(308, "moved", "the admin UI is at /ui/");
        r.headers.push(("location", "/ui/".to_string()));
        return Some(r);
    }
    let path = if req.path == "/ui/index.html" { "/ui/" } else { req.path.as_str() };
    let policy = csp(req.header("host"), public_port);
    if let Some(r) = from_dev_dir(path, &policy) {
        return Some(r);
    }
    let Some(f) = prepared().iter().find(|f| f.path == path) else {
        return Some(AdminResponse::error(404, "not_found", "no such file in the admin UI"));
    };
    let mut r = AdminResponse::json(200, Vec::new());
    r.content_type = f.mime;
    r.headers = security_headers(policy);
    r.headers.push(("cache-control", "no-cache".to_string()));
    // Each representation its own strong tag (RFC 9110 8.8.3): the gzip
    // bytes are not the plain bytes.
    let gzip = accepts_gzip(req.header("accept-encoding")) && !f.gzip.is_empty() && f.gzip.len() < f.plain.len();
    let etag = if gzip { format!("{}-gz\"", &f.etag[..f.etag.len() - 1]) } else { f.etag.clone() };
    r.headers.push(("etag", etag.clone()));
    if req.header("if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        r.status = 304;
        return Some(r);
    }
    if gzip {
        r.headers.push(("content-encoding", "gzip".to_string()));
        r.body = f.gzip.clone();
    } else {
        r.body = f.plain.to_vec();
    }
    Some(r)
}

/// What every UI answer carries: the CSP, no sniffing, no framing, no
/// referrer, its own browsing context group, and which request header
/// chose the representation.
fn security_headers(policy: String) -> Vec<(&'static str, String)> {
    vec![
        ("vary", "accept-encoding".to_string()),
        ("content-security-policy", policy),
        ("x-content-type-options", "nosniff".to_string()),
        ("x-frame-options", "DENY".to_string()),
        ("referrer-policy", "no-referrer".to_string()),
        ("cross-origin-opener-policy", "same-origin".to_string()),
    ]
}

/// `WASP_UI_DIR=src/admin/ui`: the UI's files read from that directory at
/// every request instead of the embedded ones, so a change to the UI shows
/// at the next reload of the page without a rebuild. For working on the UI
/// only; the same file list and security headers apply (no `ETag`: the
/// file is read afresh each time and never cached).
fn from_dev_dir(path: &str, policy: &str) -> Option<AdminResponse> {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| std::env::var_os("WASP_UI_DIR").map(Into::into)).as_ref()?;
    let f = prepared().iter().find(|f| f.path == path)?;
    let rel = if f.path == "/ui/" { "index.html" } else { &f.path[4..] };
    let bytes = std::fs::read(dir.join(rel)).ok()?;
    let mut r = AdminResponse::json(200, bytes);
    r.content_type = f.mime;
    r.headers = security_headers(policy.to_string());
    // Read again at every request: nothing to revalidate.
    r.headers.push(("cache-control", "no-store".to_string()));
    Some(r)
}

/// `gzip` listed in `Accept-Encoding` without `q=0`.
fn accepts_gzip(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        v.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let zero = parts
                .any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
            name.eq_ignore_ascii_case("gzip") && !zero
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("deflate")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn the_policy_allows_the_public_listener_only() {
        let tail = "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
        let p = csp(Some("127.0.0.1:9901"), 8080);
        assert!(p.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;") && p.ends_with(tail), "{p}");
        assert!(csp(Some("localhost"), 80).contains("ws://localhost:80 "));
        assert!(csp(Some("gw.example.com:9901"), 8080).contains("ws://gw.example.com:8080 "));
        // Nothing a Host could smuggle into the policy: such hosts fall back.
        for odd in ["[::1]:9901", "a b", "x;script-src *", "", "h'", "*"] {
            let p = csp(Some(odd), 8080);
            assert!(p.contains("connect-src 'self' ws: wss:;") && !p.contains("script-src *"), "{odd:?}: {p}");
        }
        assert!(csp(None, 8080).contains("ws: wss:"));
    }

    #[test]
    fn every_file_is_prepared_with_a_distinct_etag() {
        let all = prepared();
        assert_eq!(all.len(), FILES.len());
        let mut tags: Vec<&str> = all.iter().map(|f| f.etag.as_str()).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), FILES.len(), "two files share an ETag");
    }
}
