//! `block` and `allow`: refuse requests by method, path and client address.
//!
//! A filter matches when every condition it gives holds: `methods` (any
//! of them, ASCII case-insensitive), `paths` (any of them), `cidrs` (the
//! client address, derived through `server.trusted_proxies`, is in one of
//! them). `block` refuses what matches, `allow` refuses what does not;
//! several `block` filters refuse what any of them matches, several
//! `allow` filters what any of them does not. A refusal is `403` JSON.
//!
//! Paths are the service-relative ones, before any rewrite, compared the
//! way a lenient backend would read them, so that no spelling slips past a
//! `block`: percent-escapes decoded, `;parameters` dropped from each
//! segment, ASCII case ignored. `/admin/*` matches `/admin` and everything
//! under it: `/Admin/x`, `/%61dmin/x` and `/admin;v=1/x` too.

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
                    PathPattern::Exact(s) => PathPattern::Exact(s.to_ascii_lowercase()),
                    PathPattern::Under(s) => PathPattern::Under(s.to_ascii_lowercase()),
                })
                .collect()
        });
        Access { block, methods: c.methods.clone(), paths, cidrs: c.cidrs.clone() }
    }

    fn matches(&self, req: &Request<'_>) -> bool {
        if let Some(ms) = &self.methods {
            if !ms.iter().any(|m| m.eq_ignore_ascii_case(req.method)) {
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
            let ip = req.client_ip.to_canonical();
            if !nets.iter().any(|n| n.contains(ip)) {
                return false;
            }
        }
        true
    }
}

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

/// The path as a lenient backend reads it: lower case, escapes decoded,
/// `;parameters` dropped from every segment.
fn canonical(path: &str) -> Cow<'_, str> {
    if !path.bytes().any(|b| b == b'%' || b == b';' || b.is_ascii_uppercase()) {
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
        decoded.push(b);
        i += 1;
    }
    let text = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    let segments: Vec<&str> = text.split('/').map(|s| s.split(';').next().unwrap_or_default()).collect();
    Cow::Owned(segments.join("/"))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn spellings_of_one_path_meet() {
        for p in ["/Admin/x", "/%61dmin/x", "/admin;v=1/x", "/%41DMIN;a/x", "/admin/x"] {
            assert_eq!(canonical(p), "/admin/x", "{p}");
        }
        assert_eq!(canonical("/a%2Fb"), "/a/b");
        assert_eq!(canonical("/bad%zz"), "/bad%zz");
        assert_eq!(canonical("/end%4"), "/end%4");
    }
}
