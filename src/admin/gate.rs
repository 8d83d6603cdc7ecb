//! Who may ask the admin API: the checks every admin request passes before a
//! handler sees it.
//!
//! The admin API is often reached without a token, from the operator's own
//! machine, where a browser also runs pages from anywhere. What such a page
//! can send is the threat here:
//!
//! - **DNS rebinding**: a page on `rebind.example` makes its name resolve to
//!   `127.0.0.1`; the browser then treats the admin API as the page's own
//!   origin and lets it read the answers. Its requests still carry
//!   `Host: rebind.example`, so only IP literals, `localhost` and the names
//!   in `admin.allowed_hosts` are served (`421` otherwise).
//! - **Cross-site writes**: a page may send a "simple" request (a form, or
//!   `fetch` with a CORS-safelisted `Content-Type` such as `text/plain`)
//!   without any preflight. A present `Origin` that is not the listener's own
//!   is refused (`403`), and without a token every write must say
//!   `Content-Type: application/json`, which a page cannot send cross-site
//!   without a preflight that this API never grants (`415`).
//!
//! `/healthz`, `/readyz` and `/metrics` are exempt from the `Host` rule (and,
//! as before, from the token): load balancers and Prometheus often probe by a
//! name, and these answer only read-only status that anyone who can connect
//! may see anyway.

use super::server::{AdminRequest, AdminResponse};
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a request was refused, for the `wasp_admin_refused_total` metric
/// (the order is that of `metrics::ADMIN_REFUSALS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No, several or a malformed `Host` (400), or a name not ours (421).
    Host,
    /// An `Origin` that is not the listener's own (403).
    Origin,
    /// A missing or wrong bearer token (401).
    Token,
    /// A write that is not `application/json` while no token is set (415).
    MediaType,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [Refusal::Host, Refusal::Origin, Refusal::Token, Refusal::MediaType];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric's `reason` label.
    pub fn label(self) -> &'static str {
        crate::metrics::ADMIN_REFUSALS[self.index()]
    }
}

/// The admin listener's access rules, built once at start.
pub struct Access {
    /// SHA-256 of the configured token: requests are compared digest to
    /// digest, so the time taken says nothing about the token's length.
    token: Option<[u8; 32]>,
    /// Lower-case host names served besides IP literals and `localhost`.
    allowed_hosts: Vec<String>,
}

/// Paths a load balancer or scraper calls: no token, any `Host`.
pub fn is_open_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

impl Access {
    pub fn new(token: Option<&str>, allowed_hosts: &[String]) -> Access {
        Access {
            token: token.map(digest),
            allowed_hosts: allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// `Ok` when `req` may reach a handler; otherwise the answer to send and why.
    pub fn check(&self, req: &AdminRequest) -> Result<(), (Refusal, AdminResponse)> {
        let open = is_open_path(&req.path);
        let host = match single(req, "host") {
            Ok(h) => h,
            Err(()) if open => None,
            Err(()) => return Err((Refusal::Host, bad_host("send exactly one Host header"))),
        };
        if !open {
            let Some(host) = host else {
                return Err((Refusal::Host, bad_host("send a Host header")));
            };
            match host_name(host) {
                None => return Err((Refusal::Host, bad_host("the Host header is not host[:port]"))),
                Some(name) if !self.serves(name) => {
                    let msg = format!(
                        "this admin listener does not answer to {:?}: use its IP address or localhost, \
                         or list the name in admin.allowed_hosts",
                        truncate(name, 255)
                    );
                    return Err((Refusal::Host, AdminResponse::error(421, "misdirected_request", &msg)));
                }
                Some(_) => {}
            }
        }
        // Browsers send Origin on every cross-origin request they may let a
        // page read or that writes; same-origin means the Host it reached.
        match single(req, "origin") {
            Ok(None) => {}
            Ok(Some(origin)) if host.is_some_and(|h| same_origin(origin, h)) => {}
            _ => {
                return Err((
                    Refusal::Origin,
                    AdminResponse::error(403, "cross_origin", "requests from other origins are refused"),
                ))
            }
        }
        match &self.token {
            // The UI's files are public code a browser fetches by navigating
            // (no header can be added); what they show comes from the API.
            Some(want)
                if !open
                    && !super::assets::is_ui_path(&req.path)
                    && !token_matches(req.header("authorization"), want) =>
            {
                return Err((
                    Refusal::Token,
                    AdminResponse::error(401, "unauthorized", "send Authorization: Bearer <admin token>"),
                ));
            }
            Some(_) => {}
            // With a token the Authorization header itself makes a request
            // non-simple (a browser preflights it), so the media-type rule
            // is needed only without one.
            None if is_write(&req.method) && !json_only(req) => {
                return Err((
                    Refusal::MediaType,
                    AdminResponse::error(
                        415,
                        "unsupported_media_type",
                        "send writes with Content-Type: application/json",
                    ),
                ));
            }
            None => {}
        }
        Ok(())
    }

    fn serves(&self, name: &str) -> bool {
        name.parse::<Ipv4Addr>().is_ok()
            || (name.starts_with('[') && name.ends_with(']'))
            || name.eq_ignore_ascii_case("localhost")
            || self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// Digest against digest, every byte looked at: neither where the first
/// difference is nor how long the token is shows in the time taken.
fn token_matches(header: Option<&str>, want: &[u8; 32]) -> bool {
    let given = header
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    digests_equal(&digest(given), want)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two digests (no early exit).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The one value of header `name`: `Ok(None)` when absent, `Err` when repeated.
fn single<'a>(req: &'a AdminRequest, name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
    match (values.next(), values.next()) {
        (v, None) => Ok(v),
        _ => Err(()),
    }
}

fn bad_host(message: &str) -> AdminResponse {
    AdminResponse::error(400, "bad_host", message)
}

/// The host part of a `Host` value (`name`, `v4`, `[v6]`, each with an
/// optional port), or `None` when the value is not `host[:port]`.
fn host_name(value: &str) -> Option<&str> {
    let (name, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (name, rest) = value.split_at(end + 1);
        name[1..name.len() - 1].parse::<Ipv6Addr>().ok()?;
        (name, if rest.is_empty() { None } else { Some(rest.strip_prefix(':')?) })
    } else {
        match value.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return None;
        }
    }
    let name_ok = name.starts_with('[')
        || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    name_ok.then_some(name)
}

/// Whether `origin` is `http://` + the `Host` the request came by (ASCII case
/// ignored; port 80 may be written or left out, as browsers leave it out).
fn same_origin(origin: &str, host: &str) -> bool {
    let Some(authority) = origin.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &origin[7..]) else {
        return false;
    };
    let plain = |a: &str| -> String { a.strip_suffix(":80").unwrap_or(a).to_ascii_lowercase() };
    plain(authority) == plain(host)
}

fn is_write(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Exactly one `Content-Type`, and it is `application/json` (any parameters).
fn json_only(req: &AdminRequest) -> bool {
    match single(req, "content-type") {
        Ok(Some(v)) => v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"),
        _ => false,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> AdminRequest {
        AdminRequest {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        }
    }

    fn refusal(a: &Access, r: &AdminRequest) -> Option<(Refusal, u16)> {
        a.check(r).err().map(|(why, res)| (why, res.status))
    }

    #[test]
    fn host_values() {
        assert_eq!(host_name("127.0.0.1:9901"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:80"), Some("[::1]"));
        assert_eq!(host_name("[::1]"), Some("[::1]"));
        assert_eq!(host_name("Example.com"), Some("Example.com"));
        for bad in ["", ":80", "a:", "a:x", "a:65536", "[::1", "[zz]", "[::1]x", "::1", "a b", "a/b", "a@b"] {
            assert_eq!(host_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn origins() {
        assert!(same_origin("http://127.0.0.1:9901", "127.0.0.1:9901"));
        assert!(same_origin("HTTP://LocalHost:9901", "localhost:9901"));
        assert!(same_origin("http://localhost", "localhost:80"));
        assert!(!same_origin("http://localhost:9901", "127.0.0.1:9901"));
        assert!(!same_origin("https://127.0.0.1:9901", "127.0.0.1:9901"));
        assert!(!same_origin("null", "127.0.0.1:9901"));
        assert!(!same_origin("http://127.0.0.1:99011", "127.0.0.1:9901"));
    }

    #[test]
    fn rules_without_a_token() {
        let a = Access::new(None, &["ops.internal".to_string()]);
        let h = ("Host", "127.0.0.1:9901");
        let json = ("Content-Type", "application/json; charset=utf-8");
        assert_eq!(refusal(&a, &req("POST", "/config/import", &[h, json])), None);
        assert_eq!(refusal(&a, &req("GET", "/config/export", &[("Host", "OPS.internal:1")])), None);
        assert_eq!(
            refusal(&a, &req("POST", "/config/import", &[h, ("Content-Type", "text/plain")])),
            Some((Refusal::MediaType, 415))
        );
        assert_eq!(refusal(&a, &req("DELETE", "/connections/x", &[h])), Some((Refusal::MediaType, 415)));
        assert_eq!(
            refusal(&a, &req("POST", "/x", &[h, json, ("Content-Type", "text/plain")])),
            Some((Refusal::MediaType, 415))
        );
        assert_eq!(refusal(&a, &req("GET", "/x", &[("Host", "evil.example")])), Some((Refusal::Host, 421)));
        assert_eq!(refusal(&a, &req("GET", "/x", &[])), Some((Refusal::Host, 400)));
        assert_eq!(refusal(&a, &req("GET", "/healthz", &[("Host", "lb.example")])), None);
        assert_eq!(refusal(&a, &req("GET", "/metrics", &[])), None);
        assert_eq!(
            refusal(&a, &req("POST", "/x", &[h, json, ("Origin", "http://evil.example")])),
            Some((Refusal::Origin, 403))
        );
        assert_eq!(refusal(&a, &req("POST", "/x", &[h, json, ("Origin", "http://127.0.0.1:9901")])), None);
    }

    #[test]
    fn token_by_digest() {
        let a = Access::new(Some("0123456789abcdef"), &[]);
        let h = ("Host", "localhost");
        let ok = req("POST", "/x", &[h, ("Authorization", "Bearer 0123456789abcdef")]);
        assert_eq!(refusal(&a, &ok), None, "no media-type rule with a token");
        for bad in ["Bearer 0123456789abcdeF", "Bearer 0123456789abcde", "Bearer ", "Basic 0123456789abcdef", ""] {
            assert_eq!(refusal(&a, &req("GET", "/x", &[h, ("Authorization", bad)])), Some((Refusal::Token, 401)));
        }
        assert_eq!(refusal(&a, &req("GET", "/readyz", &[])), None);
        assert!(digests_equal(&digest("a"), &digest("a")));
        assert!(!digests_equal(&digest("a"), &digest("b")));
    }

    #[test]
    fn labels_follow_the_metric_order() {
        let labels: Vec<&str> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, ["host", "origin", "token", "content_type"]);
    }
}
