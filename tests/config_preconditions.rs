//! Optimistic concurrency on the configuration API (`ETag`, `If-Match`,
//! `If-None-Match`), over real sockets: a save from a stale editor is
//! refused with 412 instead of silently reverting a newer version.

mod common;
use common::*;
use serde_json::Value;
use std::sync::{Arc, Barrier};

/// Sends one admin request with extra header lines: (status, ETag, JSON body).
fn send(gw: &Gateway, method: &str, path: &str, extra: &str, body: &str) -> (u16, Option<String>, Value) {
    let r = raw(
        gw.admin,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, r.header("etag"), v)
}

fn service(addr: std::net::SocketAddr, timeout: &str) -> String {
    format!(r#"{{"instances":["{addr}"],"timeout":"{timeout}"}}"#)
}

#[test]
fn a_save_from_a_stale_read_is_refused_and_changes_nothing() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let gw = Gateway::start(&config_with(&[], ""));
    assert_eq!(send(&gw, "PUT", "/services/shop", "", &service(a.addr, "5s")).0, 200);

    // Both editors read version 1 and its tag.
    let (st, tag, v) = send(&gw, "GET", "/services/shop", "", "");
    assert_eq!((st, v["version"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(tag.as_deref(), Some("\"1\""));

    // B saves first, conditionally: applied, and the answer carries the new tag.
    let (st, tag_b, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"1\"\r\n", &service(b.addr, "5s"));
    assert_eq!(st, 200, "{v}");
    assert_eq!(tag_b.as_deref(), Some("\"2\""), "{v}");
    assert_eq!(http_get(gw.public, "/shop/").text(), "B");

    // A saves from its stale read: 412 naming the active version, nothing stored.
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"1\"\r\n", &service(a.addr, "9s"));
    assert_eq!(st, 412, "{v}");
    assert_eq!(v["error"], "version_conflict");
    assert_eq!(v["version"], 2, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("version 2")), "{v}");
    assert_eq!(tag.as_deref(), Some("\"2\""));
    let (_, _, versions) = send(&gw, "GET", "/services/shop/versions", "", "");
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2), "nothing stored: {versions}");
    assert_eq!(http_get(gw.public, "/shop/").text(), "B", "nothing applied");

    // A delete from a stale read is refused the same way.
    let (st, _, v) = send(&gw, "DELETE", "/services/shop", "If-Match: \"1\"\r\n", "");
    assert_eq!((st, v["version"].as_u64()), (412, Some(2)), "{v}");
    assert_eq!(http_get(gw.public, "/shop/").text(), "B");

    // Re-activating an older version moves the tag too: a read of version 2 is stale then.
    assert_eq!(send(&gw, "POST", "/services/shop/versions/1/apply", "", "").0, 200);
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"2\"\r\n", &service(b.addr, "1s"));
    assert_eq!((st, v["version"].as_u64()), (412, Some(1)), "{v}");
    assert_eq!(http_get(gw.public, "/shop/").text(), "A");

    // A list of tags matches any of them; the current one succeeds.
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"7\", \"1\"\r\n", &service(b.addr, "1s"));
    assert_eq!(st, 200, "{v}");
    // Without a precondition the last write wins, as before (CLI, scripts).
    assert_eq!(send(&gw, "PUT", "/services/shop", "", &service(a.addr, "1s")).0, 200);
}

#[test]
fn create_only_and_deleted_entities() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = Gateway::start(&config_with(&[], ""));
    let create = "If-None-Match: *\r\n";
    let (st, tag, v) = send(&gw, "PUT", "/services/fresh", create, &service(a.addr, "5s"));
    assert_eq!((st, tag.as_deref()), (200, Some("\"1\"")), "{v}");
    // A second "New" with the same name does not replace the live one.
    let (st, _, v) = send(&gw, "PUT", "/services/fresh", create, &service(a.addr, "9s"));
    assert_eq!(st, 412, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("already exists")), "{v}");
    let (_, _, now) = send(&gw, "GET", "/services/fresh", "", "");
    assert_eq!(now["content"]["timeout"], "5s");

    // If-Match: * needs the entity to exist; a deleted one does not.
    assert_eq!(send(&gw, "PUT", "/services/ghost", "If-Match: *\r\n", &service(a.addr, "5s")).0, 412);
    assert_eq!(send(&gw, "GET", "/services/ghost", "", "").0, 404, "nothing created");
    assert_eq!(send(&gw, "DELETE", "/services/fresh", "If-Match: \"1\"\r\n", "").0, 200);
    let (st, tag, v) = send(&gw, "PUT", "/services/fresh", "If-Match: \"1\"\r\n", &service(a.addr, "5s"));
    assert_eq!((st, tag), (412, None), "an editor of the deleted service cannot bring it back: {v}");
    assert!(v.get("version").is_none(), "{v}");
    // Creating it again after the deletion is allowed.
    let (st, tag, v) = send(&gw, "PUT", "/services/fresh", create, &service(a.addr, "5s"));
    assert_eq!((st, tag.as_deref()), (200, Some("\"3\"")), "{v}");

    // Endpoints and consumers take the same headers.
    let ep = &format!(r#"{{"path":"/ws/chat","routes":{{"echo":{{"http":["http://{}/e"],"reply":true}}}}}}"#, a.addr);
    let (st, tag, v) = send(&gw, "PUT", "/endpoints/chat", create, ep);
    assert_eq!((st, tag.as_deref()), (200, Some("\"1\"")), "{v}");
    assert_eq!(send(&gw, "PUT", "/endpoints/chat", create, ep).0, 412);
    assert_eq!(send(&gw, "PUT", "/consumers/alice", create, "{}").0, 200);
    assert_eq!(send(&gw, "PUT", "/consumers/alice", "If-Match: \"9\"\r\n", "{}").0, 412);
}

/// Tags this API never gives are refused with 400 and a sentence, not
/// answered with a 412 the client cannot understand.
#[test]
fn malformed_tags_are_400() {
    let gw = Gateway::start(&config_with(&[], ""));
    assert_eq!(send(&gw, "PUT", "/consumers/alice", "", "{}").0, 200);
    for bad in ["1", "W/\"1\"", "\"one\"", "\"\"", ","] {
        let (st, _, v) = send(&gw, "PUT", "/consumers/alice", &format!("If-Match: {bad}\r\n"), "{}");
        assert_eq!((st, v["error"].as_str()), (400, Some("invalid_precondition")), "{bad:?}: {v}");
    }
    let (_, _, v) = send(&gw, "GET", "/consumers/alice/versions", "", "");
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(1), "nothing stored: {v}");
}

/// Eight editors that all read version N save at once: exactly one wins
/// each round (the check and the write are one step under the apply lock).
#[test]
fn concurrent_conditional_saves_have_one_winner() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = Arc::new(Gateway::start("[server]\nworkers = 2\n"));
    assert_eq!(send(&gw, "PUT", "/services/race", "", &service(a.addr, "1s")).0, 200);
    for round in 0..10u64 {
        let version = round + 1;
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (gw, barrier) = (gw.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let body = service(a.addr, &format!("{}s", i + 1));
                    send(&gw, "PUT", "/services/race", &format!("If-Match: \"{version}\"\r\n"), &body).0
                })
            })
            .collect();
        let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap_or(0)).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "round {round}: {statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 7, "round {round}: {statuses:?}");
    }
    let (_, tag, _) = send(&gw, "GET", "/services/race", "", "");
    assert_eq!(tag.as_deref(), Some("\"11\""));
}
