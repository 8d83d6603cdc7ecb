//! Rate limits over real sockets: exact across two workers under 3× the
//! limit from `wasp-loadtest` (many connections and one keep-alive
//! connection), the 429 and its headers, `Retry-After` honoured, per-IP
//! keys behind a trusted proxy, per-consumer budgets and a consumer's own
//! limit, a live apply, WebSocket `throttled` events and the close, and
//! config errors.

mod common;
use common::kafka::admin;
use common::ws::WsClient;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `wasp-loadtest` against `url` at `rate` req/s for `secs`: (2xx, 429s, seconds).
fn load(url: &str, conns: usize, rate: u64, secs: u64, headers: &[&str]) -> (u64, u64, f64) {
    let mut cmd = std::process::Command::new(loadtest_bin());
    cmd.args([url, "-c", &conns.to_string(), "-R", &rate.to_string(), "-d", &format!("{secs}s"), "--quiet"])
        .args(["--json", "-"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("run wasp-loadtest");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The summary's text, then its JSON.
    let json = text.find("\n{").map_or("{}", |i| &text[i + 1..]);
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    (
        v["status_2xx"].as_u64().unwrap_or(0),
        v["status_4xx"].as_u64().unwrap_or(0),
        v["duration_s"].as_f64().unwrap_or(0.0),
    )
}

fn start(rules: &str, origin: std::net::SocketAddr) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ninstances = [\"{origin}\"]\n{rules}\n[services.open]\ninstances = [\"{origin}\"]\n"
    ))
}

/// 2xx expected of a rule `rate`/s with `burst` over `secs`, and how far off `got` is.
fn off(got: u64, rate: f64, burst: f64, secs: f64) -> f64 {
    let want = rate * secs + burst;
    (got as f64 - want).abs() / want
}

#[test]
fn many_connections_at_three_times_the_limit_get_the_limit_across_two_workers() {
    let origin = Origin::echo();
    let gw = start("[[services.shop.rate_limits]]\nper = \"service\"\nrate = \"100/s\"\nburst = 10\n", origin.addr);
    let (ok, refused, secs) = load(&format!("http://{}/shop/x", gw.public), 32, 300, 10, &[]);
    assert!(off(ok, 100.0, 10.0, secs) < 0.05, "2xx {ok} in {secs:.2}s at 100/s (429s {refused})");
    assert!(refused > 1500, "the rest were refused: {refused}");
    assert!(
        metric(&gw, "wasp_throttled_total", "kind=\"service\",name=\"shop\",rule=\"0\",per=\"service\"") >= refused
    );
}

#[test]
fn one_keep_alive_connection_gets_the_whole_rate_not_a_workers_share() {
    let origin = Origin::echo();
    let gw = start("[[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"50/s\"\nburst = 5\n", origin.addr);
    let (ok, _, secs) = load(&format!("http://{}/shop/x", gw.public), 1, 150, 10, &[]);
    assert!(off(ok, 50.0, 5.0, secs) < 0.05, "2xx {ok} in {secs:.2}s at 50/s");
}

#[test]
fn a_refusal_is_a_429_with_retry_after_and_every_answer_has_ratelimit_headers() {
    let origin = Origin::echo();
    let gw = start("[[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"2/s\"\nburst = 3\n", origin.addr);
    let get = || http_get(gw.public, "/shop/x");
    let r = get();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("2"));
    assert_eq!(r.header("ratelimit-reset").as_deref(), Some("1"));
    assert_eq!(get().status, 200);
    assert_eq!(get().status, 200);
    let r = get();
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains(r#""error":"throttled""#), "{}", r.text());
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("0"));
    let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=2).contains(&wait), "{wait}");
    assert!(http_get(gw.public, "/open/x").header("ratelimit-limit").is_none(), "another service is not limited");
    // A client that waits as told gets through.
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(get().status, 200);
    assert_eq!(origin.requests().len(), 5, "refused requests never reached the service");
}

#[test]
fn per_ip_limits_use_the_forwarded_address_of_a_trusted_proxy_only() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.2/32\"]\n[services.shop]\ninstances = [\"{}\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/m\"\nburst = 1\n",
        origin.addr
    ));
    let from = |src: [u8; 4], xff: &str| {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&std::net::SocketAddr::from((src, 0)).into()).unwrap();
        sock.connect(&gw.public.into()).unwrap();
        let mut stream: std::net::TcpStream = sock.into();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        use std::io::Write;
        let h = if xff.is_empty() { String::new() } else { format!("X-Forwarded-For: {xff}\r\n") };
        stream
            .write_all(format!("GET /shop/x HTTP/1.1\r\nHost: gw\r\n{h}Connection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = Vec::new();
        read_response(&mut stream, &mut buf, false).expect("answer").status
    };
    // Behind the trusted proxy: each forwarded client has its own budget.
    assert_eq!(from([127, 0, 0, 2], "10.0.0.1"), 200);
    assert_eq!(from([127, 0, 0, 2], "10.0.0.1"), 429);
    assert_eq!(from([127, 0, 0, 2], "10.0.0.2"), 200);
    // An untrusted peer's forged header is ignored: its own address counts.
    assert_eq!(from([127, 0, 0, 3], "10.0.0.9"), 200);
    assert_eq!(from([127, 0, 0, 3], "10.0.0.10"), 429, "a forged X-Forwarded-For is not a fresh budget");
}

#[test]
fn consumers_have_their_own_budgets_and_their_own_limits() {
    let origin = Origin::echo();
    let gw = Gateway::start_with(
        &format!(
            "[consumers.alice]\n[consumers.bob]\nlimits = {{ rate = \"1/m\", burst = 2 }}\n\
             [services.shop]\ninstances = [\"{}\"]\nauth = {{ api_key = {{}} }}\n\
             [[services.shop.rate_limits]]\nper = \"consumer\"\nrate = \"1/m\"\nburst = 3\n",
            origin.addr
        ),
        &[],
        &[("WASP_KEY_SECRET", "an-hmac-secret-of-at-least-32-bytes!!")],
    );
    let key = |c: &str| {
        let (st, v) = admin(&gw, "POST", &format!("/consumers/{c}/keys"), "");
        assert_eq!(st, 201, "{v}");
        v["key"].as_str().unwrap().to_string()
    };
    let (a, b) = (key("alice"), key("bob"));
    let get = |k: &str| {
        raw(gw.public, format!("GET /shop/x HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {k}\r\n\r\n").as_bytes()).status
    };
    assert_eq!([get(&a), get(&a), get(&a), get(&a)], [200, 200, 200, 429], "alice: the service's burst of 3");
    assert_eq!([get(&b), get(&b), get(&b)], [200, 200, 429], "bob: his own limit (burst 2) on top");
    assert!(metric(&gw, "wasp_throttled_total", "kind=\"consumer\",name=\"bob\"") >= 1, "{}", gw.metrics());
}

#[test]
fn an_apply_that_changes_a_rate_takes_effect_at_the_next_request() {
    let origin = Origin::echo();
    let gw = start("[[services.shop.rate_limits]]\nper = \"service\"\nrate = \"1/m\"\nburst = 1\n", origin.addr);
    assert_eq!(http_get(gw.public, "/shop/x").status, 200);
    assert_eq!(http_get(gw.public, "/shop/x").status, 429);
    let body =
        format!(r#"{{"instances":["{}"],"rate_limits":[{{"per":"service","rate":"100/s","burst":50}}]}}"#, origin.addr);
    let (st, v) = admin(&gw, "PUT", "/services/shop", &body);
    assert!(st == 200 || st == 201, "{st} {v}");
    assert_eq!(http_get(gw.public, "/shop/x").status, 200, "the new rate at the next request");
    // And a rule that needs a consumer where there is none is refused.
    let bad = format!(r#"{{"instances":["{}"],"rate_limits":[{{"per":"consumer","rate":"1/s"}}]}}"#, origin.addr);
    let (st, v) = admin(&gw, "PUT", "/services/shop", &bad);
    assert_eq!(st, 422, "{v}");
    assert!(v.to_string().contains("rate_limits[0].per"), "{v}");
}

#[test]
fn a_websocket_client_over_its_rate_gets_throttled_events_then_1008() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[endpoints.chat]\npath = \"/ws/chat\"\n[endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{}/events\"]\n\
         [[endpoints.chat.routes.\"$default\".rate_limits]]\nper = \"connection\"\nrate = \"2/s\"\nburst = 3\n",
        origin.addr
    ));
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    for i in 0..4 {
        ws.send_text(&format!(r#"{{"n":{i}}}"#));
    }
    let ev: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ev["error"], "throttled", "{ev}");
    assert_eq!(ev["route"], "$default", "{ev}");
    let retry = ev["retry_after_ms"].as_u64().unwrap();
    assert!((1..=500).contains(&retry), "{ev}");
    let started = Instant::now();
    while origin.requests().len() < 3 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(origin.requests().len(), 3, "the burst went through, the fourth did not");
    // Another connection has its own budget.
    let mut other = WsClient::connect(gw.public, "/ws/chat");
    other.send_text(r#"{"n":"other"}"#);
    origin.wait_for("/events");
    // Far over: closed.
    for i in 0..40 {
        ws.send_text(&format!(r#"{{"n":{i}}}"#));
    }
    assert_eq!(ws.recv_close(), Some(1008));
}

#[test]
fn websocket_per_ip_limits_count_the_forwarded_address_behind_a_trusted_proxy() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.2/32\"]\n[endpoints.chat]\npath = \"/ws/chat\"\n\
         [endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{}/events\"]\n\
         [[endpoints.chat.rate_limits]]\nper = \"ip\"\nrate = \"1/m\"\nburst = 1\n",
        origin.addr
    ));
    let proxy = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut a = WsClient::connect_from(proxy, gw.public, "/ws/chat", "X-Forwarded-For: 10.0.0.1\r\n");
    let mut a2 = WsClient::connect_from(proxy, gw.public, "/ws/chat", "X-Forwarded-For: 10.0.0.1\r\n");
    let mut b = WsClient::connect_from(proxy, gw.public, "/ws/chat", "X-Forwarded-For: 10.0.0.2\r\n");
    a.send_text(r#"{"from":"a"}"#);
    origin.wait_for("/events");
    a2.send_text(r#"{"from":"a2"}"#);
    let ev: Value = serde_json::from_str(&a2.recv_text()).unwrap();
    assert_eq!(ev["error"], "throttled", "the same forwarded client on another connection: {ev}");
    b.send_text(r#"{"from":"b"}"#);
    let started = Instant::now();
    while origin.requests().len() < 2 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(origin.requests().len(), 2, "another forwarded client has its own budget");
}

#[test]
fn rate_limit_settings_are_validated_naming_the_rule() {
    let bad = [
        ("[[services.s.rate_limits]]\nper = \"consumer\"\nrate = \"1/s\"\n", "services.s.rate_limits[0].per"),
        ("[[services.s.rate_limits]]\nper = \"ip\"\nrate = \"0/s\"\n", "services.s.rate_limits[0].rate"),
        ("[[services.s.rate_limits]]\nper = \"ip\"\nrate = \"10/d\"\n", "services.s.rate_limits[0].rate"),
        ("[[services.s.rate_limits]]\nper = \"ip\"\nrate = \"10/s\"\nburst = 0\n", "services.s.rate_limits[0].burst"),
        ("[[services.s.rate_limits]]\nper = \"everyone\"\nrate = \"10/s\"\n", "services.s.rate_limits[0].per"),
        ("[[services.s.rate_limits]]\nper = \"ip\"\n", "services.s.rate_limits[0].rate"),
        ("[consumers.c]\nlimits = { rate = \"1/s\", burts = 2 }\n", "consumers.c.limits.burts"),
    ];
    for (toml, needle) in bad {
        let dir = temp_dir("rl-cfg");
        let path = dir.join("wasp.toml");
        std::fs::write(&path, format!("[services.s]\ninstances = [\"127.0.0.1:9\"]\n{toml}")).unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}: accepted");
        assert!(text.contains(needle), "{toml}: {text}");
    }
}
