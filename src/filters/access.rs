//! `block` and `allow`: refuse requests by method, path and client address.
//!
//! A filter matches when every condition it gives holds: `methods` (any
//! of them), `paths` (any of them), `cidrs` (the client address, derived
//! through `server.trusted_proxies`, is in one of them). `block` refuses
//! what matches, `allow` refuses what does not; several `block` filters
//! refuse what any of them matches, several `allow` filters what any of them
//! does not. A refusal is `403` JSON.
//!
//! Everything is compared the way a lenient backend could read it, so that
//! no spelling slips past a `block` (and an `allow` is never wider than it
//! reads):
//!
//! - methods: ASCII case ignored; `GET` covers `HEAD` (frameworks route HEAD
//!   to the GET handler); an `X-HTTP-Method-Override`, `X-HTTP-Method` or
//!   `X-Method-Override` header counts as a method of the request too (a
//!   `block` matches when any of them is listed, an `allow` only when all are);
//! - paths: the service-relative path before any rewrite, percent-escapes
//!   decoded once, `\` read as `/`, `;parameters`, a NUL and what follows
//!   it, and trailing dots and spaces dropped from each segment, dot segments
//!   resolved after that, ASCII case ignored, a trailing `/` ignored:
//!   `/admin/*` matches `/admin` and everything under it (`/Admin/x`,
//!   `/%61dmin/x`, `/admin;v=1/x`, `/admin./x` too), `/config` matches `/config/`;
//! - cidrs: a client whose address cannot be known (a trusted proxy
//!   forwarded something that is not an address) is in every `block`
//!   network and in no `allow` network: unknown fails closed.

use super::{Action, Ctx, Filter, Request};
use crate::config::{Conditions, IpNet, PathPattern};
use crate::error::{ErrorKind, ProxyError};
use std::borrow::Cow;

#[derive(Debug)]
pub struct Access {
    block: bool,
    methods: Option<Vec<String>>,
    paths: Option<Vec<PathPattern>>,
    cidrs: Option<Vec<IpNet>>,
}

impl Access {
    pub fn block(c: &Conditions) -> Self {
        Access::new(c, true)
    }

    pub fn allow(c: &Conditions) -> Self {
        Access::new(c, false)
    }

    fn new(c: &Conditions, block: bool) -> Self {
        let paths = c.paths.as_ref().map(|ps| {
            ps.iter()
                .map(|p| match p {
                    PathPattern::Exact(s) => PathPattern::Exact(canonical(s).into_owned()),
                    PathPattern::Under(s) => {
                        let dir = canonical(s);
                        PathPattern::Under(if dir == "/" { String::new() } else { dir.into_owned() })
                    }
                })
                .collect()
        });
        Access { block, methods: c.methods.clone(), paths, cidrs: c.cidrs.clone() }
    }

    fn method_listed(&self, methods: &[String], m: &str) -> bool {
        methods
            .iter()
            .any(|l| l.eq_ignore_ascii_case(m) || l.eq_ignore_ascii_case("GET") && m.eq_ignore_ascii_case("HEAD"))
    }

    fn methods_match(&self, methods: &[String], req: &Request<'_>) -> bool {
        let overrides = OVERRIDES.iter().filter_map(|h| req.header(h)).filter_map(|v| std::str::from_utf8(v).ok());
        let mut all = std::iter::once(req.method).chain(overrides);
        if self.block {
            all.any(|m| self.method_listed(methods, m))
        } else {
            all.all(|m| self.method_listed(methods, m))
        }
    }

    fn matches(&self, req: &Request<'_>) -> bool {
        if let Some(ms) = &self.methods {
            if !self.methods_match(ms, req) {
                return false;
            }
        }
        if let Some(ps) = &self.paths {
            let path = canonical(req.path);
            let hit = ps.iter().any(|p| match p {
                PathPattern::Exact(e) => path == e.as_str(),
                PathPattern::Under(dir) => {
                    path.strip_prefix(dir.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                }
            });
            if !hit {
                return false;
            }
        }
        if let Some(nets) = &self.cidrs {
            let inside = match req.client_ip {
                Some(ip) => {
                    let ip = ip.to_canonical();
                    nets.iter().any(|n| n.contains(ip))
                }
                // Unknown: fails closed either way.
                None => self.block,
            };
            if !inside {
                return false;
            }
        }
        true
    }
}

/// Headers through which frameworks let a request claim another method.
const OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

impl Filter for Access {
    fn kind(&self) -> &'static str {
        if self.block {
            "block"
        } else {
            "allow"
        }
    }

    fn request(&self, req: &Request<'_>, _ctx: &mut Ctx) -> Action {
        match (self.block, self.matches(req)) {
            (true, true) => {
                Action::Reject(ProxyError::new(ErrorKind::Forbidden, "blocked by a filter of this service"))
            }
            (false, false) => {
                Action::Reject(ProxyError::new(ErrorKind::Forbidden, "not allowed by a filter of this service"))
            }
            _ => Action::Pass,
        }
    }
}

/// The path as a lenient backend could read it (see the module notes):
/// lower case, escapes decoded once, `\\` as `/`, segment parameters, NULs
/// and trailing dots and spaces dropped, dot segments resolved, no
/// trailing `/`.
fn canonical(path: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-_~!$&'()*+,=:@".contains(&b);
    if path.bytes().all(plain) && !path.contains("//") && (path == "/" || !path.ends_with('/')) {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                decoded.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    let text = String::from_utf8_lossy(&decoded).to_ascii_lowercase().replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        let seg = seg.split([';', '\0']).next().unwrap_or_default();
        let seg = if seg == "." || seg == ".." { seg } else { seg.trim_end_matches(['.', ' ']) };
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(text.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn spellings_of_one_path_meet() {
        for p in [
            "/Admin/x",
            "/%61dmin/x",
            "/admin;v=1/x",
            "/%41DMIN;a/x",
            "/admin/x",
            "/admin/x/",
            "/admin./x",
            "/admin%20/x",
            "/admin%00junk/x",
            "/x%2f..%2fadmin/x",
            "/x%5c..%5cadmin/x",
            "/x\\..\\admin/x",
            "/public/..;/admin/x",
        ] {
            assert_eq!(canonical(p), "/admin/x", "{p}");
        }
        assert_eq!(canonical("/a%2Fb"), "/a/b");
        assert_eq!(canonical("/bad%zz"), "/bad%zz");
        assert_eq!(canonical("/end%4"), "/end%4");
        assert_eq!(canonical("/"), "/");
        assert_eq!(canonical("/.."), "/");
        assert_eq!(canonical("/plain/path"), "/plain/path");
    }
}
