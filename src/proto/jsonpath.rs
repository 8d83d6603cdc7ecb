//! JSON paths for route selection: the RFC 9535 subset of singular queries —
//! member names (`$.a.b`), indexes (`$.a[0]`) and quoted names
//! (`$['a b']`, `$["x"]`). Values are pulled with `sonic_rs::get`, which
//! walks the bytes to the value without building a document tree.

use sonic_rs::{LazyValue, PointerNode};
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub struct JsonPath {
    text: String,
    nodes: Vec<PointerNode>,
}

impl PartialEq for JsonPath {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| Err(format!("JSON path {text:?}: {why}"));
        let Some(mut rest) = text.strip_prefix('$') else {
            return bad("must start with '$'");
        };
        let mut nodes = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                let first_ok = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_' || !c.is_ascii());
                if !first_ok || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || !c.is_ascii()) {
                    return bad("a member name after '.' starts with a letter or '_' (quote others: $['a b'])");
                }
                nodes.push(PointerNode::Key(name.to_string().into()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                    let mut name = String::new();
                    let mut chars = r[1..].char_indices();
                    let mut close = None;
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some((_, e @ ('\\' | '\'' | '"' | '/'))) => name.push(e),
                                Some((_, 'n')) => name.push('\n'),
                                Some((_, 't')) => name.push('\t'),
                                _ => return bad("unsupported escape in a quoted name"),
                            },
                            c if c == q => {
                                close = Some(i + 1);
                                break;
                            }
                            c => name.push(c),
                        }
                    }
                    let Some(end) = close else { return bad("unterminated quoted name") };
                    let after = &r[end + 1..];
                    let Some(after) = after.strip_prefix(']') else { return bad("expected ']' after a quoted name") };
                    nodes.push(PointerNode::Key(name.into()));
                    rest = after;
                } else {
                    let end = r.find(']').ok_or_else(|| format!("JSON path {text:?}: missing ']'"))?;
                    let digits = &r[..end];
                    if digits.is_empty()
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                        || (digits.len() > 1 && digits.starts_with('0'))
                    {
                        return bad(
                            "an index is a non-negative integer (wildcards, slices and filters are not supported)",
                        );
                    }
                    let i: usize = digits.parse().map_err(|_| format!("JSON path {text:?}: index too large"))?;
                    nodes.push(PointerNode::Index(i));
                    rest = &r[end + 1..];
                }
            } else {
                return bad("expected '.name', '[index]' or ['name']");
            }
        }
        if nodes.is_empty() {
            return bad("names no value inside the document");
        }
        Ok(JsonPath { text: text.to_string(), nodes })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if the document has one there.
    pub fn get<'a>(&self, json: &'a [u8]) -> Option<LazyValue<'a>> {
        sonic_rs::get_from_slice(json, &self.nodes).ok()
    }

    /// The string at this path (decoded), if there is a string there.
    pub fn get_str(&self, json: &[u8]) -> Option<String> {
        let v = self.get(json)?;
        decode_string(v.as_raw_str()).map(Cow::into_owned)
    }
}

/// Decodes a raw JSON string token (`"..."`); `None` when it is not a string.
pub fn decode_string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// Whether `bytes` is one complete, valid JSON document (validated in full,
/// without building it).
pub fn is_valid_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc9535_singular_queries() {
        let doc = br#"{"action":"send","a":{"b":[10,{"c":"deep"}]},"a b":"sp","q\"x":1,"esc":"x\"y"}"#;
        assert_eq!(JsonPath::parse("$.action").unwrap().get_str(doc).as_deref(), Some("send"));
        assert_eq!(JsonPath::parse("$.a.b[0]").unwrap().get(doc).unwrap().as_raw_str(), "10");
        assert_eq!(JsonPath::parse("$.a.b[1].c").unwrap().get_str(doc).as_deref(), Some("deep"));
        assert_eq!(JsonPath::parse("$['a b']").unwrap().get_str(doc).as_deref(), Some("sp"));
        assert_eq!(JsonPath::parse("$[\"a b\"]").unwrap().get_str(doc).as_deref(), Some("sp"));
        assert_eq!(JsonPath::parse("$['q\"x']").unwrap().get(doc).unwrap().as_raw_str(), "1");
        assert_eq!(JsonPath::parse("$.esc").unwrap().get_str(doc).as_deref(), Some("x\"y"));
        assert!(JsonPath::parse("$.missing").unwrap().get(doc).is_none());
        assert!(JsonPath::parse("$.a.b[5]").unwrap().get(doc).is_none());
        assert!(JsonPath::parse("$.a.b[0]").unwrap().get_str(doc).is_none(), "a number is not a string");
    }

    #[test]
    fn rejects_unsupported() {
        for p in ["action", "$", "$.", "$.1a", "$[*]", "$.a[-1]", "$.a[1:2]", "$[?@.a]", "$['x'", "$.a b", "$[01]"] {
            assert!(JsonPath::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn validation() {
        assert!(is_valid_json(br#"{"a":[1,2,{"b":null}]}"#));
        assert!(is_valid_json(b" 42 "));
        for bad in [&b"{"[..], b"{\"a\":}", b"not json", b"{\"a\":1} x", b"", b"[1,]"] {
            assert!(!is_valid_json(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
