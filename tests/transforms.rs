//! `transform` filters and WebSocket route transformations over real
//! sockets: exact bodies on both sides, programs yielding zero or two
//! values, bodies that are not JSON or are compressed, size limits, and a
//! bad program refused at apply while the running one keeps working.

mod common;
use common::ws::WsClient;
use common::*;
use std::time::Duration;

/// An origin that answers `answer` (JSON) and records what it got.
fn json_origin(answer: &'static str) -> Origin {
    Origin::start(move |_| {
        Reply::Raw(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .into_bytes(),
        )
    })
}

fn gateway(o: &Origin, filters: &str, extra: &str) -> Gateway {
    Gateway::start(&format!("{}{filters}\n", config_with(&[("shop", vec![o.addr])], extra)))
}

fn post(path: &str, content_type: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const BOTH: &str = r#"[[services.shop.filters]]
kind = "transform"
request_body = '{user: .user_id, items: [.cart[] | {sku, qty}]}'
response_body = 'del(.internal)'
"#;

#[test]
fn request_and_response_bodies_are_transformed_exactly() {
    let o = json_origin(r#"{"order":17,"internal":{"cost":3}}"#);
    let gw = gateway(&o, BOTH, "");
    let r = raw(
        gw.public,
        post(
            "/shop/orders",
            "application/json",
            "",
            r#"{"user_id":42,"cart":[{"sku":"a1","qty":2,"price":9}],"coupon":"X"}"#,
        )
        .as_bytes(),
    );
    assert_eq!(
        format!("{}{}", r.head, r.text()),
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: r1\r\nconnection: close\r\ncontent-length: 12\r\n\r\n{\"order\":17}"
    );
    let seen = o.last();
    assert_eq!(String::from_utf8_lossy(&seen.body), r#"{"user":42,"items":[{"sku":"a1","qty":2}]}"#);
    assert_eq!(seen.header("content-length").as_deref(), Some("42"));
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "action=\"request_applied\""), 1);
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "action=\"response_applied\""), 1);
}

#[test]
fn a_chunked_json_request_is_transformed_and_sent_with_a_length() {
    let o = json_origin("{}");
    let gw = gateway(&o, "[[services.shop.filters]]\nkind = \"transform\"\nrequest_body = '.a'\n", "");
    let r = raw(
        gw.public,
        b"POST /shop/x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{\"a\"\r\n6\r\n:[1,2]\r\n1\r\n}\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = o.last();
    assert_eq!((String::from_utf8_lossy(&seen.body).as_ref(), seen.header("transfer-encoding")), ("[1,2]", None));
}

#[test]
fn programs_yielding_zero_or_two_values_get_a_502() {
    let o = json_origin(r#"[1,2]"#);
    let answer = |message: &str| {
        let body = format!(
            r#"{{"error":"bad_gateway","status":502,"message":"{message}","service":"shop","request_id":"r1"}}"#
        );
        format!(
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: r1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let wire = |gw: &Gateway, bytes: String| {
        let r = raw(gw.public, bytes.as_bytes());
        format!("{}{}", r.head, r.text())
    };
    let gw = gateway(&o, "[[services.shop.filters]]\nkind = \"transform\"\nrequest_body = 'empty'\n", "");
    assert_eq!(wire(&gw, post("/shop/x", "application/json", "", "{}")), answer("the transformation yielded no value"));
    let gw = gateway(&o, "[[services.shop.filters]]\nkind = \"transform\"\nrequest_body = '.[]'\n", "");
    assert_eq!(
        wire(&gw, post("/shop/x", "application/json", "", "[1,2]")),
        answer("the transformation yielded more than one value")
    );
    assert!(o.requests().is_empty(), "a failed request transform never reaches the service");
    let gw = gateway(&o, "[[services.shop.filters]]\nkind = \"transform\"\nresponse_body = '.[]'\n", "");
    assert_eq!(
        wire(&gw, post("/shop/x", "application/json", "", "{}")),
        answer("the transformation yielded more than one value")
    );
    let gw = gateway(&o, "[[services.shop.filters]]\nkind = \"transform\"\nresponse_body = '.a + 1'\n", "");
    assert_eq!(wire(&gw, post("/shop/x", "application/json", "", "{}")), answer("the transformation raised an error"));
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "action=\"response_failed\""), 1);
    // The gateway stays up.
    assert_eq!(metric(&gw, "wasp_panics_total", ""), 0);
}

#[test]
fn non_json_and_compressed_bodies_pass_untouched_and_are_counted() {
    let o = Origin::start(|s| {
        let ct =
            if s.request_line().contains("/gz") { "application/json\r\ncontent-encoding: gzip" } else { "text/plain" };
        let body = b"not {json";
        let mut r =
            format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        Reply::Raw(r)
    });
    let gw = gateway(&o, BOTH, "");
    let r = raw(gw.public, post("/shop/t", "text/plain", "", "hello {").as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, "not {json"));
    assert_eq!(String::from_utf8_lossy(&o.last().body), "hello {");
    let r =
        raw(gw.public, post("/shop/gz", "application/json", "Content-Encoding: gzip\r\n", "\x1f\u{8b}zz").as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, "not {json"));
    assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(o.last().body, "\x1f\u{8b}zz".as_bytes());
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "action=\"request_skipped\""), 2);
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "action=\"response_skipped\""), 2);
    // Declared JSON but is not: the client's fault, 400.
    let r = raw(gw.public, post("/shop/x", "application/json", "", "{nope").as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not one JSON document"));
}

#[test]
fn bodies_over_the_limit_are_refused() {
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(2000));
    let leaked: &'static str = Box::leak(big.clone().into_boxed_str());
    let o = json_origin(leaked);
    let gw = gateway(&o, BOTH, "[limits]\nmax_body_bytes = 1000\n");
    // A declared length over the limit: 413 before any byte is read.
    let r = raw(gw.public, post("/shop/x", "application/json", "", &big).as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    // A chunked body that grows past it while being read for the program: 413.
    let chunk = "x".repeat(600);
    let chunked = format!(
        "POST /shop/x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    assert_eq!(raw(gw.public, chunked.as_bytes()).status, 413);
    // An answer over the limit cannot be transformed: 502, not a cut body.
    let gw = gateway(
        &o,
        "[[services.shop.filters]]\nkind = \"transform\"\nresponse_body = '.'\n",
        "[limits]\nmax_body_bytes = 1000\n",
    );
    let r = raw(gw.public, b"GET /shop/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("over the size limit"), "{}", r.text());
}

#[test]
fn a_bad_program_is_refused_at_apply_and_the_running_one_keeps_working() {
    let o = json_origin(r#"{"v":1,"internal":2}"#);
    let gw = gateway(&o, BOTH, "");
    let doc =
        format!(r#"{{"instances":["{}"],"filters":[{{"kind":"transform","response_body":"{{broken: .v"}}]}}"#, o.addr);
    let r = raw(
        gw.admin,
        format!("PUT /services/shop HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}", doc.len())
            .as_bytes(),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["pointer"], "/filters/0/response_body", "{v}");
    assert!(v["message"].as_str().unwrap().contains("jq syntax error"), "{v}");
    let versions =
        raw(gw.admin, b"GET /services/shop/versions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&versions.body).unwrap()["versions"].as_array().map(Vec::len),
        Some(1),
        "nothing stored"
    );
    let r = raw(gw.public, b"GET /shop/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.text(), r#"{"v":1}"#, "the running program still works");
}

#[test]
fn env_is_not_available_to_programs() {
    let dir = temp_dir("jq-env");
    let p = dir.join("c.toml");
    std::fs::write(&p, "[services.shop]\ninstances = [\"127.0.0.1:9\"]\n[[services.shop.filters]]\nkind = \"transform\"\nresponse_body = '{token: env.WASP_ADMIN_TOKEN}'\n").unwrap();
    let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("services.shop.filters.0.response_body") && err.contains("env"),
        "{err}"
    );
}

/// The backend of a WebSocket route: records events, answers `{"id":9,...}`.
fn chat_backend() -> Origin {
    Origin::start(|s| {
        if s.request_line().contains("/connect") {
            Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec())
        } else {
            Reply::Raw(ok_response(b"{\"id\":9,\"stored\":true}"))
        }
    })
}

fn chat(b: &Origin, request: &str, reply: &str) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 1\n[endpoints.chat]\npath = \"/ws/chat\"\nroute_selection = \"$.action\"\n\
         [endpoints.chat.routes.send]\nhttp = [\"http://{}/messages\"]\nreply = true\n\
         transform = {{ request = '{request}', reply = '{reply}' }}\n\
         headers = {{ \"X-Chat-Room\" = \"$.room\", \"X-Seq\" = \"$.seq\" }}\n",
        b.addr
    ))
}

#[test]
fn websocket_events_and_replies_are_transformed_and_headers_taken_from_the_event() {
    let b = chat_backend();
    let gw = chat(&b, "{user: .from, text: .message}", "{type: \"sent\", id: .id}");
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    c.send_text(r#"{"action":"send","from":"ann","message":"hi","room":"r-1","seq":7,"junk":1}"#);
    assert_eq!(c.recv_text(), r#"{"type":"sent","id":9}"#);
    let seen = b.wait_for("/messages");
    assert_eq!(String::from_utf8_lossy(&seen.body), r#"{"user":"ann","text":"hi"}"#);
    assert_eq!((seen.header("x-chat-room").as_deref(), seen.header("x-seq").as_deref()), (Some("r-1"), Some("7")));
    // A room that could not be a header value is left out, not forwarded raw.
    c.send_text("{\"action\":\"send\",\"from\":\"b\",\"message\":\"m\",\"room\":\"a\\r\\nX-Evil: 1\"}");
    assert_eq!(c.recv_text(), r#"{"type":"sent","id":9}"#);
    let last = b.requests().into_iter().rev().find(|s| s.request_line().contains("/messages")).unwrap();
    assert_eq!((last.header("x-chat-room"), last.header("x-evil")), (None, None), "{}", last.head);
}

#[test]
fn a_failing_websocket_transform_is_an_error_event_naming_the_route() {
    let b = chat_backend();
    let gw = chat(&b, ".[]", ".");
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    c.send_text(r#"{"action":"send","a":1,"b":2}"#);
    let e: serde_json::Value = serde_json::from_str(&c.recv_text()).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["error"].as_str(), e["route"].as_str()),
        (Some("error"), Some("transform_failed"), Some("send"))
    );
    assert!(e["message"].as_str().unwrap().contains("more than one value"), "{e}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(b.requests().iter().all(|s| !s.request_line().contains("/messages")), "nothing was sent");
    // The connection is still served.
    c.send_text(r#"{"action":"send","x":1}"#);
    let e: serde_json::Value = serde_json::from_str(&c.recv_text()).unwrap();
    assert_eq!(e["error"], "transform_failed");
}

#[test]
fn event_headers_refuse_names_the_gateway_owns() {
    let dir = temp_dir("ws-headers");
    for (name, why) in [
        ("X-Wasp-Route", "set by the gateway"),
        ("Host", "set by the gateway"),
        ("X-Internal-User", "protected"),
        ("Content-Length", "set by the gateway"),
    ] {
        let p = dir.join("c.toml");
        std::fs::write(
            &p,
            format!("[endpoints.chat]\npath = \"/ws/chat\"\n[endpoints.chat.routes.send]\nhttp = [\"http://127.0.0.1:9/m\"]\nheaders = {{ \"{name}\" = \"$.a\" }}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("headers") && err.contains(why), "{name}: {err}");
    }
}
