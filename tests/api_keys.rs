//! API keys over real sockets: consumers, keys made and revoked through the
//! admin API, services and WebSocket endpoints that require them.

mod common;
use common::kafka::admin;
use common::ws::{upgrade_raw, WsClient};
use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: (&str, &str) = ("WASP_KEY_SECRET", "an-hmac-secret-of-at-least-32-bytes!!");

fn start(extra: &str, origin: std::net::SocketAddr) -> Gateway {
    Gateway::start_with(
        &format!(
            r#"[consumers.alice]
[services.orders]
instances = ["{origin}"]
auth = {{ api_key = {{ header = "X-Api-Key", query = "api_key" }} }}
[services.open]
instances = ["{origin}"]
{extra}"#
        ),
        &[],
        &[SECRET],
    )
}

fn get(gw: &Gateway, path: &str, key: Option<&str>) -> Resp {
    let h = key.map(|k| format!("X-Api-Key: {k}\r\n")).unwrap_or_default();
    raw(gw.public, format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{h}\r\n").as_bytes())
}

fn new_key(gw: &Gateway, consumer: &str) -> (String, String) {
    let (st, v) = admin(gw, "POST", &format!("/consumers/{consumer}/keys"), "");
    assert_eq!(st, 201, "{v}");
    (v["id"].as_str().unwrap().to_string(), v["key"].as_str().unwrap().to_string())
}

#[test]
fn a_key_lets_its_consumer_in_and_nothing_else_does() {
    let origin = Origin::echo();
    let gw = start("", origin.addr);
    let r = get(&gw, "/orders/x", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("\"error\":\"unauthorized\""), "{}", r.text());
    assert_eq!(r.header("www-authenticate").as_deref(), Some("ApiKey header=\"x-api-key\" query=\"api_key\""));
    assert_eq!(get(&gw, "/orders/x", Some("wasp_not-a-key")).status, 401);
    assert!(origin.requests().is_empty(), "nothing reached the service");
    assert_eq!(get(&gw, "/open/x", None).status, 200, "a service without auth is open");

    let (_, key) = new_key(&gw, "alice");
    assert!(key.starts_with("wasp_"));
    let r = get(&gw, "/orders/x", Some(&key));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.last();
    assert_eq!(seen.header("x-wasp-consumer").as_deref(), Some("alice"));
    assert_eq!(seen.header("x-api-key"), None, "the key is not forwarded");
    // A client cannot claim a consumer.
    let r = raw(gw.public, b"GET /open/y HTTP/1.1\r\nHost: gw\r\nX-Wasp-Consumer: alice\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(origin.last().header("x-wasp-consumer"), None);
    // In the query: taken out before the request is forwarded.
    let r = raw(gw.public, format!("GET /orders/q?a=1&api_key={key}&b=2 HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(origin.last().request_line(), "GET /q?a=1&b=2 HTTP/1.1");
    assert_eq!(metric(&gw, "wasp_auth_total", "method=\"api_key\",result=\"missing\""), 1);
    assert_eq!(metric(&gw, "wasp_auth_total", "method=\"api_key\",result=\"invalid\""), 1);
    assert_eq!(metric(&gw, "wasp_auth_total", "method=\"api_key\",result=\"ok\""), 2);
    // Keys of an unknown consumer cannot be made.
    assert_eq!(admin(&gw, "POST", "/consumers/nobody/keys", "").0, 404);
}

#[test]
fn a_revoked_key_fails_everywhere_within_a_second_under_load() {
    let origin = Origin::echo();
    let gw = start("[server]\nworkers = 2\n", origin.addr);
    let (id, key) = new_key(&gw, "alice");
    let (_, other) = new_key(&gw, "alice");
    let (st, v) = admin(&gw, "GET", "/consumers/alice/keys", "");
    assert_eq!(st, 200);
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(2));
    assert!(!v.to_string().contains(&key), "a listing never shows a key");

    let stop = Arc::new(AtomicBool::new(false));
    let revoked_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let late_ok = Arc::new(AtomicU64::new(0));
    let early_ok = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, revoked_at, late_ok, key) = (stop.clone(), revoked_at.clone(), late_ok.clone(), key.clone());
            let early_ok = early_ok.clone();
            let addr = gw.public;
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let wrote = s.write_all(
                        format!("GET /orders/load HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {key}\r\n\r\n").as_bytes(),
                    );
                    let Some(r) = wrote.ok().and_then(|_| read_response(&mut s, &mut buf, false)) else {
                        // A refusal may close the connection: open another.
                        s = connect(addr);
                        buf.clear();
                        continue;
                    };
                    let after = revoked_at.lock().unwrap().is_some_and(|t| sent > t + Duration::from_secs(1));
                    if r.status == 200 && after {
                        late_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    if r.status == 200 && revoked_at.lock().unwrap().is_none() {
                        early_ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (st, _) = admin(&gw, "DELETE", &format!("/consumers/alice/keys/{id}"), "");
    assert_eq!(st, 200);
    *revoked_at.lock().unwrap() = Some(Instant::now());
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(early_ok.load(Ordering::Relaxed) > 10, "the key worked before");
    assert_eq!(late_ok.load(Ordering::Relaxed), 0, "no request with the revoked key succeeded a second later");
    assert_eq!(get(&gw, "/orders/x", Some(&key)).status, 401);
    assert_eq!(get(&gw, "/orders/x", Some(&other)).status, 200, "the other key still works");
    assert_eq!(admin(&gw, "DELETE", &format!("/consumers/alice/keys/{id}"), "").0, 404, "revoked once");
}

#[test]
fn an_old_consumer_version_never_brings_a_revoked_key_back_and_a_deleted_consumer_has_none() {
    let origin = Origin::echo();
    let gw = start("", origin.addr);
    let (id, key) = new_key(&gw, "alice");
    assert_eq!(admin(&gw, "PUT", "/consumers/alice", r#"{"limits":{"rate":"10/s"}}"#).0, 200);
    assert_eq!(admin(&gw, "DELETE", &format!("/consumers/alice/keys/{id}"), "").0, 200);
    let (st, v) = admin(&gw, "POST", "/consumers/alice/versions/1/apply", "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(get(&gw, "/orders/x", Some(&key)).status, 401, "revocation is not a config version");

    let (_, key2) = new_key(&gw, "alice");
    assert_eq!(get(&gw, "/orders/x", Some(&key2)).status, 200);
    assert_eq!(admin(&gw, "DELETE", "/consumers/alice", "").0, 200);
    assert_eq!(get(&gw, "/orders/x", Some(&key2)).status, 401, "a deleted consumer's keys stop");
}

#[test]
fn a_key_is_never_kept_or_logged_in_clear() {
    let origin = Origin::echo();
    let dir = temp_dir("keys-store");
    let store = dir.join("store.db");
    let gw = start(&format!("[store]\npath = \"{}\"\n", store.display()), origin.addr);
    let (_, key) = new_key(&gw, "alice");
    let r = raw(gw.public, format!("GET /orders/q?api_key={key} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(get(&gw, "/orders/h", Some(&key)).status, 200);
    let (_, export) = admin(&gw, "GET", "/config/export", "");
    assert!(export["consumers"]["alice"].is_object(), "{export}");
    assert!(!export.to_string().contains(&key));
    std::thread::sleep(Duration::from_millis(300));
    let logs = gw.logs.lock().unwrap().join("\n");
    assert!(logs.contains("/orders/q"), "the access log has the request");
    assert!(!logs.contains(&key), "the access log never has the key");
    for f in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        let secret = key.as_bytes();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret), "the store holds the key in clear");
    }
}

#[test]
fn without_a_secret_no_key_is_made() {
    let gw = Gateway::start("[consumers.alice]\n");
    let (st, v) = admin(&gw, "POST", "/consumers/alice/keys", "");
    assert_eq!(st, 409, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("key_secret_env")), "{v}");
}

#[test]
fn a_websocket_endpoint_takes_a_key_and_tells_connect_and_integrations_who() {
    let origin = Origin::echo();
    let gw = start(
        &format!(
            r#"[endpoints.chat]
path = "/ws/chat"
auth = {{ api_key = {{ header = "X-Api-Key", query = "api_key" }} }}
[endpoints.chat.routes."$connect"]
http = ["http://{a}/connect"]
[endpoints.chat.routes."$default"]
http = ["http://{a}/events"]
"#,
            a = origin.addr
        ),
        origin.addr,
    );
    let (_, head, _) = upgrade_raw(gw.public, "/ws/chat", "");
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    let (_, head, _) = upgrade_raw(gw.public, "/ws/chat?api_key=wasp_wrong", "");
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(origin.requests().is_empty(), "$connect is not called for a refused upgrade");
    let (_, key) = new_key(&gw, "alice");
    let mut ws = WsClient::connect(gw.public, &format!("/ws/chat?room=1&api_key={key}"));
    let connect = origin.wait_for("/connect");
    let body = String::from_utf8_lossy(&connect.body).into_owned();
    assert!(body.contains(r#""consumer":"alice""#), "{body}");
    assert!(body.contains(r#""query":"room=1""#), "{body}");
    assert!(!body.contains(&key), "the key never reaches $connect: {body}");
    assert_eq!(connect.header("x-wasp-consumer").as_deref(), Some("alice"));
    ws.send_text(r#"{"hello":1}"#);
    let ev = origin.wait_for("/events");
    assert_eq!(ev.header("x-wasp-consumer").as_deref(), Some("alice"));
    let _ = WsClient::connect_with(gw.public, "/ws/chat", &format!("X-Api-Key: {key}\r\n"));
}

#[test]
fn the_cli_makes_lists_and_revokes_keys_and_consumers() {
    let origin = Origin::echo();
    let gw = start("", origin.addr);
    let wasp = |args: &[&str]| -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasp"))
            .arg(args[0])
            .args(["--admin", &format!("http://{}", gw.admin)])
            .args(&args[1..])
            .env_remove("WASP_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = wasp(&["consumers", "put", "bob"]);
    assert!(ok, "{out}");
    let (ok, out) = wasp(&["keys", "create", "bob", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    let (id, key) = (v["id"].as_str().unwrap().to_string(), v["key"].as_str().unwrap().to_string());
    let r = get(&gw, "/orders/x", Some(&key));
    assert_eq!(r.status, 200);
    assert_eq!(origin.last().header("x-wasp-consumer").as_deref(), Some("bob"));
    let (ok, out) = wasp(&["keys", "list", "bob"]);
    assert!(ok && out.contains(&id) && !out.contains(&key), "{out}");
    let (ok, out) = wasp(&["consumers", "list"]);
    assert!(ok && out.contains("bob") && out.contains("alice"), "{out}");
    let (ok, out) = wasp(&["keys", "revoke", "bob", &id]);
    assert!(ok, "{out}");
    assert_eq!(get(&gw, "/orders/x", Some(&key)).status, 401);
    let (ok, out) = wasp(&["keys", "revoke", "bob", &id]);
    assert!(!ok && out.contains("404"), "{out}");
    let (ok, out) = wasp(&["consumers", "delete", "bob"]);
    assert!(ok, "{out}");
}
