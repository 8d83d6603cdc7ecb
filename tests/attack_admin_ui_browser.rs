//! Hostile tests of the admin UI in a real browser (headless Debian chromium
//! through playwright-core), scripted by `tests/peers/ui_attack.mjs`. Each
//! test says what must hold and checks it on the gateway itself where the
//! UI changes something. Tests that pass are guards that held; the report
//! that comes with this file says which fail today and why.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/uiattack-target cargo test --test attack_admin_ui_browser`
//! (needs chromium and playwright-core as for `tests/admin_ui.rs`).

mod common;
use common::ws::WsClient;
use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "ui-attack-token-0123456789";

/// Markup with a marker attribute, an inline handler, an inline script and a
/// `javascript:` link: none of it may ever become part of the page.
const PAYLOAD: &str = r#"<img data-pwn=1 src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><a data-pwn href="javascript:1">x</a>"#;

/// The shared browser runner (`tests/common/browser.rs`) on this file's
/// scenarios, `tests/peers/ui_attack.mjs`.
fn run(scenario: &str, url: &str, token: Option<&str>, args: Value, on_ready: impl FnOnce()) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ui_attack.mjs");
    common::browser::run_script(&script, scenario, url, token, args, on_ready)
}

fn ui(gw: &Gateway) -> String {
    format!("http://{}/ui/", gw.admin)
}

fn gateway(config: &str) -> Gateway {
    Gateway::start_with(config, &[], &[("WASP_ADMIN_TOKEN", TOKEN), ("WASP_KEY_SECRET", &"k".repeat(40))])
}

/// One admin call with the token; `headers` are extra header lines (each ending in \r\n).
fn api_h(gw: &Gateway, method: &str, path: &str, body: &str, headers: &str) -> (u16, Value) {
    let r = raw(
        gw.admin,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

fn api(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    api_h(gw, method, path, body, "")
}

fn put(gw: &Gateway, path: &str, body: &Value) {
    let (st, v) = api(gw, "PUT", path, &body.to_string());
    assert_eq!(st, 200, "PUT {path}: {v}");
}

fn active_version(gw: &Gateway, kind: &str, name: &str) -> u64 {
    api(gw, "GET", &format!("/{kind}/{name}"), "").1["version"].as_u64().unwrap_or(0)
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A 64-bit id above 2^53 (a JavaScript number cannot hold it exactly) and
/// below 2^63 (a TOML integer can).
const BIG_ID: u64 = 1_234_567_890_123_456_789;

fn mock_with_big_id() -> Value {
    json!({
        "instances": [],
        "timeout": "5s",
        "mock": { "routes": [ { "path": "/*", "status": 200, "json": { "id": BIG_ID, "name": "order" } } ] }
    })
}

// ---------------------------------------------------------------------------
// Guards: markup, the token, framing.

/// Everything an attacker can write reaches the page as text: author and
/// comment headers, a mock's body, header value and JSON keys, a version
/// diff, a 422 message echoing the input, a connection's group, a message
/// echoed into the test console, an imported file's name and names, an
/// unknown route. No element, script or non-`#` link appears; no CSP
/// violation is reported.
#[test]
fn hostile_text_never_becomes_markup() {
    let gw = gateway("[server]\nworkers = 1\n[endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\n");
    let hdrs = format!("X-Wasp-Author: {PAYLOAD}\r\nX-Wasp-Comment: {PAYLOAD}\r\n");
    let v1 = json!({ "instances": [], "timeout": "5s",
        "mock": { "routes": [ { "path": "/*", "status": 200, "body": PAYLOAD, "headers": { "X-Hostile": PAYLOAD } } ] } });
    let (st, v) = api_h(&gw, "PUT", "/services/shop", &v1.to_string(), &hdrs);
    assert_eq!(st, 200, "{v}");
    let v2 = json!({ "instances": [], "timeout": "5s",
        "mock": { "routes": [ { "path": "/*", "status": 200, "json": { PAYLOAD: PAYLOAD } } ] } });
    let (st, v) = api_h(&gw, "PUT", "/services/shop", &v2.to_string(), &hdrs);
    assert_eq!(st, 200, "{v}");
    let client = WsClient::connect(gw.public, "/ws/echo");
    let id = client.id();
    let (st, v) = api(&gw, "PUT", &format!("/connections/{id}/groups/{}", pct(PAYLOAD)), "");
    assert_eq!(st, 200, "joining the group: {v}");
    let out = run(
        "hostile_text",
        &ui(&gw),
        Some(TOKEN),
        json!({ "service": "shop", "endpoint": "echo", "payload": PAYLOAD, "marker": "data-pwn" }),
        || {},
    );
    assert_eq!(out["injected_total"], 0, "markup got into the page: {out:#}");
    for (view, shown) in out["visible"].as_object().expect("visible") {
        assert_eq!(shown, &Value::Bool(true), "the payload did not reach {view} as text: {out:#}");
    }
    drop(client);
}

/// The admin token stays in the tab's sessionStorage and in `Authorization`
/// headers to the admin API: never in a URL, the WebSocket console's URL, a
/// Referer, localStorage, a cookie, the DOM or the export, and gone after
/// Sign out.
#[test]
fn the_token_stays_in_the_tab() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"ok")));
    let gw = gateway(&format!(
        "[server]\nworkers = 1\n[services.shop]\ninstances = [\"{}\"]\n\
         [endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\n[consumers.alice]\n",
        origin.addr
    ));
    let out = run(
        "token_hygiene",
        &ui(&gw),
        Some(TOKEN),
        json!({ "service": "shop", "endpoint": "echo", "consumer": "alice" }),
        || {},
    );
    assert_eq!(out["where"], json!([]), "the token went elsewhere: {out:#}");
    assert_eq!(out["referers"], json!([]), "requests carried a Referer: {out:#}");
    assert!(out["sockets"].as_array().is_some_and(|s| !s.is_empty()), "the console opened no socket: {out}");
}

/// A page on another origin cannot frame the UI (frame-ancestors, XFO), and
/// a window it opens on the UI is cut off from it (COOP): no handle to the
/// document, its storage or its location.
#[test]
fn another_origin_cannot_frame_or_drive_the_ui() {
    let gw = gateway("[server]\nworkers = 1\n");
    let out = run("framing", &ui(&gw), Some(TOKEN), json!({}), || {});
    assert_eq!(out["framed_app"], 0, "the UI rendered inside a foreign frame: {out:#}");
    let r = &out["result"];
    assert_eq!(r["frame_doc"].as_str().map(|s| s.starts_with("throws")), Some(true), "{out:#}");
    assert_ne!(r["opened_closed"], json!(false), "the opener keeps a live handle to the UI window: {out:#}");
    assert_ne!(out["popup_hash"], json!("#/services/+new"), "the opener navigated the UI window: {out:#}");
    assert_ne!(out["popup_has_opener"], json!(true), "the UI window can reach its opener: {out:#}");
}

// ---------------------------------------------------------------------------
// Findings: silent changes to configuration.

/// "New service" is for a new name. Typed with the name of a live service,
/// Save must not replace that service with the template (here: its only
/// instance swapped for another) without saying it exists.
#[test]
fn the_new_service_form_does_not_replace_a_live_service() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"production")));
    let gw = gateway(&config_with(&[("payments", vec![a.addr])], ""));
    assert_eq!(http_get(gw.public, "/payments/x").text(), "production");
    let before = active_version(&gw, "services", "payments");
    let out = run(
        "new_over_existing",
        &ui(&gw),
        Some(TOKEN),
        json!({ "name": "payments", "instance": dead_addr().to_string() }),
        || {},
    );
    assert_eq!(
        active_version(&gw, "services", "payments"),
        before,
        "the New service form replaced the live service \"payments\" without a word ({}): {out}",
        out["shown"]
    );
    assert_eq!(http_get(gw.public, "/payments/x").text(), "production");
}

/// Two operators (two tabs) edit one service. B changes the instances and
/// saves; A, whose editor still holds the older version, changes only the
/// timeout and saves. B's instances must not silently go back (a save from a
/// stale editor is refused, or at least asked about). Found open; fixed: the
/// editor sends `If-Match` with the version it loaded and says so on `412`.
#[test]
fn a_stale_editor_does_not_revert_a_newer_version() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let gw = gateway("[server]\nworkers = 1\n");
    put(&gw, "/services/shop", &json!({ "instances": [a.addr.to_string()], "timeout": "5s" }));
    let out =
        run("stale_editor", &ui(&gw), Some(TOKEN), json!({ "name": "shop", "instance_b": b.addr.to_string() }), || {});
    let (_, now) = api(&gw, "GET", "/services/shop", "");
    assert_eq!(
        now["content"]["instances"],
        json!([b.addr.to_string()]),
        "tab A's save from a stale editor ({}) reverted tab B's instances: {now}",
        out["outcome"]
    );
}

/// Editing the timeout of a service must leave the rest of its content as
/// it was. A mock answering `{"id": 1234567890123456789}` goes through
/// JavaScript numbers in the editor and came back as 1234567890123456800:
/// the mock's clients got another id after an unrelated edit. Fixed: the
/// UI reads and writes configuration with its own lossless JSON (`json.js`).
#[test]
fn editing_one_field_keeps_big_integers_elsewhere() {
    let gw = gateway("[server]\nworkers = 1\n");
    put(&gw, "/services/orders", &mock_with_big_id());
    assert!(http_get(gw.public, "/orders/1").text().contains(&BIG_ID.to_string()));
    let out = run(
        "big_integer_edit",
        &ui(&gw),
        Some(TOKEN),
        json!({ "name": "orders", "pointer": "/timeout", "value": "7s", "id_text": BIG_ID.to_string() }),
        || {},
    );
    let (_, now) = api(&gw, "GET", "/services/orders", "");
    assert_eq!(now["content"]["timeout"], "7s", "the edit was not applied: {now}");
    let body = http_get(gw.public, "/orders/1").text();
    assert_eq!(
        now["content"]["mock"]["routes"][0]["json"]["id"].as_u64(),
        Some(BIG_ID),
        "changing the timeout rewrote the mock's id (the JSON view showed {}); the mock now answers {body}",
        out["json_view_id"]
    );
    assert_eq!(out["json_shows_exact"], true, "the JSON view shows another number than the gateway holds: {out}");
}

/// "Download export" must save the gateway's export. It re-serialised the
/// document through JavaScript numbers, so the file held another id than
/// the gateway, and importing it back (GitOps) changed the mock. Fixed: the
/// gateway's text is saved as it came.
#[test]
fn the_downloaded_export_is_the_gateways_export() {
    let gw = gateway("[server]\nworkers = 1\n");
    put(&gw, "/services/orders", &mock_with_big_id());
    let (_, exported) = api(&gw, "GET", "/config/export", "");
    let out = run("export_download", &ui(&gw), Some(TOKEN), json!({}), || {});
    let file: Value = serde_json::from_str(out["text"].as_str().unwrap_or("")).expect("the download is JSON");
    assert_eq!(
        file["services"]["orders"]["mock"]["routes"][0]["json"]["id"],
        exported["services"]["orders"]["mock"]["routes"][0]["json"]["id"],
        "the downloaded export differs from GET /config/export"
    );
    assert_eq!(file, exported);
}

/// The import preview ("what it changes") must see a change the import will
/// apply. A file whose only change is a 64-bit id was previewed as "Nothing:
/// the file matches what is active", then applied as a change (fixed).
#[test]
fn the_import_preview_sees_a_changed_big_integer() {
    let gw = gateway("[server]\nworkers = 1\n");
    put(&gw, "/services/orders", &mock_with_big_id());
    let (_, mut doc) = api(&gw, "GET", "/config/export", "");
    doc["services"]["orders"]["mock"]["routes"][0]["json"]["id"] = json!(BIG_ID + 1);
    let text = doc.to_string();
    let (st, _) = api(&gw, "POST", "/config/validate", &text);
    assert_eq!(st, 200);
    let out = run("import_preview", &ui(&gw), Some(TOKEN), json!({ "document": text }), || {});
    let summary = out["summary"].as_str().unwrap_or_default();
    assert!(
        !summary.contains("Nothing") && summary.contains("changed: orders"),
        "the preview hides a change the import applies: {summary:?}"
    );
}

/// An edit in progress survives a 401 (the gateway restarted with another
/// token, or the token was rotated): after signing in again the typed value
/// and comment are still there to save. The login form replaced the view
/// and the edit was gone; now it covers the view, which stays mounted.
#[test]
fn an_edit_survives_a_401_and_signing_in_again() {
    let gw = gateway("[server]\nworkers = 1\n");
    put(&gw, "/services/shop", &json!({ "instances": [], "timeout": "5s" }));
    let out = run(
        "unsaved_edit_401",
        &ui(&gw),
        Some(TOKEN),
        json!({ "name": "shop", "pointer": "/timeout", "value": "11s" }),
        || {},
    );
    assert_eq!(active_version(&gw, "services", "shop"), 1, "nothing was to be applied by the refused save");
    assert_eq!(out["kept"], true, "the unsaved edit was thrown away by the 401: {out}");
    assert_eq!(out["comment_after"], "half an hour of careful work", "{out}");
}

// ---------------------------------------------------------------------------
// Findings: misleading words.

/// The form's name rule allows "." and "..", which the gateway never takes;
/// the browser then folds the dot segment into the URL and the PUT goes to
/// `/services/` or `/`. The form must refuse them itself, like any bad name.
#[test]
fn dot_names_are_refused_by_the_form() {
    let gw = gateway("[server]\nworkers = 1\n");
    let mut seen = Vec::new();
    for name in [".", ".."] {
        let out = run("dot_name", &ui(&gw), Some(TOKEN), json!({ "name": name }), || {});
        seen.push(format!("{name:?}: {} (PUT to {})", out["shown"], out["put"]));
    }
    assert!(
        seen.iter().all(|s| s.contains("A name is 1 to 64") && s.contains("PUT to []")),
        "the form sent dot names to other URLs: {seen:#?}"
    );
}

/// A token with a character outside ISO-8859-1 (pasted from a document) is a
/// wrong token: the form must say it was refused, not that the gateway did
/// not answer, and no "Cannot reach the gateway" banner may appear.
#[test]
fn a_non_latin1_token_is_said_refused_not_unreachable() {
    let gw = gateway("[server]\nworkers = 1\n");
    let out = run("non_latin1_token", &ui(&gw), Some(TOKEN), json!({ "token": "wrong-tökén-€-0123456789" }), || {});
    assert_eq!(out["banner"], Value::Null, "a local header error is shown as the gateway being down: {out}");
    assert_eq!(out["shown"], "refused", "{out}");
}

/// Guard: an import over the admin body limit (8 MiB) is said to be too
/// large, not "cannot reach the gateway".
#[test]
fn an_import_over_the_body_limit_is_said_too_large() {
    let gw = gateway("[server]\nworkers = 1\n");
    let out = run("huge_import", &ui(&gw), Some(TOKEN), json!({ "mb": 9 }), || {});
    assert_eq!(out["banner"], Value::Null, "{out}");
    assert!(out["message"].as_str().is_some_and(|m| m.contains("too large")), "{out}");
    assert_eq!(api(&gw, "GET", "/services/big", "").0, 404, "nothing imported");
}

// ---------------------------------------------------------------------------
// Findings and guards: size and time.

/// The gateway sends at most 50 series per `/stats` answer (the busiest),
/// so a dashboard stays readable and cheap with many services. The page
/// kept the union of every name it had seen: while the busiest set moves
/// (load shifting between 200 services), the charts grew past 50 lines and
/// legend entries, towards every service, each redrawn every second. Now
/// the charts draw the 50 names seen most recently.
#[test]
fn dashboard_series_stay_bounded_while_the_busiest_change() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"ok")));
    let gw = gateway("[server]\nworkers = 2\n");
    let names: Vec<String> = (0..200).map(|i| format!("s{i:03}")).collect();
    let services: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.clone(), json!({ "instances": [origin.addr.to_string()] }))).collect();
    let (st, v) = api(&gw, "POST", "/config/import", &json!({ "services": services }).to_string());
    assert_eq!(st, 200, "{v}");
    let stop = Arc::new(AtomicBool::new(false));
    let public = gw.public;
    let load = {
        let stop = stop.clone();
        let names = names.clone();
        move || {
            // 50 services at a time, 6 s each (longer than the 5 s window):
            // each group in turn is the busiest.
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let group = (started.elapsed().as_secs() / 6) as usize % 4;
                    for n in &names[group * 50..group * 50 + 50] {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        // Not `http_get`, which panics once the gateway is gone at the end.
                        let Ok(mut s) = std::net::TcpStream::connect(public) else { return };
                        let req = format!("GET /{n}/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
                        let _ = std::io::Write::write_all(&mut s, req.as_bytes());
                        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
                    }
                }
            });
        }
    };
    let out = run("dashboard_series", &ui(&gw), Some(TOKEN), json!({ "timeout_s": 30, "max_series": 50 }), load);
    stop.store(true, Ordering::Relaxed);
    assert!(out["answer_max"].as_u64().unwrap_or(0) <= 50, "the gateway's own bound: {out}");
    assert!(
        out["legend_max"].as_u64().unwrap_or(0) <= 50,
        "the rps chart shows {} services (the gateway never sent more than {} in one answer); {} paths on the page, a re-render takes {:.0} ms",
        out["legend_max"],
        out["answer_max"],
        out["paths"],
        out["render_ms"].as_f64().unwrap_or(0.0)
    );
}

/// Guard: after 30 round trips between the dashboard and Services, nothing
/// polls /stats once the dashboard is gone, and one dashboard polls about
/// once a second (no leaked timers piling up).
#[test]
fn dashboard_timers_stop_after_navigating_away() {
    let gw = gateway("[server]\nworkers = 1\n[services.s]\ninstances = []\n");
    let out = run("dashboard_timers", &ui(&gw), Some(TOKEN), json!({ "rounds": 30 }), || {});
    assert_eq!(out["away"], 0, "/stats still polled after leaving the dashboard: {out}");
    let on = out["on_dashboard"].as_u64().unwrap_or(0);
    assert!((3..=7).contains(&on), "one dashboard should poll about once a second: {on} calls in 5 s");
}

/// Guard: 2,000 services. The dashboard shows every row, its once-a-second
/// redraw leaves the page responsive (long tasks under a third of the time,
/// a click answered within a second) and the Services filter answers.
#[test]
#[ignore = "timing-bound on a shared 2-core box: run by hand"]
fn two_thousand_services_dashboard_and_list() {
    let gw = gateway("[server]\nworkers = 1\n");
    let services: serde_json::Map<String, Value> =
        (0..2000).map(|i| (format!("svc-{i:04}"), json!({ "instances": ["127.0.0.1:9"] }))).collect();
    let (st, v) = api(&gw, "POST", "/config/import", &json!({ "services": services }).to_string());
    assert_eq!(st, 200, "{v}");
    let out = run("many_services", &ui(&gw), Some(TOKEN), json!({ "count": 2000, "timeout_s": 90 }), || {});
    eprintln!("2,000 services: {out}");
    assert!(out["long_ms_per_10s"].as_f64().unwrap_or(1e9) < 3333.0, "the dashboard keeps the page busy: {out}");
    assert!(out["click_ms"].as_u64().unwrap_or(u64::MAX) < 1000, "{out}");
    assert!(out["filter_ms"].as_u64().unwrap_or(u64::MAX) < 5000, "{out}");
}

/// Pushes `count` messages of about `size` bytes to every connection on
/// `/ws/echo` over one keep-alive connection, while a plain WebSocket client
/// on the same endpoint reads them; returns (time for the pushes, time until
/// the plain client had the last one, whether it was closed).
fn flood(
    admin: std::net::SocketAddr,
    public: std::net::SocketAddr,
    control: WsClient,
    count: usize,
    size: usize,
) -> (Duration, Duration, bool) {
    let started = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut control = control;
        let last = format!("#{}#", count - 1);
        loop {
            match control.recv_data() {
                Some(f) if f.opcode == 8 => return (started.elapsed(), true),
                Some(f) if f.text().contains(&last) => return (started.elapsed(), false),
                Some(_) => {}
                None => return (started.elapsed(), true),
            }
        }
    });
    let _ = public;
    let pad = "p".repeat(size);
    let mut s = connect(admin);
    let mut buf = Vec::new();
    for i in 0..count {
        let body = format!(r##"{{"n":"#{i}#","pad":"{pad}"}}"##);
        let req = format!(
            "POST /endpoints/echo/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut s, req.as_bytes()).expect("push");
        let r = read_response(&mut s, &mut buf, false).expect("an answer to the push");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let pushed = started.elapsed();
    let (got, closed) = reader.join().expect("control reader");
    (pushed, got, closed)
}

fn echo_gateway() -> Gateway {
    gateway("[server]\nworkers = 1\n[endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\n")
}

/// Guard: a burst of 3,000 small pushes (200 bytes) into the test console:
/// every one is shown (the log keeps its last 500 lines), no long task
/// freezes the page, Clear answers within a second.
#[test]
#[ignore = "timing-bound (10 s) on a shared 2-core box: run by hand"]
fn a_console_flood_keeps_the_page_responsive() {
    let gw = echo_gateway();
    let (admin, public) = (gw.admin, gw.public);
    let control = WsClient::connect(gw.public, "/ws/echo");
    let timing = Arc::new(std::sync::Mutex::new(None));
    let t2 = timing.clone();
    let out = run(
        "console_flood",
        &ui(&gw),
        Some(TOKEN),
        json!({ "endpoint": "echo", "count": 3000, "timeout_s": 150 }),
        move || *t2.lock().unwrap() = Some(flood(admin, public, control, 3000, 200)),
    );
    eprintln!("pushes, plain client: {:?}", timing.lock().unwrap());
    assert_eq!(out["outcome"], "all shown", "{out}");
    assert_eq!(out["ws_errors"], json!([]), "{out}");
    assert!(out["lines"].as_u64().unwrap_or(u64::MAX) <= 500, "{out}");
    assert!(out["longest_ms"].as_f64().unwrap_or(f64::MAX) < 200.0, "{out}");
    assert!(out["clear_ms"].as_u64().unwrap_or(u64::MAX) < 1000, "{out}");
}

/// A burst a plain client takes in stride (3,000 pushes of 4 KiB on one
/// endpoint) got the test console closed by the gateway as a slow reader
/// (1013): the console re-rendered its whole 500-line log once per message
/// (a few ms each), so it read at about 150 messages a second; Chrome's
/// flow control then stopped reading the socket, the gateway's send queue
/// filled, and the operator's console was cut off from the very traffic it
/// was opened to watch. Now messages are collected and the log drawn when
/// they pause (at least once a second during a stream): no long task in the
/// page during the burst. Still timing-bound here: at the fastest push
/// rates (3,000 in about 0.35 s) Chrome on this 2-core box is closed now
/// and then even when the page does nothing per message, and the plain
/// client is sometimes closed too (about 1 run in 8 fails either way).
#[test]
#[ignore = "timing-bound on a shared 2-core box (fails about 1 run in 8 even with a page that does nothing per message): run by hand"]
fn the_console_keeps_up_with_a_burst_a_plain_client_takes() {
    let gw = echo_gateway();
    let (admin, public) = (gw.admin, gw.public);
    let control = WsClient::connect(gw.public, "/ws/echo");
    let timing = Arc::new(std::sync::Mutex::new(None));
    let t2 = timing.clone();
    let out = run(
        "console_flood",
        &ui(&gw),
        Some(TOKEN),
        json!({ "endpoint": "echo", "count": 3000, "timeout_s": 150 }),
        move || *t2.lock().unwrap() = Some(flood(admin, public, control, 3000, 4096)),
    );
    let timing = timing.lock().unwrap().expect("the flood ran");
    eprintln!("pushes took {:?}; the plain client had them all after {:?} (closed: {})", timing.0, timing.1, timing.2);
    assert!(!timing.2, "the plain client was closed too: not a console problem");
    // Whatever closes the console, the gateway must close it by the
    // protocol: no data frame after its Close frame (RFC 6455 5.5.1).
    assert_eq!(out["ws_errors"], json!([]), "the gateway broke the WebSocket close handshake: {out}");
    assert_eq!(
        out["outcome"],
        "all shown",
        "the console was closed ({}) by a burst the plain client read in {:?}; it took {:.1} ms per message",
        out["state"],
        timing.1,
        out["ms_per_message"].as_f64().unwrap_or(0.0)
    );
}

/// What the console ran into, without a browser: a client that reads
/// nothing while pushes fill its send queue is closed as a slow reader
/// (`503 send_queue_full`, then `1013`). After its Close frame the gateway
/// must send no data frame (RFC 6455 5.5.1: the endpoint "MUST NOT send
/// any more data frames"); Chrome fails such a connection with "Data frame
/// received after close" (1006) instead of reporting 1013.
#[test]
fn a_slow_reader_gets_no_data_frame_after_the_close() {
    let gw = echo_gateway();
    let mut slow = WsClient::connect(gw.public, "/ws/echo");
    let id = slow.id();
    let pad = "p".repeat(4096);
    let mut s = connect(gw.admin);
    let mut buf = Vec::new();
    let mut refused = None;
    for i in 0..20_000 {
        let body = format!(r##"{{"n":"#{i}#","pad":"{pad}"}}"##);
        let req = format!(
            "POST /connections/{id} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut s, req.as_bytes()).expect("push");
        let r = read_response(&mut s, &mut buf, false).expect("an answer to the push");
        if r.status != 200 {
            refused = Some((i, r.status, r.text()));
            break;
        }
    }
    let (pushed, status, text) = refused.expect("20,000 pushes of 4 KiB never filled the send queue");
    assert_eq!(status, 503, "{text}");
    // Read everything now: data frames, the Close, and whatever follows it.
    slow.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let (mut data, mut close_at, mut after_close, mut code) = (0usize, None, 0usize, None);
    while let Some(f) = slow.recv() {
        match f.opcode {
            8 if close_at.is_none() => {
                close_at = Some(data);
                code = f.payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            }
            0..=2 if close_at.is_some() => after_close += 1,
            0..=2 => data += 1,
            _ => {}
        }
    }
    eprintln!("{pushed} pushes before 503; {data} data frames, Close {code:?} after them, {after_close} data frames after the Close");
    assert!(close_at.is_some(), "no Close frame for the slow reader");
    assert_eq!(after_close, 0, "the gateway sent {after_close} data frames after its Close ({code:?})");
}

/// A version of 15,000 lines (a mock's JSON array; the diff's cap is
/// 20,000): the diff shows within 10 s, the edit form within 10 s, and a key
/// typed into the Comment field shows within 100 ms (the usual budget for
/// answering input). Every key re-rendered the whole generated form (every
/// field was state of one `Editor`), so typing a comment lagged with the
/// entity's size. Now the comment is an input of its own and form rows
/// render again only when their value changes.
#[test]
fn a_large_version_diff_and_form_stay_usable() {
    let gw = gateway("[server]\nworkers = 1\n");
    let doc = |k: u64| {
        let items: Vec<u64> = (0..15_000u64).map(|i| i * k).collect();
        json!({ "instances": [], "mock": { "routes": [ { "path": "/*", "status": 200, "json": items } ] } })
    };
    put(&gw, "/services/big", &doc(1));
    put(&gw, "/services/big", &doc(3));
    let out = run(
        "large_version",
        &ui(&gw),
        Some(TOKEN),
        json!({ "name": "big", "from": 1, "to": 2, "timeout_s": 120 }),
        || {},
    );
    eprintln!("large version: {out}");
    assert!(out["diff_ms"].as_u64().unwrap_or(u64::MAX) < 10_000, "{out}");
    assert!(out["form_ms"].as_u64().unwrap_or(u64::MAX) < 10_000, "{out}");
    assert!(out["key_ms"].as_f64().unwrap_or(f64::MAX) < 100.0, "typing lags on a large entity: {out}");
}

/// Guard: 120 open connections page through 50 at a time (the page never
/// asks for everything), every connection once, Next off at the end.
#[test]
fn many_connections_page_through() {
    let gw = echo_gateway();
    let clients: Vec<WsClient> = (0..120).map(|_| WsClient::connect(gw.public, "/ws/echo")).collect();
    let out = run("connections_paging", &ui(&gw), Some(TOKEN), json!({ "total": 120 }), || {});
    assert_eq!(out["sizes"], json!([50, 50, 20]), "{out}");
    assert_eq!(out["distinct"], 120, "{out}");
    assert!(out["back"].as_str().is_some_and(|b| b.starts_with("Page 2:")), "{out}");
    drop(clients);
}

/// With a gateway that answers the list slowly (1.5 s), the Connections
/// view showed the previous page's rows under the next page's caption while
/// it waited (it said nothing about loading), and Next stayed enabled with
/// the old page's cursor: two quick clicks gave a "Page 4" that repeated
/// page 3. The caption must describe the rows on screen, or the rows must go
/// while the next page loads (now: "Loading page N…", Next and Previous off).
#[test]
fn the_connections_caption_describes_the_rows_shown() {
    let gw = echo_gateway();
    let clients: Vec<WsClient> = (0..120).map(|_| WsClient::connect(gw.public, "/ws/echo")).collect();
    let out = run("connections_stale", &ui(&gw), Some(TOKEN), json!({ "timeout_s": 60 }), || {});
    drop(clients);
    assert_eq!(
        out["during"]["same_rows_as_page_1"], false,
        "page 1's rows shown under \"{}\" while page 2 loads: {out}",
        out["during"]["caption"]
    );
    assert!(
        out["after"]["caption"].as_str().is_some_and(|c| c.starts_with("Page 3: 20 ")),
        "two clicks on Next led to {}: {out}",
        out["after"]["caption"]
    );
}

/// Guard: a gateway (or a proxy in front of it) answering 502 with HTML,
/// 200 with HTML where JSON belongs, and slowly: said in words, no page
/// error, no markup from the answers, and the dashboard recovers on its own.
#[test]
fn gateway_errors_are_said_in_words_and_recovered() {
    let gw = gateway("[server]\nworkers = 1\n[services.shop]\ninstances = []\n");
    let out = run("gateway_errors", &ui(&gw), Some(TOKEN), json!({ "service": "shop" }), || {});
    assert_eq!(out["recovered"], true, "{out}");
    assert_eq!(out["marked"], 0, "{out}");
    assert_eq!(out["slow_loading_shown"], true, "{out}");
}
