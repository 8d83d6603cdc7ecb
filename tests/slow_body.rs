//! A request body trickled a byte at a time (`limits.min_body_rate`), over
//! real sockets: each byte restarts the read deadline, so only a floor on
//! the body's average rate cuts it, and releases the upstream connection the
//! streamed body was holding. Bodies that are merely slow to be *read by
//! the service* are not the client's fault and are never cut.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the origin saw of one request: body bytes read, and whether the
/// request ended (a whole body) or the gateway closed the connection first.
#[derive(Debug)]
struct Seen {
    bytes: usize,
    whole: bool,
}

/// An origin that reads a request head and its body (Content-Length or
/// chunked, read as raw bytes up to the last chunk) `pace` bytes at a time,
/// sleeping `gap` between reads, then answers 200 with the byte count.
fn origin(pace: usize, gap: Duration) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let addr = raw_origin(move |mut s| {
        let Some((head, mut body)) = read_request(&mut s, false) else { return };
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let len = content_length(&head);
        let done = |b: &[u8]| if chunked { b.ends_with(b"0\r\n\r\n") } else { b.len() >= len };
        let mut buf = vec![0u8; pace];
        let mut whole = done(&body);
        while !whole {
            std::thread::sleep(gap);
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
            whole = done(&body);
        }
        let _ = tx.lock().map(|t| t.send(Seen { bytes: body.len(), whole }));
        if whole {
            let text = body.len().to_string();
            let _ = s.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len())
                    .as_bytes(),
            );
        }
    });
    (addr, rx)
}

/// Sends `head`, then `body` one byte every `every`, reading the answer on
/// the side; gives back the answer (if any) and when it came.
fn trickle(gw: SocketAddr, head: &str, body: &[u8], every: Duration) -> (Option<Resp>, Duration) {
    let mut c = connect(gw);
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = c.try_clone().unwrap();
    let (head, body) = (head.to_string(), body.to_vec());
    std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        for b in body {
            std::thread::sleep(every);
            if w.write_all(&[b]).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false);
    (r, started.elapsed())
}

fn gateway(origin: SocketAddr, extra: &str) -> Gateway {
    Gateway::start(&config_with(&[("up", vec![origin])], &format!("[timeouts]\nheader_read = \"1s\"\n{extra}")))
}

/// The attack: a body trickled a byte every 200 ms (each read well inside
/// the 1 s read deadline). Cut with 408 once 1 s of waiting has passed
/// under the default floor (1,024 B/s). A sized body over 64 KiB and a
/// chunked one are streamed: the service's connection is closed mid-body,
/// not held for minutes. A small sized body (1,000 bytes) is read whole
/// first: the service is never even asked.
#[test]
fn a_trickled_body_is_cut_and_the_upstream_released() {
    let (addr, seen) = origin(4096, Duration::ZERO);
    let gw = gateway(addr, "");
    let cases = [
        ("POST /up/a HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", vec![b'b'; 1000], true),
        ("POST /up/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nb\r\n".repeat(200), true),
        ("POST /up/c HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n", vec![b'b'; 1000], false),
    ];
    for (i, (head, body, streamed)) in cases.iter().enumerate() {
        let (r, took) = trickle(gw.public, head, body, Duration::from_millis(200));
        let r = r.unwrap_or_else(|| panic!("case {i}: no answer after {took:?} (the trickle was not cut)"));
        assert_eq!(r.status, 408, "case {i}: {}", r.text());
        assert!(r.text().contains("body_too_slow"), "case {i}: {}", r.text());
        assert!(took < Duration::from_secs(4), "case {i}: cut after {took:?}");
        if *streamed {
            let s = seen.recv_timeout(Duration::from_secs(5)).expect("the service's connection was released");
            assert!(!s.whole && s.bytes < body.len(), "case {i}: the service got the whole body: {s:?}");
        } else {
            assert!(seen.recv_timeout(Duration::from_millis(500)).is_err(), "case {i}: the service was asked");
        }
    }
    assert_eq!(metric(&gw, "wasp_gateway_errors_total", "kind=\"body_too_slow\""), 3);
    assert_eq!(http_get(gw.public, "/up/after").status, 200, "and the gateway still serves");
}

/// A small sized body is read whole before a connection to the service is
/// taken: a client trickling one does not hold the only backend connection
/// (`backend_connections = 1`) from others, and `Expect: 100-continue` is
/// answered by the gateway so the client sends it at all.
#[test]
fn a_small_body_holds_no_upstream_connection_while_it_comes() {
    let (addr, seen) = origin(4096, Duration::ZERO);
    // The floor off: this client is slow on purpose, and must not be cut.
    let gw = gateway(addr, "[limits]\nbackend_connections = 1\nmin_body_rate = 0\n");
    let mut c = connect(gw.public);
    c.write_all(b"POST /up/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let mut first = [0u8; 25];
    c.read_exact(&mut first).expect("an interim answer");
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    let mut buf = Vec::new();
    for b in b"slow" {
        std::thread::sleep(Duration::from_millis(300));
        // While the body is incomplete, others get the one connection.
        let other = http_get(gw.public, "/up/other");
        assert_eq!(other.status, 200, "before {:?}: {}", *b as char, other.text());
        c.write_all(&[*b]).unwrap();
    }
    let r = read_response(&mut c, &mut buf, false).expect("an answer");
    assert_eq!((r.status, r.text()), (200, "4".to_string()));
    let whole: Vec<Seen> = seen.try_iter().collect();
    assert_eq!(whole.len(), 5, "{whole:?}");
    assert!(whole.iter().all(|s| s.whole), "{whole:?}");
}

/// The same floor holds where a body is read whole before anything is sent
/// (a `transform` filter's program): cut with 408, the service never asked.
#[test]
fn a_trickled_body_read_whole_is_cut() {
    let (addr, seen) = origin(4096, Duration::ZERO);
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[timeouts]\nheader_read = \"1s\"\n[services.up]\ninstances = [\"{addr}\"]\n\
         [[services.up.filters]]\nkind = \"transform\"\nrequest_body = '.a'\n"
    ));
    let head = "POST /up/t HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 600\r\n\r\n";
    let body = format!("{{\"a\":\"{}\"}}", "x".repeat(592));
    let (r, took) = trickle(gw.public, head, body.as_bytes(), Duration::from_millis(200));
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?} (the trickle was not cut)"));
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(took < Duration::from_secs(4), "cut after {took:?}");
    assert!(seen.recv_timeout(Duration::from_millis(500)).is_err(), "the service was never asked");
}

/// A steady body well above the floor (16 KiB/s for 3 s, three times the
/// read deadline) goes through whole.
#[test]
fn a_steady_slow_upload_goes_through() {
    let (addr, seen) = origin(64 * 1024, Duration::ZERO);
    let gw = gateway(addr, "");
    let mut c = connect(gw.public);
    let total = 48 * 1024;
    c.write_all(format!("POST /up/steady HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").as_bytes()).unwrap();
    for _ in 0..(total / 1024) {
        std::thread::sleep(Duration::from_millis(62));
        c.write_all(&[b's'; 1024]).unwrap();
    }
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("an answer");
    assert_eq!((r.status, r.text()), (200, total.to_string()));
    assert!(seen.recv_timeout(Duration::from_secs(5)).is_ok_and(|s| s.whole));
}

/// The floor counts only time spent waiting for the client: a fast client
/// whose body a slow service reads at 160 KB/s is not cut by a 200 KB/s
/// floor (the pump waits on the service, not on the client).
#[test]
fn a_slow_service_does_not_make_the_client_slow() {
    let (addr, seen) = origin(16 * 1024, Duration::from_millis(100));
    let gw = gateway(addr, "[limits]\nmin_body_rate = 200000\n");
    let total = 1 << 20;
    let mut c = connect(gw.public);
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = c.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = w.write_all(format!("POST /up/big HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").as_bytes());
        let _ = w.write_all(&vec![b'f'; total]);
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("an answer");
    assert_eq!((r.status, r.text()), (200, total.to_string()), "after {:?}", started.elapsed());
    assert!(started.elapsed() > Duration::from_secs(3), "the service really was slow: {:?}", started.elapsed());
    assert!(seen.recv_timeout(Duration::from_secs(5)).is_ok_and(|s| s.whole));
}

/// `min_body_rate = 0` turns the floor off: the same trickle (shorter) is
/// relayed whole, as before the floor existed.
#[test]
fn zero_turns_the_floor_off() {
    let (addr, seen) = origin(4096, Duration::ZERO);
    let gw = gateway(addr, "[limits]\nmin_body_rate = 0\n");
    let (r, took) = trickle(
        gw.public,
        "POST /up/z HTTP/1.1\r\nHost: t\r\nContent-Length: 15\r\n\r\n",
        &[b'z'; 15],
        Duration::from_millis(200),
    );
    let r = r.expect("an answer");
    assert_eq!((r.status, r.text()), (200, "15".to_string()), "after {took:?}");
    assert!(seen.recv_timeout(Duration::from_secs(5)).is_ok_and(|s| s.whole));
    // And a nonsense floor is refused at start, naming the key.
    let dir = temp_dir("min-body-rate");
    let path = dir.join("c.toml");
    std::fs::write(&path, "[limits]\nmin_body_rate = 99999999999\n").unwrap();
    let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.min_body_rate"));
}
