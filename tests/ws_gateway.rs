//! The WebSocket gateway over real sockets: handshakes, routes, integrations
//! (real HTTP backends), the push API, limits, drain.

mod common;
use common::ws::{upgrade_raw, WsClient};
use common::*;
use std::time::Duration;

/// A backend that records events and answers `{"got": <body>}`; `/fail`
/// answers 500, `/connect-deny` 403, `/connect` 200 with groups.
fn backend() -> Origin {
    Origin::start(|s| {
        let line = s.request_line().to_string();
        if line.contains("/fail") {
            Reply::Raw(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops".to_vec())
        } else if line.contains("/connect-deny") {
            Reply::Raw(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\nno way".to_vec())
        } else if line.contains("/connect") {
            Reply::Raw(b"HTTP/1.1 200 OK\r\nx-wasp-groups: room1, vip\r\ncontent-length: 0\r\n\r\n".to_vec())
        } else {
            let body = format!(r#"{{"got":{}}}"#, String::from_utf8_lossy(&s.body));
            Reply::Raw(ok_response(body.as_bytes()))
        }
    })
}

fn chat_config(b: &Origin, audit: &Origin, extra: &str) -> String {
    format!(
        r#"
[server]
workers = 2
[endpoints.chat]
path = "/ws/chat"
route_selection = "$.action"
{extra}
[endpoints.chat.routes."$connect"]
http = ["http://{b}/connect"]
[endpoints.chat.routes."$disconnect"]
http = ["http://{b}/disconnect"]
[endpoints.chat.routes."$error"]
http = ["http://{b}/error"]
[endpoints.chat.routes.order_create]
match = {{ "$.type" = "order", "$.op" = "create" }}
http = ["http://{b}/orders"]
reply = true
[endpoints.chat.routes.send]
http = ["http://{b}/messages", "http://{audit}/audit"]
ack = true
reply = true
[endpoints.chat.routes.broken]
http = ["http://{b}/fail"]
[endpoints.chat.routes.down]
http = ["http://{dead}/x"]
[endpoints.chat.routes.ackonly]
ack = true
[endpoints.chat.routes."$default"]
http = ["http://{b}/default"]
reply = true

[endpoints.bare]
path = "/ws/bare"
route_selection = "$.action"
[endpoints.bare.routes.ping]
ack = true
"#,
        b = b.addr,
        audit = audit.addr,
        dead = dead_addr()
    )
}

#[test]
fn endpoint_path_only_accepts_valid_upgrades() {
    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, ""));
    let r = http_get(gw.public, "/ws/chat");
    assert_eq!(r.status, 426);
    assert!(r.text().contains("\"error\":\"upgrade_required\""), "{}", r.text());
    let r = raw(gw.public, b"GET /ws/chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Sec-WebSocket-Key"));
    let r = raw(gw.public, b"GET /ws/chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n");
    assert_eq!(r.status, 400);
    let r = raw(gw.public, b"POST /ws/chat HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 426);
}

#[test]
fn connect_can_refuse_or_assign_groups() {
    let (b, a) = (backend(), backend());
    let mut cfg = chat_config(&b, &a, "");
    cfg = cfg.replace(&format!("http://{}/connect\"]", b.addr), &format!("http://{}/connect-deny\"]", b.addr));
    let gw = Gateway::start(&cfg);
    let (_s, head, _) = upgrade_raw(gw.public, "/ws/chat?token=abc", "X-Client: 7\r\n");
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    let seen = b.wait_for("/connect-deny");
    let body = String::from_utf8_lossy(&seen.body).into_owned();
    assert!(
        body.contains("\"query\":\"token=abc\"")
            && body.contains("\"x-client\":\"7\"")
            && body.contains("\"connection_id\":\""),
        "{body}"
    );
    assert!(seen.header("x-wasp-connection-id").is_some());
    assert_eq!(seen.header("x-wasp-route").as_deref(), Some("$connect"));

    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, ""));
    let c = WsClient::connect(gw.public, "/ws/chat");
    let info = http_get(gw.admin, &format!("/connections/{}", c.id()));
    assert_eq!(info.status, 200);
    assert!(info.text().contains(r#""groups":["room1","vip"]"#), "{}", info.text());
    assert!(info.text().contains(r#""endpoint":"chat""#));
}

#[test]
fn routes_ack_reply_fanout_match_and_default() {
    let (b, audit) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &audit, ""));
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    c.send_text(r#"{"action":"send","id":"m1","text":"hi"}"#);
    assert_eq!(c.recv_text(), r#"{"type":"ack","route":"send","id":"m1"}"#);
    assert_eq!(c.recv_text(), r#"{"got":{"action":"send","id":"m1","text":"hi"}}"#);
    let seen = b.wait_for("/messages");
    assert_eq!(seen.request_line(), "POST /messages HTTP/1.1");
    assert_eq!(seen.body, br#"{"action":"send","id":"m1","text":"hi"}"#);
    assert_eq!(seen.header("x-wasp-connection-id"), Some(c.id()));
    assert_eq!(seen.header("x-wasp-endpoint").as_deref(), Some("chat"));
    assert_eq!(seen.header("x-wasp-route").as_deref(), Some("send"));
    assert!(seen.header("x-request-id").is_some());
    let audited = audit.wait_for("/audit");
    assert_eq!(audited.body, seen.body, "fan-out: the second backend got the same event");

    c.send_text(r#"{"type":"order","op":"create","action":"send","n":1}"#);
    assert!(c.recv_text().starts_with(r#"{"got":{"type":"order""#), "match routes come first");
    b.wait_for("/orders");
    c.send_text(r#"{"action":"unknown-thing"}"#);
    assert_eq!(c.recv_text(), r#"{"got":{"action":"unknown-thing"}}"#);
    b.wait_for("/default");
    // A numeric id is echoed as a number; no id: the request id.
    c.send_text(r#"{"action":"ackonly","id":42}"#);
    assert_eq!(c.recv_text(), r#"{"type":"ack","route":"ackonly","id":42}"#);
    c.send_text(r#"{"action":"ackonly"}"#);
    assert!(c.recv_text().starts_with(r#"{"type":"ack","route":"ackonly","id":""#));
}

#[test]
fn bad_events_get_error_events_and_error_route() {
    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, ""));
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    c.send_text("this is not json");
    let e = c.recv_text();
    assert!(e.starts_with(r#"{"type":"error","error":"invalid_json""#), "{e}");
    let told = b.wait_for("/error");
    assert!(String::from_utf8_lossy(&told.body).contains("invalid_json"));
    c.send_raw(&WsClient::frame(0x82, b"\x01\x02"));
    assert!(c.recv_text().contains("binary_not_supported"));
    c.send_text(r#"{"action":"broken"}"#);
    let e = c.recv_text();
    assert!(
        e.contains(r#""error":"integration_failed""#)
            && e.contains(r#""route":"broken""#)
            && e.contains(r#""request_id":""#)
            && e.contains(r#""status":500"#),
        "{e}"
    );
    c.send_text(r#"{"action":"down"}"#);
    let e = c.recv_text();
    assert!(e.contains(r#""route":"down""#) && e.contains(r#""status":503"#), "{e}");
    // Still connected and working.
    c.send_text(r#"{"action":"ackonly","id":"x"}"#);
    assert!(c.recv_text().contains("ack"));
    // Invalid UTF-8 in a text frame closes with 1007.
    c.send_raw(&WsClient::frame(0x81, &[b'{', 0xff, b'}']));
    assert_eq!(c.recv_close(), Some(1007));

    // No route and no $default: an error event, the connection stays.
    let mut bare = WsClient::connect(gw.public, "/ws/bare");
    bare.send_text(r#"{"action":"nothing"}"#);
    assert!(bare.recv_text().contains(r#""error":"no_route""#));
    bare.send_text(r#"{"action":"ping","id":1}"#);
    assert_eq!(bare.recv_text(), r#"{"type":"ack","route":"ping","id":1}"#);
}

#[test]
fn disconnect_is_called_for_every_ending() {
    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, ""));
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    let id = c.id();
    c.send_close(1000);
    assert_eq!(c.recv_close(), Some(1000));
    let d = b.wait_for("/disconnect");
    let body = String::from_utf8_lossy(&d.body).into_owned();
    assert!(body.contains(&format!(r#""connection_id":"{id}""#)) && body.contains(r#""close_code":1000"#), "{body}");
    // An abrupt end (no close frame) is reported too.
    let c2 = WsClient::connect(gw.public, "/ws/chat");
    let id2 = c2.id();
    drop(c2);
    for _ in 0..200 {
        if b.requests()
            .iter()
            .any(|s| s.request_line().contains("/disconnect") && String::from_utf8_lossy(&s.body).contains(&id2))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no $disconnect for an abrupt close");
}

#[test]
fn push_api_single_groups_endpoint_list_close() {
    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, ""));
    let mut c1 = WsClient::connect(gw.public, "/ws/chat");
    let mut c2 = WsClient::connect(gw.public, "/ws/chat");
    let mut c3 = WsClient::connect(gw.public, "/ws/bare");
    let post = |path: &str, body: &str| {
        raw(
            gw.admin,
            format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        )
    };
    let r = post(&format!("/connections/{}", c1.id()), r#"{"hello":1}"#);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"queued":1}"#));
    assert_eq!(c1.recv_text(), r#"{"hello":1}"#);
    let r = post("/connections/0000ff00000000000001", "x");
    assert_eq!((r.status, r.text().as_str()), (404, r#"{"error":"gone"}"#));
    let r = post("/connections/not-an-id", "x");
    assert_eq!(r.status, 404);

    // Groups: both chat clients are in room1 and vip from $connect.
    let r = raw(
        gw.admin,
        format!(
            "DELETE /connections/{}/groups/vip HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\r\n",
            c2.id()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let r = raw(
        gw.admin,
        format!("PUT /connections/{}/groups/bare-room HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n", c3.id())
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let r = post("/groups/vip/messages", "to-vip");
    assert_eq!(r.text(), r#"{"queued":1}"#);
    assert_eq!(c1.recv_text(), "to-vip");
    let r = post("/groups/room1/messages", "to-room1");
    assert_eq!(r.text(), r#"{"queued":2}"#);
    assert_eq!(c1.recv_text(), "to-room1");
    assert_eq!(c2.recv_text(), "to-room1");
    let r = post("/endpoints/chat/messages", "everyone");
    assert_eq!(r.text(), r#"{"queued":2}"#);
    assert_eq!(c1.recv_text(), "everyone");
    assert_eq!(c2.recv_text(), "everyone");
    let r = post("/endpoints/bare/messages", "bare-only");
    assert_eq!(r.text(), r#"{"queued":1}"#);
    assert_eq!(c3.recv_text(), "bare-only");
    assert_eq!(post("/endpoints/nope/messages", "x").status, 404);

    // Listing, paged.
    let r = http_get(gw.admin, "/connections?endpoint=chat&limit=1");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["connections"].as_array().unwrap().len(), 1);
    let next = v["next"].as_str().expect("a next cursor").to_string();
    let r = http_get(gw.admin, &format!("/connections?endpoint=chat&limit=1&cursor={next}"));
    let v2: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v2["connections"].as_array().unwrap().len(), 1);
    assert!(v2["next"].is_null());
    assert_ne!(v["connections"][0]["id"], v2["connections"][0]["id"]);
    let r = http_get(gw.admin, "/connections?group=bare-room");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["connections"][0]["id"].as_str(), Some(c3.id().as_str()));

    // Close with a code.
    let r = raw(
        gw.admin,
        format!("DELETE /connections/{}?code=4001&reason=bye HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\r\n", c2.id()).as_bytes(),
    );
    assert_eq!(r.status, 200);
    let f = loop {
        let f = c2.recv().expect("close frame");
        if f.opcode == 8 {
            break f;
        }
    };
    assert_eq!(f.close_code(), Some(4001));
    assert_eq!(&f.payload[2..], b"bye");
    // The push API is not on the public listener.
    assert_eq!(http_get(gw.public, "/connections").status, 404);
}

#[test]
fn limits_frame_size_rate_and_slow_reader() {
    let (b, a) = (backend(), backend());
    let extra = "max_frame_bytes = 1000\nmax_message_bytes = 1500\nmessages_per_second = 5\nsend_queue_bytes = 65536";
    let gw = Gateway::start(&chat_config(&b, &a, extra));
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    c.send_raw(&WsClient::frame(0x81, &vec![b'a'; 1001]));
    assert_eq!(c.recv_close(), Some(1009), "frame over max_frame_bytes");
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    c.send_raw(&WsClient::frame(0x01, &vec![b'a'; 900]));
    c.send_raw(&WsClient::frame(0x80, &vec![b'a'; 900]));
    assert_eq!(c.recv_close(), Some(1009), "message over max_message_bytes");

    let mut c = WsClient::connect(gw.public, "/ws/chat");
    for i in 0..20 {
        c.send_text(&format!(r#"{{"action":"ackonly","id":{i}}}"#));
    }
    assert_eq!(c.recv_close(), Some(1008), "over messages_per_second");

    // A client that never reads: pushes fill the socket, then the queue: 503, then close 1013.
    // On `bare` (default limits): a push over chat's max_message_bytes is refused with 413
    // (tests/ws_bounds.rs), never queued.
    let c = WsClient::connect(gw.public, "/ws/bare");
    let id = c.id();
    let chunk = "x".repeat(60_000);
    let mut saw_full = false;
    for _ in 0..2000 {
        let r = raw(
            gw.admin,
            format!("POST /connections/{id} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{chunk}", chunk.len())
                .as_bytes(),
        );
        if r.status == 503 {
            assert!(r.text().contains("send_queue_full"));
            saw_full = true;
            break;
        }
        assert_eq!(r.status, 200);
    }
    assert!(saw_full, "the send queue is bounded");
    let r = raw(
        gw.admin,
        format!("GET /connections/{id} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\r\n")
            .as_bytes(),
    );
    assert!(r.status == 200 || r.status == 404);
    drop(c);
}

#[test]
fn idle_connections_are_pinged_then_closed() {
    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, "ping_interval = \"200ms\"\nidle_timeout = \"700ms\""));
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    let f = c.recv().expect("a ping");
    assert_eq!(f.opcode, 9);
    // We do not answer: the connection is closed as idle with 1001.
    assert_eq!(c.recv_close(), Some(1001));
}

#[test]
fn sigterm_closes_websockets_with_1001_and_exits() {
    let (b, a) = (backend(), backend());
    let mut gw = Gateway::start(&chat_config(&b, &a, ""));
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    gw.signal(SIGTERM);
    assert_eq!(c.recv_close(), Some(1001));
    c.send_close(1001);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}

#[test]
fn independent_client_python_websockets() {
    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, ""));
    let script = format!(
        r#"
import asyncio, json, websockets
async def main():
    async with websockets.connect("ws://{addr}/ws/chat") as ws:
        await ws.send(json.dumps({{"action": "send", "id": "py1", "text": "hello"}}))
        ack = json.loads(await ws.recv())
        reply = json.loads(await ws.recv())
        assert ack == {{"type": "ack", "route": "send", "id": "py1"}}, ack
        assert reply == {{"got": {{"action": "send", "id": "py1", "text": "hello"}}}}, reply
        await ws.send("not json")
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["error"] == "invalid_json", err
    print("python client ok")
asyncio.run(main())
"#,
        addr = gw.public
    );
    let out = std::process::Command::new(python()).arg("-c").arg(script).output().expect("run python");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client ok"));
}

#[test]
fn autobahn_conformance_cases_pass_on_an_echo_endpoint() {
    let cfg = "[server]\nworkers = 1\n[endpoints.echo]\npath = \"/ws/echo\"\nmode = \"echo\"\nmax_frame_bytes = 16777216\nmax_message_bytes = 16777216\nsend_queue_bytes = 67108864\n";
    let gw = Gateway::start(cfg);
    let dir = temp_dir("autobahn");
    let kosoku = std::path::Path::new(&python()).with_file_name("kosoku");
    // 12.* and 13.* need permessage-deflate, which wasp does not negotiate.
    let out = std::process::Command::new(kosoku)
        .args(["-p", "2", "-x", "12.*", "-x", "13.*", "-o"])
        .arg(&dir)
        .arg(format!("ws://{}/ws/echo", gw.public))
        .output()
        .expect("kosoku (installed by .ci/run; WASP_TEST_PYTHON or target/pyenv)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Autobahn cases failed:\n{text}");
    assert!(text.contains("301 cases passed"), "{text}");
}

/// The Python with `websockets` and `kosoku`: target/pyenv, made by .ci/run.
fn python() -> String {
    std::env::var("WASP_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python").to_string())
}

#[test]
fn loadtest_client_round_trips_and_broadcast() {
    let (b, a) = (backend(), backend());
    let gw = Gateway::start(&chat_config(&b, &a, ""));
    let run = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(loadtest_bin())
            .args(args)
            .args(["--quiet", "--json", "-"])
            .output()
            .expect("run loadtest");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(&text[text.find('{').expect("json summary")..]).expect("json")
    };
    let url = format!("ws://{}/ws/chat", gw.public);
    // Round trips through the `$default` route (reply = true) to a real backend.
    let v = run(&[&url, "-c", "8", "-d", "1s", "--message", r#"{"action":"other","n":1}"#]);
    assert_eq!(v["mode"], "round-trip");
    assert_eq!(v["connections_opened"], 8);
    assert!(v["received"].as_u64().unwrap() > 50, "{v}");
    assert!(v["latency"]["p99_us"].as_u64().unwrap() > 0);
    // Broadcast through the push API, closed loop: nearly all delivered in the window.
    let push = format!("http://{}/endpoints/chat/messages", gw.admin);
    let v = run(&[&url, "-c", "50", "-d", "1s", "--broadcast", &push, "--message", "tick"]);
    assert_eq!(v["mode"], "broadcast");
    assert!(v["broadcasts_posted"].as_u64().unwrap() > 10, "{v}");
    assert!(v["delivery_ratio"].as_f64().unwrap() > 0.8, "{v}");
}

#[test]
fn reload_keeps_connections_and_drains_removed_endpoints() {
    let b = backend();
    let two = |second_route: &str| {
        format!(
            "[server]\nworkers = 1\n[timeouts]\ndrain = \"400ms\"\n[endpoints.keep]\npath = \"/ws/keep\"\nroute_selection = \"$.action\"\n[endpoints.keep.routes.go]\nhttp = [\"http://{}/{second_route}\"]\nreply = true\n{}",
            b.addr,
            if second_route == "v1" { "[endpoints.gone]\npath = \"/ws/gone\"\n[endpoints.gone.routes.\"$default\"]\nack = true\n" } else { "" }
        )
    };
    let gw = Gateway::start(&two("v1"));
    let mut keep = WsClient::connect(gw.public, "/ws/keep");
    let mut gone = WsClient::connect(gw.public, "/ws/gone");
    keep.send_text(r#"{"action":"go"}"#);
    assert!(keep.recv_text().starts_with(r#"{"got""#));
    assert_eq!(b.wait_for("/v1").request_line(), "POST /v1 HTTP/1.1");
    std::fs::write(&gw.config_path, two("v2")).unwrap();
    gw.signal(SIGHUP);
    assert!(gw.wait_log("configuration reloaded", Duration::from_secs(5)));
    // The changed endpoint's open connection uses the new routes.
    keep.send_text(r#"{"action":"go"}"#);
    assert!(keep.recv_text().starts_with(r#"{"got""#));
    assert_eq!(b.wait_for("/v2").request_line(), "POST /v2 HTTP/1.1");
    // The removed endpoint's connection refuses events, then gets 1001 after the drain.
    gone.send_text(r#"{"x":1}"#);
    assert!(gone.recv_text().contains("endpoint_removed"));
    let t0 = std::time::Instant::now();
    assert_eq!(gone.recv_close(), Some(1001));
    assert!(t0.elapsed() < Duration::from_secs(3));
    // The kept connection is still open.
    keep.send_text(r#"{"action":"go"}"#);
    assert!(keep.recv_text().starts_with(r#"{"got""#));
}
