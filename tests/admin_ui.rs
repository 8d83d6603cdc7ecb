//! The admin UI end to end in a real browser (headless Debian chromium via
//! playwright-core, `tests/common/browser.rs`): what an operator does there
//! must change the running gateway, and what the gateway does must show.
//! Each test checks the effect over the gateway's own sockets, not only
//! what the page says.

mod common;
use common::ws::WsClient;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "ui-admin-token-0123456789";
/// A save comment with Latin-1, other scripts and an emoji.
const COMMENT: &str = "café für Zoë — 新しい版 ✓ 🚀";

fn ui(gw: &Gateway) -> String {
    format!("http://{}/ui/", gw.admin)
}

fn api(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    let r = raw(
        gw.admin,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

fn gateway(config: &str) -> Gateway {
    Gateway::start_with(config, &[], &[("WASP_ADMIN_TOKEN", TOKEN), ("WASP_KEY_SECRET", &"k".repeat(40))])
}

fn active_version(gw: &Gateway, name: &str) -> u64 {
    api(gw, "GET", &format!("/services/{name}"), "").1["version"].as_u64().unwrap_or(0)
}

#[test]
fn login_with_the_token_and_a_wrong_one() {
    let gw = gateway("[server]\nworkers = 1\n");
    let out = common::browser::run("login", &ui(&gw), Some(TOKEN), json!({ "token": TOKEN }), || {});
    assert_eq!(out["wrong_refused"], true, "{out}");
    assert!(metric(&gw, "wasp_admin_refused_total", "reason=\"token\"") >= 1, "the wrong token reached the gateway");
}

#[test]
fn create_a_service_and_see_it_route() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"made in the browser")));
    let gw = gateway("[server]\nworkers = 2\n");
    assert_eq!(http_get(gw.public, "/fresh/x").status, 404);
    let out = common::browser::run(
        "create_service",
        &ui(&gw),
        Some(TOKEN),
        json!({ "name": "fresh", "instance": origin.addr.to_string(), "comment": COMMENT }),
        || {},
    );
    assert_eq!(out["version"], 1, "{out}");
    assert_eq!(http_get(gw.public, "/fresh/x").text(), "made in the browser");
    let (_, v) = api(&gw, "GET", "/services/fresh/versions", "");
    assert_eq!(v["versions"][0]["author"], "ui", "{v}");
    // A comment in any language arrives as typed (fetch cannot send it as
    // text above U+00FF; the UI sends its UTF-8 bytes).
    assert_eq!(v["versions"][0]["comment"], COMMENT, "{v}");
}

#[test]
fn an_invalid_edit_shows_the_field_error_and_changes_nothing() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = gateway(&config_with(&[("shop", vec![origin.addr])], ""));
    let (st, _) = api(&gw, "PUT", "/services/shop", &format!(r#"{{"instances":["{}"],"timeout":"5s"}}"#, origin.addr));
    assert_eq!(st, 200);
    let out = common::browser::run(
        "field_error",
        &ui(&gw),
        Some(TOKEN),
        json!({ "name": "shop", "pointer": "/timeout", "value": "soon" }),
        || {},
    );
    let shown = out["message"].as_str().unwrap_or_default();
    assert!(shown.contains("timeout"), "the message names the field: {out}");
    assert_eq!(active_version(&gw, "shop"), 2, "nothing applied");
    assert_eq!(http_get(gw.public, "/shop/x").text(), "A");
}

#[test]
fn apply_an_older_version_after_seeing_the_diff() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let gw = gateway(&config_with(&[("shop", vec![a.addr])], ""));
    for body in [
        format!(r#"{{"instances":["{}"],"timeout":"5s"}}"#, b.addr),
        format!(r#"{{"instances":["{}","{}"],"timeout":"7s","retry":{{"attempts":2}}}}"#, b.addr, b.addr),
    ] {
        let (st, v) = api(&gw, "PUT", "/services/shop", &body);
        assert_eq!(st, 200, "{v}");
    }
    assert_eq!(http_get(gw.public, "/shop/x").text(), "B");
    let out = common::browser::run(
        "apply_version",
        &ui(&gw),
        Some(TOKEN),
        json!({ "name": "shop", "from": 1, "to": 3, "apply": 1 }),
        || {},
    );
    assert!(out["added"].as_u64() >= Some(2) && out["removed"].as_u64() >= Some(1), "{out}");
    assert_eq!(active_version(&gw, "shop"), 1);
    assert_eq!(http_get(gw.public, "/shop/x").text(), "A", "version 1 routes again");
}

#[test]
fn the_dashboard_request_rate_rises_under_load() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"ok")));
    let gw = gateway(&config_with(&[("busy", vec![origin.addr])], ""));
    let url = format!("http://{}/busy/x", gw.public);
    let out = common::browser::run(
        "dashboard_rate",
        &ui(&gw),
        Some(TOKEN),
        json!({ "service": "busy", "min_rps": 50, "timeout_s": 25 }),
        || {
            // Load for longer than the scenario needs, in the background:
            // the page must see it while it runs.
            let url = url.clone();
            std::thread::spawn(move || {
                let _ = std::process::Command::new(loadtest_bin())
                    .args([&url, "-c", "4", "-R", "200", "-d", "20s", "--quiet"])
                    .output();
            });
        },
    );
    let rps = out["rps"].as_f64().unwrap_or(0.0);
    assert!((50.0..=260.0).contains(&rps), "the page showed {rps} req/s for a 200 req/s load: {out}");
}

#[test]
fn push_a_message_from_the_connections_page() {
    let gw = gateway("[server]\nworkers = 2\n[endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\n");
    let mut client = WsClient::connect(gw.public, "/ws/echo");
    let id = client.id();
    let out = common::browser::run(
        "push",
        &ui(&gw),
        Some(TOKEN),
        json!({ "endpoint": "echo", "message": "{\"from\":\"the connections page\"}" }),
        || {},
    );
    assert_eq!(out["id"].as_str(), Some(id.as_str()), "{out}");
    assert_eq!(client.recv_text(), "{\"from\":\"the connections page\"}");
}

#[test]
fn the_test_console_round_trip() {
    let backend = Origin::start(|seen| {
        let body = String::from_utf8_lossy(&seen.body).into_owned();
        Reply::Raw(ok_response(format!("{{\"backend_saw\":{body}}}").as_bytes()))
    });
    let gw = gateway(&format!(
        "[server]\nworkers = 1\n[endpoints.chat]\npath = \"/ws/chat\"\n\
         [endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{}/events\"]\nreply = true\n",
        backend.addr
    ));
    let out = common::browser::run(
        "console",
        &ui(&gw),
        Some(TOKEN),
        json!({ "endpoint": "chat", "event": "{\"say\":\"from the console\"}", "expect": "backend_saw" }),
        || {},
    );
    let got = out["received"].as_str().unwrap_or_default();
    assert!(got.contains("from the console"), "{out}");
    assert!(String::from_utf8_lossy(&backend.last().body).contains("from the console"));
}

#[test]
fn create_and_revoke_an_api_key() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"secret stuff")));
    let gw = gateway(&format!(
        "[server]\nworkers = 1\n[services.vault]\ninstances = [\"{}\"]\nauth = {{ api_key = {{ header = \"X-Api-Key\" }} }}\n[consumers.alice]\n",
        origin.addr
    ));
    let out = common::browser::run("keys", &ui(&gw), Some(TOKEN), json!({ "consumer": "alice" }), || {});
    let key = out["key"].as_str().unwrap_or_default();
    assert!(key.len() >= 20, "{out}");
    // Revoked in the browser: the key no longer opens the service.
    let r = raw(gw.public, format!("GET /vault/x HTTP/1.1\r\nHost: x\r\nX-Api-Key: {key}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    let (_, v) = api(&gw, "GET", "/consumers/alice/keys", "");
    assert_eq!(v["keys"], json!([]));
}

#[test]
fn import_shows_the_error_then_applies_a_good_document() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"imported")));
    let gw = gateway("[server]\nworkers = 1\n");
    let bad = json!({ "services": { "imp": { "instances": ["not an address"] } } }).to_string();
    let good = json!({ "services": { "imp": { "instances": [origin.addr.to_string()] } } }).to_string();
    let out = common::browser::run(
        "import",
        &ui(&gw),
        Some(TOKEN),
        json!({ "document_bad": bad, "document_good": good }),
        || {},
    );
    assert!(out["error_pointer"].as_str().is_some_and(|p| p.starts_with("/services/imp/instances")), "{out}");
    assert_eq!(http_get(gw.public, "/imp/x").text(), "imported");
}

#[test]
fn a_phone_width_and_the_keyboard() {
    let gw = gateway("[server]\nworkers = 1\n[services.s]\ninstances = []\n");
    common::browser::run("layout", &ui(&gw), Some(TOKEN), json!({}), || {});
}

#[test]
fn the_gateway_going_down_is_said_in_words() {
    let mut gw = gateway("[server]\nworkers = 1\n");
    let url = ui(&gw);
    common::browser::run("gateway_down", &url, Some(TOKEN), json!({}), || gw.signal(9));
    let _ = gw.wait_exit(Duration::from_secs(5));
}
