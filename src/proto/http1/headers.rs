//! Header-name classification used when rewriting heads in both directions.
//!
//! Names are compared *folded*: case-insensitive, and with `_` equal to `-`.
//! CGI, WSGI and PHP-FPM backends turn both into `_` (`X_Forwarded_For` and
//! `X-Forwarded-For` both become `HTTP_X_FORWARDED_FOR`), so a rule that
//! removes a header must also remove every spelling a backend reads as it.
//! Framing (Content-Length, Transfer-Encoding, Host) is never folded: it is
//! decided by the exact name, as the service's own HTTP parser decides it.

/// Case-insensitive header-name patterns (`x-internal-*`, `*-secret`, `x-a*b`).
/// Built once per snapshot; matching never allocates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderMatcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    /// `head*tail`: both must match without overlapping.
    Around(Vec<u8>, Vec<u8>),
    Any,
}

impl HeaderMatcher {
    /// Validates one pattern: header-name characters plus at most one `*`.
    pub fn check_pattern(p: &str) -> Result<(), String> {
        if p.is_empty() {
            return Err("an empty header pattern matches nothing".into());
        }
        if p.matches('*').count() > 1 {
            return Err(format!("{p:?}: at most one '*' per pattern"));
        }
        if let Some(b) = p.bytes().find(|b| *b != b'*' && !is_tchar(*b)) {
            return Err(format!("{p:?}: {:?} cannot appear in a header name", b as char));
        }
        Ok(())
    }

    /// Builds from patterns already accepted by [`check_pattern`](Self::check_pattern).
    /// Patterns are stored folded, so `db_password` also protects `DB-Password`.
    pub fn new(patterns: &[String]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| {
                let p: Vec<u8> = p.bytes().map(fold).collect();
                match p.iter().position(|b| *b == b'*') {
                    None => Pattern::Exact(p),
                    Some(_) if p.len() == 1 => Pattern::Any,
                    Some(0) => Pattern::Suffix(p[1..].to_vec()),
                    Some(i) if i == p.len() - 1 => Pattern::Prefix(p[..i].to_vec()),
                    Some(i) => Pattern::Around(p[..i].to_vec(), p[i + 1..].to_vec()),
                }
            })
            .collect();
        HeaderMatcher { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `name` matches a pattern, folded (`X-Internal_User` matches `x-internal-*`).
    pub fn matches(&self, name: &[u8]) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(e) => is_name(name, e),
            Pattern::Prefix(s) => starts_with_folded(name, s),
            Pattern::Suffix(s) => ends_with_folded(name, s),
            Pattern::Around(a, b) => {
                name.len() >= a.len() + b.len() && starts_with_folded(name, a) && ends_with_folded(name, b)
            }
            Pattern::Any => true,
        })
    }
}

/// One byte of a name as backends read it: lower case, `_` as `-`.
#[inline]
fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// Whether two header names from outside are the same once folded.
pub fn folded_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

/// Whether `name` (any case, any `_`) is `folded`, a name already folded (a
/// constant or a stored pattern: lower case, no `_`). One lower-casing per
/// byte, no more than `eq_ignore_ascii_case`; `_` is looked at only where
/// the bytes differ, so the hot path pays nothing for the aliasing rule.
#[inline]
pub fn is_name(name: &[u8], folded: &[u8]) -> bool {
    name.len() == folded.len()
        && name.iter().zip(folded).all(|(n, f)| n.to_ascii_lowercase() == *f || *n == b'_' && *f == b'-')
}

pub fn starts_with_folded(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && is_name(&name[..prefix.len()], prefix)
}

fn ends_with_folded(name: &[u8], suffix: &[u8]) -> bool {
    name.len() >= suffix.len() && is_name(&name[name.len() - suffix.len()..], suffix)
}

/// `X-Wasp-*`: the gateway's own headers (connection ids, routes, groups).
/// Services may take them as the gateway's word, so they never pass from a
/// client to a service or an integration, nor from a service to a client,
/// whatever `headers.protected` says; the gateway writes its own where it
/// sets them (the 101, integration calls) and reads `X-Wasp-Groups` from a
/// `$connect` answer before any filtering.
pub fn is_gateway_header(name: &[u8]) -> bool {
    starts_with_folded(name, b"x-wasp-")
}

/// Whether a header name contains `_`. Eight bytes at a time (a word with a
/// zero byte after xor with `_____...`): names are short, and a byte loop or
/// `memchr`'s setup cost more than the rest of a name's handling.
#[inline]
pub fn has_underscore(name: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const UNDERSCORES: u64 = ONES * b'_' as u64;
    let word_has = |bytes: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes);
        let v = u64::from_ne_bytes(w) ^ UNDERSCORES;
        // Exact as a yes/no: some byte of `v` is zero (Hacker's Delight 6-1).
        v.wrapping_sub(ONES) & !v & HIGH != 0
    };
    if name.len() < 8 {
        return name.contains(&b'_');
    }
    let mut words = name.chunks_exact(8);
    // The last word overlaps the one before it rather than a byte loop for the rest.
    words.any(word_has) || word_has(&name[name.len() - 8..])
}

/// Headers the gateway always sets itself; the client's copies are dropped,
/// and so are their aliases (`X_Forwarded_For`) when underscores are allowed.
#[inline]
pub fn is_regenerated(name: &[u8]) -> bool {
    const OWN: [&[u8]; 8] = [
        b"host",
        b"content-length",
        b"expect",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
    ];
    OWN.iter().any(|h| is_name(name, h))
}

/// RFC 9110 token characters.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the
/// framing headers we always regenerate ourselves. Folded, so that an alias
/// such as `Transfer_Encoding` is not passed on for a backend to read as one.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| is_name(name, h))
}

/// Iterates the comma-separated, trimmed, non-empty elements of a header value.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(trim).filter(|s| !s.is_empty())
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let m = HeaderMatcher::new(&["x-internal-*".into(), "*-secret".into(), "x-a*z".into(), "exact".into()]);
        assert!(m.matches(b"X-Internal-User"));
        assert!(m.matches(b"x-INTERNAL-"));
        assert!(!m.matches(b"x-internal"));
        assert!(m.matches(b"db-SECRET"));
        assert!(m.matches(b"x-abcz"));
        assert!(!m.matches(b"x-z"));
        assert!(m.matches(b"EXACT"));
        assert!(!m.matches(b"exactly"));
        assert!(HeaderMatcher::check_pattern("a b").is_err());
        assert!(HeaderMatcher::check_pattern("*a*").is_err());
    }

    #[test]
    fn underscores_match_as_dashes() {
        let m = HeaderMatcher::new(&["x-internal-*".into(), "DB_Password".into(), "*-token".into()]);
        for name in [&b"X-Internal_User"[..], b"x_internal_role", b"db-password", b"DB_PASSWORD", b"my_token"] {
            assert!(m.matches(name), "{}", String::from_utf8_lossy(name));
        }
        assert!(!m.matches(b"x-internalx"));
        assert!(!m.matches(b"db.password"));
        assert!(is_gateway_header(b"X-Wasp-Route") && is_gateway_header(b"x_wasp_groups"));
        assert!(!is_gateway_header(b"x-wasp") && !is_gateway_header(b"x-waspy"));
        assert!(is_hop_by_hop(b"Transfer_Encoding") && is_hop_by_hop(b"KEEP_ALIVE"));
        assert!(folded_eq(b"X_Forwarded_For", b"x-forwarded-for"));
        assert!(!folded_eq(b"X_Forwarded_Fo", b"x-forwarded-for"));
        assert!(has_underscore(b"a_b") && !has_underscore(b"a-b"));
        // Every position and length, across the word boundaries.
        for len in 0..40 {
            let plain = vec![b'a'; len];
            assert!(!has_underscore(&plain));
            for i in 0..len {
                let mut n = plain.clone();
                n[i] = b'_';
                assert!(has_underscore(&n), "{len} {i}");
                n[i] = b'_' ^ 0x80;
                assert!(!has_underscore(&n), "{len} {i}");
            }
        }
        assert!(is_name(b"X_Forwarded-FOR", b"x-forwarded-for") && !is_name(b"x-forwarded-fo_", b"x-forwarded-for"));
    }

    #[test]
    fn lists() {
        let v: Vec<&[u8]> = list_items(b" keep-alive ,, Upgrade,x ").collect();
        assert_eq!(v, vec![&b"keep-alive"[..], b"Upgrade", b"x"]);
    }
}
