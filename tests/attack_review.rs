//! Attack review of the upstream rework (one client, deadlines, body
//! streaming while the answer is read, replay rule, pool reaper, the one
//! response-head parser). Every test talks to the real binary over real
//! sockets. Tests marked FAILS reproduce a finding on the code under review;
//! the others are regression guards that held.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The worker still serves: a plain GET on a new connection is answered.
fn still_serves(gw: &Gateway, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(gw.public) else { return false };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, false).is_some_and(|r| r.status == 200)
}

/// CPU time (user + system, ms) the process spends during `d`.
fn cpu_ms_over(pid: u32, d: Duration) -> u64 {
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some(end) = stat.rfind(')') else { return 0 };
        let f: Vec<&str> = stat[end + 2..].split_whitespace().collect();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let a = ticks();
    std::thread::sleep(d);
    (ticks() - a) * 10
}

// ---------------------------------------------------------------------------
// FINDING 1 (FAILS): a chunked request body whose size line (or the CRLF after
// a chunk's data) is split across two reads makes `pump_body` spin forever
// without yielding: the whole worker thread hangs (every connection on it,
// the deadline sweeper, the drain).
// ---------------------------------------------------------------------------

fn chunked_split(first: &[u8], second: &[u8]) {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut c = connect(gw.public);
    let mut head = b"POST /echo/up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    head.extend_from_slice(first);
    c.write_all(&head).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(second).unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false);
    let alive = still_serves(&gw, "/echo/alive");
    assert!(
        alive,
        "the worker no longer answers anybody after {:?} | {:?}; gateway CPU over the next second: {} ms",
        String::from_utf8_lossy(first),
        String::from_utf8_lossy(second),
        cpu_ms_over(gw.child.id(), Duration::from_secs(1))
    );
    let r = r.expect("an answer to the chunked upload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "POST /up HTTP/1.1|hello");
}

#[test]
fn chunked_body_split_inside_a_size_line_does_not_hang_the_worker() {
    chunked_split(b"5", b"\r\nhello\r\n0\r\n\r\n");
}

#[test]
fn chunked_body_split_inside_the_crlf_after_data_does_not_hang_the_worker() {
    chunked_split(b"5\r\nhello\r", b"\n0\r\n\r\n");
}

#[test]
fn held_chunked_body_split_between_the_last_chunk_and_its_crlf() {
    chunked_split(b"5\r\nhello\r\n0\r\n", b"\r\n");
}

/// No malice needed: an ordinary chunked upload (1000-byte chunks, written
/// in 4 KiB pieces as a streaming client does) hits a split size line sooner
/// or later.
#[test]
fn an_ordinary_chunked_upload_does_not_hang_the_worker() {
    let o = Origin::start(|s| Reply::Raw(ok_response(format!("{}", s.body.len()).as_bytes())));
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut c = connect(gw.public);
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = c.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut body = Vec::new();
        for _ in 0..2000 {
            body.extend_from_slice(b"3e8\r\n");
            body.extend_from_slice(&[b'u'; 1000]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let _ = w.write_all(b"POST /echo/up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        for piece in body.chunks(4096) {
            if w.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false);
    assert!(
        still_serves(&gw, "/echo/alive"),
        "the worker hangs; CPU over the next second: {} ms",
        cpu_ms_over(gw.child.id(), Duration::from_secs(1))
    );
    assert_eq!(r.expect("an answer").text(), "2000000");
}

// ---------------------------------------------------------------------------
// FINDING 3 (FAILS): while a request body is still coming from a slow client,
// the service's answer deadline (`services.X.timeout`) runs: a client that
// pauses longer than that (but well within `timeouts.header_read`) gets a 504
// blamed on a healthy service, and the service's socket is cut.
// ---------------------------------------------------------------------------

#[test]
fn a_slow_uploader_is_not_a_service_timeout() {
    let o = Origin::echo();
    let mut cfg = config_with(&[], "[timeouts]\nheader_read = \"10s\"\n");
    cfg.push_str(&format!("[services.echo]\ninstances = [\"{}\"]\ntimeout = \"1s\"\n", o.addr));
    let gw = Gateway::start(&cfg);
    let mut c = connect(gw.public);
    c.write_all(b"POST /echo/up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello").unwrap();
    // Within header_read (10 s), longer than the service timeout (1 s).
    std::thread::sleep(Duration::from_millis(2500));
    let _ = c.write_all(b"world");
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("an answer");
    assert_eq!(r.status, 200, "a healthy service was blamed for a slow client: {}", r.text());
    assert_eq!(r.text(), "POST /up HTTP/1.1|helloworld");
    assert_eq!(metric(&gw, "wasp_timeouts_total", "side=\"upstream\""), 0);
}

// ---------------------------------------------------------------------------
// FINDING 6 (FAILS, probabilistic in the failing direction only): with
// `retry.attempts = 0` an idempotent request is written on a pooled
// connection without the `recv(MSG_PEEK)` check (only non-replayable
// requests are checked), and the stale-keep-alive retry is refused by the
// attempts cap: a GET to a healthy service that closes idle keep-alive
// connections gets 502. A POST in the same spot gets 200 (it is checked).
// ---------------------------------------------------------------------------

/// Answers every request, then closes the connection 30 ms later (a short
/// keep-alive timeout, as many servers have).
fn closes_idle_soon() -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    let addr = raw_origin(move |mut s| {
        if read_request(&mut s, true).is_some() {
            c2.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(&ok_response(b"ok"));
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    (addr, count)
}

fn stale_pool_statuses(method_line: &str, attempts: u32) -> Vec<u16> {
    let (origin, _) = closes_idle_soon();
    let cfg = format!(
        "[server]\nworkers = 1\n[services.o]\ninstances = [\"{origin}\"]\n[services.o.retry]\nattempts = {attempts}\n"
    );
    let gw = Gateway::start(&cfg);
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(raw(gw.public, method_line.as_bytes()).status);
        // The service has closed the pooled connection; the reaper (every
        // second) has most likely not looked yet.
        std::thread::sleep(Duration::from_millis(120));
    }
    statuses
}

#[test]
fn a_get_on_a_connection_the_service_closed_idle_is_not_502_with_attempts_zero() {
    let s = stale_pool_statuses("GET /o/x HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    assert!(s.iter().all(|&c| c == 200), "statuses: {s:?}");
}

/// Held: the same for a POST (peeked before the write) and for a GET with the
/// default attempts (the stale retry).
#[test]
fn held_stale_pooled_connections_post_and_default_get() {
    let s = stale_pool_statuses("POST /o/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", 0);
    assert!(s.iter().all(|&c| c == 200), "POST statuses: {s:?}");
    let s = stale_pool_statuses("GET /o/x HTTP/1.1\r\nHost: t\r\n\r\n", 1);
    assert!(s.iter().all(|&c| c == 200), "GET statuses: {s:?}");
}

// ---------------------------------------------------------------------------
// FINDING 5 (FAILS): any final answer head that arrives before the whole
// request body went out stops the body pump for good, even a `200` with
// keep-alive from a full-duplex service that streams its answer while it
// reads (an echo/transcoding upload). The service never gets the rest of the
// body, waits, and the client gets a truncated answer.
// ---------------------------------------------------------------------------

#[test]
fn a_full_duplex_service_gets_the_whole_body() {
    let origin = raw_origin(|mut s| {
        let Some((head, mut body)) = read_request(&mut s, false) else { return };
        let len = content_length(&head);
        // The answer starts at once; every body piece read is echoed as a chunk.
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        let mut got = 0;
        let mut b = [0u8; 4096];
        loop {
            if !body.is_empty() {
                got += body.len();
                let _ = s.write_all(format!("{:x}\r\n", body.len()).as_bytes());
                let _ = s.write_all(&body);
                let _ = s.write_all(b"\r\n");
                body.clear();
            }
            if got >= len {
                break;
            }
            match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&b[..n]),
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
    });
    let mut cfg = config_with(&[], "");
    cfg.push_str(&format!("[services.dup]\ninstances = [\"{origin}\"]\ntimeout = \"2s\"\n"));
    let gw = Gateway::start(&cfg);
    let mut c = connect(gw.public);
    c.write_all(b"POST /dup/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = c.write_all(b"world");
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("a whole answer, not a truncated one");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "helloworld");
}

// ---------------------------------------------------------------------------
// FINDING 2 (FAILS, probabilistic in the failing direction only): a service
// that sends a body after a HEAD answer (a common framework bug) in a later
// segment leaves those bytes on the pooled connection; the next idempotent
// request of ANOTHER client takes that connection unchecked and is answered
// with them (response mixing). Only non-idempotent requests are peeked.
// ---------------------------------------------------------------------------

#[test]
fn late_bytes_after_a_head_answer_do_not_reach_another_client() {
    let origin = raw_origin(|mut s| {
        while let Some((head, _)) = read_request(&mut s, true) {
            if head.starts_with("HEAD ") {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 38\r\n\r\n");
                std::thread::sleep(Duration::from_millis(20));
                // The "body" of the HEAD answer: 38 bytes that read as an answer.
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nEVIL");
            } else if s.write_all(&ok_response(b"good")).is_err() {
                return;
            }
        }
    });
    let gw = Gateway::start(&config_with(&[("o", vec![origin])], ""));
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let r = raw(gw.public, b"HEAD /o/a HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(100));
        bodies.push(raw(gw.public, b"GET /o/b HTTP/1.1\r\nHost: t\r\n\r\n").text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(bodies.iter().all(|b| b == "good"), "another client's bytes were served: {bodies:?}");
}

/// The same root cause with a well-known server habit: an unsolicited
/// `408 Request Timeout` written on an idle keep-alive connection before the
/// service closes it. The next GET takes that connection unchecked and the
/// client is answered 408 (wrong status) instead of the request being sent.
#[test]
fn an_unsolicited_408_on_an_idle_connection_is_not_relayed() {
    let origin = raw_origin(|mut s| {
        if read_request(&mut s, true).is_some() {
            let _ = s.write_all(&ok_response(b"ok"));
            std::thread::sleep(Duration::from_millis(30));
            let _ = s.write_all(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let gw = Gateway::start(&config_with(&[("o", vec![origin])], ""));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(raw(gw.public, b"GET /o/x HTTP/1.1\r\nHost: t\r\n\r\n").status);
        std::thread::sleep(Duration::from_millis(120));
    }
    assert!(statuses.iter().all(|&c| c == 200), "statuses: {statuses:?}");
}

// ---------------------------------------------------------------------------
// Held: smuggling after an early answer. The service answers 401 with
// keep-alive before reading a streamed body; the client's body carries what
// looks like a second request. Neither the body nor what follows it is ever
// parsed as a request, and the service's connection is not reused.
// ---------------------------------------------------------------------------

#[test]
fn held_an_early_answer_does_not_let_the_body_become_a_request() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let conns = Arc::new(AtomicUsize::new(0));
    let c2 = conns.clone();
    let origin = raw_origin(move |mut s| {
        c2.fetch_add(1, Ordering::SeqCst);
        while let Some((head, _)) = read_request(&mut s, false) {
            let line = head.lines().next().unwrap_or("").to_string();
            s2.lock().unwrap().push(line.clone());
            if line.starts_with("POST") {
                // Early, keep-alive, body not read.
                let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope");
            } else if s.write_all(&ok_response(b"fine")).is_err() {
                return;
            }
        }
    });
    let gw = Gateway::start(&config_with(&[("o", vec![origin])], ""));
    let smuggled = b"GET /o/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    // Over 64 KiB, so streamed (a smaller sized body is read whole before
    // the service is asked, and no early answer can come before it).
    const LEN: usize = 70_000;
    let mut c = connect(gw.public);
    c.write_all(format!("POST /o/up HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("the early answer");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    // The body (a request, then padding to its length), then a pipelined request after it.
    let _ = c.write_all(smuggled);
    let _ = c.write_all(&vec![b'p'; LEN - smuggled.len()]);
    let _ = c.write_all(b"GET /o/pipelined HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(closed(&mut c), "the client connection is closed after an early answer");
    // The next request goes out on a new upstream connection.
    assert_eq!(http_get(gw.public, "/o/next").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let lines = seen.lock().unwrap().clone();
    assert!(!lines.iter().any(|l| l.contains("smuggled") || l.contains("pipelined")), "{lines:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 2, "the out-of-sync upstream connection was reused: {lines:?}");
}

// ---------------------------------------------------------------------------
// Held: a streamed Content-Length body followed by a pipelined request on the
// same client connection: both are answered, in order.
// ---------------------------------------------------------------------------

#[test]
fn held_a_pipelined_request_after_a_streamed_body() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut c = connect(gw.public);
    c.write_all(b"POST /echo/a HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(b"worldGET /echo/b HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let a = read_response(&mut c, &mut buf, false).expect("first");
    assert_eq!(a.text(), "POST /a HTTP/1.1|helloworld");
    let b = read_response(&mut c, &mut buf, false).expect("second");
    assert_eq!(b.text(), "GET /b HTTP/1.1|");
}

/// Held: a streamed chunked body (split only between chunks) followed by a
/// pipelined request in the same segment as the last chunk.
#[test]
fn held_a_pipelined_request_after_a_streamed_chunked_body() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut c = connect(gw.public);
    c.write_all(b"POST /echo/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(b"5\r\nworld\r\n0\r\n\r\nGET /echo/b HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let a = read_response(&mut c, &mut buf, false).expect("first");
    assert_eq!(a.text(), "POST /a HTTP/1.1|helloworld");
    let b = read_response(&mut c, &mut buf, false).expect("second");
    assert_eq!(b.text(), "GET /b HTTP/1.1|");
}

/// Held: a streamed POST whose pooled connection the service closed while
/// idle goes out on a new connection (peeked first), once.
#[test]
fn held_a_streamed_post_skips_a_pooled_connection_the_service_closed() {
    let (origin, count) = closes_idle_soon();
    let gw = Gateway::start(&config_with(&[("o", vec![origin])], ""));
    for i in 0..5 {
        // The service closes its idle connection 30 ms after answering.
        std::thread::sleep(Duration::from_millis(120));
        let mut c = connect(gw.public);
        c.write_all(b"POST /o/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab").unwrap();
        std::thread::sleep(Duration::from_millis(120));
        c.write_all(b"cd").unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_response(&mut c, &mut buf, false).expect("answer").status, 200, "round {i}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 5);
}

// ---------------------------------------------------------------------------
// Held: an HTTP/1.0 client with `Expect: 100-continue` gets no 1xx (RFC 9110
// §15.2), and an HTTP/1.1 one gets exactly one 100 before its answer.
// ---------------------------------------------------------------------------

#[test]
fn held_100_continue_only_to_http11() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut c = connect(gw.public);
    c.write_all(b"POST /echo/c HTTP/1.0\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(b"hello").unwrap();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains(" 100 "), "a 1xx went to an HTTP/1.0 client: {text}");

    let mut c = connect(gw.public);
    c.write_all(b"POST /echo/c HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").unwrap();
    let mut b = [0u8; 256];
    let n = c.read(&mut b).unwrap();
    assert!(b[..n].starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"), "{}", String::from_utf8_lossy(&b[..n]));
    c.write_all(b"hello").unwrap();
    let mut buf = b[25..n].to_vec();
    let r = read_response(&mut c, &mut buf, false).expect("answer");
    assert_eq!(r.text(), "POST /c HTTP/1.1|hello");
}

// ---------------------------------------------------------------------------
// Held: a failed POST on a fresh connection (the service read it, then closed
// without a word) is answered 502 and never sent again, whatever the budget.
// ---------------------------------------------------------------------------

#[test]
fn held_a_post_the_service_dropped_is_not_replayed() {
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    let origin = raw_origin(move |mut s| {
        if read_request(&mut s, true).is_some() {
            c2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let cfg = format!(
        "[server]\nworkers = 1\n[services.o]\ninstances = [\"{origin}\"]\n[services.o.retry]\nattempts = 10\nbudget_percent = 100\n"
    );
    let gw = Gateway::start(&cfg);
    for m in ["POST", "PATCH"] {
        let r = raw(gw.public, format!("{m} /o/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi").as_bytes());
        assert_eq!(r.status, 502);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------
// FINDING 7 (fixed): a huge timeout (an operator's "never") wrapped around in
// `Deadlines::deadline`; durations are now capped at 30 days ("720h") by the
// config and the deadline arithmetic saturates. The largest accepted value
// works; a larger one is refused naming the key.
// ---------------------------------------------------------------------------

#[test]
fn a_huge_service_timeout_does_not_wrap_to_a_tiny_one() {
    let o = Origin::start(|_| Reply::Delay(Duration::from_millis(1500), ok_response(b"late but fine")));
    let mut cfg = config_with(&[], "");
    cfg.push_str(&format!("[services.slow]\ninstances = [\"{}\"]\ntimeout = \"720h\"\n", o.addr));
    let gw = Gateway::start(&cfg);
    let r = http_get(gw.public, "/slow/");
    assert_eq!(r.status, 200, "{}", r.text());
    let path = temp_dir("huge").join("c.toml");
    std::fs::write(&path, "[services.s]\ninstances = [\"127.0.0.1:1\"]\ntimeout = \"18446744073709552s\"\n").unwrap();
    let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.s.timeout"));
}

// ---------------------------------------------------------------------------
// FINDING 9 (FAILS; a behaviour change, maybe intended): response heads are
// now held to the *client* request limits (`limits.max_headers`,
// `limits.max_header_bytes`, default 16 KiB, was 64 KiB): an operator who
// tightens what clients may send turns healthy services' ordinary answers
// into 502s.
// ---------------------------------------------------------------------------

#[test]
fn responses_are_held_to_the_same_header_limits_as_requests() {
    // By design (one response-head parser with the client side's limits):
    // what a client may not send, a service may not answer with either.
    let o = Origin::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: no-store\r\nx-a: 1\r\nx-b: 2\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], "[limits]\nmax_headers = 4\n"));
    let r = http_get(gw.public, "/o/");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("too many headers in the response"), "{}", r.text());
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], "[limits]\nmax_headers = 5\n"));
    assert_eq!(http_get(gw.public, "/o/").status, 200);
}

// ---------------------------------------------------------------------------
// Held: an HTTP/1.0 keep-alive client and a chunked answer: the gateway
// sends the body raw and closes (it cannot frame it for 1.0).
// ---------------------------------------------------------------------------

#[test]
fn held_http10_keep_alive_client_and_a_chunked_answer() {
    let o = Origin::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec())
    });
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let mut c = connect(gw.public);
    c.write_all(b"GET /o/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("transfer-encoding"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
}

// ---------------------------------------------------------------------------
// Held: a tunnel whose client never reads is cut by the write deadline and
// the service's socket is released.
// ---------------------------------------------------------------------------

#[test]
fn held_a_tunnel_client_that_never_reads_is_cut() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = Mutex::new(tx);
    let origin = raw_origin(move |mut s| {
        if read_request(&mut s, false).is_none() {
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: flood\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        while s.write_all(&chunk).is_ok() {}
        let _ = tx.lock().unwrap().send(());
    });
    let gw = Gateway::start(&config_with(&[("t", vec![origin])], "[timeouts]\nwrite = \"1s\"\n"));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.public.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.write_all(b"GET /t/ HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: flood\r\n\r\n").unwrap();
    rx.recv_timeout(Duration::from_secs(20)).expect("the service's tunnel socket was never released");
    assert!(metric(&gw, "wasp_timeouts_total", "side=\"tunnel\"") >= 1);
}

// ---------------------------------------------------------------------------
// Held: the deadline sweeper only cuts the socket it was armed for. While a
// client that never reads is being cut, hundreds of short connections come
// and go (descriptor numbers are reused at once): none of them is cut.
// ---------------------------------------------------------------------------

#[test]
fn held_the_sweeper_never_cuts_another_connection() {
    let big = raw_origin(|mut s| {
        if read_request(&mut s, false).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 268435456\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            while s.write_all(&chunk).is_ok() {}
        }
    });
    let o = Origin::echo();
    let gw =
        Gateway::start(&config_with(&[("big", vec![big]), ("echo", vec![o.addr])], "[timeouts]\nwrite = \"1s\"\n"));
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&gw.public.into()).unwrap();
        let mut c: TcpStream = sock.into();
        c.write_all(b"GET /big/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        stalled.push(c);
    }
    let end = Instant::now() + Duration::from_millis(3500);
    let mut n = 0;
    while Instant::now() < end {
        let mut c = connect(gw.public);
        // A body that arrives late keeps a ClientBody and an UpstreamHead watch armed.
        c.write_all(b"POST /echo/p HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        c.write_all(b"cd").unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf, false).expect("answer");
        assert_eq!(r.status, 200, "request {n}: {}", r.text());
        assert_eq!(r.text(), "POST /p HTTP/1.1|abcd");
        n += 1;
    }
    assert!(metric(&gw, "wasp_timeouts_total", "side=\"client\",phase=\"write\"") >= 3);
    assert_eq!(metric(&gw, "wasp_timeouts_total", "side=\"upstream\""), 0);
}

// ---------------------------------------------------------------------------
// FINDING 4 (fixed): the write deadline was per `write_all` call, not per
// progress: a client that reads steadily but slowly (here ~5 KB/s, a poor
// mobile link) was cut as soon as one relay write took longer than
// `timeouts.write` to drain. Progress now counts partial writes and, for a
// write blocked on a full send buffer, the peer acknowledging queued bytes.
// (This client's TCP window opens about every 1.6 s, so `write` is 3 s.)
// ---------------------------------------------------------------------------

#[test]
fn a_slow_but_steady_reader_is_not_cut() {
    let big = raw_origin(|mut s| {
        if read_request(&mut s, false).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 268435456\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            while s.write_all(&chunk).is_ok() {}
        }
    });
    let gw = Gateway::start(&config_with(&[("big", vec![big])], "[timeouts]\nwrite = \"3s\"\n"));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.public.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /big/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut got = 0usize;
    let mut b = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(8) {
        match c.read(&mut b) {
            Ok(0) | Err(_) => panic!("cut after reading {got} bytes steadily for {:?}", started.elapsed()),
            Ok(n) => got += n,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The cut shows in the metric at once; the client would see EOF only
    // after the megabytes already queued in the kernel.
    assert_eq!(metric(&gw, "wasp_timeouts_total", "side=\"client\""), 0, "a steadily reading client was cut");
}

// ---------------------------------------------------------------------------
// FINDING 8 (fixed; pre-existing code path, same class as finding 7): a huge
// `timeouts.header_read` overflowed `Instant::now() + header_read` in
// `proxy::read_head` and every connection task panicked. Durations are capped.
// ---------------------------------------------------------------------------

#[test]
fn a_huge_header_read_timeout_does_not_panic_every_connection() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(
        &[("echo", vec![o.addr])],
        "[timeouts]\nheader_read = \"720h\"\nidle = \"720h\"\n",
    ));
    let mut c = connect(gw.public);
    c.write_all(b"GET /echo/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false);
    assert!(r.is_some_and(|r| r.status == 200), "no answer; panics: {}", metric(&gw, "wasp_panics_total", ""));
}

// ---------------------------------------------------------------------------
// Held: a WebSocket integration event is never POSTed twice, also when the
// pooled connection it goes out on is then closed by the backend unanswered.
// ---------------------------------------------------------------------------

#[test]
fn held_an_integration_event_is_never_posted_twice() {
    let posts = Arc::new(Mutex::new(Vec::<String>::new()));
    let p2 = posts.clone();
    let backend = raw_origin(move |mut s| {
        while let Some((_, body)) = read_request(&mut s, true) {
            let body = String::from_utf8_lossy(&body).into_owned();
            p2.lock().unwrap().push(body.clone());
            if body.contains("drop") {
                return; // read whole, closed without a word
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}").is_err()
            {
                return;
            }
        }
    });
    let cfg = format!(
        "[server]\nworkers = 1\n[endpoints.e]\npath = \"/ws/e\"\nroute_selection = \"$.action\"\n[endpoints.e.routes.go]\nhttp = [\"http://{backend}/x\"]\nreply = true\n"
    );
    let gw = Gateway::start(&cfg);
    let mut c = common::ws::WsClient::connect(gw.public, "/ws/e");
    c.send_text(r#"{"action":"go","n":"warm"}"#);
    let _ = c.recv_text();
    c.send_text(r#"{"action":"go","n":"drop"}"#);
    let _ = c.recv_text();
    std::thread::sleep(Duration::from_millis(300));
    let drops = posts.lock().unwrap().iter().filter(|b| b.contains("drop")).count();
    assert_eq!(drops, 1, "{:?}", posts.lock().unwrap());
}

// ---------------------------------------------------------------------------
// Held: HEAD, 204, 304 and interim answers keep both connections in sync:
// one client connection, one service connection, every answer in order.
// ---------------------------------------------------------------------------

#[test]
fn held_bodiless_and_interim_answers_keep_both_sides_in_sync() {
    let o = Origin::start(|s| {
        let line = s.request_line().to_string();
        Reply::Raw(if line.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec()
        } else if line.contains("/204") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else if line.contains("/304") {
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\netag: \"x\"\r\n\r\n".to_vec()
        } else if line.contains("/103") {
            b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nfin".to_vec()
        } else {
            ok_response(b"plain")
        })
    });
    let gw = Gateway::start(&config_with(&[("o", vec![o.addr])], ""));
    let mut c = connect(gw.public);
    let mut buf = Vec::new();
    let mut ask = |req: &str, head: bool| {
        c.write_all(req.as_bytes()).unwrap();
        read_response(&mut c, &mut buf, head).expect("answer")
    };
    for _ in 0..2 {
        let r = ask("HEAD /o/h HTTP/1.1\r\nHost: t\r\n\r\n", true);
        assert_eq!((r.status, r.header("content-length").as_deref()), (200, Some("5")));
        assert_eq!(ask("GET /o/204 HTTP/1.1\r\nHost: t\r\n\r\n", false).status, 204);
        let r = ask("GET /o/304 HTTP/1.1\r\nHost: t\r\n\r\n", false);
        assert_eq!(r.status, 304);
        let r = ask("GET /o/103 HTTP/1.1\r\nHost: t\r\n\r\n", false);
        assert_eq!((r.status, r.text().as_str()), (200, "fin"));
        let r = ask("GET /o/plain HTTP/1.1\r\nHost: t\r\n\r\n", false);
        assert_eq!((r.status, r.text().as_str()), (200, "plain"));
    }
    assert_eq!(o.connections.load(Ordering::SeqCst), 1, "the service connection was not kept in sync");
}
