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

/// Turns a config error into a JSON pointer inside the submitted document
/// `doc`: the whole `{"services":…,"endpoints":…}` document when `entity`
/// is `None`, else the content of the entity (`("services", "shop")`).
pub fn pointer_of(message: &str, doc: &Value, entity: Option<(&str, &str)>) -> String {
    // "… services.echo.instances (line 3): …" → /instances (or /services/echo/instances).
    for table in ["services.", "endpoints.", "consumers."] {
        if let Some(i) = message.find(table) {
            let (segs, end) = key_path(&message[i..]);
            let at = match entity {
                None => walk(doc, &segs),
                Some((t, name)) => {
                    // Resolved in the whole document the entity sits in, so a
                    // name with dots (`a.b`) is told from the path after it.
                    let whole = serde_json::json!({ t: { name: doc } });
                    let at = walk(&whole, &segs);
                    let prefix = format!("/{}/{}", escape(t), escape(name));
                    match at.strip_prefix(&prefix) {
                        Some(rest) => rest.to_string(),
                        None => return String::new(),
                    }
                }
            };
            return element_of(doc, at, &message[i + end..]);
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

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A TOML key path at the start of `text` (`endpoints.c.routes."send it".http`,
/// `services.s.rate_limits[1].per`) as segments, and where it ends: at the
/// first space or colon outside quotes. `[N]` is a segment of its own.
fn key_path(text: &str) -> (Vec<String>, usize) {
    let mut segs = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if quoted => cur.push(c),
            ' ' | ':' => {
                end = i;
                break;
            }
            '.' => segs.push(std::mem::take(&mut cur)),
            '[' => {
                if !cur.is_empty() {
                    segs.push(std::mem::take(&mut cur));
                }
            }
            ']' => {}
            c => cur.push(c),
        }
    }
    segs.push(cur);
    segs.retain(|s| !s.is_empty());
    (segs, end)
}

/// The pointer `segs` name in `doc`. Keys may hold dots (`a.b`), which a
/// TOML path only shows when quoted: at each object the longest run of
/// segments that is one of its keys is taken; past what the document holds,
/// one segment is one step.
fn walk(doc: &Value, segs: &[String]) -> String {
    let mut at = String::new();
    let mut node = Some(doc);
    let mut i = 0;
    while i < segs.len() {
        let mut step = 1;
        if let Some(Value::Object(m)) = node {
            if let Some(n) = (1..=segs.len() - i).rev().find(|n| m.contains_key(&segs[i..i + n].join("."))) {
                step = n;
            }
        }
        let key = segs[i..i + step].join(".");
        node = match node {
            Some(Value::Object(m)) => m.get(&key),
            Some(Value::Array(a)) => key.parse::<usize>().ok().and_then(|k| a.get(k)),
            _ => None,
        };
        at.push('/');
        at.push_str(&escape(&key));
        i += step;
    }
    at
}

/// `"…instances: \"nope\" is not…"` about an array: the element the
/// message quotes (`/instances/1`), so a form can mark the one bad entry.
/// The quoted text is read with its escapes (`"a\"b"` is `a"b`).
fn element_of(doc: &Value, at: String, message: &str) -> String {
    let quoted = message.find('"').and_then(|start| {
        let rest = &message[start..];
        let mut escaped = false;
        let end = rest.char_indices().skip(1).find_map(|(i, c)| match c {
            _ if escaped => {
                escaped = false;
                None
            }
            '\\' => {
                escaped = true;
                None
            }
            '"' => Some(i),
            _ => None,
        })?;
        serde_json::from_str::<String>(&rest[..=end]).ok()
    });
    match (doc.pointer(&at), quoted) {
        (Some(Value::Array(items)), Some(q)) => match items.iter().position(|v| v.as_str() == Some(q.as_str())) {
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
        assert_eq!(
            pointer_of("f: services.echo.instances (line 3): bad", &doc, Some(("services", "echo"))),
            "/instances"
        );
        assert_eq!(
            pointer_of("f: endpoints.chat.routes.\"send\".http (line 9): bad", &doc, Some(("endpoints", "chat"))),
            "/routes/send/http"
        );
        assert_eq!(
            pointer_of("f: line 4: unknown field `htp`, expected", &doc, Some(("services", "echo"))),
            "/routes/send/htp"
        );
        assert_eq!(pointer_of("f: services.a.timeout (line 1): x", &doc, None), "/services/a/timeout");
        // The quoted element of an array, when the message names one the document holds.
        let two: Value = serde_json::from_str(r#"{"instances":["127.0.0.1:80","nope"]}"#).unwrap();
        let msg = "f: services.x.instances (line 2): \"nope\" is not a resolvable host:port";
        assert_eq!(pointer_of(msg, &two, Some(("services", "x"))), "/instances/1");
        assert_eq!(
            pointer_of("f: services.x.instances (line 2): \"gone\" is bad", &two, Some(("services", "x"))),
            "/instances"
        );
        // Indexes in brackets, dots in names and keys, spaces in quoted keys, escaped quotes.
        let rl: Value = serde_json::from_str(r#"{"rate_limits":[{"per":"1s"},{"per":"x"}]}"#).unwrap();
        let msg = "f: services.s.rate_limits[1].per (line 7): bad";
        assert_eq!(pointer_of(msg, &rl, Some(("services", "s"))), "/rate_limits/1/per");
        let msg = "f: services.a.b.instances (line 2): \"nope\" is not a resolvable host:port";
        assert_eq!(pointer_of(msg, &two, Some(("services", "a.b"))), "/instances/1");
        let whole = serde_json::json!({ "services": { "a.b": two.clone() } });
        assert_eq!(pointer_of(msg, &whole, None), "/services/a.b/instances/1");
        let ep: Value = serde_json::from_str(r#"{"routes":{"send it":{"http":["http://x/","ftp://y"]}}}"#).unwrap();
        let msg = "f: endpoints.c.routes.\"send it\".http (line 3): \"ftp://y\": integrations are http:// URLs";
        assert_eq!(pointer_of(msg, &ep, Some(("endpoints", "c"))), "/routes/send it/http/1");
        let q: Value = serde_json::from_str(r#"{"instances":["a\"b","a\\"]}"#).unwrap();
        let msg = "f: services.x.instances (line 2): \"a\\\"b\" is not a resolvable host:port";
        assert_eq!(pointer_of(msg, &q, Some(("services", "x"))), "/instances/0");
        assert_eq!(
            for_client("built-in default config: services.shop.timeout (line 31): duration \"soon\" is bad"),
            "services.shop.timeout: duration \"soon\" is bad"
        );
        assert_eq!(for_client("my: file.toml: line 30: unknown field `x`"), "unknown field `x`");
        assert_eq!(for_client("no prefix at all"), "no prefix at all");
    }
}
