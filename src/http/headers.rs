//! Header-name classification used when rewriting heads in both directions.

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
    pub fn new(patterns: &[String]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| {
                let p = p.to_ascii_lowercase().into_bytes();
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

    pub fn matches(&self, name: &[u8]) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(e) => name.eq_ignore_ascii_case(e),
            Pattern::Prefix(s) => starts_with_ci(name, s),
            Pattern::Suffix(s) => ends_with_ci(name, s),
            Pattern::Around(a, b) => {
                name.len() >= a.len() + b.len() && starts_with_ci(name, a) && ends_with_ci(name, b)
            }
            Pattern::Any => true,
        })
    }
}

fn starts_with_ci(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn ends_with_ci(name: &[u8], suffix: &[u8]) -> bool {
    name.len() >= suffix.len() && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// RFC 9110 token characters.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the
/// framing headers we always regenerate ourselves.
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
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
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
    fn lists() {
        let v: Vec<&[u8]> = list_items(b" keep-alive ,, Upgrade,x ").collect();
        assert_eq!(v, vec![&b"keep-alive"[..], b"Upgrade", b"x"]);
    }
}
