//! Where a validation error points, for an API client that sent JSON: the
//! config is checked as TOML the gateway assembles (the file's settings
//! plus every entity), so its errors name TOML key paths and lines. These
//! turn them into a JSON pointer into the submitted document and a message
//! without the assembled file's name and line numbers.

use serde_json::Value;

/// Finds where a field named `key` sits in `v` (first match, depth first).
fn find_key(v: &Value, key: &str, at: &str) -> Option<String> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                if k == key {
                    return Some(here);
                }
                if let Some(p) = find_key(child, key, &here) {
                    return Some(p);
                }
            }
            None
        }
        Value::Array(a) => a.iter().enumerate().find_map(|(i, c)| find_key(c, key, &format!("{at}/{i}"))),
        _ => None,
    }
}

/// Turns a config error about `kind.name` into a JSON pointer inside the
/// submitted document `doc` (whose root is the entity, or the whole
/// `{"services":…,"endpoints":…}` document when `whole`).
pub fn pointer_of(message: &str, doc: &Value, whole: bool) -> String {
    // "… services.echo.instances (line 3): …" → /instances (or /services/echo/instances).
    for table in ["services.", "endpoints.", "consumers."] {
        if let Some(i) = message.find(table) {
            let rest = &message[i..];
            let end = rest.find([' ', ':']).unwrap_or(rest.len());
            let mut segs: Vec<String> = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for c in rest[..end].chars() {
                match c {
                    '"' => quoted = !quoted,
                    '.' if !quoted => segs.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            segs.push(cur);
            let skip = if whole { 0 } else { 2 };
            let at: String =
                segs.iter().skip(skip).map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect();
            return element_of(doc, at, &rest[end..]);
        }
    }
    // "unknown field `x`": point at that field in the document.
    if let Some(i) = message.find("unknown field `") {
        let rest = &message[i + 15..];
        if let Some(end) = rest.find('`') {
            if let Some(p) = find_key(doc, &rest[..end], "") {
                return p;
            }
        }
    }
    String::new()
}

/// `"…instances: \"nope\" is not…"` about an array: the element the
/// message quotes (`/instances/1`), so a form can mark the one bad entry.
fn element_of(doc: &Value, at: String, message: &str) -> String {
    let quoted = message.split_once('"').and_then(|(_, r)| r.split_once('"')).map(|(q, _)| q);
    match (doc.pointer(&at), quoted) {
        (Some(Value::Array(items)), Some(q)) => match items.iter().position(|v| v.as_str() == Some(q)) {
            Some(i) => format!("{at}/{i}"),
            None => at,
        },
        _ => at,
    }
}

/// A validation message as an API client should read it: the candidate is
/// checked as TOML the gateway assembled (the file's settings plus every
/// entity), whose name and line numbers mean nothing to a client that sent
/// JSON, so both go; the key path (`services.shop.timeout`) stays.
pub fn for_client(message: &str) -> String {
    let start = ["services.", "endpoints.", "consumers.", "line "]
        .iter()
        .filter_map(|k| message.find(&format!(": {k}")).map(|i| i + 2))
        .min()
        .unwrap_or(0);
    let mut m = message[start..].to_string();
    // "… (line 31): …" and a leading "line 30: ".
    while let Some(i) = m.find(" (line ") {
        match m[i..].find(')') {
            Some(j) => m.replace_range(i..i + j + 1, ""),
            None => break,
        }
    }
    if let Some(rest) = m.strip_prefix("line ") {
        if let Some((n, tail)) = rest.split_once(": ") {
            if n.bytes().all(|b| b.is_ascii_digit()) {
                m = tail.to_string();
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        let doc: Value = serde_json::from_str(r#"{"instances":["x"],"routes":{"send":{"htp":[]}}}"#).unwrap();
        assert_eq!(pointer_of("f: services.echo.instances (line 3): bad", &doc, false), "/instances");
        assert_eq!(
            pointer_of("f: endpoints.chat.routes.\"send\".http (line 9): bad", &doc, false),
            "/routes/send/http"
        );
        assert_eq!(pointer_of("f: line 4: unknown field `htp`, expected", &doc, false), "/routes/send/htp");
        assert_eq!(pointer_of("f: services.a.timeout (line 1): x", &doc, true), "/services/a/timeout");
        // The quoted element of an array, when the message names one the document holds.
        let two: Value = serde_json::from_str(r#"{"instances":["127.0.0.1:80","nope"]}"#).unwrap();
        let msg = "f: services.x.instances (line 2): \"nope\" is not a resolvable host:port";
        assert_eq!(pointer_of(msg, &two, false), "/instances/1");
        assert_eq!(pointer_of("f: services.x.instances (line 2): \"gone\" is bad", &two, false), "/instances");
        assert_eq!(
            for_client("built-in default config: services.shop.timeout (line 31): duration \"soon\" is bad"),
            "services.shop.timeout: duration \"soon\" is bad"
        );
        assert_eq!(for_client("my: file.toml: line 30: unknown field `x`"), "unknown field `x`");
        assert_eq!(for_client("no prefix at all"), "no prefix at all");
    }
}
