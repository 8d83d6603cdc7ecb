//! Attack review of `limits.min_body_rate` (commit 9049daf), over real
//! sockets: evading the floor, false positives, what the client and the
//! service see after a cut, counters, configuration and reload.
//!
//! Four tests failed against the code as reviewed (a fresh grace per
//! request let a keep-alive trickler hold the backend, chunk extensions
//! paid the floor, bytes with the head bought no time, a busy worker's time
//! was charged to the client); they run now as guards with the fifteen
//! attacks the floor withstood. Three guards use bodies over 64 KiB since
//! smaller sized bodies are read whole before the service is asked. Every gateway
//! here runs one worker with `timeouts.header_read = "1s"`, so the grace
//! before the floor applies is one second of waiting for the client.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// `[server] workers = 1`, `header_read = "1s"`, `extra` (more sections),
/// then `services` (TOML text).
fn config(extra: &str, services: &str) -> String {
    format!("[server]\nworkers = 1\n[timeouts]\nheader_read = \"1s\"\n{extra}\n{services}\n")
}

fn service(name: &str, addr: SocketAddr) -> String {
    format!("[services.{name}]\ninstances = [\"{addr}\"]\n")
}

/// An origin answering 200 with `path|body length`.
fn length_origin() -> Origin {
    Origin::start(|s| {
        let path = s.request_line().split(' ').nth(1).unwrap_or("").to_string();
        Reply::Raw(ok_response(format!("{path}|{}", s.body.len()).as_bytes()))
    })
}

/// Writes `parts` on a thread of its own, each after its pause; stops at
/// the first failed write (the gateway closed the connection).
fn paced(stream: &TcpStream, parts: Vec<(Duration, Vec<u8>)>) -> std::thread::JoinHandle<usize> {
    let mut w = stream.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut sent = 0;
        for (pause, bytes) in parts {
            std::thread::sleep(pause);
            if w.write_all(&bytes).is_err() {
                break;
            }
            sent += bytes.len();
        }
        sent
    })
}

/// One byte of `body` every `every`.
fn bytewise(body: &[u8], every: Duration) -> Vec<(Duration, Vec<u8>)> {
    body.iter().map(|b| (every, vec![*b])).collect()
}

/// The next answer on `c`, waiting at most `limit`; with when it came.
fn answer(c: &mut TcpStream, limit: Duration) -> (Option<Resp>, Duration) {
    c.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let r = read_response(c, &mut buf, false);
    (r, started.elapsed())
}

/// Asserts `r` is the floor's cut: 408, `body_too_slow`, closing.
fn assert_cut(r: &Option<Resp>, took: Duration, what: &str) {
    let r = r.as_ref().unwrap_or_else(|| panic!("{what}: no answer after {took:?} (the trickle was not cut)"));
    assert_eq!(r.status, 408, "{what}: {} {}", r.head, r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON error body");
    assert_eq!(v["error"], "body_too_slow", "{what}: {v}");
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{what}: {}", r.head);
    assert!(took < Duration::from_secs(5), "{what}: cut only after {took:?}");
}

fn body_too_slow(gw: &Gateway) -> u64 {
    metric(gw, "wasp_gateway_errors_total", "kind=\"body_too_slow\"")
}

// ---------------------------------------------------------------------------
// Findings (fail against the reviewed code)
// ---------------------------------------------------------------------------

/// The floor counts bytes read from the socket, framing included, while the
/// chunked decoder drops chunk extensions (up to 4 KiB per size line). A
/// client sending one data byte per chunk padded with 1,000 bytes of
/// extension every 500 ms pays ~2 KB/s of wire bytes and delivers 2 B/s of
/// body: it is never cut and holds the service's connection as long as it
/// likes, exactly what the floor was added to stop.
#[test]
fn chunk_extension_padding_does_not_pay_the_floor() {
    let o = length_origin();
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut c = connect(gw.public);
    c.write_all(b"POST /up/ext HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let pad = "p".repeat(1000);
    let mut parts: Vec<(Duration, Vec<u8>)> =
        (0..16).map(|_| (Duration::from_millis(500), format!("1;pad={pad}\r\nx\r\n").into_bytes())).collect();
    parts.push((Duration::ZERO, b"0\r\n\r\n".to_vec()));
    let _w = paced(&c, parts);
    let (r, took) = answer(&mut c, Duration::from_secs(6));
    let body_bytes = (took.as_millis() / 500) as usize;
    assert!(
        r.is_some(),
        "not cut after {took:?}: ~{body_bytes} body bytes reached the service at 2 B/s, \
         carried by ~2 KB/s of chunk extensions the gateway throws away"
    );
    assert_cut(&r, took, "extension-padded chunks");
}

/// Body bytes that arrive in the same read as the head are never counted
/// (the rate starts in the pump, after `take_buffered`). The same 6,000-byte
/// fast start that buys six seconds when it is written 100 ms after the head
/// (`a_fast_start_after_the_head_buys_time`) buys nothing when it shares the
/// head's segment, the common case for a client that writes head and body
/// together: a body averaging 2.5 KB/s over its 3 s is cut as too slow.
#[test]
fn a_fast_start_sent_with_the_head_buys_time() {
    let o = length_origin();
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut c = connect(gw.public);
    let mut first = b"POST /up/with-head HTTP/1.1\r\nHost: t\r\nContent-Length: 8000\r\n\r\n".to_vec();
    first.extend_from_slice(&[b'h'; 6000]);
    c.write_all(&first).unwrap();
    // Then 500 B/s for 3 s, then the rest: 7,500 bytes over 3 s on the whole.
    let mut parts: Vec<(Duration, Vec<u8>)> = (0..15).map(|_| (Duration::from_millis(200), vec![b't'; 100])).collect();
    parts.push((Duration::ZERO, vec![b'r'; 500]));
    let _w = paced(&c, parts);
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!(
        (r.status, r.text()),
        (200, "/with-head|8000".to_string()),
        "after {took:?}: 6,000 body bytes sent with the head were not counted"
    );
}

/// The grace is granted again to every request: a keep-alive client whose
/// bodies (2 bytes, 400 ms apart) each end within `header_read` is never
/// measured, yet holds the service's connection nearly all the time at a
/// few bytes per second (under 100 B/s with its heads). With
/// `backend_connections = 1` one such client starves everyone else of the
/// service, and `body_too_slow` never moves. (A client that trickles 1 B
/// per 200 ms and reconnects after each cut does the same: in review it
/// left a victim 0 answers of 52 over 6 s, with 6 cuts; the connection is
/// taken before the first body byte.) The floor bounds one request's hold,
/// not the hold itself.
#[test]
fn sequential_sub_grace_trickles_hold_the_backend() {
    let o = length_origin();
    let gw = Gateway::start(&config("[limits]\nbackend_connections = 1\n", &service("up", o.addr)));
    assert_eq!(http_get(gw.public, "/up/warm").status, 200);
    let stop = Instant::now() + Duration::from_secs(6);
    let public = gw.public;
    let attacker = std::thread::spawn(move || {
        let mut served = 0;
        while Instant::now() < stop {
            let mut c = connect(public);
            let mut buf = Vec::new();
            while Instant::now() < stop {
                if c.write_all(b"POST /up/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(400));
                let _ = c.write_all(b"a");
                std::thread::sleep(Duration::from_millis(400));
                let _ = c.write_all(b"b");
                match read_response(&mut c, &mut buf, false) {
                    Some(r) if r.status == 200 => served += 1,
                    // Cut (or closed): reconnect and go on.
                    _ => break,
                }
            }
        }
        served
    });
    std::thread::sleep(Duration::from_millis(500));
    let (mut ok, mut total) = (0, 0);
    while Instant::now() + Duration::from_millis(300) < stop {
        total += 1;
        if http_get(gw.public, "/up/victim").status == 200 {
            ok += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = attacker.join().unwrap();
    assert!(
        ok * 2 >= total,
        "a client sending ~2 body bytes a second kept the only backend connection: the victim got {ok} of {total} \
         answers (the rest 503 overloaded); the attacker's {served} slow requests were never cut \
         (body_too_slow = {})",
        body_too_slow(&gw)
    );
}

/// Only time spent waiting for the client should count, but the clock is
/// read around the whole read, so time the worker spent busy elsewhere (a
/// `transform` program here, 2.5 s on the same worker) after the client's
/// bytes had arrived is charged to the client, and the read that ends it
/// credits at most a buffer (~8 KiB). A client pushing megabytes a second,
/// far above a 64 KB/s floor, is cut with 408 `body_too_slow`.
#[test]
fn a_busy_worker_does_not_make_a_fast_client_slow() {
    let o = length_origin();
    let services = format!(
        "{}{}[[services.burn.filters]]\nkind = \"transform\"\n\
         request_body = '.n as $n | reduce range(0; $n) as $i (0; . + 1) | {{n: .}}'\n",
        service("up", o.addr),
        service("burn", o.addr)
    );
    let gw = Gateway::start(&config("[limits]\nmin_body_rate = 65536\n", &services));
    // How many steps make 2.5 s of work on this machine and build.
    let probe = 300_000u64;
    let t = burn(gw.public, probe).max(Duration::from_millis(1));
    let n = ((probe as f64) * 2.5 / t.as_secs_f64()) as u64;
    let n = n.clamp(probe, 2_000_000_000);

    let total = 4 << 20;
    let mut c = connect(gw.public);
    c.write_all(format!("POST /up/fast HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").as_bytes()).unwrap();
    // The gateway now streams: its pump waits for the first body bytes.
    std::thread::sleep(Duration::from_millis(200));
    let public = gw.public;
    let burner = std::thread::spawn(move || burn(public, n));
    std::thread::sleep(Duration::from_millis(100));
    // The whole body at once, as fast as loopback takes it.
    let _w = paced(&c, vec![(Duration::ZERO, vec![b'f'; total])]);
    let (r, took) = answer(&mut c, Duration::from_secs(30));
    let busy = burner.join().unwrap();
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!(
        (r.status, r.text()),
        (200, format!("/fast|{total}")),
        "a {total}-byte body written at once was cut after {took:?} while the worker was busy for {busy:?}"
    );
}

/// Runs the `burn` service's program for `n` steps; how long it took.
fn burn(gw: SocketAddr, n: u64) -> Duration {
    let body = format!("{{\"n\":{n}}}");
    let started = Instant::now();
    let mut c = connect(gw);
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(
        format!(
            "POST /burn/x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("the burn answer");
    assert_eq!(r.status, 200, "{}", r.text());
    started.elapsed()
}

// ---------------------------------------------------------------------------
// Guards (attacks the floor withstands)
// ---------------------------------------------------------------------------

/// Written 100 ms after the head, a 6,000-byte fast start is counted and
/// buys time in proportion: 500 B/s afterwards goes through (compare with
/// `a_fast_start_sent_with_the_head_buys_time`).
#[test]
fn a_fast_start_after_the_head_buys_time() {
    let o = length_origin();
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut c = connect(gw.public);
    c.write_all(b"POST /up/after-head HTTP/1.1\r\nHost: t\r\nContent-Length: 8000\r\n\r\n").unwrap();
    let mut parts = vec![(Duration::from_millis(100), vec![b'h'; 6000])];
    parts.extend((0..15).map(|_| (Duration::from_millis(200), vec![b't'; 100])));
    parts.push((Duration::ZERO, vec![b'r'; 500]));
    let _w = paced(&c, parts);
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!((r.status, r.text()), (200, "/after-head|8000".to_string()), "after {took:?}");
}

/// What a raw origin saw on one connection.
#[derive(Debug)]
enum Event {
    /// A request head (its request line) and whether its body came whole.
    Request { conn: usize, line: String, whole: bool },
    /// The gateway closed the connection.
    Closed { conn: usize },
}

/// A raw origin recording every request and close; answers whole requests
/// 200 keep-alive. `early`: a request line containing it is answered 200
/// at once, before its body is read (which is then read to the end).
fn recording_origin(early: &'static str) -> (SocketAddr, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let ids = Arc::new(AtomicUsize::new(0));
    let addr = raw_origin(move |mut s| {
        let conn = ids.fetch_add(1, Ordering::SeqCst);
        let send = |e: Event| {
            let _ = tx.lock().unwrap().send(e);
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut b = [0u8; 65536];
        loop {
            let end = loop {
                if let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p + 4);
                }
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => pending.extend_from_slice(&b[..n]),
                }
            };
            let Some(end) = end else {
                send(Event::Closed { conn });
                return;
            };
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end);
            let line = head.lines().next().unwrap_or("").to_string();
            if line.contains(early) {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly");
            }
            let len = content_length(&head);
            let mut whole = true;
            while pending.len() < len {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => {
                        whole = false;
                        break;
                    }
                    Ok(n) => pending.extend_from_slice(&b[..n]),
                }
            }
            send(Event::Request { conn, line: line.clone(), whole });
            if !whole {
                send(Event::Closed { conn });
                return;
            }
            pending.drain(..len);
            if !line.contains(early) && s.write_all(&ok_response(b"fine")).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// Events until `until` says stop or `limit` passes.
fn events_until(rx: &mpsc::Receiver<Event>, limit: Duration, until: impl Fn(&Event) -> bool) -> Vec<Event> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(e) => {
                let stop = until(&e);
                out.push(e);
                if stop {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    out
}

/// After a cut: 408 `body_too_slow` with `connection: close`, then end of
/// stream; a request hidden in the body or written after the cut never
/// reaches the service; the service's half-written connection is closed,
/// not pooled (the next request comes on a new one).
#[test]
fn a_cut_closes_both_sides_and_smuggles_nothing() {
    let (addr, events) = recording_origin("never");
    let gw = Gateway::start(&config("", &service("up", addr)));
    let mut c = connect(gw.public);
    // Over 64 KiB: streamed (a smaller sized body is read whole first).
    c.write_all(b"POST /up/cut HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n").unwrap();
    let hidden = b"GET /up/smuggled-in-body HTTP/1.1\r\nHost: t\r\n\r\n";
    let _w = paced(&c, bytewise(hidden, Duration::from_millis(100)));
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    assert_cut(&r, took, "sized body");
    // The rest of the body, then a request, on the connection that was cut.
    let _ = c.write_all(b"GET /up/smuggled-after-cut HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(closed(&mut c), "the client connection stays open after a cut");
    let seen = events_until(&events, Duration::from_secs(3), |e| matches!(e, Event::Closed { .. }));
    assert!(
        seen.iter().any(|e| matches!(e, Event::Request { conn: 0, whole: false, .. })),
        "the service's connection was not closed mid-body: {seen:?}"
    );
    assert!(seen.iter().any(|e| matches!(e, Event::Closed { conn: 0 })), "{seen:?}");
    assert_eq!(http_get(gw.public, "/up/after").status, 200);
    let later = events_until(&events, Duration::from_secs(2), |e| matches!(e, Event::Request { .. }));
    assert!(
        later.iter().any(|e| matches!(e, Event::Request { conn: 1, line, whole: true } if line.contains("/after"))),
        "the next request did not come on a new connection: {later:?}"
    );
    let all: Vec<_> = seen.iter().chain(&later).collect();
    assert!(!format!("{all:?}").contains("smuggled"), "a smuggled request reached the service: {all:?}");
    assert_eq!(body_too_slow(&gw), 1);
}

/// A service that answers 200 before reading the body (keep-alive) makes
/// the gateway pump the body to the end before relaying: a trickle there
/// is cut with 408 too (the early 200 is not relayed half-way), and that
/// connection, answered but half-written, is never pooled.
#[test]
fn a_cut_after_an_early_success_closes_the_service_connection() {
    let (addr, events) = recording_origin("/early");
    let gw = Gateway::start(&config("", &service("up", addr)));
    let mut c = connect(gw.public);
    c.write_all(b"POST /up/early HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n").unwrap();
    let _w = paced(&c, bytewise(&[b'e'; 1000], Duration::from_millis(150)));
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    assert_cut(&r, took, "after an early 200");
    let seen = events_until(&events, Duration::from_secs(3), |e| matches!(e, Event::Closed { .. }));
    assert!(seen.iter().any(|e| matches!(e, Event::Closed { conn: 0 })), "not closed: {seen:?}");
    assert_eq!(http_get(gw.public, "/up/next").status, 200);
    let later = events_until(&events, Duration::from_secs(2), |e| matches!(e, Event::Request { .. }));
    assert!(
        later.iter().any(|e| matches!(e, Event::Request { conn: 1, .. })),
        "reused the half-written connection: {later:?}"
    );
}

/// The point of the floor: a trickler holding the only backend connection
/// (`backend_connections = 1`: others get 503) releases it when cut.
/// Neither the cut nor a few more count against the instance (no upstream
/// error, no outlier ejection even at one failure), and the counter is
/// there (at 0) before the first cut.
#[test]
fn a_cut_releases_the_backend_slot_and_does_not_eject_the_instance() {
    let o = length_origin();
    let services = format!("{}[services.up.outlier]\nconsecutive_failures = 1\n", service("up", o.addr));
    let gw = Gateway::start(&config("[limits]\nbackend_connections = 1\n", &services));
    assert!(gw.metrics().contains("wasp_gateway_errors_total{kind=\"body_too_slow\""), "not exposed before a cut");
    for round in 0..2 {
        let mut c = connect(gw.public);
        // Over 64 KiB, so streamed: the connection is taken before the body.
        c.write_all(b"POST /up/hold HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n").unwrap();
        let _w = paced(&c, bytewise(&[b'h'; 1000], Duration::from_millis(200)));
        std::thread::sleep(Duration::from_millis(300));
        let held = http_get(gw.public, "/up/while-held");
        assert_eq!(held.status, 503, "round {round}: the trickler did not hold the slot: {}", held.text());
        let (r, took) = answer(&mut c, Duration::from_secs(8));
        assert_cut(&r, took, "holding the only slot");
        assert_eq!(http_get(gw.public, "/up/after-cut").status, 200, "round {round}: the slot was not released");
    }
    assert_eq!(body_too_slow(&gw), 2);
    assert_eq!(metric(&gw, "wasp_upstream_errors_total", ""), 0, "a client's cut counted as the service's error");
    assert_eq!(metric(&gw, "wasp_outlier_ejections_total", "result=\"ejected\""), 0);
    assert!(gw.wait_log("status=408", Duration::from_secs(2)), "no access-log line for the cut");
}

/// A chunked body whose chunks are done but whose trailer section trickles
/// is cut like any other trickle (trailers are at most 4 KiB anyway).
#[test]
fn a_trickled_trailer_is_cut() {
    let o = length_origin();
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut c = connect(gw.public);
    c.write_all(b"POST /up/trailer HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
        .unwrap();
    let mut trailer = b"X-Trailer: ".to_vec();
    trailer.extend_from_slice(&[b'v'; 60]);
    let _w = paced(&c, bytewise(&trailer, Duration::from_millis(150)));
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    assert_cut(&r, took, "trickled trailer");
}

/// HTTP/1.0 bodies are held to the same floor and the connection closed.
#[test]
fn an_http10_trickle_is_cut() {
    let o = length_origin();
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut c = connect(gw.public);
    c.write_all(b"POST /up/old HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\nContent-Length: 500\r\n\r\n").unwrap();
    let _w = paced(&c, bytewise(&[b'o'; 500], Duration::from_millis(150)));
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    assert_cut(&r, took, "HTTP/1.0");
    assert!(closed(&mut c));
}

/// A client that waits for `100 Continue` before sending is not charged for
/// the wait before the 100, nor for a pause just under the grace after it;
/// then 4 KB/s goes through. A body that pauses 700 ms mid-way and resumes
/// above the floor goes through too.
#[test]
fn expect_continue_and_pauses_under_the_grace_go_through() {
    let o = length_origin();
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut c = connect(gw.public);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"POST /up/continue HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 6144\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 256];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut b).expect("the 100");
        assert!(n > 0, "closed before the 100");
        got.extend_from_slice(&b[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&got));
    let mut parts = vec![(Duration::from_millis(700), vec![b'c'; 256])];
    parts.extend((0..23).map(|_| (Duration::from_millis(62), vec![b'c'; 256])));
    let _w = paced(&c, parts);
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!((r.status, r.text()), (200, "/continue|6144".to_string()), "after {took:?}");

    let mut c = connect(gw.public);
    c.write_all(b"POST /up/pause HTTP/1.1\r\nHost: t\r\nContent-Length: 12288\r\n\r\n").unwrap();
    let mut parts: Vec<(Duration, Vec<u8>)> = (0..12).map(|_| (Duration::from_millis(50), vec![b'p'; 512])).collect();
    parts.push((Duration::from_millis(700), vec![b'p'; 512]));
    parts.extend((0..11).map(|_| (Duration::from_millis(50), vec![b'p'; 512])));
    let _w = paced(&c, parts);
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!((r.status, r.text()), (200, "/pause|12288".to_string()), "after {took:?}");
    assert_eq!(body_too_slow(&gw), 0);
}

/// A slow but legal body (2.5 KB/s for 1.6 s) followed by a pipelined
/// request in the same write: both answered in order, bodies intact.
#[test]
fn a_request_pipelined_after_a_slow_legal_body_is_served() {
    let o = length_origin();
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut c = connect(gw.public);
    c.write_all(b"POST /up/first HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n").unwrap();
    let mut parts: Vec<(Duration, Vec<u8>)> = (0..15).map(|_| (Duration::from_millis(100), vec![b'1'; 256])).collect();
    let mut last = vec![b'1'; 256];
    last.extend_from_slice(b"POST /up/second HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    parts.push((Duration::from_millis(100), last));
    let _w = paced(&c, parts);
    c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut buf = Vec::new();
    let r1 = read_response(&mut c, &mut buf, false).expect("first answer");
    assert_eq!((r1.status, r1.text()), (200, "/first|4096".to_string()));
    let r2 = read_response(&mut c, &mut buf, false).expect("second answer");
    assert_eq!((r2.status, r2.text()), (200, "/second|3".to_string()));
    let firsts: Vec<_> = o.requests().into_iter().filter(|s| s.request_line().contains("/first")).collect();
    assert_eq!(firsts.len(), 1);
    assert!(firsts[0].body.iter().all(|b| *b == b'1'), "the first body took bytes of the second request");
}

/// A tunnel after a `101` is not a request body: a WebSocket client
/// sending a byte every 300 ms for 3 s is relayed, never cut.
#[test]
fn an_upgraded_tunnel_is_not_held_to_the_floor() {
    let o = Origin::start(|_| {
        Reply::Upgrade(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec(),
        )
    });
    let gw = Gateway::start(&config("", &service("up", o.addr)));
    let mut s = connect(gw.public);
    s.write_all(
        b"GET /up/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).expect("101");
    assert_eq!(r.status, 101);
    for i in 0..10u8 {
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(&[b'a' + i]).unwrap();
        let mut got = [0u8; 1];
        s.read_exact(&mut got).expect("echoed");
        assert_eq!(got[0], b'a' + i);
    }
    assert_eq!(body_too_slow(&gw), 0);
}

/// A mock answers a trickling client at once (its body is never read, so
/// the floor has nothing to measure) and the lingering close is bounded.
#[test]
fn a_mock_answers_a_trickler_at_once() {
    let gw = Gateway::start(&config(
        "",
        "[services.m.mock]\nroutes = [{ path = \"/*\", status = 200, json = { ok = true } }]\n",
    ));
    let mut c = connect(gw.public);
    c.write_all(b"POST /m/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n").unwrap();
    let _w = paced(&c, bytewise(&[b'm'; 10], Duration::from_millis(200)));
    let (r, took) = answer(&mut c, Duration::from_secs(5));
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took < Duration::from_secs(1), "{took:?}");
    let started = Instant::now();
    let mut rest = Vec::new();
    c.set_read_timeout(Some(Duration::from_secs(12))).unwrap();
    let _ = c.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(11), "linger held {:?}", started.elapsed());
    assert_eq!(body_too_slow(&gw), 0);
}

/// A `dispatch = { kafka ... }` service reads the body whole before any
/// broker is asked: a trickle is cut there too (the broker here is not
/// even reachable).
#[test]
fn a_trickle_to_a_bus_service_is_cut() {
    let services = format!(
        "[kafka]\nbrokers = \"{}\"\n[services.bus]\ndispatch = {{ kafka = {{ topic = \"t\" }} }}\n",
        dead_addr()
    );
    let gw = Gateway::start(&config("", &services));
    let mut c = connect(gw.public);
    c.write_all(b"POST /bus/x HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n").unwrap();
    let _w = paced(&c, bytewise(&[b'k'; 500], Duration::from_millis(150)));
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    assert_cut(&r, took, "bus service");
    assert_eq!(body_too_slow(&gw), 1);
}

/// `wasp dev`: an overridden service's streamed body is held to the floor.
#[test]
fn dev_mode_overrides_are_held_to_the_floor() {
    let o = length_origin();
    let dir = temp_dir("dev-rate");
    let path = dir.join("wasp.toml");
    std::fs::write(&path, config("", "[services.shop]\n")).unwrap();
    let mut cmd = Command::new(wasp_bin());
    cmd.args(["dev", "--config"]).arg(&path).args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    cmd.args(["--override", &format!("shop={}", o.addr)]);
    let gw = Gateway::spawn(cmd, path, &[]);
    let mut c = connect(gw.public);
    c.write_all(b"POST /shop/x HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n").unwrap();
    let _w = paced(&c, bytewise(&[b'd'; 500], Duration::from_millis(150)));
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    assert_cut(&r, took, "dev override");
}

/// A trickle of `n` bytes every 200 ms: the status it ends with.
fn trickle_status(gw: &Gateway, n: usize) -> u16 {
    let mut c = connect(gw.public);
    c.write_all(format!("POST /up/t HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n").as_bytes()).unwrap();
    let _w = paced(&c, bytewise(&vec![b't'; n], Duration::from_millis(200)));
    let (r, took) = answer(&mut c, Duration::from_secs(8));
    r.unwrap_or_else(|| panic!("no answer after {took:?}")).status
}

/// The floor follows `SIGHUP` both ways, survives an admin-API apply (which
/// rebuilds from the file's settings), and a reload with a value over the
/// cap is refused naming the key, the running floor kept.
#[test]
fn reload_turns_the_floor_on_and_off_and_refuses_nonsense() {
    let o = length_origin();
    let write = |gw: &Gateway, rate: &str| {
        std::fs::write(&gw.config_path, config(&format!("[limits]\nmin_body_rate = {rate}\n"), &service("up", o.addr)))
            .unwrap();
    };
    let gw = Gateway::start(&config("[limits]\nmin_body_rate = 0\n", &service("up", o.addr)));
    assert_eq!(trickle_status(&gw, 8), 200, "off at start");

    write(&gw, "1024");
    gw.signal(SIGHUP);
    assert!(gw.wait_log("configuration reloaded", Duration::from_secs(5)));
    assert_eq!(trickle_status(&gw, 12), 408, "on after SIGHUP");

    // An API apply of another service keeps the file's limits.
    let other = format!(r#"{{"instances":["{}"]}}"#, o.addr);
    let r = raw(
        gw.admin,
        format!(
            "PUT /services/other HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{other}",
            other.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(trickle_status(&gw, 12), 408, "still on after an API apply");

    write(&gw, "1073741825");
    gw.signal(SIGHUP);
    assert!(gw.wait_log("reload rejected", Duration::from_secs(5)));
    let logs = gw.logs.lock().unwrap().join("\n");
    assert!(logs.contains("limits.min_body_rate"), "the rejection does not name the key: {logs}");
    drop(logs);
    assert_eq!(trickle_status(&gw, 12), 408, "still on after a refused reload");

    write(&gw, "0");
    gw.signal(SIGHUP);
    let end = Instant::now() + Duration::from_secs(5);
    while gw.logs.lock().unwrap().iter().filter(|l| l.contains("configuration reloaded")).count() < 2 {
        assert!(Instant::now() < end, "second reload not seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(trickle_status(&gw, 8), 200, "off again");
}

/// `wasp check`: the bounds are 0 and 2^30 inclusive; a negative, a
/// fraction, a string or a value past the cap is refused (with the key or
/// its line), and the largest floor with a long grace is accepted (no
/// overflow at start).
#[test]
fn check_bounds_the_floor() {
    let dir = temp_dir("check-rate");
    let check = |text: &str| {
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for ok in ["0", "1", "1073741824"] {
        let (good, err) = check(&format!("[limits]\nmin_body_rate = {ok}\n[timeouts]\nheader_read = \"1h\"\n"));
        assert!(good, "{ok} refused: {err}");
    }
    for bad in ["-1", "1.5", "\"1KB\"", "1073741825", "18446744073709551615", "18446744073709551616"] {
        let (good, err) = check(&format!("[limits]\nmin_body_rate = {bad}\n"));
        assert!(!good, "{bad} accepted");
        assert!(err.contains("limits.min_body_rate") || err.contains("line 2"), "{bad}: {err}");
    }
}

/// A floor at its cap (1 GiB/s) does not touch bodies that never make the
/// gateway wait long: a small PUT that came with its head (replayable) and
/// a 1 MiB body written at once.
#[test]
fn the_largest_floor_spares_fast_bodies() {
    let o = length_origin();
    let gw = Gateway::start(&config("[limits]\nmin_body_rate = 1073741824\n", &service("up", o.addr)));
    let r = raw(gw.public, b"PUT /up/small HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    assert_eq!((r.status, r.text()), (200, "/small|5".to_string()));
    let total = 1 << 20;
    let mut c = connect(gw.public);
    let mut all = format!("POST /up/mib HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").into_bytes();
    all.extend_from_slice(&vec![b'm'; total]);
    let _w = paced(&c, vec![(Duration::ZERO, all)]);
    let (r, took) = answer(&mut c, Duration::from_secs(10));
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!((r.status, r.text()), (200, format!("/mib|{total}")));
}
