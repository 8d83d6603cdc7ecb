//! Attacks on rate limits (issue 15): ways a client, a proxy, a WebSocket
//! client or an operator's value makes the gateway let through more than a
//! rule allows, throttle someone who should not be, hand a throttled key a
//! fresh budget, waste memory, or emit wrong headers or metrics. Each test
//! states the behaviour a production gateway should have.
//!
//! Against 3e6278d these fail (bugs): max_keys_distinct_clients_each_get_their_own_budget,
//! an_apply_that_changes_max_keys_keeps_the_throttled_budgets,
//! an_hourly_rate_with_a_huge_burst_reports_the_real_remaining,
//! a_consumer_over_his_own_limit_does_not_spend_the_shared_budget,
//! a_route_filter_does_not_escape_the_consumers_own_limit,
//! a_route_filter_does_not_escape_the_rules_of_the_service_asked,
//! websocket_per_ip_uses_the_forwarded_address_of_a_trusted_proxy,
//! ipv6_addresses_of_one_slash_64_share_a_budget (policy),
//! websocket_invalid_events_reach_the_error_backend_within_the_limit,
//! a_rule_on_connect_is_refused_or_enforced, a_consumers_own_limit_does_not_cost_a_mebibyte,
//! metrics_escape_newlines_in_route_keys. The others are regression guards.
//! All twelve were fixed in the same issue (the huge-burst one by refusing
//! a budget that spans more than 30 days, the `$connect` one by refusing
//! rules on the gateway's own routes).

mod common;
use common::kafka::admin;
use common::ws::WsClient;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SECRET: (&str, &str) = ("WASP_KEY_SECRET", "an-hmac-secret-of-at-least-32-bytes!!");

/// A connection from a given loopback source address (127.0.0.x).
fn connect_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    sock.connect(&to.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One GET from `src` with `X-Forwarded-For: xff` (none when empty) and extra header lines.
fn get_from(gw: &Gateway, src: [u8; 4], path: &str, xff: &str, extra: &str) -> Resp {
    let mut s = connect_from(src, gw.public);
    let h = if xff.is_empty() { String::new() } else { format!("X-Forwarded-For: {xff}\r\n") };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{h}{extra}Connection: close\r\n\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, false).expect("an answer")
}

fn get_with(gw: &Gateway, path: &str, headers: &str) -> Resp {
    raw(gw.public, format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{headers}Connection: close\r\n\r\n").as_bytes())
}

fn key_for(gw: &Gateway, consumer: &str) -> String {
    let (st, v) = admin(gw, "POST", &format!("/consumers/{consumer}/keys"), "");
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_string()
}

/// `wasp check` on a config: Ok(()) or the error text.
fn check(config: &str) -> Result<(), String> {
    let dir = temp_dir("rl-attack-check");
    let path = dir.join("wasp.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

// ---------------------------------------------------------------------------
// A minimal WebSocket client on a socket bound to a chosen source address.

fn ws_from(src: [u8; 4], gw: &Gateway, path: &str, extra: &str) -> (TcpStream, Vec<u8>) {
    let mut s = connect_from(src, gw.public);
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            common::ws::KEY
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, buf[end..].to_vec())
}

fn ws_send(s: &mut TcpStream, text: &str) {
    s.write_all(&WsClient::frame(0x81, text.as_bytes())).unwrap();
}

/// The next text frame (skipping pings); `None` on close, EOF or timeout.
fn ws_recv_text(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if buf.len() >= 2 {
            let (b0, b1) = (buf[0], buf[1]);
            let (len, at) = match b1 & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                n if n < 126 => (n as usize, 2),
                _ => (usize::MAX, 0),
            };
            if len != usize::MAX && buf.len() >= at + len {
                let payload = buf[at..at + len].to_vec();
                buf.drain(..at + len);
                match b0 & 0x0f {
                    1 => return Some(String::from_utf8_lossy(&payload).into_owned()),
                    8 => return None,
                    _ => continue,
                }
            }
        }
        let mut tmp = [0u8; 65536];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn wait_until(mut f: impl FnMut() -> bool, max: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < max {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn count(origin: &Origin, path: &str) -> usize {
    origin.requests().iter().filter(|s| s.request_line().contains(path)).count()
}

// ===========================================================================
// Bounded table: max_keys.

/// README: "With more than `max_keys` keys busy at once, newcomers share one
/// overflow budget". With exactly `max_keys` clients, each must have its own
/// budget; probing only 8 slots of a table sized exactly `max_keys` sends
/// some of them to the shared overflow budget long before it is full.
#[test]
fn max_keys_distinct_clients_each_get_their_own_budget() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\ntrusted_proxies = [\"127.0.0.2/32\"]\n[services.shop]\ninstances = [\"{}\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/m\"\nburst = 1\nmax_keys = 64\n",
        origin.addr
    ));
    let mut refused = Vec::new();
    for i in 0..64 {
        let ip = format!("10.7.{}.{}", i / 200, i % 200 + 1);
        let r = get_from(&gw, [127, 0, 0, 2], "/shop/x", &ip, "");
        if r.status != 200 {
            refused.push((ip, r.status));
        }
    }
    assert!(
        refused.is_empty(),
        "{} of 64 clients (max_keys = 64), each sending its first request, were refused: {refused:?}",
        refused.len()
    );
}

/// Guard: filling a small table with many newcomers never hands a throttled
/// key a fresh budget (its slot is not taken while it is throttled).
#[test]
fn a_flood_of_newcomers_does_not_free_a_throttled_key() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\ntrusted_proxies = [\"127.0.0.2/32\"]\n[services.shop]\ninstances = [\"{}\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\nmax_keys = 16\n",
        origin.addr
    ));
    let p = [127, 0, 0, 2];
    assert_eq!(get_from(&gw, p, "/shop/x", "10.0.0.1", "").status, 200);
    assert_eq!(get_from(&gw, p, "/shop/x", "10.0.0.1", "").status, 429);
    for i in 0..200 {
        get_from(&gw, p, "/shop/x", &format!("10.8.{}.{}", i / 250, i % 250 + 1), "");
    }
    assert_eq!(get_from(&gw, p, "/shop/x", "10.0.0.1", "").status, 429, "evicted: a fresh budget");
    // Room for max_keys keys in twice as many slots: at most 2 × 16 keys
    // have budgets of their own, the rest share one.
    assert!(
        origin.requests().len() <= 2 * 16 + 2,
        "newcomers beyond the table share one budget: {}",
        origin.requests().len()
    );
}

/// README: "a snapshot finds the same budgets for the same rule position
/// (owner, index, per) ... without handing everybody a fresh budget". An
/// apply that only changes `max_keys` must not reset every key.
#[test]
fn an_apply_that_changes_max_keys_keeps_the_throttled_budgets() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[services.shop]\ninstances = [\"{}\"]\n[[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\nmax_keys = 1024\n",
        origin.addr
    ));
    assert_eq!(http_get(gw.public, "/shop/x").status, 200);
    assert_eq!(http_get(gw.public, "/shop/x").status, 429);
    let body = format!(
        r#"{{"instances":["{}"],"rate_limits":[{{"per":"ip","rate":"1/h","burst":1,"max_keys":2048}}]}}"#,
        origin.addr
    );
    let (st, v) = admin(&gw, "PUT", "/services/shop", &body);
    assert!(st == 200 || st == 201, "{st} {v}");
    assert_eq!(
        http_get(gw.public, "/shop/x").status,
        429,
        "a throttled client got a fresh budget from a max_keys change"
    );
}

/// Regression guard: an apply that changes the rate keeps the budget (a
/// stricter rule does not hand out a request).
#[test]
fn an_apply_to_a_stricter_rate_keeps_the_throttled_budget() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[services.shop]\ninstances = [\"{}\"]\n[[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/m\"\nburst = 1\n",
        origin.addr
    ));
    assert_eq!(http_get(gw.public, "/shop/x").status, 200);
    assert_eq!(http_get(gw.public, "/shop/x").status, 429);
    let body = format!(r#"{{"instances":["{}"],"rate_limits":[{{"per":"ip","rate":"1/h","burst":1}}]}}"#, origin.addr);
    let (st, v) = admin(&gw, "PUT", "/services/shop", &body);
    assert!(st == 200 || st == 201, "{st} {v}");
    let r = http_get(gw.public, "/shop/x");
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=3600).contains(&wait), "{wait}");
    assert_eq!(origin.requests().len(), 1);
}

// ===========================================================================
// Arithmetic at the edges of the accepted values.

/// `rate = "1/h"` with `burst = 10000000` is accepted; interval × burst
/// (3.6e12 ns × 1e7) overflows u64 and saturates, so the table reports (and
/// enforces) a tolerance of ~5.1 million requests instead of 10 million, and
/// once a key's TAT saturates at u64::MAX every request is let through.
#[test]
fn an_hourly_rate_with_a_huge_burst_reports_the_real_remaining() {
    let origin = Origin::echo();
    // (Fixed by refusing a burst whose span overflows: 1/h with a burst of
    // ten million spans 1,141 years.)
    let huge = format!(
        "[services.shop]\ninstances = [\"{}\"]\n[[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 10000000\n",
        origin.addr
    );
    let e = check(&huge).expect_err("a burst spanning centuries is refused");
    assert!(e.contains("services.shop.rate_limits[0].burst"), "{e}");
    let gw = Gateway::start(&format!(
        "[services.shop]\ninstances = [\"{}\"]\n[[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 720\n\
         [services.fast]\ninstances = [\"{}\"]\n[[services.fast.rate_limits]]\nper = \"ip\"\nrate = \"10000000/s\"\nburst = 10000000\n",
        origin.addr, origin.addr
    ));
    // The fastest accepted rate with the largest burst: fine (guard).
    let r = http_get(gw.public, "/fast/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("9999999"));
    // The slowest rate with the largest burst.
    let r = http_get(gw.public, "/shop/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit").as_deref(), Some("720"));
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("719"), "the largest span accepted: 30 days");
}

// ===========================================================================
// Whose budget a refused request spends.

/// A consumer over his own `limits` is refused, but only after the service's
/// rules (checked first) have been spent: bob, limited to 1/min, drains the
/// service-wide budget everybody shares with requests that never reach the
/// service, and alice is throttled although one request went through.
/// (The README documents "a request refused by one has spent the budgets
/// before it"; with the consumer's limit always last, that turns any
/// consumer's ignored limit into a denial of service for the others.)
#[test]
fn a_consumer_over_his_own_limit_does_not_spend_the_shared_budget() {
    let origin = Origin::echo();
    let gw = Gateway::start_with(
        &format!(
            "[consumers.alice]\n[consumers.bob]\nlimits = {{ rate = \"1/m\", burst = 1 }}\n\
             [services.shop]\ninstances = [\"{}\"]\nauth = {{ api_key = {{}} }}\n\
             [[services.shop.rate_limits]]\nper = \"service\"\nrate = \"5/m\"\nburst = 5\n",
            origin.addr
        ),
        &[],
        &[SECRET],
    );
    let (a, b) = (key_for(&gw, "alice"), key_for(&gw, "bob"));
    let bob: Vec<u16> = (0..6).map(|_| get_with(&gw, "/shop/x", &format!("X-Api-Key: {b}\r\n")).status).collect();
    assert_eq!(bob[0], 200);
    assert!(bob[1..].iter().all(|s| *s == 429), "{bob:?}");
    assert_eq!(origin.requests().len(), 1, "one request reached the service");
    assert_eq!(
        get_with(&gw, "/shop/x", &format!("X-Api-Key: {a}\r\n")).status,
        200,
        "alice throttled by a service budget of 5 after 1 request went through (bob's refusals spent it)"
    );
}

// ===========================================================================
// Routing filters.

/// README: a consumer's limits are "bob's own budget, on top of every rule,
/// wherever his key or token is accepted". His key is checked at `shop`
/// (auth runs when a request leaves a protected service), yet a `route`
/// filter that hands the request to a service without auth drops his limit.
#[test]
fn a_route_filter_does_not_escape_the_consumers_own_limit() {
    let origin = Origin::echo();
    let gw = Gateway::start_with(
        &format!(
            "[consumers.bob]\nlimits = {{ rate = \"1/h\", burst = 1 }}\n\
             [services.shop]\ninstances = [\"{o}\"]\nauth = {{ api_key = {{}} }}\n\
             [[services.shop.filters]]\nkind = \"route\"\nwhen = {{ header = {{ \"X-Beta\" = \"1\" }} }}\nto = \"beta\"\n\
             [services.beta]\ninstances = [\"{o}\"]\n",
            o = origin.addr
        ),
        &[],
        &[SECRET],
    );
    let b = key_for(&gw, "bob");
    let k = format!("X-Api-Key: {b}\r\n");
    assert_eq!(get_with(&gw, "/shop/x", &k).status, 200);
    assert_eq!(get_with(&gw, "/shop/x", &k).status, 429, "his own limit");
    // Without a key the route is refused (auth is checked when leaving shop): guard.
    assert_eq!(get_with(&gw, "/shop/x", "X-Beta: 1\r\n").status, 401);
    let got: Vec<u16> = (0..5).map(|_| get_with(&gw, "/shop/x", &format!("{k}X-Beta: 1\r\n")).status).collect();
    assert_eq!(got, [429; 5], "bob's key was accepted at shop and routed on without his limit");
}

/// A client picks the route with its own header: a `shop` rule must not be
/// escaped by adding `X-Beta: 1` (the auth check has the same treatment:
/// done when leaving). The target's own rules, on the other hand, apply
/// (guard, second half).
#[test]
fn a_route_filter_does_not_escape_the_rules_of_the_service_asked() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[services.shop]\ninstances = [\"{o}\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\n\
         [[services.shop.filters]]\nkind = \"route\"\nwhen = {{ header = {{ \"X-Beta\" = \"1\" }} }}\nto = \"beta\"\n\
         [services.beta]\ninstances = [\"{o}\"]\n\
         [services.gamma]\ninstances = [\"{o}\"]\n\
         [[services.gamma.filters]]\nkind = \"route\"\nwhen = {{ header = {{ \"X-Delta\" = \"1\" }} }}\nto = \"delta\"\n\
         [services.delta]\ninstances = [\"{o}\"]\n[[services.delta.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\n",
        o = origin.addr
    ));
    // Guard: a rule on the target service applies to requests routed there.
    assert_eq!(get_with(&gw, "/gamma/x", "X-Delta: 1\r\n").status, 200);
    assert_eq!(get_with(&gw, "/gamma/x", "X-Delta: 1\r\n").status, 429, "the target's rule");
    // The attack: shop's rule escaped by a header the client chooses.
    assert_eq!(get_with(&gw, "/shop/x", "").status, 200);
    assert_eq!(get_with(&gw, "/shop/x", "").status, 429);
    let got: Vec<u16> = (0..5).map(|_| get_with(&gw, "/shop/x", "X-Beta: 1\r\n").status).collect();
    assert_eq!(got, [429; 5], "a client over shop's limit adds X-Beta: 1 and is let through");
}

// ===========================================================================
// Client addresses.

/// WebSocket `per = "ip"` uses the socket's peer, not `server.trusted_proxies`
/// (README: "the client address as server.trusted_proxies resolve it"):
/// behind a trusted proxy every client shares the proxy's one budget.
#[test]
fn websocket_per_ip_uses_the_forwarded_address_of_a_trusted_proxy() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.2/32\"]\n[endpoints.chat]\npath = \"/ws/chat\"\n\
         [endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{}/events\"]\n\
         [[endpoints.chat.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\n",
        origin.addr
    ));
    let (mut a, mut abuf) = ws_from([127, 0, 0, 2], &gw, "/ws/chat", "X-Forwarded-For: 10.0.0.1\r\n");
    ws_send(&mut a, r#"{"from":"a"}"#);
    let first = ws_recv_text(&mut a, &mut abuf).unwrap_or_default();
    assert!(!first.contains("throttled"), "{first}");
    assert!(wait_until(|| count(&origin, "/events") == 1, Duration::from_secs(3)));
    let (mut b, mut bbuf) = ws_from([127, 0, 0, 2], &gw, "/ws/chat", "X-Forwarded-For: 10.0.0.2\r\n");
    ws_send(&mut b, r#"{"from":"b"}"#);
    let got = ws_recv_text(&mut b, &mut bbuf).unwrap_or_default();
    assert!(
        !got.contains("\"throttled\""),
        "another client behind the proxy was throttled by the first's budget: {got}"
    );
}

/// Regression guards for HTTP `per = "ip"` behind a trusted proxy: an
/// IPv4-mapped IPv6 entry is the IPv4 client; a client-supplied left-most
/// entry is not a fresh budget; garbage from the trusted proxy is one
/// shared budget, never the proxy's own or a fresh one.
#[test]
fn forwarded_address_variants_do_not_give_fresh_budgets() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.2/32\"]\n[services.shop]\ninstances = [\"{}\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\n",
        origin.addr
    ));
    let p = [127, 0, 0, 2];
    assert_eq!(get_from(&gw, p, "/shop/x", "10.0.0.7", "").status, 200);
    assert_eq!(get_from(&gw, p, "/shop/x", "::ffff:10.0.0.7", "").status, 429, "IPv4-mapped");
    assert_eq!(get_from(&gw, p, "/shop/x", "[::ffff:10.0.0.7]:443", "").status, 429, "bracketed with a port");
    assert_eq!(get_from(&gw, p, "/shop/x", "10.0.0.7:5555", "").status, 429, "with a port");
    assert_eq!(get_from(&gw, p, "/shop/x", "1.2.3.4, 10.0.0.7", "").status, 429, "a forged left-most entry");
    assert_eq!(get_from(&gw, p, "/shop/x", "1.2.3.5, 10.0.0.7, 127.0.0.2", "").status, 429, "through two proxies");
    assert_eq!(get_from(&gw, p, "/shop/x", "unknown", "").status, 200, "garbage: one shared budget");
    assert_eq!(get_from(&gw, p, "/shop/x", "not-an-ip", "").status, 429, "garbage shares it");
    assert_eq!(get_from(&gw, p, "/shop/x", "", "").status, 200, "the proxy itself is its own client");
    assert_eq!(get_from(&gw, [127, 0, 0, 3], "/shop/x", "10.9.9.9", "").status, 200);
    assert_eq!(get_from(&gw, [127, 0, 0, 3], "/shop/x", "10.9.9.10", "").status, 429, "untrusted forgery");
}

/// IPv6 clients get a /64 (at least) from their provider: keying on the
/// full 128-bit address gives one client 2^64 fresh budgets. Per-IP limits
/// should aggregate IPv6 addresses per /64 (the usual practice).
#[test]
fn ipv6_addresses_of_one_slash_64_share_a_budget() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.2/32\"]\n[services.shop]\ninstances = [\"{}\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\n",
        origin.addr
    ));
    let p = [127, 0, 0, 2];
    assert_eq!(get_from(&gw, p, "/shop/x", "2001:db8:1:2::1", "").status, 200);
    let rotated: Vec<u16> =
        (2..7).map(|i| get_from(&gw, p, "/shop/x", &format!("2001:db8:1:2::{i:x}"), "").status).collect();
    assert_eq!(rotated, [429; 5], "one /64 rotating its interface id gets a fresh budget per address");
}

// ===========================================================================
// HTTP answers.

/// Guards: `per = "connection"` is one budget per keep-alive connection; a
/// HEAD's 429 has no body and keeps the connection's framing; a refused
/// POST's body is not read as the next request.
#[test]
fn connection_budgets_head_and_bodies_on_keep_alive() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ninstances = [\"{}\"]\n\
         [[services.shop.rate_limits]]\nper = \"connection\"\nrate = \"1/h\"\nburst = 2\n",
        origin.addr
    ));
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    s.write_all(b"GET /shop/a HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("1"));
    s.write_all(b"GET /shop/b HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().status, 200);
    s.write_all(b"HEAD /shop/c HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, true).unwrap();
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some(), "{}", r.head);
    assert!(r.body.is_empty());
    // A refused POST with a body, pipelined with a GET: the body (which
    // reads as a request) must not be taken for one.
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    for p in ["/shop/d", "/shop/e"] {
        s.write_all(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
        assert_eq!(read_response(&mut s, &mut buf, false).unwrap().status, 200);
    }
    let body = "GET /shop/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    s.write_all(
        format!(
            "POST /shop/f HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}GET /shop/g HTTP/1.1\r\nHost: t\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut s, &mut buf, false).expect("the POST's answer");
    assert_eq!(r.status, 429);
    if let Some(r) = read_response(&mut s, &mut buf, false) {
        assert_eq!(r.status, 429, "{}", r.head);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!origin.requests().iter().any(|s| s.request_line().contains("smuggled")));
    assert_eq!(origin.requests().len(), 4);
}

/// Guards: the 429 carries the CORS headers a browser needs to read it, a
/// preflight is answered (not throttled), and with two rules the headers
/// and Retry-After are those of the rule that refused.
#[test]
fn cors_and_the_refusing_rules_headers() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[services.shop]\ninstances = [\"{}\"]\n\
         [[services.shop.filters]]\nkind = \"cors\"\norigins = [\"https://app.example\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"100/s\"\nburst = 100\n\
         [[services.shop.rate_limits]]\nper = \"service\"\nrate = \"1/m\"\nburst = 2\n",
        origin.addr
    ));
    let o = "Origin: https://app.example\r\n";
    let r = get_with(&gw, "/shop/x", o);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit").as_deref(), Some("2"), "the tightest rule: {}", r.head);
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("1"));
    assert_eq!(get_with(&gw, "/shop/x", o).status, 200);
    let r = get_with(&gw, "/shop/x", o);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some("https://app.example"), "{}", r.head);
    let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap();
    assert!((59..=60).contains(&wait), "the service rule's wait: {wait}");
    assert_eq!(r.header("ratelimit-limit").as_deref(), Some("2"));
    let pre = raw(
        gw.public,
        b"OPTIONS /shop/x HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(pre.status, 204, "{}", pre.head);
}

// ===========================================================================
// WebSocket.

/// Endpoint rules "count events (WebSocket messages)". A message that is not
/// JSON (or matches no route) is sent to the `$error` route's backend
/// without spending or checking any budget: a client over its limit keeps
/// the backend busy at any rate, and is never closed with 1008.
#[test]
fn websocket_invalid_events_reach_the_error_backend_within_the_limit() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[endpoints.chat]\npath = \"/ws/chat\"\n\
         [endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{o}/events\"]\n\
         [endpoints.chat.routes.\"$error\"]\nhttp = [\"http://{o}/errors\"]\n\
         [[endpoints.chat.rate_limits]]\nper = \"connection\"\nrate = \"1/h\"\nburst = 1\n",
        o = origin.addr
    ));
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    ws.send_text(r#"{"n":1}"#);
    origin.wait_for("/events");
    for _ in 0..30 {
        ws.send_text("not json");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    let errors = count(&origin, "/errors");
    assert!(
        errors <= 1,
        "{errors} $error calls from one connection over an endpoint limit of 1/h (and a $error route rule of 1/h)"
    );
}

/// A rule on `$connect` is accepted, yet upgrades are never counted (README:
/// "counts events, not upgrades"): the operator's rule silently does
/// nothing. Either the config is refused or the upgrades are limited.
#[test]
fn a_rule_on_connect_is_refused_or_enforced() {
    let origin = Origin::echo();
    let config = format!(
        "[endpoints.chat]\npath = \"/ws/chat\"\n\
         [endpoints.chat.routes.\"$connect\"]\nhttp = [\"http://{o}/connect\"]\n\
         [[endpoints.chat.routes.\"$connect\".rate_limits]]\nper = \"ip\"\nrate = \"1/h\"\nburst = 1\n\
         [endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{o}/events\"]\n",
        o = origin.addr
    );
    if check(&config).is_err() {
        return;
    }
    let gw = Gateway::start(&config);
    let _a = WsClient::connect(gw.public, "/ws/chat");
    let (_s, head, _) = common::ws::upgrade_raw(gw.public, "/ws/chat", "");
    assert!(
        !head.starts_with("HTTP/1.1 101"),
        "a 1/h rule on $connect was accepted and a second upgrade went through: {head}"
    );
}

/// Guard: the 1008 threshold is exactly "more than 20 refused in a row",
/// each refusal gets one bounded event, and one event let through resets it.
#[test]
fn websocket_throttle_streak_threshold() {
    let origin = Origin::echo();
    let gw = Gateway::start(&format!(
        "[endpoints.chat]\npath = \"/ws/chat\"\n[endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{}/events\"]\n\
         [[endpoints.chat.routes.\"$default\".rate_limits]]\nper = \"connection\"\nrate = \"10/s\"\nburst = 1\n",
        origin.addr
    ));
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    // 20 refused, then a pause lets one through: the streak starts over.
    for i in 0..21 {
        ws.send_text(&format!(r#"{{"n":{i}}}"#));
    }
    std::thread::sleep(Duration::from_millis(300));
    ws.send_text(r#"{"n":"after"}"#);
    assert!(wait_until(|| count(&origin, "/events") == 2, Duration::from_secs(3)), "the pause let one through");
    for i in 0..40 {
        ws.send_text(&format!(r#"{{"n":{i}}}"#));
    }
    let mut throttled = 0;
    let close = loop {
        let Some(f) = ws.recv() else { break None };
        match f.opcode {
            1 if f.text().contains("\"throttled\"") => throttled += 1,
            8 => break f.close_code(),
            _ => {}
        }
    };
    assert_eq!(close, Some(1008));
    assert_eq!(throttled, 20 + 21, "20 before the pause, then the 21st in a row closes");
}

// ===========================================================================
// Operator values.

/// Every consumer with `limits` gets its own table of `max_keys` (65,536)
/// slots, 1 MiB, to hold one key: 1,000 customers on plans cost a GiB.
#[test]
fn a_consumers_own_limit_does_not_cost_a_mebibyte() {
    let origin = Origin::echo();
    let gw = Gateway::start_with(
        &format!("[services.shop]\ninstances = [\"{}\"]\nauth = {{ api_key = {{}} }}\n", origin.addr),
        &[],
        &[SECRET],
    );
    let rss = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
        s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap()
    };
    let (st, v) = admin(&gw, "PUT", "/consumers/c0", r#"{"limits":{"rate":"10/s"}}"#);
    assert!(st == 200 || st == 201, "{st} {v}");
    let before = rss();
    let n = 150;
    for i in 1..=n {
        let (st, v) = admin(&gw, "PUT", &format!("/consumers/c{i}"), r#"{"limits":{"rate":"10/s","burst":20}}"#);
        assert!(st == 200 || st == 201, "{st} {v}");
    }
    let grew = rss().saturating_sub(before);
    assert!(grew < 40 * 1024, "{n} consumers with a limit grew the gateway by {} MiB", grew / 1024);
}

/// Guard: odd consumer `limits` through the admin API are refused with a
/// 422 naming the field (never a 500, never accepted as something else).
#[test]
fn odd_consumer_limits_through_the_admin_api_are_refused() {
    let gw = Gateway::start("[services.s]\ninstances = [\"127.0.0.1:9\"]\n");
    for body in [
        r#"{"limits":{"rate":"1/s","burst":-1}}"#,
        r#"{"limits":{"rate":"1/s","burst":4294967297}}"#,
        r#"{"limits":{"rate":"1/s","burst":18446744073709551615}}"#,
        r#"{"limits":{"rate":"1/s","burst":1.5}}"#,
        r#"{"limits":{"rate":"1/s","burst":"5"}}"#,
        r#"{"limits":{"rate":"1/s","burst":null}}"#,
        r#"{"limits":{"rate":"0/s"}}"#,
        r#"{"limits":{"rate":"10000001/s"}}"#,
        r#"{"limits":{"rate":"-1/s"}}"#,
        r#"{"limits":{"rate":"1/d"}}"#,
        r#"{"limits":{"rate":"1/s/s"}}"#,
        r#"{"limits":{"rate":5}}"#,
        r#"{"limits":{"burst":5}}"#,
        r#"{"limits":{"rate":"1/s","max_keys":5}}"#,
        r#"{"limits":"10/s"}"#,
    ] {
        let (st, v) = admin(&gw, "PUT", "/consumers/odd", body);
        assert!(st == 422 || st == 400, "{body}: {st} {v}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{body}: {v}");
    }
    let (st, _) = admin(&gw, "GET", "/consumers/odd", "");
    assert_eq!(st, 404, "nothing was stored");
    // The gateway still answers.
    assert_eq!(http_get(gw.admin, "/healthz").status, 200);
}

/// Route keys may hold any character (1 to 128); the metric escapes `\` and
/// `"` but not a newline, so a route key injects lines into `/metrics` (a
/// scrape that fails, or made-up series).
#[test]
fn metrics_escape_newlines_in_route_keys() {
    let origin = Origin::echo();
    let route = "x\nwasp_injected_total 42\n#";
    let key = format!("\"{}\"", route.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
    let gw = Gateway::start(&format!(
        "[endpoints.chat]\npath = \"/ws/chat\"\nroute_selection = \"$.action\"\n\
         [endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{o}/events\"]\n\
         [endpoints.chat.routes.{key}]\nhttp = [\"http://{o}/events\"]\n\
         [[endpoints.chat.routes.{key}.rate_limits]]\nper = \"connection\"\nrate = \"1/s\"\n",
        o = origin.addr
    ));
    let m = gw.metrics();
    let injected: Vec<&str> = m.lines().filter(|l| l.starts_with("wasp_injected_total")).collect();
    assert!(injected.is_empty(), "a route key made up a series: {injected:?}");
    let line = m.lines().find(|l| l.starts_with("wasp_throttled_total") && l.contains("kind=\"route\"")).unwrap_or("");
    assert!(line.ends_with(" 0") && line.contains(r#"\n"#), "one line, the newline escaped as \\n: {line:?}");
}
