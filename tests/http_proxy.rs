//! Routing, dispatch and HTTP/1.1 semantics through the real binary.

mod common;
use common::*;
use std::io::Write;
use std::time::Duration;

#[test]
fn routes_service_path_and_query() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let r = http_get(gw.public, "/echo/a/b?x=1");
    assert_eq!(r.status, 200);
    assert_eq!(o.last().request_line(), "GET /a/b?x=1 HTTP/1.1");
    let r = http_get(gw.public, "/echo");
    assert_eq!(r.status, 200);
    assert_eq!(o.last().request_line(), "GET / HTTP/1.1");
    let r = http_get(gw.public, "/echo?q=2");
    assert_eq!(r.status, 200);
    assert_eq!(o.last().request_line(), "GET /?q=2 HTTP/1.1");
}

#[test]
fn round_robin_and_refusing_instance_is_skipped() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"a")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"b")));
    let dead = dead_addr();
    let gw = Gateway::start(&config_with(&[("svc", vec![a.addr, dead, b.addr])], ""));
    let mut bodies = Vec::new();
    for _ in 0..12 {
        let r = http_get(gw.public, "/svc/x");
        assert_eq!(r.status, 200, "{}", r.text());
        bodies.push(r.text());
    }
    let na = bodies.iter().filter(|b| *b == "a").count();
    let nb = bodies.iter().filter(|b| *b == "b").count();
    assert_eq!(na + nb, 12);
    assert!(na >= 3 && nb >= 3, "spread a={na} b={nb}");
}

#[test]
fn unknown_service_404_and_no_instance_503_with_json() {
    let gw = Gateway::start(&config_with(&[("down", vec![dead_addr(), dead_addr()]), ("empty", vec![])], ""));
    let r = http_get(gw.public, "/nope/x");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert!(r.text().starts_with(r#"{"error":"unknown_service","status":404"#), "{}", r.text());
    let r = http_get(gw.public, "/down/x");
    assert_eq!(r.status, 503);
    assert!(r.text().contains(r#""error":"no_instance""#), "{}", r.text());
    assert!(r.text().contains(r#""service":"down""#));
    let rid = r.header("x-request-id").expect("request id on errors");
    assert!(r.text().contains(&rid));
    let r = http_get(gw.public, "/empty/x");
    assert_eq!(r.status, 503);
    let m = gw.metrics();
    assert!(m.contains("wasp_gateway_errors_total{kind=\"no_instance\",status=\"503\"} 2"), "{m}");
    assert!(m.contains("wasp_gateway_errors_total{kind=\"unknown_service\",status=\"404\"} 1"), "{m}");
}

#[test]
fn upstream_timeout_is_504_and_garbage_is_502() {
    let slow = Origin::start(|_| Reply::Delay(Duration::from_secs(3), ok_response(b"late")));
    let bad = Origin::start(|_| Reply::RawClose(b"NOT HTTP AT ALL\r\n\r\n".to_vec()));
    let bad_cl = Origin::start(|_| {
        Reply::RawClose(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello".to_vec())
    });
    let silent = Origin::start(|_| Reply::Close);
    let extra = "";
    let mut cfg =
        config_with(&[("bad", vec![bad.addr]), ("badcl", vec![bad_cl.addr]), ("silent", vec![silent.addr])], extra);
    cfg.push_str(&format!("[services.slow]\ninstances = [\"{}\"]\ntimeout = \"300ms\"\n", slow.addr));
    let gw = Gateway::start(&cfg);
    let r = http_get(gw.public, "/slow/x");
    assert_eq!(r.status, 504);
    assert!(r.text().contains("upstream_timeout"));
    let r = http_get(gw.public, "/bad/x");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("bad_gateway"));
    assert_eq!(http_get(gw.public, "/badcl/x").status, 502);
    assert_eq!(http_get(gw.public, "/silent/x").status, 502);
}

#[test]
fn keep_alive_on_both_sides() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    for i in 0..5 {
        s.write_all(format!("GET /echo/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
        let r = read_response(&mut s, &mut buf, false).expect("response");
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with(&format!("GET /{i} HTTP/1.1")));
    }
    // Pipelined: two requests in one write, two answers in order.
    s.write_all(b"GET /echo/p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo/p2 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(read_response(&mut s, &mut buf, false).unwrap().text().starts_with("GET /p1 "));
    assert!(read_response(&mut s, &mut buf, false).unwrap().text().starts_with("GET /p2 "));
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "upstream connection reused");
}

#[test]
fn stale_pooled_connection_is_retried_for_bodyless_request() {
    // The origin closes after every answer without saying so: the pooled
    // connection is dead when reused, and the gateway must resend.
    let o = Origin::start(|_| Reply::RawClose(ok_response(b"x")));
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    for _ in 0..3 {
        assert_eq!(http_get(gw.public, "/o/").status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(o.requests().len(), 3, "each request reached the service exactly once");
}

#[test]
fn request_bodies_stream_with_length_and_chunked() {
    let o = Origin::start(|s| Reply::Raw(ok_response(format!("{}", s.body.len()).as_bytes())));
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut s = connect(gw.public);
    s.write_all(format!("POST /o/up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
        .unwrap();
    s.write_all(&body).unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.text(), "2000000");
    assert_eq!(o.last().body, body);
    assert_eq!(o.last().header("content-length").as_deref(), Some("2000000"));

    // Chunked in, re-chunked out: same payload, extensions and trailers dropped.
    s.write_all(b"POST /o/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"6\r\n world\r\n0\r\nTrailer-A: 1\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.text(), "11");
    let seen = o.last();
    assert_eq!(seen.body, b"hello world");
    assert_eq!(seen.header("transfer-encoding").as_deref(), Some("chunked"));
}

#[test]
fn response_bodies_chunked_and_close_delimited() {
    let o = Origin::start(|s| {
        if s.request_line().contains("/chunked") {
            Reply::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;e=1\r\ndefg\r\n0\r\nX-Tr: 1\r\n\r\n".to_vec())
        } else if s.request_line().contains("/eof") {
            Reply::RawClose(b"HTTP/1.1 200 OK\r\n\r\nuntil-close-body".to_vec())
        } else {
            let big: Vec<u8> = vec![b'z'; 1_000_000];
            Reply::Raw(ok_response(&big))
        }
    });
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let r = http_get(gw.public, "/o/chunked");
    assert!(r.chunked);
    assert_eq!(r.text(), "abcdefg");
    let r = http_get(gw.public, "/o/eof");
    assert!(r.chunked, "an HTTP/1.1 client gets a close-delimited body re-chunked");
    assert_eq!(r.text(), "until-close-body");
    let r = http_get(gw.public, "/o/big");
    assert_eq!(r.body.len(), 1_000_000);
    // HTTP/1.0 client: no chunked coding, body delimited by close.
    let r = raw(gw.public, b"GET /o/chunked HTTP/1.0\r\n\r\n");
    assert!(!r.chunked);
    assert_eq!(r.text(), "abcdefg");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
}

#[test]
fn expect_100_continue() {
    let o = Origin::start(|s| Reply::Raw(ok_response(&s.body)));
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    s.write_all(b"PUT /o/x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").unwrap();
    let mut first = [0u8; 25];
    std::io::Read::read_exact(&mut s, &mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"data").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "data");
    assert!(o.last().header("expect").is_none(), "Expect is handled by the gateway");
}

#[test]
fn head_204_304_have_no_body() {
    let o = Origin::start(|s| {
        let l = s.request_line();
        if l.contains("/204") {
            Reply::Raw(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())
        } else if l.contains("/304") {
            Reply::Raw(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_vec())
        } else {
            // HEAD: a length but no body.
            Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n".to_vec())
        }
    });
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    s.write_all(b"HEAD /o/h HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, true).unwrap();
    assert_eq!(r.header("content-length").as_deref(), Some("42"));
    s.write_all(b"GET /o/204 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 204);
    assert!(r.header("content-length").is_none() && r.header("transfer-encoding").is_none());
    s.write_all(b"GET /o/304 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 304);
    // The connection is still in sync: one more request works.
    s.write_all(b"HEAD /o/h HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, true).unwrap().status, 200);
    assert!(buf.is_empty(), "no stray body bytes: {buf:?}");
}

#[test]
fn http10_client_keep_alive_only_when_asked() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    s.write_all(b"GET /echo/a HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(closed(&mut s));
    let mut s = connect(gw.public);
    s.write_all(b"GET /echo/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    s.write_all(b"GET /echo/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().status, 200);
    assert_eq!(o.last().header("host").as_deref(), Some("echo"), "HTTP/1.0 without Host: the service name is sent");
}

#[test]
fn websocket_upgrade_relayed_only_after_101() {
    let o = Origin::start(|s| {
        if s.request_line().contains("/ws") {
            Reply::Upgrade(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec())
        } else {
            Reply::Raw(ok_response(b"no upgrade here"))
        }
    });
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    s.write_all(b"GET /o/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-accept").as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    let seen = o.last();
    assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(seen.header("sec-websocket-key").as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
    s.write_all(b"tunnel bytes").unwrap();
    let mut got = [0u8; 12];
    std::io::Read::read_exact(&mut s, &mut got).unwrap();
    assert_eq!(&got, b"tunnel bytes");

    // No 101: an ordinary answer, and the connection is not switched.
    let mut s = connect(gw.public);
    s.write_all(b"GET /o/plain HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "no upgrade here");
}

#[test]
fn hop_by_hop_forwarded_and_request_id() {
    let o = Origin::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: x-hop\r\nX-Hop: 1\r\nX-Request-Id: from-service\r\n\r\nok".to_vec())
    });
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let r = raw(
        gw.public,
        b"GET /o/x HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: secret\r\nKeep-Alive: 300\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nX-Keep: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = o.last();
    for h in ["connection", "x-custom-hop", "keep-alive", "te", "proxy-authorization", "forwarded"] {
        assert!(seen.header(h).is_none(), "{h} must not reach the service: {}", seen.head);
    }
    assert_eq!(seen.header("x-keep").as_deref(), Some("yes"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"), "an untrusted client's XFF is replaced");
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("gw.example"));
    assert_eq!(seen.header("host").as_deref(), Some("gw.example"));
    let rid = seen.header("x-request-id").expect("generated request id");
    assert_eq!(r.header("x-request-id"), Some(rid.clone()), "same id back to the client");
    assert!(rid.len() >= 16);
    assert!(r.header("keep-alive").is_none() && r.header("x-hop").is_none());
    // A client's own request id is kept.
    let r = raw(gw.public, b"GET /o/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n\r\n");
    assert_eq!(r.header("x-request-id").as_deref(), Some("abc-123"));
    assert_eq!(o.last().header("x-request-id").as_deref(), Some("abc-123"));
    assert_eq!(o.last().headers_named("x-request-id"), 1);
}

#[test]
fn trusted_proxy_forwarded_headers_are_extended() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], "trusted_proxies = [\"127.0.0.0/8\"]"));
    raw(gw.public, b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\r\n");
    let seen = o.last();
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("1.2.3.4, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
}

#[test]
fn protected_headers_stripped_both_ways_any_case() {
    let o = Origin::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Internal-Token: t0p\r\nx-INTERNAL-trace: 1\r\nX-Secret-Key: k\r\nX-Public: p\r\n\r\nok".to_vec())
    });
    let mut cfg = config_with(&[("o", vec![o.addr])], "");
    cfg.push_str("[headers]\nprotected = [\"x-internal-*\", \"x-secret-key\"]\n");
    let gw = Gateway::start(&cfg);
    let r = raw(gw.public, b"GET /o/x HTTP/1.1\r\nHost: t\r\nX-Internal-User: admin\r\nX-INTERNAL-ROLE: root\r\nx-secret-key: s\r\nX-Other: 1\r\n\r\n");
    assert_eq!(r.status, 200);
    let seen = o.last();
    assert!(
        seen.header("x-internal-user").is_none()
            && seen.header("x-internal-role").is_none()
            && seen.header("x-secret-key").is_none(),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("x-other").as_deref(), Some("1"));
    assert!(
        r.header("x-internal-token").is_none()
            && r.header("x-internal-trace").is_none()
            && r.header("x-secret-key").is_none(),
        "{}",
        r.head
    );
    assert_eq!(r.header("x-public").as_deref(), Some("p"));
}

#[test]
fn head_and_body_split_across_many_writes() {
    let o = Origin::start(|s| Reply::Raw(ok_response(&s.body)));
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    for part in
        [&b"POST /o/spl"[..], b"it HTTP/1.1\r\nHo", b"st: t\r\nContent-Len", b"gth: 10\r\n", b"\r\n01234", b"56789"]
    {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.text(), "0123456789");
    assert_eq!(o.last().request_line(), "POST /split HTTP/1.1");
}

#[test]
fn unknown_service_keeps_a_clean_connection_open() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    s.write_all(b"GET /nope/x HTTP/1.1\r\nHost: t\r\n\r\nGET /echo/after HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 404);
    assert!(r.header("connection").is_none(), "{}", r.head);
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!((r.status, r.text().starts_with("GET /after ")), (200, true));
    // With a body pending (not read), the connection is closed instead.
    s.write_all(b"POST /nope/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.header("connection").as_deref(), Some("close"));
}
