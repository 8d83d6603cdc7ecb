//! `route`: mobile routing and the like. When every pattern of `when`
//! matches (headers, cookies, query parameters; `*` for any run of
//! characters, ASCII case ignored), the request goes to service `to`, whose
//! own filters then run instead of this service's. The first `route` or
//! `split` that hands a request on wins.

use super::{Action, Ctx, Filter, Request};
use crate::config::{RouteRule, WhenSource};

#[derive(Debug)]
pub struct Route {
    when: Vec<(WhenSource, String, Vec<u8>)>,
    to: String,
}

impl Route {
    pub fn new(r: &RouteRule) -> Self {
        Route {
            when: r.when.iter().map(|(s, n, g)| (*s, n.clone(), g.as_bytes().to_vec())).collect(),
            to: r.to.clone(),
        }
    }
}

impl Filter for Route {
    fn kind(&self) -> &'static str {
        "route"
    }

    fn request(&self, _req: &Request<'_>, _ctx: &mut Ctx) -> Action {
        Action::Pass
    }

    fn routes(&self) -> bool {
        true
    }

    fn route(&self, req: &Request<'_>) -> Option<&str> {
        let all = self.when.iter().all(|(source, name, glob)| {
            let value = match source {
                WhenSource::Header => req.header(name),
                WhenSource::Cookie => cookie(req, name),
                WhenSource::Query => query_param(req.query, name),
            };
            value.is_some_and(|v| glob_match(glob, v))
        });
        all.then_some(self.to.as_str())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(req: &Request<'a>, name: &str) -> Option<&'a [u8]> {
    req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("cookie")).find_map(|h| {
        h.value.split(|b| *b == b';').find_map(|pair| {
            let pair = crate::proto::http1::headers::trim(pair);
            let eq = pair.iter().position(|b| *b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
    })
}

/// The raw value of parameter `name` in a query string.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a [u8]> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v.as_bytes())
    })
}

/// `*` matches any run of bytes; other bytes match themselves, ASCII case
/// ignored. Linear in practice (greedy with one backtrack point per star).
pub fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    glob_with(glob, text, |a, b| a.eq_ignore_ascii_case(&b))
}

/// Like [`glob_match`], case kept (paths).
pub fn glob_match_exact(glob: &[u8], text: &[u8]) -> bool {
    glob_with(glob, text, |a, b| a == b)
}

#[inline]
fn glob_with(glob: &[u8], text: &[u8], same: impl Fn(u8, u8) -> bool) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if g < glob.len() && same(glob[g], text[t]) {
            g += 1;
            t += 1;
        } else if let Some((sg, st)) = star {
            g = sg + 1;
            t = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(b"*Mobile*", b"Mozilla/5.0 (iPhone) Mobile/15E148"));
        assert!(glob_match(b"*mobile*", b"X MOBILE y"));
        assert!(!glob_match(b"*Mobile*", b"Mozilla/5.0 (X11; Linux x86_64)"));
        assert!(glob_match(b"a*b*c", b"aXXbYYc") && !glob_match(b"a*b*c", b"aXXbYY"));
        assert!(glob_match(b"*", b"") && glob_match(b"", b"") && !glob_match(b"", b"x"));
        assert!(glob_match(b"exact", b"EXACT") && !glob_match(b"exact", b"exactly"));
        // A pathological pattern stays fast.
        let text = vec![b'a'; 10_000];
        assert!(!glob_match(b"*a*a*a*a*a*b", &text));
    }
}
