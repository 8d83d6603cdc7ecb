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
//! | `GET /{kind}/{name}/diff?from=&to=` | line diff of two versions (pretty JSON); `413` above the caps in `control::diff` |
//! | `POST /config/validate` | check a whole document, store nothing |
//! | `GET /config/export`, `POST /config/import` | the whole dynamic configuration as one document |
//!
//! `PUT`/`DELETE` take `If-Match: "N"` / `If-None-Match: *` (`precondition.rs`):
//! a save from a stale read gets `412` instead of reverting a newer version.
//! Invalid input: `422 {"error":"invalid","pointer":"/instances/0","message":...}`;
//! nothing is stored or applied.
//!
//! Every answer is worked out on the control thread (`control::runtime`):
//! this module's handler, on the admin listener's thread, only hands the
//! request over and waits, so `/healthz` and `/metrics` never queue behind a
//! store commit, a DNS lookup or a diff.

use super::pointer::{for_client, pointer_of};
use super::precondition::{etag, Precondition};
use super::server::{AdminRequest, AdminResponse};
use super::AdminState;
use crate::control::diff::line_diff;
use crate::control::{Applied, ApplyError, Control};
use crate::pipeline::ws::conn::json_string;
use crate::store::{Change, ConfigStore, Kind};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kind_of(segment: &str) -> Option<Kind> {
    match segment {
        "services" => Some(Kind::Service),
        "endpoints" => Some(Kind::Endpoint),
        "consumers" => Some(Kind::Consumer),
        _ => None,
    }
}

fn invalid(pointer: &str, message: &str) -> AdminResponse {
    AdminResponse::json(
        422,
        format!(r#"{{"error":"invalid","pointer":{},"message":{}}}"#, json_string(pointer), json_string(message)),
    )
}

/// How long an apply waits for every live worker's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting apply looks again at which workers are alive.
const ACK_RECHECK: Duration = Duration::from_millis(50);

/// Waits until every live worker has acknowledged `version` from its own
/// loop (`worker::SnapshotAck`): the time from the start of the apply to the
/// last acknowledgement in microseconds, or the workers still behind when
/// [`ACK_WAIT`] ran out. A dead worker is not waited for; its replacement
/// starts on the newest snapshot.
async fn reach_workers(state: &AdminState, version: u64, started: Instant) -> Result<u64, Vec<usize>> {
    let deadline = Instant::now() + ACK_WAIT;
    let behind = |dead: &[usize]| -> Vec<usize> {
        (0..state.inboxes.len())
            .filter(|i| !dead.contains(i) && state.registry.worker(*i).snapshot_ack.version() < version)
            .collect()
    };
    loop {
        let late = behind(&state.workers.dead());
        let Some(&first) = late.first() else { return Ok(started.elapsed().as_micros() as u64) };
        let now = Instant::now();
        if now >= deadline {
            return Err(late);
        }
        let stats = state.registry.worker(first);
        let acked = stats.snapshot_ack.listen_acked();
        if stats.snapshot_ack.version() >= version {
            continue;
        }
        let _ = monoio::time::timeout((deadline - now).min(ACK_RECHECK), acked).await;
    }
}

async fn applied(state: &AdminState, a: Applied, started: Instant) -> AdminResponse {
    let reached = reach_workers(state, a.snapshot_version, started).await;
    let mut body = applied_json(&a);
    body.pop();
    match reached {
        Ok(us) => body.push_str(&format!(r#","workers":{},"reached_all_workers_us":{us}}}"#, state.inboxes.len())),
        Err(late) => {
            let late: Vec<String> = late.iter().map(|i| i.to_string()).collect();
            body.push_str(&format!(
                r#","workers":{},"reached_all_workers_us":null,"workers_behind":[{}]}}"#,
                state.inboxes.len(),
                late.join(",")
            ))
        }
    }
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

/// Where an apply's document sits: the whole document (`None`), or one
/// entity's content (its TOML table and name), for the error's pointer.
type Scope<'a> = Option<(&'static str, &'a str)>;

fn scope(kind: Kind, name: &str) -> Scope<'_> {
    Some((
        match kind {
            Kind::Service => "services",
            Kind::Endpoint => "endpoints",
            Kind::Consumer => "consumers",
        },
        name,
    ))
}

fn apply_error(e: ApplyError, doc: &Value, whole: Scope) -> AdminResponse {
    match e {
        ApplyError::Invalid(c) => invalid(&pointer_of(&c.0, doc, whole), &for_client(&c.0)),
        ApplyError::NotFound(m) => AdminResponse::error(404, "not_found", &m),
        ApplyError::Store(m) => AdminResponse::error(500, "store_failed", &m),
    }
}

/// The parts of a request the control thread answers from (owned: the job
/// crosses threads).
struct Call {
    method: String,
    parts: Vec<String>,
    query: String,
    body: Vec<u8>,
    author: String,
    comment: String,
    precondition: Precondition,
}

impl Call {
    fn new(req: &AdminRequest, parts: &[&str], precondition: Precondition) -> Call {
        Call {
            method: req.method.clone(),
            parts: parts.iter().map(|p| p.to_string()).collect(),
            query: req.query.clone(),
            body: req.body.clone(),
            author: req.header("x-wasp-author").unwrap_or("api").chars().take(128).collect(),
            comment: req.header("x-wasp-comment").unwrap_or("").chars().take(1024).collect(),
            precondition,
        }
    }
}

/// What the control thread hands back: a finished answer, or an apply whose
/// workers the admin thread still waits for (that wait needs no control thread).
enum Outcome {
    Done(AdminResponse),
    Applied(Applied),
    /// `GET /services/{name}/instances`, before the workers' figures are added.
    Instances(Value),
}

impl From<AdminResponse> for Outcome {
    fn from(r: AdminResponse) -> Self {
        Outcome::Done(r)
    }
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

/// Whether `parts` is one of this module's paths (decided on the admin
/// thread: nothing else goes to the control thread).
fn is_config_path(parts: &[&str]) -> bool {
    match parts {
        ["config", "export" | "validate" | "import"] => true,
        [kind, _, rest @ ..] => kind_of(kind).is_some() && rest.first() != Some(&"messages"),
        _ => false,
    }
}

/// Answers configuration requests; `None` when the path is not one of them.
/// The answer is worked out on the control thread (store, DNS, diffs); this
/// thread only waits for it, and for the workers' acknowledgements.
pub async fn handle(state: &Arc<AdminState>, req: &AdminRequest) -> Option<AdminResponse> {
    let control = state.control.as_ref()?;
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    if !is_config_path(&parts) {
        return None;
    }
    let started = Instant::now();
    // Entity writes take If-Match / If-None-Match; other writes refuse them.
    let takes = match (req.method.as_str(), parts.as_slice()) {
        ("PUT" | "DELETE", [kind, _]) => kind_of(kind).is_some(),
        ("POST", [kind, _, "versions", _, "apply"]) => kind_of(kind).is_some(),
        _ => false,
    };
    let precondition = match Precondition::from_request(req, takes) {
        Ok(p) => p,
        Err(refused) => return Some(refused),
    };
    let call = Call::new(req, &parts, precondition);
    Some(match control.run(move |c| answer(c, &call)).await {
        Ok(Outcome::Done(res)) => res,
        Ok(Outcome::Applied(a)) => {
            // A write to one entity answers its new version's tag, for the next If-Match.
            let tag = match (req.method.as_str(), parts.len(), a.changed.as_slice()) {
                ("PUT", 2, [(_, _, v)]) => Some(etag(*v)),
                _ => None,
            };
            let mut res = applied(state, a, started).await;
            res.headers.extend(tag.map(|t| ("etag", t)));
            res
        }
        Ok(Outcome::Instances(body)) => with_worker_figures(state, body).await,
        Err(gone) => AdminResponse::error(503, "control_unavailable", &gone.to_string()),
    })
}

/// Runs on the control thread.
fn answer(control: &Control, call: &Call) -> Outcome {
    let parts: Vec<&str> = call.parts.iter().map(String::as_str).collect();
    match (call.method.as_str(), parts.as_slice()) {
        ("GET", ["config", "export"]) => export(control).into(),
        ("POST", ["config", op @ ("validate" | "import")]) => {
            let doc = match object(&call.body) {
                Ok(d) => d,
                Err(r) => return r.into(),
            };
            if *op == "import" {
                // Worked out and applied under one lock: the result is this document.
                return match control.apply_planned(|store| document_changes(store, &doc, call)) {
                    Ok(applied) => applied_or(applied, &doc, None),
                    Err(r) => r.into(),
                };
            }
            let checked = control
                .with_store(|store| document_changes(store, &doc, call))
                .map(|changes| control.validate(&changes));
            match checked {
                Ok(Ok(())) => AdminResponse::json(200, r#"{"valid":true}"#).into(),
                Ok(Err(e)) => apply_error(e, &doc, None).into(),
                Err(r) => r.into(),
            }
        }
        (_, ["config", "export"]) => AdminResponse::method_not_allowed("GET").into(),
        (_, ["config", "validate" | "import"]) => AdminResponse::method_not_allowed("POST").into(),
        (_, [kind, name, rest @ ..]) => match kind_of(kind) {
            Some(kind) => entity(control, kind, name, rest, call),
            None => AdminResponse::error(404, "not_found", "no such admin endpoint").into(),
        },
        _ => AdminResponse::error(404, "not_found", "no such admin endpoint").into(),
    }
}

fn applied_or(r: Result<Applied, ApplyError>, doc: &Value, whole: Scope) -> Outcome {
    match r {
        Ok(a) => Outcome::Applied(a),
        Err(e) => apply_error(e, doc, whole).into(),
    }
}

fn not_found(kind: Kind, name: &str) -> AdminResponse {
    AdminResponse::error(404, "not_found", &format!("no {} named {name:?}", kind.as_str()))
}

fn store_err(e: crate::store::StoreError) -> AdminResponse {
    AdminResponse::error(500, "store_failed", &e.0)
}

fn entity(control: &Control, kind: Kind, name: &str, rest: &[&str], call: &Call) -> Outcome {
    let change = |content: Option<String>| Change {
        kind,
        name: name.to_string(),
        content,
        author: call.author.clone(),
        comment: call.comment.clone(),
    };
    match (call.method.as_str(), rest) {
        ("GET", ["instances"]) if kind == Kind::Service => return instances(control, name),
        (_, ["keys", ..]) if kind == Kind::Consumer => return super::keys::handle(control, name, &rest[1..], &call.method).into(),
        ("GET", []) => control.with_store(|store| {
            let Ok(Some(n)) = store.active_version(kind, name) else {
                return not_found(kind, name);
            };
            match store.get(kind, name, n) {
                Ok(Some(v)) if v.content.is_some() => {
                    let mut r = AdminResponse::json(
                        200,
                        format!(
                            r#"{{"name":{},"version":{n},"content":{}}}"#,
                            json_string(name),
                            v.content.unwrap_or_default()
                        ),
                    );
                    r.headers.push(("etag", etag(n)));
                    r
                }
                Ok(_) => AdminResponse::error(404, "not_found", &format!("{} {name:?} was deleted", kind.as_str())),
                Err(e) => store_err(e),
            }
        }),
        ("PUT", []) => {
            let doc = match object(&call.body) {
                Ok(d) => d,
                Err(r) => return r.into(),
            };
            // Checked and applied under one lock: no save lands in between.
            let planned = control.apply_planned(|store| {
                call.precondition.check(store, kind, name).map(|()| vec![change(Some(doc.to_string()))])
            });
            return match planned {
                Ok(applied) => applied_or(applied, &doc, scope(kind, name)),
                Err(refused) => refused.into(),
            };
        }
        ("DELETE", []) => {
            let planned = control.apply_planned(|store| {
                match store.active_version(kind, name) {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(not_found(kind, name)),
                    Err(e) => return Err(store_err(e)),
                }
                call.precondition.check(store, kind, name).map(|()| vec![change(None)])
            });
            return match planned {
                Ok(applied) => applied_or(applied, &Value::Null, scope(kind, name)),
                Err(refused) => refused.into(),
            };
        }
        ("GET", ["versions"]) => control.with_store(|store| {
            let active = store.active_version(kind, name).ok().flatten();
            match store.versions(kind, name) {
                Ok(v) if v.is_empty() => not_found(kind, name),
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
        }),
        ("GET", ["versions", n]) => match n.parse::<u64>().ok().map(|n| control.with_store(|s| s.get(kind, name, n))) {
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
            let Ok(n) = n.parse::<u64>() else {
                return AdminResponse::error(404, "not_found", "no such version").into();
            };
            // Checked under the apply lock, like a save: a rollback chosen
            // while reading version N is not applied over a newer one.
            return match control.activate_checked(kind, name, n, |store| call.precondition.check(store, kind, name)) {
                Ok(applied) => applied_or(applied, &Value::Null, scope(kind, name)),
                Err(refused) => refused.into(),
            };
        }
        ("GET", ["diff"]) => {
            let (Some(from), Some(to)) = (query_u64(&call.query, "from"), query_u64(&call.query, "to")) else {
                return invalid("", "give ?from=N&to=M").into();
            };
            diff(control, kind, name, from, to)
        }
        (_, []) => AdminResponse::method_not_allowed("GET, PUT, DELETE"),
        (_, ["versions"]) | (_, ["versions", _]) | (_, ["diff"]) => AdminResponse::method_not_allowed("GET"),
        (_, ["versions", _, "apply"]) => AdminResponse::method_not_allowed("POST"),
        _ => AdminResponse::error(404, "not_found", "no such admin endpoint"),
    }
    .into()
}

/// `GET /{kind}/{name}/diff?from=&to=`: pretty JSON of both versions, line
/// diff; `413` when either side is over the diff's caps (`control::diff`).
/// `GET /services/{name}/instances`: what the service routes to now, where
/// it came from, and when the source last answered.
fn instances(control: &Control, name: &str) -> Outcome {
    let snap = control.snapshot().load_full();
    let Some(svc) = snap.router.services.get(name) else {
        return not_found(Kind::Service, name).into();
    };
    let ms = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    // Outlier state: ejected (and for how much longer), failures in a row.
    let health = |a: &std::net::SocketAddr, seen: Option<u64>| {
        let h = svc.health.get(a);
        let left = svc.health.ejected_for(a).map(|d| d.as_millis() as u64);
        let unhealthy = h.as_ref().is_some_and(|h| h.unhealthy.load(std::sync::atomic::Ordering::Relaxed));
        let mut v = serde_json::json!({
            "address": a.to_string(),
            "state": if unhealthy { "unhealthy" } else if left.is_some() { "ejected" } else { "serving" },
            "ejected_for_ms": left,
            "failures": h.as_ref().map_or(0, |h| h.failures()),
            "ejections": h.as_ref().map_or(0, |h| h.ejected_total.load(std::sync::atomic::Ordering::Relaxed)),
        });
        if let Some(s) = seen {
            v["last_seen_ms"] = s.into();
        }
        v
    };
    let body = match &svc.dynamic {
        None => serde_json::json!({
            "service": name,
            "source": "static",
            "instances": svc.config.instances.iter().map(|a| health(a, None)).collect::<Vec<_>>(),
        }),
        Some(live) => {
            let state = live.state();
            let seen = state.last_seen.map(ms);
            serde_json::json!({
                "service": name,
                "source": state.source,
                "last_seen_ms": seen,
                "stale": state.error.is_some(),
                "error": state.error,
                "refreshes": live.refreshes.load(std::sync::atomic::Ordering::Relaxed),
                "errors": live.errors.load(std::sync::atomic::Ordering::Relaxed),
                "instances": live.addrs().iter().map(|a| health(a, seen)).collect::<Vec<_>>(),
            })
        }
    };
    let mut body = body;
    // Timed only for `p2c` services; another service sharing an address
    // must not show their figure.
    body["latency_measured"] = (svc.config.balance == crate::config::resilience::Balance::P2c).into();
    Outcome::Instances(body)
}

/// Adds what only the workers know to each instance: requests in flight
/// (summed over workers) and the EWMA time to the answer's head (averaged
/// over the workers that measured it; `p2c` services only). Asked of each
/// worker through its inbox: nothing on the request path pays for it.
async fn with_worker_figures(state: &AdminState, mut body: Value) -> AdminResponse {
    let addrs: Vec<std::net::SocketAddr> = body["instances"]
        .as_array()
        .map(|l| l.iter().filter_map(|i| i["address"].as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let timed =
        body.as_object_mut().and_then(|o| o.remove("latency_measured")).and_then(|v| v.as_bool()).unwrap_or(false);
    let per_worker = super::push::ask_all(state, |reply| crate::pipeline::ws::push::Command::Upstream {
        addrs: addrs.clone(),
        reply,
    })
    .await;
    if let (Some(per_worker), Some(list)) = (per_worker, body["instances"].as_array_mut()) {
        for (i, inst) in list.iter_mut().enumerate() {
            let in_flight: usize = per_worker.iter().filter_map(|w| w.get(i)).map(|f| f.0).sum();
            let measured: Vec<f64> =
                per_worker.iter().filter_map(|w| w.get(i)).map(|f| f.1).filter(|l| *l > 0.0).collect();
            inst["in_flight"] = in_flight.into();
            inst["latency_ms"] = if !timed || measured.is_empty() {
                Value::Null
            } else {
                let ms = measured.iter().sum::<f64>() / measured.len() as f64 / 1000.0;
                ((ms * 100.0).round() / 100.0).into()
            };
        }
    }
    AdminResponse::json(200, body.to_string())
}

fn diff(control: &Control, kind: Kind, name: &str, from: u64, to: u64) -> AdminResponse {
    let pretty = |n: u64| -> Result<Option<String>, crate::store::StoreError> {
        let Some(v) = control.with_store(|s| s.get(kind, name, n))? else { return Ok(None) };
        Ok(Some(match v.content {
            Some(c) => serde_json::from_str::<Value>(&c).and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or(c),
            None => String::new(),
        }))
    };
    let (a, b) = match (pretty(from), pretty(to)) {
        (Ok(Some(a)), Ok(Some(b))) => (a, b),
        (Err(e), _) | (_, Err(e)) => return store_err(e),
        _ => return AdminResponse::error(404, "not_found", "no such version"),
    };
    match line_diff(&a, &b) {
        Ok(d) => AdminResponse::json(
            200,
            format!(r#"{{"name":{},"from":{from},"to":{to},"diff":{}}}"#, json_string(name), json_string(&d)),
        ),
        Err(too_large) => AdminResponse::error(413, "diff_too_large", &too_large.to_string()),
    }
}

fn export(control: &Control) -> AdminResponse {
    let active = match control.with_store(|s| s.active()) {
        Ok(a) => a,
        Err(e) => return store_err(e),
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
        format!(
            r#"{{"services":{},"endpoints":{},"consumers":{}}}"#,
            section(Kind::Service),
            section(Kind::Endpoint),
            section(Kind::Consumer)
        ),
    )
}

/// Changes that turn the active configuration into `doc`.
fn document_changes(store: &dyn ConfigStore, doc: &Value, call: &Call) -> Result<Vec<Change>, AdminResponse> {
    let (author, comment) = (&call.author, &call.comment);
    let Value::Object(top) = doc else { return Err(invalid("", "the body must be a JSON object")) };
    if let Some(k) = top.keys().find(|k| !["services", "endpoints", "consumers"].contains(&k.as_str())) {
        return Err(invalid(
            &format!("/{k}"),
            "unknown field: the document has \"services\", \"endpoints\" and \"consumers\"",
        ));
    }
    let active = store.active().map_err(store_err)?;

    let mut changes = Vec::new();
    for (section, kind) in [("services", Kind::Service), ("endpoints", Kind::Endpoint), ("consumers", Kind::Consumer)] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_paths() {
        assert!(is_config_path(&["services", "a"]));
        assert!(is_config_path(&["endpoints", "a", "diff"]));
        assert!(is_config_path(&["config", "import"]));
        assert!(!is_config_path(&["endpoints", "a", "messages"]));
        assert!(!is_config_path(&["healthz"]));
        assert!(!is_config_path(&["services"]));
    }
}
