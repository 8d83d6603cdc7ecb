//! The configuration API (admin listener): services and endpoints, their
//! versions, applying any version, diffs, and the whole dynamic
//! configuration as one document.
//!
//! | request | answer |
//! |---|---|
//! | `GET/PUT/DELETE /{services,endpoints}/{name}` | the active content / write a new version and apply it / record a deletion |
//! | `GET /{kind}/{name}/versions` | every version: number, time, author, comment, hash, active |
//! | `GET /{kind}/{name}/versions/{n}` | one version with its content |
//! | `POST /{kind}/{name}/versions/{n}/apply` | make version n active again |
//! | `GET /{kind}/{name}/diff?from=&to=` | line diff of two versions (pretty JSON) |
//! | `POST /config/validate` | check a whole document, store nothing |
//! | `GET /config/export`, `POST /config/import` | the whole dynamic configuration as one document |
//!
//! Invalid input: `422 {"error":"invalid","pointer":"/instances/0","message":...}`;
//! nothing is stored or applied.

use super::server::{AdminRequest, AdminResponse};
use super::AdminState;
use crate::control::{Applied, ApplyError};
use crate::store::{Change, Kind};
use crate::ws::conn::json_string;
use serde_json::Value;
use std::sync::Arc;

fn kind_of(segment: &str) -> Option<Kind> {
    match segment {
        "services" => Some(Kind::Service),
        "endpoints" => Some(Kind::Endpoint),
        _ => None,
    }
}

fn invalid(pointer: &str, message: &str) -> AdminResponse {
    AdminResponse::json(
        422,
        format!(r#"{{"error":"invalid","pointer":{},"message":{}}}"#, json_string(pointer), json_string(message)),
    )
}

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
fn pointer_of(message: &str, doc: &Value, whole: bool) -> String {
    // "… services.echo.instances (line 3): …" → /instances (or /services/echo/instances).
    for table in ["services.", "endpoints."] {
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
            return segs.iter().skip(skip).map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect();
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

/// Waits until every worker answers from the new snapshot; the time from
/// the start of the apply to the last worker's answer, in microseconds.
async fn reach_workers(state: &AdminState, a: &Applied, started: std::time::Instant) -> Option<u64> {
    let versions = super::push::ask_all(state, |reply| crate::ws::push::Command::Sync { reply }).await?;
    versions.iter().all(|v| *v >= a.snapshot_version).then(|| started.elapsed().as_micros() as u64)
}

async fn applied(state: &AdminState, a: Applied, started: std::time::Instant) -> AdminResponse {
    let reached = reach_workers(state, &a, started).await;
    let mut body = applied_json(&a);
    body.pop();
    body.push_str(&format!(
        r#","workers":{},"reached_all_workers_us":{}}}"#,
        state.inboxes.len(),
        reached.map_or("null".to_string(), |u| u.to_string())
    ));
    AdminResponse::json(200, body)
}

fn applied_json(a: &Applied) -> String {
    let changed: Vec<String> = a
        .changed
        .iter()
        .map(|(k, n, v)| format!(r#"{{"kind":"{}","name":{},"version":{v}}}"#, k.as_str(), json_string(n)))
        .collect();
    format!(
        r#"{{"applied":[{}],"snapshot_version":{},"apply_us":{}}}"#,
        changed.join(","),
        a.snapshot_version,
        a.apply_us
    )
}

fn apply_error(e: ApplyError, doc: &Value, whole: bool) -> AdminResponse {
    match e {
        ApplyError::Invalid(c) => invalid(&pointer_of(&c.0, doc, whole), &c.0),
        ApplyError::NotFound(m) => AdminResponse::error(404, "not_found", &m),
        ApplyError::Store(m) => AdminResponse::error(500, "store_failed", &m),
    }
}

fn who(req: &AdminRequest) -> (String, String) {
    let author = req.header("x-wasp-author").unwrap_or("api").chars().take(128).collect();
    let comment = req.header("x-wasp-comment").unwrap_or("").chars().take(1024).collect();
    (author, comment)
}

fn query_u64(q: &str, name: &str) -> Option<u64> {
    q.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')).and_then(|v| v.parse().ok()))
}

/// Parses a request body as a JSON object.
fn object(body: &[u8]) -> Result<Value, AdminResponse> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(invalid("", "the body must be a JSON object")),
        Err(e) => Err(invalid("", &format!("the body is not JSON: {e}"))),
    }
}

/// Answers configuration requests; `None` when the path is not one of them.
pub async fn handle(state: &Arc<AdminState>, req: &AdminRequest) -> Option<AdminResponse> {
    let control = state.control.as_ref()?;
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = req.method.as_str();
    let res = match (m, parts.as_slice()) {
        ("GET", ["config", "export"]) => export(control),
        ("POST", ["config", "validate"]) | ("POST", ["config", "import"]) => {
            let doc = match object(&req.body) {
                Ok(d) => d,
                Err(r) => return Some(r),
            };
            let changes = match document_changes(control, &doc, req) {
                Ok(c) => c,
                Err(r) => return Some(r),
            };
            if parts[1] == "validate" {
                match control.validate(&changes) {
                    Ok(()) => AdminResponse::json(200, r#"{"valid":true}"#),
                    Err(e) => apply_error(e, &doc, true),
                }
            } else {
                let started = std::time::Instant::now();
                match control.apply(changes) {
                    Ok(a) => applied(state, a, started).await,
                    Err(e) => apply_error(e, &doc, true),
                }
            }
        }
        (_, ["config", "export"]) => AdminResponse::method_not_allowed("GET"),
        (_, ["config", "validate" | "import"]) => AdminResponse::method_not_allowed("POST"),
        (_, [kind, name, ..]) if kind_of(kind).is_some() && parts.get(2) != Some(&"messages") => {
            let kind = kind_of(kind)?;
            entity(state, control, kind, name, &parts[2..], req).await
        }
        _ => return None,
    };
    Some(res)
}

async fn entity(
    state: &AdminState,
    control: &crate::control::Control,
    kind: Kind,
    name: &str,
    rest: &[&str],
    req: &AdminRequest,
) -> AdminResponse {
    let started = std::time::Instant::now();
    let m = req.method.as_str();
    let store_err = |e: crate::store::StoreError| AdminResponse::error(500, "store_failed", &e.0);
    match (m, rest) {
        ("GET", []) => {
            let store = control.store();
            let Ok(Some(n)) = store.active_version(kind, name) else {
                return AdminResponse::error(404, "not_found", &format!("no {} named {name:?}", kind.as_str()));
            };
            match store.get(kind, name, n) {
                Ok(Some(v)) if v.content.is_some() => AdminResponse::json(
                    200,
                    format!(
                        r#"{{"name":{},"version":{n},"content":{}}}"#,
                        json_string(name),
                        v.content.unwrap_or_default()
                    ),
                ),
                Ok(_) => AdminResponse::error(404, "not_found", &format!("{} {name:?} was deleted", kind.as_str())),
                Err(e) => store_err(e),
            }
        }
        ("PUT", []) => {
            let doc = match object(&req.body) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let (author, comment) = who(req);
            let change = Change { kind, name: name.to_string(), content: Some(doc.to_string()), author, comment };
            match control.apply(vec![change]) {
                Ok(a) => applied(state, a, started).await,
                Err(e) => apply_error(e, &doc, false),
            }
        }
        ("DELETE", []) => {
            match control.store().active_version(kind, name) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return AdminResponse::error(404, "not_found", &format!("no {} named {name:?}", kind.as_str()))
                }
                Err(e) => return store_err(e),
            }
            let (author, comment) = who(req);
            match control.apply(vec![Change { kind, name: name.to_string(), content: None, author, comment }]) {
                Ok(a) => applied(state, a, started).await,
                Err(e) => apply_error(e, &Value::Null, false),
            }
        }
        ("GET", ["versions"]) => {
            let store = control.store();
            let active = store.active_version(kind, name).ok().flatten();
            match store.versions(kind, name) {
                Ok(v) if v.is_empty() => {
                    AdminResponse::error(404, "not_found", &format!("no {} named {name:?}", kind.as_str()))
                }
                Ok(v) => {
                    let items: Vec<String> = v
                        .iter()
                        .map(|m| {
                            format!(
                                r#"{{"version":{},"created_ms":{},"author":{},"comment":{},"hash":"{}","deleted":{},"active":{}}}"#,
                                m.version,
                                m.created_ms,
                                json_string(&m.author),
                                json_string(&m.comment),
                                m.hash,
                                m.deleted,
                                Some(m.version) == active
                            )
                        })
                        .collect();
                    AdminResponse::json(
                        200,
                        format!(r#"{{"name":{},"versions":[{}]}}"#, json_string(name), items.join(",")),
                    )
                }
                Err(e) => store_err(e),
            }
        }
        ("GET", ["versions", n]) => match n.parse::<u64>().ok().map(|n| control.store().get(kind, name, n)) {
            Some(Ok(Some(v))) => AdminResponse::json(
                200,
                format!(
                    r#"{{"name":{},"version":{},"created_ms":{},"author":{},"comment":{},"hash":"{}","content":{}}}"#,
                    json_string(name),
                    v.meta.version,
                    v.meta.created_ms,
                    json_string(&v.meta.author),
                    json_string(&v.meta.comment),
                    v.meta.hash,
                    v.content.as_deref().unwrap_or("null")
                ),
            ),
            Some(Err(e)) => store_err(e),
            _ => AdminResponse::error(404, "not_found", "no such version"),
        },
        ("POST", ["versions", n, "apply"]) => {
            let Ok(n) = n.parse::<u64>() else { return AdminResponse::error(404, "not_found", "no such version") };
            match control.activate(kind, name, n) {
                Ok(a) => applied(state, a, started).await,
                Err(e) => apply_error(e, &Value::Null, false),
            }
        }
        ("GET", ["diff"]) => {
            let (Some(from), Some(to)) = (query_u64(&req.query, "from"), query_u64(&req.query, "to")) else {
                return invalid("", "give ?from=N&to=M");
            };
            let store = control.store();
            let pretty = |n: u64| -> Option<String> {
                let v = store.get(kind, name, n).ok()??;
                Some(match v.content {
                    Some(c) => {
                        serde_json::from_str::<Value>(&c).and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or(c)
                    }
                    None => String::new(),
                })
            };
            match (pretty(from), pretty(to)) {
                (Some(a), Some(b)) => {
                    let d = line_diff(&a, &b);
                    AdminResponse::json(
                        200,
                        format!(
                            r#"{{"name":{},"from":{from},"to":{to},"diff":{}}}"#,
                            json_string(name),
                            json_string(&d)
                        ),
                    )
                }
                _ => AdminResponse::error(404, "not_found", "no such version"),
            }
        }
        (_, []) => AdminResponse::method_not_allowed("GET, PUT, DELETE"),
        (_, ["versions"]) | (_, ["versions", _]) | (_, ["diff"]) => AdminResponse::method_not_allowed("GET"),
        (_, ["versions", _, "apply"]) => AdminResponse::method_not_allowed("POST"),
        _ => AdminResponse::error(404, "not_found", "no such admin endpoint"),
    }
}

fn export(control: &crate::control::Control) -> AdminResponse {
    let active = match control.store().active() {
        Ok(a) => a,
        Err(e) => return AdminResponse::error(500, "store_failed", &e.0),
    };
    let section = |kind: Kind| -> String {
        let items: Vec<String> = active
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, n, v)| format!("{}:{}", json_string(n), v.content.as_deref().unwrap_or("null")))
            .collect();
        format!("{{{}}}", items.join(","))
    };
    AdminResponse::json(
        200,
        format!(r#"{{"services":{},"endpoints":{}}}"#, section(Kind::Service), section(Kind::Endpoint)),
    )
}

/// Changes that turn the active configuration into `doc`.
fn document_changes(
    control: &crate::control::Control,
    doc: &Value,
    req: &AdminRequest,
) -> Result<Vec<Change>, AdminResponse> {
    let (author, comment) = who(req);
    let Value::Object(top) = doc else { return Err(invalid("", "the body must be a JSON object")) };
    if let Some(k) = top.keys().find(|k| *k != "services" && *k != "endpoints") {
        return Err(invalid(&format!("/{k}"), "unknown field: the document has \"services\" and \"endpoints\""));
    }
    let active = control.store().active().map_err(|e| AdminResponse::error(500, "store_failed", &e.0))?;
    let mut changes = Vec::new();
    for (section, kind) in [("services", Kind::Service), ("endpoints", Kind::Endpoint)] {
        let entries = match top.get(section) {
            None => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(invalid(&format!("/{section}"), "must be an object of name → definition")),
        };
        for (name, def) in &entries {
            if !def.is_object() {
                return Err(invalid(&format!("/{section}/{name}"), "must be an object"));
            }
            let content = def.to_string();
            let same = active
                .iter()
                .any(|(k, n, v)| *k == kind && n == name && v.content.as_deref() == Some(content.as_str()));
            if !same {
                changes.push(Change {
                    kind,
                    name: name.clone(),
                    content: Some(content),
                    author: author.clone(),
                    comment: comment.clone(),
                });
            }
        }
        for (k, n, _) in &active {
            if *k == kind && !entries.contains_key(n) {
                changes.push(Change {
                    kind,
                    name: n.clone(),
                    content: None,
                    author: author.clone(),
                    comment: comment.clone(),
                });
            }
        }
    }
    Ok(changes)
}

/// A plain line diff: ` ` kept, `-` removed, `+` added (LCS; documents are small).
pub fn line_diff(a: &str, b: &str) -> String {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let (n, m) = (x.len(), y.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if x[i] == y[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            out.push_str(&format!("  {}\n", x[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", y[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", x[i]));
            i += 1;
        }
    }
    out
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
    }

    #[test]
    fn diff() {
        assert_eq!(line_diff("a\nb\nc", "a\nc\nd"), "  a\n- b\n  c\n+ d\n");
    }
}
