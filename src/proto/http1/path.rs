//! Request-target normalization before routing.
//!
//! The first path segment names the service, so every way of spelling a
//! different path must be settled here, before the lookup: dot segments (also
//! percent-encoded), empty segments from `//`, and encoded separators. What the
//! upstream receives is exactly the normalized remainder, so the gateway and the
//! service agree on which path was asked for.

/// What `%2F`, `%5C` and `\\` in a path mean (`paths.encoded_slash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodedSlash {
    /// `400`: a service may decode them into separators we did not route on.
    Reject,
    /// Forwarded as sent, never treated as a separator.
    Keep,
}

/// The routed view of a request target.
#[derive(Debug, PartialEq, Eq)]
pub struct Routed {
    /// Decoded first segment (the service name); empty for `/`.
    pub service: String,
    /// `/{rest}` plus `?{query}` when there was one: the upstream's target.
    pub upstream_target: String,
    /// Where the path part of `upstream_target` ends (its length).
    pub path_len: usize,
}

impl Routed {
    /// The service-relative path, normalised (`/` at least).
    pub fn path(&self) -> &str {
        &self.upstream_target[..self.path_len]
    }

    /// The query string without `?`, when the target had a `?`.
    pub fn query(&self) -> Option<&str> {
        self.upstream_target.get(self.path_len + 1..)
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum PathError {
    NotOriginForm,
    EncodedSeparator,
    BadEscape,
    Fragment,
    /// `..;x` or `.;x`: Tomcat, Jetty and Spring read it as a dot segment,
    /// others as a name; a path that means two things is refused.
    DotSegmentParams,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "request target must be an absolute path (origin-form)",
            PathError::EncodedSeparator => "encoded '/' or '\\' in the path is not allowed",
            PathError::BadEscape => "invalid percent-encoding or encoded NUL in the path",
            PathError::Fragment => "a request target cannot carry a fragment",
            PathError::DotSegmentParams => "a dot segment with parameters ('..;') is ambiguous",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one segment; refuses malformed escapes and NUL.
fn decode(seg: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'%' {
            let (Some(h), Some(l)) = (seg.get(i + 1).and_then(|b| hex(*b)), seg.get(i + 2).and_then(|b| hex(*b)))
            else {
                return Err(PathError::BadEscape);
            };
            let v = h << 4 | l;
            if v == 0 {
                return Err(PathError::BadEscape);
            }
            out.push(v);
            i += 3;
        } else {
            out.push(seg[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn is_dot(seg: &[u8]) -> Option<u8> {
    // Fast path: most segments have no '.' or '%' at all.
    if seg.len() > 6 || !seg.iter().any(|b| *b == b'.' || *b == b'%') {
        return None;
    }
    match decode(seg).ok()?.as_slice() {
        b"." => Some(1),
        b".." => Some(2),
        _ => None,
    }
}

/// Normalizes `target` (the raw request-target) and splits off the service.
pub fn route_target(target: &[u8], encoded_slash: EncodedSlash) -> Result<Routed, PathError> {
    if target.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if target.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    let (path, query) = match target.iter().position(|b| *b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    if encoded_slash == EncodedSlash::Reject {
        if path.contains(&b'\\') {
            return Err(PathError::EncodedSeparator);
        }
        for w in path.windows(3) {
            if w[0] == b'%' && (w[1] == b'2' && (w[2] | 0x20) == b'f' || w[1] == b'5' && (w[2] | 0x20) == b'c') {
                return Err(PathError::EncodedSeparator);
            }
        }
    }
    // Fast path: nothing to normalize (no '//', no dot segment, no escape).
    if !path.contains(&b'%') && !path.windows(2).any(|w| w == b"//" || w == b"/.") {
        let rest_at = path[1..].iter().position(|b| *b == b'/').map_or(path.len(), |p| p + 1);
        let service = std::str::from_utf8(&path[1..rest_at]).map_err(|_| PathError::BadEscape)?;
        let mut up = String::with_capacity(target.len() + 1 - rest_at);
        if rest_at == path.len() {
            up.push('/');
        }
        let path_len = up.len() + path.len() - rest_at;
        up.push_str(std::str::from_utf8(&target[rest_at..]).map_err(|_| PathError::BadEscape)?);
        return Ok(Routed { service: service.to_string(), upstream_target: up, path_len });
    }
    let mut segs: Vec<&[u8]> = Vec::with_capacity(8);
    for seg in path.split(|b| *b == b'/') {
        if let Some(i) = seg.iter().position(|b| *b == b';') {
            if is_dot(&seg[..i]).is_some() {
                return Err(PathError::DotSegmentParams);
            }
        }
        match is_dot(seg) {
            Some(2) => {
                segs.pop();
            }
            Some(_) => {}
            None if seg.is_empty() => {}
            None => segs.push(seg),
        }
    }
    // A trailing '/' (or a trailing dot segment) means "the directory": keep it.
    let last = path.rsplit(|b| *b == b'/').next().unwrap_or_default();
    let trailing = path.len() > 1 && (last.is_empty() || is_dot(last).is_some());

    let service = match segs.first() {
        Some(s) => {
            let d = decode(s)?;
            String::from_utf8(d).map_err(|_| PathError::BadEscape)?
        }
        None => String::new(),
    };
    let mut up = String::with_capacity(target.len());
    for s in segs.iter().skip(1) {
        up.push('/');
        // The request line was validated as visible ASCII by the parser.
        up.push_str(std::str::from_utf8(s).map_err(|_| PathError::BadEscape)?);
    }
    if up.is_empty() || trailing {
        up.push('/');
    }
    let path_len = up.len();
    if let Some(q) = query {
        up.push('?');
        up.push_str(std::str::from_utf8(q).map_err(|_| PathError::BadEscape)?);
    }
    Ok(Routed { service, upstream_target: up, path_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str) -> Result<(String, String), PathError> {
        route_target(t.as_bytes(), EncodedSlash::Reject).map(|r| (r.service, r.upstream_target))
    }

    fn ok(t: &str, svc: &str, up: &str) {
        assert_eq!(r(t), Ok((svc.to_string(), up.to_string())), "{t}");
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for t in ["/svc/public/..;/admin", "/svc/x/..;a=1/y", "/svc/%2e%2e;/a", "/svc/.;/../a", "/svc/a/.%2E;x"] {
            assert_eq!(route_target(t.as_bytes(), EncodedSlash::Reject), Err(PathError::DotSegmentParams), "{t}");
        }
        assert!(route_target(b"/svc/a;b/..c;d/...;e", EncodedSlash::Reject).is_ok(), "names with ';' are fine");
    }

    #[test]
    fn path_and_query_split() {
        for (t, path, query) in [
            ("/svc/a/b?x=1", "/a/b", Some("x=1")),
            ("/svc?", "/", Some("")),
            ("/svc", "/", None),
            ("/svc/a//b/../c?q?r", "/a/c", Some("q?r")),
            ("/svc/%41/?", "/%41/", Some("")),
        ] {
            let r = route_target(t.as_bytes(), EncodedSlash::Reject).unwrap();
            assert_eq!((r.path(), r.query()), (path, query), "{t}");
        }
    }

    #[test]
    fn basic() {
        ok("/echo/a/b?x=1", "echo", "/a/b?x=1");
        ok("/echo", "echo", "/");
        ok("/echo/", "echo", "/");
        ok("/echo?q", "echo", "/?q");
        ok("/echo/a/", "echo", "/a/");
        ok("/", "", "/");
    }

    #[test]
    fn dots_and_slashes() {
        ok("//echo//a///b", "echo", "/a/b");
        ok("/other/../echo/x", "echo", "/x");
        ok("/../echo/x", "echo", "/x");
        ok("/echo/a/../../admin/x", "admin", "/x");
        ok("/echo/%2e%2e/admin", "admin", "/");
        ok("/echo/.%2E/admin", "admin", "/");
        ok("/echo/./a/.", "echo", "/a/");
        ok("/%65cho/a", "echo", "/a");
        ok("/echo/a..b/..c", "echo", "/a..b/..c");
    }

    #[test]
    fn rejects() {
        assert_eq!(r("http://x/echo"), Err(PathError::NotOriginForm));
        assert_eq!(r("*"), Err(PathError::NotOriginForm));
        assert_eq!(r("/echo%2Fadmin/x"), Err(PathError::EncodedSeparator));
        assert_eq!(r("/echo/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(r("/echo\\a"), Err(PathError::EncodedSeparator));
        assert_eq!(r("/ec%zzho"), Err(PathError::BadEscape));
        assert_eq!(r("/echo/%00"), Ok(("echo".into(), "/%00".into())));
        assert_eq!(r("/%00echo"), Err(PathError::BadEscape));
        assert_eq!(r("/echo#x"), Err(PathError::Fragment));
    }

    #[test]
    fn keep_mode_never_splits_on_encoded_slash() {
        let r = route_target(b"/echo%2Fadmin/x", EncodedSlash::Keep).unwrap();
        assert_eq!(r.service, "echo/admin"); // cannot name a service: names have no '/'
        let r = route_target(b"/echo/a%2Fb", EncodedSlash::Keep).unwrap();
        assert_eq!((r.service.as_str(), r.upstream_target.as_str()), ("echo", "/a%2Fb"));
    }
}
