//! A request head that arrives a byte at a time (a slow or hostile client):
//! the gateway must resume where it stopped instead of re-parsing the whole
//! head on every read, and must still answer exactly as for a head sent at once.
//!
//! The CPU the gateway spent on the 16 KiB trickle is printed, never asserted:
//! `cargo test --release --test trickle -- --nocapture` (`WASP_TRICKLE_KIB=64`
//! for a bigger head).

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Gateway CPU: utime and stime in clock ticks (10 ms) from /proc/PID/stat,
/// and the sum of the threads' run times from /proc/PID/task/*/schedstat in ns.
fn cpu(pid: u32) -> (u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let (utime, stime) = (f[11].parse::<u64>().unwrap(), f[12].parse::<u64>().unwrap());
    let mut ns = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    (utime, stime, ns)
}

/// Writes `bytes` one per `write` call, pausing so that the gateway's reads see
/// about one byte each. Stops early (returning false) if the gateway closed.
fn trickle(s: &mut TcpStream, bytes: &[u8], pause: Duration) -> bool {
    for b in bytes {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            return false;
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    true
}

/// A head of exactly `size` bytes: a request line, Host, then padding headers
/// of a few lengths, ending with an empty line.
fn big_head(path: &str, size: usize) -> (Vec<u8>, usize) {
    let mut h = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    let end = "\r\n";
    let mut n = 0;
    let lens = [40, 300, 120, 700, 60];
    loop {
        // Longer lines for bigger heads: the field count stays under 100.
        let len = lens[n % lens.len()] * size.div_ceil(16 * 1024);
        let line = format!("X-Pad-{n}: {}\r\n", "p".repeat(len));
        if h.len() + line.len() + end.len() + 40 > size {
            break;
        }
        h.push_str(&line);
        n += 1;
    }
    // The last padding header fills the head to exactly `size`.
    let fill = size - h.len() - end.len() - format!("X-Pad-{n}: \r\n").len();
    h.push_str(&format!("X-Pad-{n}: {}\r\n", "q".repeat(fill)));
    h.push_str(end);
    assert_eq!(h.len(), size);
    (h.into_bytes(), n + 1)
}

#[test]
fn trickled_16k_head_is_proxied_and_cpu_is_printed() {
    let o = Origin::echo();
    let kib: usize = std::env::var("WASP_TRICKLE_KIB").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let cfg = config_with(
        &[("echo", vec![o.addr])],
        &format!("[limits]\nmax_header_bytes = {}\n[timeouts]\nheader_read = \"300s\"\n", kib * 2048),
    );
    let gw = Gateway::start(&cfg);
    let pid = gw.child.id();
    let (head, pads) = big_head("/echo/trickle", kib * 1024);

    let mut s = connect(gw.public);
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // Warm up the connection path (first request, pool, allocations) off the clock.
    s.write_all(b"GET /echo/warm HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, false).expect("warm-up answer").status, 200);

    let (u0, s0, n0) = cpu(pid);
    let started = Instant::now();
    assert!(trickle(&mut s, &head, Duration::from_micros(20)), "gateway closed mid-head");
    let r = read_response(&mut s, &mut buf, false).expect("an answer to the trickled head");
    let wall = started.elapsed();
    let (u1, s1, n1) = cpu(pid);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "GET /trickle HTTP/1.1|");
    let seen = o.last();
    assert_eq!(seen.request_line(), "GET /trickle HTTP/1.1");
    assert_eq!(seen.headers_named("host"), 1);
    let forwarded = (0..pads).filter(|i| seen.header(&format!("x-pad-{i}")).is_some()).count();
    assert_eq!(forwarded, pads, "every padding header reaches the origin");
    println!(
        "trickle: {} byte head, one byte per write, {:.2?} wall; gateway CPU {} ms (utime {} + stime {}), {:.1} ms (schedstat)",
        head.len(),
        wall,
        (u1 - u0 + s1 - s0) * 10,
        (u1 - u0) * 10,
        (s1 - s0) * 10,
        (n1 - n0) as f64 / 1e6
    );

    // The connection stays in sync: a whole request right after, then a
    // trickled one with bare-LF line ends, then a pipelined pair sent at once.
    s.write_all(b"GET /echo/next HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).expect("next").text(), "GET /next HTTP/1.1|");
    assert!(trickle(&mut s, b"\r\nGET /echo/lf HTTP/1.1\nHost: t\nX-A: 1\n\n", Duration::ZERO));
    assert_eq!(read_response(&mut s, &mut buf, false).expect("bare LF").text(), "GET /lf HTTP/1.1|");
    s.write_all(b"GET /echo/p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo/p2 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).expect("p1").text(), "GET /p1 HTTP/1.1|");
    assert_eq!(read_response(&mut s, &mut buf, false).expect("p2").text(), "GET /p2 HTTP/1.1|");
    // The second of a pipelined pair arriving in pieces after the first.
    s.write_all(b"GET /echo/p3 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo/p4 HT").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).expect("p3").text(), "GET /p3 HTTP/1.1|");
    assert!(trickle(&mut s, b"TP/1.1\r\nHost: t\r\n\r\n", Duration::from_millis(1)));
    assert_eq!(read_response(&mut s, &mut buf, false).expect("p4").text(), "GET /p4 HTTP/1.1|");
}

/// Sends `bytes` a byte at a time (stopping if the gateway hangs up) and
/// expects `status` with the error `code`, then a closed connection.
fn trickle_rejected(gw: &Gateway, bytes: &[u8], status: u16, code: &str) {
    let mut s = connect(gw.public);
    trickle(&mut s, bytes, Duration::from_micros(50));
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false)
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(bytes)));
    assert_eq!(r.status, status, "{:?} -> {}", String::from_utf8_lossy(bytes), r.text());
    assert!(r.text().contains(&format!("\"error\":\"{code}\"")), "{}", r.text());
    assert!(closed(&mut s), "connection closed after a rejected request");
}

#[test]
fn trickled_heads_get_the_same_answers_as_whole_ones() {
    let o = Origin::echo();
    let cfg = config_with(
        &[("echo", vec![o.addr])],
        "[limits]\nmax_header_bytes = 1024\nmax_headers = 4\nmax_uri_bytes = 256\n[timeouts]\nheader_read = \"60s\"\n",
    );
    let gw = Gateway::start(&cfg);

    // Over the size limit with no end of head: 431 as soon as the limit is
    // passed (the client stops sending there; nothing else would end the head).
    let mut over = b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    over.resize(1025, b'a');
    trickle_rejected(&gw, &over, 431, "headers_too_large");
    // A request line longer than the URI limit and never ended: 414.
    let mut uri = b"GET /echo/".to_vec();
    uri.resize(256 + 64 + 1, b'u');
    trickle_rejected(&gw, &uri, 414, "uri_too_long");
    // Too many header fields: 431 once the fifth header line ends.
    trickle_rejected(
        &gw,
        b"GET /echo/x HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n",
        431,
        "headers_too_large",
    );
    // An invalid byte in a header value: 400 once its line ends.
    trickle_rejected(&gw, b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n", 400, "bad_request");
    // Obsolete line folding: 400.
    trickle_rejected(&gw, b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n", 400, "bad_request");
    // A broken request line: 400 at once (the first byte is already wrong).
    trickle_rejected(&gw, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "bad_request");
    // A bad version: 400 once the request line ends.
    trickle_rejected(&gw, b"GET /echo/x HTTP/2.0\r\nHost: t\r\n\r\n", 400, "bad_request");
    // A complete head that fails validation after parsing (no Host): 400.
    trickle_rejected(&gw, b"GET /echo/x HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "bad_request");

    // Exactly at the limits (1024 bytes, four header fields) passes.
    let mut s = connect(gw.public);
    let value = "v".repeat(1024 - 70);
    let h = format!("GET /echo/edge HTTP/1.1\r\nHost: t\r\nX-A: {value}\r\nX-B: 1\r\nConnection: close\r\n\r\n");
    assert_eq!(h.len(), 1024);
    assert!(trickle(&mut s, h.as_bytes(), Duration::ZERO));
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).expect("answer at the limit");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(o.last().header("x-a"), Some(value));
}
