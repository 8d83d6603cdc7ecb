//! Review attacks on three server-side changes, over real sockets:
//!
//! 1. `ETag` / `If-Match` / `If-None-Match` on the configuration API
//!    (`src/admin/precondition.rs`): header forms, races with SIGHUP reloads
//!    and other conditional writes, paths that take no precondition.
//! 2. No data frame after the gateway's WebSocket Close (`ws/conn.rs`,
//!    `ws/session.rs`): what was queued before a close still goes out ahead
//!    of it, and nothing follows it.
//! 3. 422 pointers refined to the bad element of a list (`admin/pointer.rs`).
//!
//! The review found 9 problems (tag forms that matched, `*` in a list, reads
//! refused for a weak tag, an If-Match ignored on a rollback, a Ping after
//! the Close, four pointer paths); each test here failed before its fix and
//! now runs as a guard with the others that held.

mod common;
use common::ws::WsClient;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One admin request with extra header lines: (status, ETag, JSON body).
fn send(gw: &Gateway, method: &str, path: &str, extra: &str, body: &str) -> (u16, Option<String>, Value) {
    let r = raw(
        gw.admin,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// How many versions an entity has (nothing stored by a refused request).
fn version_count(gw: &Gateway, path: &str) -> usize {
    let (_, _, v) = send(gw, "GET", &format!("{path}/versions"), "", "");
    v["versions"].as_array().map_or(0, Vec::len)
}

/// A gateway with service `shop` at version 1 (timeout 5s), routed to `a`.
fn shop(a: &Origin) -> Gateway {
    let gw = Gateway::start(&config_with(&[], ""));
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", "", &service(a.addr, "5s"));
    assert_eq!((st, tag.as_deref()), (200, Some("\"1\"")), "{v}");
    gw
}

// ---------------------------------------------------------------------------
// 1. Preconditions: header forms
// ---------------------------------------------------------------------------

/// Guard: repeated `If-Match` lines, empty list items, tabs and spaces are
/// one list; a tag list of 5,000 stale versions is 412 and changes nothing,
/// the same list with the current tag last applies; a number one past
/// `u64::MAX` is 400, `u64::MAX` itself is an ordinary stale tag (412).
#[test]
fn tag_lists_repeated_spaced_huge_and_overflowing() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = shop(&a);

    // Spread over two header lines, with empty items and odd whitespace.
    let extra = "If-Match:  \"9\" ,, \t\"8\"\t\r\nif-match: ,\"1\" \r\n";
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", extra, &service(a.addr, "6s"));
    assert_eq!((st, tag.as_deref()), (200, Some("\"2\"")), "{v}");

    // 5,000 stale tags: 412, nothing stored.
    let stale: Vec<String> = (1000..6000u64).map(|n| format!("\"{n}\"")).collect();
    let extra = format!("If-Match: {}\r\n", stale.join(", "));
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", &extra, &service(a.addr, "7s"));
    assert_eq!((st, tag.as_deref(), v["version"].as_u64()), (412, Some("\"2\""), Some(2)), "{v}");
    assert_eq!(version_count(&gw, "/services/shop"), 2);

    // The same list with the current tag at its end applies.
    let extra = format!("If-Match: {}, \"2\"\r\n", stale.join(", "));
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", &extra, &service(a.addr, "7s"));
    assert_eq!((st, tag.as_deref()), (200, Some("\"3\"")), "{v}");

    // One past u64::MAX: 400 and nothing stored; u64::MAX: a stale tag.
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"18446744073709551616\"\r\n", "{}");
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_precondition")), "{v}");
    let (st, _, v) =
        send(&gw, "PUT", "/services/shop", "If-Match: \"18446744073709551615\"\r\n", &service(a.addr, "1s"));
    assert_eq!((st, v["version"].as_u64()), (412, Some(3)), "{v}");
    // A negative number, an unterminated quote, a tag with a space inside.
    for bad in ["\"-3\"", "\"3", "3\"", "\" 3\"", "\"3 \"", "\"3\"\"", "W/\"3\"", "w/\"3\""] {
        let (st, _, v) = send(&gw, "DELETE", "/services/shop", &format!("If-Match: {bad}\r\n"), "");
        assert_eq!((st, v["error"].as_str()), (400, Some("invalid_precondition")), "{bad:?}: {v}");
    }
    assert_eq!(version_count(&gw, "/services/shop"), 3, "no refused request stored anything");
    assert_eq!(http_get(gw.public, "/shop/").text(), "A");
}

/// Guard: a refused request (412 or 400) stores nothing, applies nothing,
/// and says no more than a GET would: the 412 names the active version, not
/// its content; a 412 about an entity that does not exist carries neither a
/// version nor an ETag; a DELETE of a name that never existed stays 404
/// whatever the precondition.
#[test]
fn a_refused_precondition_changes_nothing_and_tells_no_more_than_a_get() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let gw = shop(&a);
    let secret = r#"{"instances":["SECRET-MARKER:1"],"timeout":"5s"}"#;
    let (_, _, before) = send(&gw, "GET", "/services/shop", "", "");

    let (st, tag, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"7\"\r\n", &service(b.addr, "1s"));
    assert_eq!((st, tag.as_deref()), (412, Some("\"1\"")), "{v}");
    let text = v.to_string();
    assert!(!text.contains(&a.addr.to_string()) && !text.contains("instances"), "no content in a 412: {text}");
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-None-Match: *\r\n", secret);
    assert_eq!(st, 412, "{v}");
    assert!(!v.to_string().contains("SECRET-MARKER"), "{v}");
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"1\", W/\"1\"\r\n", secret);
    assert_eq!(st, 400, "one bad tag spoils the list: {v}");
    let (_, _, after) = send(&gw, "GET", "/services/shop", "", "");
    assert_eq!(before, after, "nothing changed");
    assert_eq!(version_count(&gw, "/services/shop"), 1);
    assert_eq!(http_get(gw.public, "/shop/").text(), "A");

    // Nothing by that name: 412 without version or tag; DELETE stays 404.
    let (st, tag, v) = send(&gw, "PUT", "/services/never", "If-Match: *\r\n", &service(b.addr, "1s"));
    assert_eq!((st, tag), (412, None), "{v}");
    assert!(v.get("version").is_none(), "{v}");
    for pre in ["If-Match: \"1\"\r\n", "If-Match: *\r\n", "If-None-Match: *\r\n", ""] {
        let (st, _, v) = send(&gw, "DELETE", "/services/never", pre, "");
        assert_eq!(st, 404, "{pre:?}: {v}");
    }
    assert_eq!(send(&gw, "GET", "/services/never/versions", "", "").0, 404, "nothing recorded");
    // A deleted entity: If-Match on its deletion's number is no way back.
    assert_eq!(send(&gw, "DELETE", "/services/shop", "If-Match: \"1\"\r\n", "").0, 200);
    let (st, tag, v) = send(&gw, "DELETE", "/services/shop", "If-Match: \"2\"\r\n", "");
    assert_eq!((st, tag), (412, None), "the deletion version is not a live tag: {v}");
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"2\"\r\n", &service(b.addr, "1s"));
    assert_eq!(st, 412, "{v}");
    assert_eq!(version_count(&gw, "/services/shop"), 2);
}

/// Guard: `If-None-Match` with tags (not only `*`) on PUT and DELETE: false
/// while the named version is active (412), true once it is not.
#[test]
fn if_none_match_with_tags() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = shop(&a);
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-None-Match: \"1\"\r\n", &service(a.addr, "2s"));
    assert_eq!((st, v["version"].as_u64()), (412, Some(1)), "{v}");
    let (st, _, v) = send(&gw, "DELETE", "/services/shop", "If-None-Match: \"3\", \"1\"\r\n", "");
    assert_eq!(st, 412, "{v}");
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", "If-None-Match: \"7\"\r\n", &service(a.addr, "2s"));
    assert_eq!((st, tag.as_deref()), (200, Some("\"2\"")), "{v}");
    // Both headers: If-Match true and If-None-Match false is still 412.
    let extra = "If-Match: \"2\"\r\nIf-None-Match: \"2\"\r\n";
    assert_eq!(send(&gw, "PUT", "/services/shop", extra, &service(a.addr, "3s")).0, 412);
    assert_eq!(version_count(&gw, "/services/shop"), 2);
}

/// Finding (fixed): the tags `"+1"`, `"01"` and `"0001"` match version 1 — they are
/// parsed as numbers (`str::parse::<u64>` takes a leading `+` and zeros).
/// An entity tag is an opaque string compared character by character (RFC
/// 9110 8.8.3.2, strong comparison), and `precondition.rs` promises that a
/// tag this API never gives is refused with 400: these are neither refused
/// nor compared as tags — each one applied a save.
#[test]
fn tags_the_api_never_gives_do_not_match() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = shop(&a);
    for tag in ["\"+1\"", "\"01\"", "\"0001\""] {
        let (st, _, v) = send(&gw, "PUT", "/services/shop", &format!("If-Match: {tag}\r\n"), &service(a.addr, "9s"));
        assert_ne!(st, 200, "If-Match: {tag} matched ETag \"1\" and the save was applied: {v}");
        assert_eq!(version_count(&gw, "/services/shop"), 1, "{tag}: nothing stored");
    }
}

/// Finding (fixed): `*` among tags is taken as a bare `*`: `If-Match: "999", *`
/// applies to whatever version is active, and the items after a `*` are not
/// even looked at (`If-Match: *, W/"junk"` applies too). RFC 9110 13.1.1
/// allows `*` only alone (`"*" / #entity-tag`); `precondition.rs` refuses
/// every other form it does not give with 400. A client that merged a
/// default `If-Match: *` with its real tag silently loses its check.
#[test]
fn a_star_mixed_with_tags_is_refused() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = shop(&a);
    // Move on to version 2: a reader of version 1 is stale.
    assert_eq!(send(&gw, "PUT", "/services/shop", "", &service(a.addr, "6s")).0, 200);
    for extra in ["If-Match: \"1\", *\r\n", "If-Match: \"1\"\r\nIf-Match: *\r\n", "If-Match: *, W/\"junk\"\r\n"] {
        let (st, _, v) = send(&gw, "PUT", "/services/shop", extra, &service(a.addr, "9s"));
        assert_ne!(st, 200, "{extra:?} applied over version 2: {v}");
    }
    assert_eq!(version_count(&gw, "/services/shop"), 2, "nothing stored");
}

// ---------------------------------------------------------------------------
// 1b. Preconditions on requests that take none
// ---------------------------------------------------------------------------

/// Finding (fixed): every configuration request parses `If-Match`/`If-None-Match`
/// and refuses a tag it does not give with 400, including reads. A cache or
/// a reverse proxy that weakened the ETag (nginx does, when it compresses a
/// response) makes the browser revalidate with `If-None-Match: W/"1"`, and
/// the entity can no longer be read: `GET`/`HEAD /services/shop` and `GET
/// …/versions` answer `400 invalid_precondition`. A read takes no
/// precondition of this API; a weak tag there must not break it (RFC 9110
/// 13.1.2 even has If-None-Match use the weak comparison).
#[test]
fn a_read_is_not_refused_for_a_weak_tag() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = shop(&a);
    for (method, path) in [("GET", "/services/shop"), ("HEAD", "/services/shop"), ("GET", "/services/shop/versions")] {
        let (st, _, v) = send(&gw, method, path, "If-None-Match: W/\"1\"\r\n", "");
        assert!(st == 200 || st == 304, "{method} {path} with If-None-Match: W/\"1\": {st} {v}");
    }
}

/// Finding (fixed): a precondition sent where it is not taken is silently ignored:
/// `POST /services/shop/versions/1/apply` with `If-Match: "2"` while version
/// 3 is active answers 200 and rolls back over version 3 — the very
/// lost-update the header exists to prevent. README says apply "takes no
/// precondition"; RFC 9110 13.1.1 says a server receiving If-Match MUST
/// evaluate it before performing the method. Refusing (400/412) would tell
/// the client its guard was not applied; ignoring it does not. (The same
/// holds for `POST /config/import` and `DELETE /consumers/{c}/keys/{id}`.)
#[test]
fn a_precondition_on_a_version_apply_is_not_silently_ignored() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let gw = shop(&a);
    assert_eq!(send(&gw, "PUT", "/services/shop", "", &service(a.addr, "6s")).0, 200);
    // Someone else saves version 3 (routes to B) after our read of version 2.
    assert_eq!(send(&gw, "PUT", "/services/shop", "If-Match: \"2\"\r\n", &service(b.addr, "6s")).0, 200);
    let (st, _, v) = send(&gw, "POST", "/services/shop/versions/1/apply", "If-Match: \"2\"\r\n", "");
    assert_ne!(st, 200, "a rollback guarded by a stale If-Match was applied: {v}");
    assert_eq!(http_get(gw.public, "/shop/").text(), "B", "version 3 still serves");
}

/// Guard: a malformed precondition on requests outside the configuration
/// API (health, the push API's list) changes nothing there, and an import
/// carrying one either ignores it or is refused without applying anything.
#[test]
fn a_malformed_precondition_outside_entity_writes_changes_nothing() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = shop(&a);
    assert_eq!(send(&gw, "GET", "/healthz", "If-Match: junk\r\n", "").0, 200);
    assert_eq!(send(&gw, "GET", "/connections", "If-Match: junk\r\n", "").0, 200);
    // A bad tag on a write that takes it: nothing applied.
    let (st, _, v) = send(&gw, "POST", "/config/import", "If-Match: junk\r\n", r#"{"services":{}}"#);
    assert!(st == 400 || st == 200, "{v}");
    if st == 400 {
        assert_eq!(http_get(gw.public, "/shop/").text(), "A", "a refused import changed nothing");
    }
}

// ---------------------------------------------------------------------------
// 1c. Preconditions: races
// ---------------------------------------------------------------------------

/// Guard: conditional saves racing SIGHUP reloads of the file that owns the
/// entity (each reload writes a new version of it): of four editors holding
/// the same read, at most one wins, and a winner's version is the one right
/// after the version it read (no reload landed between its check and its
/// write); every loser's 412 names a newer version.
#[test]
fn conditional_saves_race_sighup_reloads() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let file = |n: u64| {
        format!("[server]\nworkers = 2\n[services.shop]\ninstances = [\"{}\"]\ntimeout = \"{}s\"\n", a.addr, n + 100)
    };
    let gw = Arc::new(Gateway::start(&file(0)));
    let mut wins = 0;
    for round in 1..=8u64 {
        let (st, tag, v) = send(&gw, "GET", "/services/shop", "", "");
        assert_eq!(st, 200, "{v}");
        let read: u64 = tag.as_deref().and_then(|t| t.trim_matches('"').parse().ok()).expect("an ETag");
        std::fs::write(&gw.config_path, file(round)).unwrap();
        let barrier = Arc::new(Barrier::new(5));
        let editors: Vec<_> = (0..4u64)
            .map(|i| {
                let (gw, barrier, addr) = (gw.clone(), barrier.clone(), a.addr);
                std::thread::spawn(move || {
                    barrier.wait();
                    let body = service(addr, &format!("{}s", i + 1));
                    send(&gw, "PUT", "/services/shop", &format!("If-Match: \"{read}\"\r\n"), &body)
                })
            })
            .collect();
        // Odd rounds signal first and let the reload get going: both orders occur.
        if round % 2 == 1 {
            gw.signal(SIGHUP);
            std::thread::sleep(Duration::from_micros(500 * round));
            barrier.wait();
        } else {
            barrier.wait();
            gw.signal(SIGHUP);
        }
        let results: Vec<_> = editors.into_iter().map(|h| h.join().unwrap()).collect();
        let won: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
        assert!(won.len() <= 1, "round {round}: {results:?}");
        if let Some((_, tag, _)) = won.first() {
            wins += 1;
            assert_eq!(tag.as_deref(), Some(format!("\"{}\"", read + 1).as_str()), "round {round}: {results:?}");
        }
        for (st, _, v) in &results {
            if *st != 200 {
                assert_eq!(*st, 412, "round {round}: {v}");
                assert!(v["version"].as_u64().is_some_and(|n| n > read), "round {round}: {v}");
            }
        }
        // Wait for this round's reload to land before the next read.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, _, vs) = send(&gw, "GET", "/services/shop/versions", "", "");
            let from_file = vs["versions"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x["author"] == "file" && x["version"].as_u64() > Some(read)));
            if from_file {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: the reload never landed: {vs}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // What is served is what GET says is active.
        let (_, tag, now) = send(&gw, "GET", "/services/shop", "", "");
        let n = tag.as_deref().unwrap_or("").trim_matches('"').to_string();
        let (_, _, ver) = send(&gw, "GET", &format!("/services/shop/versions/{n}"), "", "");
        assert_eq!(now["content"], ver["content"], "round {round}");
    }
    eprintln!("{wins} of 8 rounds had an editor win before the reload");
}

/// Guard: eight "New" forms create the same name at once with
/// `If-None-Match: *`, and a conditional PUT and DELETE holding the same
/// read race: exactly one of each group wins.
#[test]
fn create_only_and_put_delete_races_have_one_winner() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = Arc::new(Gateway::start("[server]\nworkers = 2\n"));
    for round in 0..6u64 {
        let name = format!("/services/new{round}");
        let barrier = Arc::new(Barrier::new(8));
        let hs: Vec<_> = (0..8u64)
            .map(|i| {
                let (gw, barrier, name, addr) = (gw.clone(), barrier.clone(), name.clone(), a.addr);
                std::thread::spawn(move || {
                    barrier.wait();
                    send(&gw, "PUT", &name, "If-None-Match: *\r\n", &service(addr, &format!("{}s", i + 1))).0
                })
            })
            .collect();
        let st: Vec<u16> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(st.iter().filter(|s| **s == 200).count(), 1, "{st:?}");
        assert_eq!(st.iter().filter(|s| **s == 412).count(), 7, "{st:?}");
        assert_eq!(version_count(&gw, &name), 1);

        // A PUT and a DELETE from the same read of version 1.
        let barrier = Arc::new(Barrier::new(2));
        let (g1, b1, n1, addr) = (gw.clone(), barrier.clone(), name.clone(), a.addr);
        let put = std::thread::spawn(move || {
            b1.wait();
            send(&g1, "PUT", &n1, "If-Match: \"1\"\r\n", &service(addr, "9s")).0
        });
        let (g2, b2, n2) = (gw.clone(), barrier.clone(), name.clone());
        let del = std::thread::spawn(move || {
            b2.wait();
            send(&g2, "DELETE", &n2, "If-Match: \"1\"\r\n", "").0
        });
        let (p, d) = (put.join().unwrap(), del.join().unwrap());
        assert!(matches!((p, d), (200, 412) | (412, 200)), "PUT {p}, DELETE {d}");
        assert_eq!(version_count(&gw, &name), 2);
    }
}

/// Guard: a conditional save racing a re-activation of version 1. The
/// apply lands first (the save must then be 412 naming version 1) or last
/// (the save was 200); either way version 1 is active at the end — a save
/// that passed its check after the apply would leave its own version active.
#[test]
fn conditional_saves_race_version_applies() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = Arc::new(shop(&a));
    for round in 0..10u64 {
        // A newer version to save over, read by the editor.
        let (st, tag, v) = send(&gw, "PUT", "/services/shop", "", &service(a.addr, &format!("{}s", round + 10)));
        assert_eq!(st, 200, "{v}");
        let read = tag.expect("an ETag");
        let barrier = Arc::new(Barrier::new(2));
        let (g1, b1, addr) = (gw.clone(), barrier.clone(), a.addr);
        let save = std::thread::spawn(move || {
            b1.wait();
            send(&g1, "PUT", "/services/shop", &format!("If-Match: {read}\r\n"), &service(addr, "1s"))
        });
        let (g2, b2) = (gw.clone(), barrier.clone());
        let apply = std::thread::spawn(move || {
            b2.wait();
            send(&g2, "POST", "/services/shop/versions/1/apply", "", "").0
        });
        let ((st, _, v), applied) = (save.join().unwrap(), apply.join().unwrap());
        assert_eq!(applied, 200);
        match st {
            200 => {}
            412 => assert_eq!(v["version"], 1, "round {round}: {v}"),
            other => panic!("round {round}: {other} {v}"),
        }
        let (_, tag, _) = send(&gw, "GET", "/services/shop", "", "");
        assert_eq!(tag.as_deref(), Some("\"1\""), "round {round}: the save ({st}) landed after the apply");
    }
}

/// Guard: re-activating versions moves the tag: an applied deletion makes
/// `If-Match: *` false and `If-None-Match: *` true; an applied old version
/// takes that version's number as its tag.
#[test]
fn reactivated_versions_and_deletions_move_the_tag() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = shop(&a);
    assert_eq!(send(&gw, "DELETE", "/services/shop", "If-Match: \"1\"\r\n", "").0, 200);
    assert_eq!(send(&gw, "POST", "/services/shop/versions/1/apply", "", "").0, 200);
    let (st, tag, _) = send(&gw, "GET", "/services/shop", "", "");
    assert_eq!((st, tag.as_deref()), (200, Some("\"1\"")));
    // Apply the deletion (version 2) again.
    assert_eq!(send(&gw, "POST", "/services/shop/versions/2/apply", "", "").0, 200);
    assert_eq!(send(&gw, "GET", "/services/shop", "", "").0, 404);
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", "If-Match: *\r\n", &service(a.addr, "2s"));
    assert_eq!((st, tag), (412, None), "{v}");
    let (st, _, v) = send(&gw, "PUT", "/services/shop", "If-Match: \"1\"\r\n", &service(a.addr, "2s"));
    assert_eq!(st, 412, "{v}");
    let (st, tag, v) = send(&gw, "PUT", "/services/shop", "If-None-Match: *\r\n", &service(a.addr, "2s"));
    assert_eq!((st, tag.as_deref()), (200, Some("\"3\"")), "{v}");
}

// ---------------------------------------------------------------------------
// 3. 422 pointers
// ---------------------------------------------------------------------------

fn pointer_of(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let (st, _, v) = send(gw, method, path, "", body);
    (st, v["pointer"].as_str().unwrap_or("<none>").to_string(), v["message"].as_str().unwrap_or("").to_string())
}

/// Guard: duplicates point at the first (the one reported), an element after
/// numbers and nulls keeps its index, the last of 3,000 elements is found,
/// a whole-document import points inside the document, and a message with
/// quotes in it does not break the answer's JSON.
#[test]
fn list_pointers_with_duplicates_non_strings_and_many_elements() {
    let gw = Gateway::start(&config_with(&[], ""));
    let (st, p, m) = pointer_of(&gw, "PUT", "/services/s", r#"{"instances":["nope","nope"]}"#);
    assert_eq!((st, p.as_str()), (422, "/instances/0"), "{m}");
    let (st, p, m) = pointer_of(&gw, "PUT", "/services/s", r#"{"instances":["127.0.0.1:1","127.0.0.1:2","nope"]}"#);
    assert_eq!((st, p.as_str()), (422, "/instances/2"), "{m}");
    let many: Vec<String> = (0..3000).map(|i| format!("\"127.0.0.1:{}\"", 1000 + i)).collect();
    let body = format!(r#"{{"instances":[{},"x\"y\"z"]}}"#, many.join(","));
    let (st, p, m) = pointer_of(&gw, "PUT", "/services/s", &body);
    assert_eq!(st, 422, "{m}");
    assert!(p == "/instances/3000" || p == "/instances", "{p}: {m}");
    let body = r#"{"services":{"s":{"instances":["127.0.0.1:1","bad"]}}}"#;
    let (st, p, m) = pointer_of(&gw, "POST", "/config/validate", body);
    assert_eq!((st, p.as_str()), (422, "/services/s/instances/1"), "{m}");
    // Non-strings: whatever the pointer, it resolves in the document.
    let doc: Value = serde_json::from_str(r#"{"instances":["127.0.0.1:1",80,null]}"#).unwrap();
    let (st, p, m) = pointer_of(&gw, "PUT", "/services/s", &doc.to_string());
    assert_eq!(st, 422, "{m}");
    assert!(p.is_empty() || doc.pointer(&p).is_some(), "{p:?} is not in the document: {m}");
    assert_eq!(send(&gw, "GET", "/services/s", "", "").0, 404, "nothing stored");
}

/// Finding (fixed): rate-limit rules are a list too, but their messages name the
/// rule as `rate_limits[1]`, and the pointer comes out as
/// `/rate_limits[1]/per` — a member no document has, so a form cannot mark
/// the bad rule or even the field. The element is `/rate_limits/1/per`.
#[test]
fn a_rate_limit_rule_is_pointed_at_by_index() {
    let gw = Gateway::start(&config_with(&[], ""));
    let body =
        r#"{"instances":["127.0.0.1:1"],"rate_limits":[{"per":"ip","rate":"10/s"},{"per":"planet","rate":"1/s"}]}"#;
    let (st, p, m) = pointer_of(&gw, "PUT", "/services/s", body);
    assert_eq!(st, 422, "{m}");
    assert_eq!(p, "/rate_limits/1/per", "message: {m}");
}

/// Finding (fixed): service and endpoint names may contain `.`, and the key path in
/// the message (`services.a.b.instances`) is split at every dot, so a 422
/// about `PUT /services/a.b` points at `/b/instances` (nothing in the
/// document) instead of `/instances/1`; an import points at
/// `/services/a/b/instances`.
#[test]
fn a_dotted_name_does_not_shift_the_pointer() {
    let gw = Gateway::start(&config_with(&[], ""));
    let (st, p, m) = pointer_of(&gw, "PUT", "/services/a.b", r#"{"instances":["127.0.0.1:1","nope"]}"#);
    assert_eq!((st, p.as_str()), (422, "/instances/1"), "{m}");
    let body = r#"{"services":{"a.b":{"instances":["127.0.0.1:1","nope"]}}}"#;
    let (st, p, m) = pointer_of(&gw, "POST", "/config/validate", body);
    assert_eq!((st, p.as_str()), (422, "/services/a.b/instances/1"), "{m}");
}

/// Finding (fixed): the key path ends at the first space or colon, even inside a
/// quoted route key: a route named `send it` (route keys are any 1..128
/// characters) with a bad `http` target gets the pointer `/routes/send`
/// instead of `/routes/send it/http/1`.
#[test]
fn a_route_key_with_a_space_keeps_its_pointer() {
    let gw = Gateway::start(&config_with(&[], ""));
    let body = r#"{"path":"/ws/chat","routes":{"send it":{"http":["http://127.0.0.1:1/x","ftp://x"]}}}"#;
    let (st, p, m) = pointer_of(&gw, "PUT", "/endpoints/chat", body);
    assert_eq!(st, 422, "{m}");
    assert_eq!(p, "/routes/send it/http/1", "message: {m}");
}

/// Finding (fixed): the element is found by the text between the first two `"` of
/// the message, which is the element in Rust's debug form: for an element
/// with a quote (`a"b`, shown as `"a\"b"`) that text is `a\`, and when the
/// list holds an element `a\` the pointer names that one — a different,
/// later element than the one the message is about.
#[test]
fn an_escaped_quote_does_not_point_at_another_element() {
    let gw = Gateway::start(&config_with(&[], ""));
    let (st, p, m) = pointer_of(&gw, "PUT", "/services/s", r#"{"instances":["a\"b","a\\"]}"#);
    assert_eq!(st, 422, "{m}");
    assert_eq!(p, "/instances/0", "the message is about a\"b: {m}");
}

// ---------------------------------------------------------------------------
// 2. WebSocket: what goes before the Close, and what may follow it
// ---------------------------------------------------------------------------

/// Every frame until EOF (read timeout `wait`): (opcode, payload).
fn drain(ws: &mut WsClient, wait: Duration) -> Vec<(u8, Vec<u8>)> {
    ws.stream.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    while let Some(f) = ws.recv() {
        out.push((f.opcode, f.payload));
    }
    out
}

/// Frames after the first Close, by opcode.
fn after_close(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    match frames.iter().position(|(op, _)| *op == 8) {
        Some(i) => frames[i + 1..].iter().map(|(op, _)| *op).collect(),
        None => Vec::new(),
    }
}

fn close_code(frames: &[(u8, Vec<u8>)]) -> Option<u16> {
    frames.iter().find(|(op, _)| *op == 8).and_then(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
}

fn texts_before_close(frames: &[(u8, Vec<u8>)]) -> Vec<String> {
    frames
        .iter()
        .take_while(|(op, _)| *op != 8)
        .filter(|(op, _)| *op == 1)
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect()
}

fn push(gw: &Gateway, id: &str, body: &[u8]) -> u16 {
    let mut s = connect(gw.admin);
    let mut req = format!(
        "POST /connections/{id} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, false).map_or(0, |r| r.status)
}

/// Guard: frames and a Close sent in one write: every echo goes out, then
/// the Close, then nothing.
#[test]
fn echoes_of_frames_before_a_client_close_go_out_ahead_of_the_close() {
    let gw = Gateway::start("[server]\nworkers = 1\n[endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\n");
    let mut ws = WsClient::connect(gw.public, "/ws/echo");
    let mut bytes = Vec::new();
    for i in 0..50 {
        bytes.extend(WsClient::frame(0x81, format!("m{i}").as_bytes()));
    }
    bytes.extend(WsClient::frame(0x89, b"ping"));
    bytes.extend(WsClient::frame(0x88, &4001u16.to_be_bytes()));
    bytes.extend(WsClient::frame(0x81, b"after-close"));
    bytes.extend(WsClient::frame(0x89, b"ping-after-close"));
    ws.send_raw(&bytes);
    let frames = drain(&mut ws, Duration::from_secs(3));
    let texts = texts_before_close(&frames);
    assert_eq!(texts, (0..50).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(close_code(&frames), Some(4001));
    assert_eq!(after_close(&frames), Vec::<u8>::new(), "{frames:?}");
    assert!(frames.iter().any(|(op, p)| *op == 10 && p == b"ping"), "the ping before the Close was answered");
}

/// Guard: messages pushed while a 4 MB write is in progress for a reader
/// that does not read, then a close through the admin API: the client gets
/// every message in order, then the Close with the code asked for, then
/// nothing. A push after the close is refused (404 gone), not queued.
#[test]
fn a_close_requested_during_a_large_write_comes_after_what_was_queued() {
    let gw = Gateway::start(
        "[server]\nworkers = 1\n[endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\nmax_message_bytes = 4194304\nsend_queue_bytes = 8388608\n",
    );
    let mut ws = WsClient::connect(gw.public, "/ws/echo");
    let id = ws.id();
    let big = format!("\"{}\"", "b".repeat(4 * 1024 * 1024 - 16));
    assert_eq!(push(&gw, &id, big.as_bytes()), 200);
    for i in 0..20 {
        assert_eq!(push(&gw, &id, format!("\"m{i}\"").as_bytes()), 200);
    }
    let (st, _, v) = send(&gw, "DELETE", &format!("/connections/{id}?code=4002&reason=bye"), "", "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(push(&gw, &id, b"\"late\""), 404, "a push after the close is not queued");
    let frames = drain(&mut ws, Duration::from_secs(3));
    let texts = texts_before_close(&frames);
    assert_eq!(texts.len(), 21, "{} texts before the Close", texts.len());
    assert_eq!(texts[0].len(), big.len());
    assert_eq!(texts[1..], (0..20).map(|i| format!("\"m{i}\"")).collect::<Vec<_>>()[..]);
    assert_eq!(close_code(&frames), Some(4002));
    assert_eq!(after_close(&frames), Vec::<u8>::new());
}

/// Guard: a key revoked under an open connection: the next event gets the
/// `unauthorized` error event, then Close 1008, then nothing.
#[test]
fn a_revoked_key_gets_its_error_event_before_the_1008() {
    let origin = Origin::echo();
    let gw = Gateway::start_with(
        &format!(
            r#"[server]
workers = 1
[consumers.alice]
[endpoints.chat]
path = "/ws/chat"
auth = {{ api_key = {{ header = "X-Api-Key", query = "api_key" }} }}
[endpoints.chat.routes."$default"]
http = ["http://{a}/events"]
"#,
            a = origin.addr
        ),
        &[],
        &[("WASP_KEY_SECRET", "an-hmac-secret-of-at-least-32-bytes!!")],
    );
    let (st, _, v) = send(&gw, "POST", "/consumers/alice/keys", "", "");
    assert_eq!(st, 201, "{v}");
    let (id, key) = (v["id"].as_str().unwrap().to_string(), v["key"].as_str().unwrap().to_string());
    let mut ws = WsClient::connect(gw.public, &format!("/ws/chat?api_key={key}"));
    assert_eq!(send(&gw, "DELETE", &format!("/consumers/alice/keys/{id}"), "", "").0, 200);
    std::thread::sleep(Duration::from_millis(200));
    ws.send_text(r#"{"n":1}"#);
    ws.send_text(r#"{"n":2}"#);
    let frames = drain(&mut ws, Duration::from_secs(3));
    let texts = texts_before_close(&frames);
    assert!(texts.iter().any(|t| t.contains("\"unauthorized\"")), "{frames:?}");
    assert_eq!(close_code(&frames), Some(1008));
    assert_eq!(after_close(&frames), Vec::<u8>::new());
}

/// Guard: a client far over its event rate limit gets its `throttled`
/// events, then Close 1008 — the events are not dropped by the close.
#[test]
fn throttled_events_go_out_before_the_rate_limit_close() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        r#"[server]
workers = 1
[endpoints.chat]
path = "/ws/chat"
[[endpoints.chat.rate_limits]]
per = "connection"
rate = "1/h"
[endpoints.chat.routes."$default"]
http = ["http://{a}/events"]
"#,
        a = origin.addr
    ));
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    let mut bytes = Vec::new();
    for i in 0..40 {
        bytes.extend(WsClient::frame(0x81, format!(r#"{{"n":{i}}}"#).as_bytes()));
    }
    ws.send_raw(&bytes);
    let frames = drain(&mut ws, Duration::from_secs(3));
    let throttled = texts_before_close(&frames).iter().filter(|t| t.contains("\"throttled\"")).count();
    assert_eq!(close_code(&frames), Some(1008), "{frames:?}");
    assert!(throttled > 20, "{throttled} throttled events before the Close");
    assert_eq!(after_close(&frames), Vec::<u8>::new());
}

/// Guard: a client that floods a slow route past `max_inflight_bytes` gets
/// its `too_many_inflight` events, then Close 1013, then nothing.
#[test]
fn inflight_refusals_go_out_before_the_1013() {
    let origin = Origin::start(|_| Reply::Delay(Duration::from_secs(5), ok_response(b"late")));
    let gw = Gateway::start(&format!(
        r#"[server]
workers = 1
[endpoints.chat]
path = "/ws/chat"
max_message_bytes = 4096
max_inflight_bytes = 8192
[endpoints.chat.routes."$default"]
http = ["http://{a}/events"]
"#,
        a = origin.addr
    ));
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    let mut bytes = Vec::new();
    for i in 0..60 {
        bytes.extend(WsClient::frame(0x81, format!(r#"{{"n":{i}}}"#).as_bytes()));
    }
    ws.send_raw(&bytes);
    let frames = drain(&mut ws, Duration::from_secs(3));
    let refused = texts_before_close(&frames).iter().filter(|t| t.contains("\"too_many_inflight\"")).count();
    assert_eq!(close_code(&frames), Some(1013), "{frames:?}");
    assert!(refused >= 32, "{refused} too_many_inflight events before the Close");
    assert_eq!(after_close(&frames), Vec::<u8>::new());
}

/// A WebSocket client whose receive buffer is small: what the gateway
/// writes stalls as soon as the client stops reading.
fn tight_client(addr: std::net::SocketAddr, path: &str) -> (std::net::TcpStream, String, Vec<u8>) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, head, buf[end..].to_vec())
}

/// Reads one server frame from `s` (buffer `buf`): (opcode, payload length).
fn read_frame(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if buf.len() >= 2 {
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
                n if n < 126 => (n as usize, 2),
                _ => (usize::MAX, 0),
            };
            if len != usize::MAX && buf.len() >= at + len {
                let op = buf[0] & 0x0f;
                let payload = buf[at..at + len].to_vec();
                buf.drain(..at + len);
                return Some((op, payload));
            }
        }
        let mut tmp = vec![0u8; 1 << 16];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Finding (fixed): the worker's sweeper may queue a keep-alive Ping while the
/// gateway's Close is being written to a client that reads slowly
/// (`close_sent_ms` is set only once that write has finished, and the
/// sweeper's "close sent: only wait" check reads it), and the session then
/// writes that Ping after its Close. RFC 6455 5.5.1 forbids only data
/// frames after a Close, but 5.5.2 has pings sent "before the connection is
/// closed", and a client is entitled to treat the Close as the gateway's
/// last frame.
#[test]
fn nothing_follows_the_close_when_its_write_stalls() {
    let gw = Gateway::start(
        "[server]\nworkers = 1\n[endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\nmax_message_bytes = 4194304\nsend_queue_bytes = 67108864\nping_interval = \"5s\"\nidle_timeout = \"60s\"\n",
    );
    let started = Instant::now();
    let (mut s, head, mut buf) = tight_client(gw.public, "/ws/echo");
    let id =
        head.lines().find_map(|l| l.strip_prefix("x-wasp-connection-id: ")).expect("connection id").trim().to_string();
    // The first message's write stalls; the next four wait in the queue.
    let msg = |c: char| format!("\"{}\"", c.to_string().repeat(4 * 1024 * 1024 - 16));
    for c in ['a', 'b', 'c', 'd', 'e'] {
        assert_eq!(push(&gw, &id, msg(c).as_bytes()), 200);
    }
    let (st, _, v) = send(&gw, "DELETE", &format!("/connections/{id}?code=4003"), "", "");
    assert_eq!(st, 200, "{v}");
    // Read the first message only: the Close goes out behind the other four
    // (16 MB) and its write stalls on a client that reads no further.
    let (op, first) = read_frame(&mut s, &mut buf).expect("the first message");
    assert_eq!((op, first.len()), (1, 4 * 1024 * 1024 - 14));
    let setup = started.elapsed();
    eprintln!("set up in {setup:?}");
    assert!(setup < Duration::from_millis(4500), "set up in {setup:?}: too slow for the 5 s ping interval");
    std::thread::sleep(Duration::from_secs(7).saturating_sub(started.elapsed()));
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut frames = Vec::new();
    while let Some((op, p)) = read_frame(&mut s, &mut buf) {
        frames.push((op, p));
    }
    let ops: Vec<u8> = frames.iter().map(|(op, _)| *op).collect();
    eprintln!("after the first message: {ops:?}");
    assert_eq!(close_code(&frames), Some(4003), "{ops:?}");
    assert_eq!(after_close(&frames), Vec::<u8>::new(), "frames after the Close: {ops:?}");
}
