//! Edge limits and rejections: the exact bytes sent, the exact answer expected.
//! Each case is one that lets a proxy and a service disagree about where a
//! request ends (smuggling) or lets one client cost more than its share.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn gateway(extra_sections: &str) -> (Origin, Gateway) {
    let o = Origin::echo();
    let mut cfg = config_with(&[("echo", vec![o.addr]), ("admin", vec![o.addr])], "");
    cfg.push_str(extra_sections);
    let gw = Gateway::start(&cfg);
    (o, gw)
}

/// Sends `bytes`, expects `status` with a JSON error body, and a closed connection.
fn rejects(gw: &Gateway, bytes: &[u8], status: u16, code: &str) {
    let mut s = connect(gw.public);
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false)
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(bytes)));
    assert_eq!(r.status, status, "{:?} -> {}", String::from_utf8_lossy(bytes), r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert!(r.text().contains(&format!("\"error\":\"{code}\"")), "{}", r.text());
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(closed(&mut s), "connection closed after a rejected request");
}

#[test]
fn framing_conflicts_are_400() {
    let (o, gw) = gateway("");
    let cases: &[&[u8]] = &[
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0x10\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /echo/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: a b\r\n\r\n",
    ];
    for c in cases {
        rejects(&gw, c, 400, "bad_request");
    }
    assert!(o.requests().is_empty(), "none of these reached the service");
}

#[test]
fn unsupported_transfer_coding_is_501() {
    let (o, gw) = gateway("");
    rejects(
        &gw,
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        "unsupported_transfer_encoding",
    );
    rejects(&gw, b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "unsupported_transfer_encoding");
    rejects(
        &gw,
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        501,
        "unsupported_transfer_encoding",
    );
    assert!(o.requests().is_empty());
}

#[test]
fn invalid_bytes_and_obs_fold_are_400() {
    let (o, gw) = gateway("");
    let cases: &[&[u8]] = &[
        b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Fold: a\r\n  folded\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Cr: a\rb\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX:\x7fv\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: t\r\n: empty-name\r\n\r\n",
        b"GET /echo/x HTTP/2.0\r\nHost: t\r\n\r\n",
        b"GET  /echo/x HTTP/1.1\r\nHost: t\r\n\r\n",
        b"G\x01T /echo/x HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for c in cases {
        rejects(&gw, c, 400, "bad_request");
    }
    assert!(o.requests().is_empty());
}

#[test]
fn bad_chunk_sizes_are_400_and_never_reach_the_service_as_framed() {
    let (o, gw) = gateway("");
    let cases: &[&[u8]] = &[
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1111111111111111111\r\n",
    ];
    for c in cases {
        rejects(&gw, c, 400, "bad_request");
    }
    // The service never received a complete request from these.
    assert!(o.requests().is_empty(), "{:?}", o.requests());
}

#[test]
fn smuggling_attempt_cannot_hide_a_second_request() {
    // Classic CL.TE: a front end honoring Content-Length would forward the
    // tail as a second request to the service. We refuse the whole thing.
    let (o, gw) = gateway("");
    rejects(
        &gw,
        b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/x HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
        "bad_request",
    );
    // A valid chunked body followed by a pipelined request: two requests, in order.
    let mut s = connect(gw.public);
    s.write_all(b"POST /echo/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /echo/b HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().text(), "POST /a HTTP/1.1|abc");
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().text(), "GET /b HTTP/1.1|");
    let lines: Vec<String> = o.requests().iter().map(|r| r.request_line().to_string()).collect();
    assert_eq!(lines, vec!["POST /a HTTP/1.1", "GET /b HTTP/1.1"]);
}

#[test]
fn size_limits_431_414_413() {
    let (o, gw) =
        gateway("[limits]\nmax_header_bytes = 2048\nmax_headers = 10\nmax_uri_bytes = 512\nmax_body_bytes = 1000\n");
    let big_header = format!("GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(3000));
    rejects(&gw, big_header.as_bytes(), 431, "headers_too_large");
    let mut many = String::from("GET /echo/x HTTP/1.1\r\nHost: t\r\n");
    for i in 0..11 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    rejects(&gw, many.as_bytes(), 431, "headers_too_large");
    let long_uri = format!("GET /echo/{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(600));
    rejects(&gw, long_uri.as_bytes(), 414, "uri_too_long");
    // A URI too long before the line even ends.
    let endless = format!("GET /echo/{}", "u".repeat(1500));
    rejects(&gw, endless.as_bytes(), 414, "uri_too_long");
    rejects(&gw, b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413, "body_too_large");
    let mut chunked = b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(b"3e8\r\n");
    chunked.extend_from_slice(&[b'x'; 1000]);
    chunked.extend_from_slice(b"\r\n1\r\nx\r\n0\r\n\r\n");
    rejects(&gw, &chunked, 413, "body_too_large");
    // Exactly at the limits passes.
    let mut ok = b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'y'; 1000]);
    assert_eq!(raw(gw.public, &ok).status, 200);
    assert_eq!(o.requests().len(), 1);
}

#[test]
fn slow_header_gets_408_and_does_not_block_others() {
    let (_o, gw) = gateway("[timeouts]\nheader_read = \"400ms\"\n");
    let mut slow = connect(gw.public);
    slow.write_all(b"GET /echo/x HTTP/1.1\r\nHo").unwrap();
    let t0 = Instant::now();
    // Meanwhile other clients are served at once.
    for _ in 0..5 {
        assert_eq!(http_get(gw.public, "/echo/fast").status, 200);
    }
    assert!(t0.elapsed() < Duration::from_millis(400), "fast clients were not held up");
    let mut buf = Vec::new();
    let r = read_response(&mut slow, &mut buf, false).expect("408 answer");
    assert_eq!(r.status, 408);
    assert!(r.text().contains("header_timeout"));
    assert!(closed(&mut slow));
    // Trickling one byte at a time does not extend the deadline.
    let mut trickle = connect(gw.public);
    let t0 = Instant::now();
    let mut answered = Vec::new();
    for b in b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        trickle.set_nonblocking(true).unwrap();
        let mut tmp = [0u8; 512];
        if let Ok(n) = trickle.read(&mut tmp) {
            answered.extend_from_slice(&tmp[..n]);
            break;
        }
        trickle.set_nonblocking(false).unwrap();
        if trickle.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(answered.starts_with(b"HTTP/1.1 408 "), "{:?}", String::from_utf8_lossy(&answered));
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn paths_are_normalized_before_routing() {
    let (o, gw) = gateway("");
    let r = http_get(gw.public, "/other/../echo/x");
    assert_eq!(r.status, 200);
    assert_eq!(o.last().request_line(), "GET /x HTTP/1.1");
    let r = http_get(gw.public, "//echo//a///b");
    assert_eq!(r.status, 200);
    assert_eq!(o.last().request_line(), "GET /a/b HTTP/1.1");
    // Climbing out of a service lands on whatever the path names, never on
    // the service it started in: `admin` here, a different service.
    let n = o.requests().len();
    let r = http_get(gw.public, "/echo/%2e%2e/admin/secret");
    assert_eq!(r.status, 200);
    assert_eq!(o.last().request_line(), "GET /secret HTTP/1.1");
    assert_eq!(o.requests().len(), n + 1);
    let r = http_get(gw.public, "/nosuch/%2E%2E/%2e%2e/../");
    assert_eq!(r.status, 404);
    rejects(&gw, b"GET /echo%2Fadmin/x HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
    rejects(&gw, b"GET /echo/..%2f..%2fadmin HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
    rejects(&gw, b"GET http://evil/echo/x HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
    rejects(&gw, b"GET /ec%zzho/x HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
}

#[test]
fn garbage_and_abrupt_clients_never_take_the_gateway_down() {
    let (_o, gw) = gateway("");
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"\r\n\r\n\r\n",
        b"\x00\x00\x00\x00",
        b"GET",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let mut s = connect(gw.public);
        let _ = s.write_all(junk);
        drop(s);
    }
    // A client that vanishes mid-body.
    let mut s = connect(gw.public);
    s.write_all(b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc").unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(http_get(gw.public, "/echo/still-up").status, 200);
}
