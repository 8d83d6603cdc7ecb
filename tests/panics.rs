//! Panics and supervision, against the real binary over real sockets.
//!
//! No input reaches a panic any more, so these tests cause one with the
//! debug-only fault injection (`src/worker/fault.rs`, on with
//! `WASP_DEBUG_FAULTS=1`): `/__wasp_fault/task` panics inside a task,
//! `/__wasp_fault/worker` panics the worker's accept loop so its thread dies.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const FAULTS: (&str, &str) = ("WASP_DEBUG_FAULTS", "1");

/// Sockets in LISTEN state on `port` (IPv4, the tests bind 127.0.0.1): one
/// per live worker, since each worker has its own `SO_REUSEPORT` socket.
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        })
        .count()
}

/// One `GET` on a new connection; any failure (refused, reset, no answer) is an `Err`.
fn try_get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("no answer: {text:?}"))
}

/// The server ended the connection: end of stream or a reset, not a
/// timeout (unlike `common::closed`, which counts silence as closed).
fn ended(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted),
    }
}

/// Sockets the gateway process holds open.
fn open_sockets(gw: &Gateway) -> usize {
    let dir = format!("/proc/{}/fd", gw.child.id());
    std::fs::read_dir(dir)
        .expect("fd dir")
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
        .count()
}

/// The push API asks every worker's inbox; it answers only when each one,
/// the replacement's included, is served.
fn push_api_answers(gw: &Gateway) {
    for _ in 0..5 {
        let r = http_get(gw.admin, "/connections");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Sends the request that makes the accepting worker's thread die, and
/// checks that its connection went down with it (no answer at all).
fn kill_a_worker(gw: &Gateway) {
    let mut s = connect(gw.public);
    s.write_all(b"GET /__wasp_fault/worker HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(ended(&mut s), "the dying worker answered, or left the connection open");
}

#[test]
fn a_task_panic_ends_its_connection_only() {
    let o = Origin::echo();
    let gw = Gateway::start_with(&config_with(&[("echo", vec![o.addr])], ""), &["--workers", "1"], &[FAULTS]);
    let mut kept = connect(gw.public);
    let mut kbuf = Vec::new();
    kept.write_all(b"GET /echo/a HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut kept, &mut kbuf, false).unwrap().status, 200);

    // The panicking connection is closed without an answer.
    let mut bad = connect(gw.public);
    bad.write_all(b"GET /__wasp_fault/task HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(ended(&mut bad), "closed without an answer");

    // The same worker (there is one) keeps serving: the kept-alive
    // connection, and new ones.
    kept.write_all(b"GET /echo/b HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut kept, &mut kbuf, false).unwrap().status, 200, "kept-alive connection survives");
    for _ in 0..5 {
        assert_eq!(http_get(gw.public, "/echo/c").status, 200);
    }

    // Logged once, with its message and backtrace, through the log (not
    // the default hook's stderr line).
    assert!(gw.wait_log("task panicked", Duration::from_secs(5)), "{:#?}", gw.logs.lock().unwrap());
    assert!(gw.log_contains("injected fault: task"));
    assert!(gw.log_contains("wasp::worker::fault::"), "backtrace frames: {:#?}", gw.logs.lock().unwrap());
    assert!(!gw.log_contains("panicked at"), "default hook printed: {:#?}", gw.logs.lock().unwrap());

    let m = gw.metrics();
    assert!(m.contains("\nwasp_panics_total 1\n"), "{m}");
    assert!(m.contains("\nwasp_worker_restarts_total 0\n"), "{m}");
    assert_eq!(http_get(gw.admin, "/readyz").status, 200);
}

#[test]
fn a_dead_worker_is_not_ready_until_replaced() {
    let o = Origin::echo();
    // The restart is held back so the not-ready window can be seen without
    // racing it.
    let gw = Gateway::start_with(
        &config_with(&[("echo", vec![o.addr])], ""),
        &["--workers", "2"],
        &[FAULTS, ("WASP_DEBUG_RESTART_DELAY_MS", "3000")],
    );
    let port = gw.public.port();
    assert_eq!(listening_sockets(port), 2);
    assert_eq!(http_get(gw.admin, "/readyz").status, 200);

    kill_a_worker(&gw);
    let r = wait_until(Duration::from_secs(3), || {
        let r = http_get(gw.admin, "/readyz");
        (r.status == 503).then_some(r)
    })
    .expect("/readyz answers 503 while a worker is dead");
    let body = r.text();
    assert!(
        body.contains(r#""dead_workers":[0]"#) || body.contains(r#""dead_workers":[1]"#),
        "names the dead worker: {body}"
    );
    // The dead worker's socket is closed, so the kernel hands every new
    // connection to the live one meanwhile.
    assert_eq!(listening_sockets(port), 1);
    for _ in 0..20 {
        assert_eq!(try_get(gw.public, "/echo/x"), Ok(200));
    }

    // Replaced: ready again, a second listener on the same port.
    let r = wait_until(Duration::from_secs(15), || {
        let r = http_get(gw.admin, "/readyz");
        (r.status == 200).then_some(r)
    })
    .expect("ready again after the restart");
    assert!(r.text().contains("\"status\":\"ready\""), "{}", r.text());
    assert_eq!(listening_sockets(port), 2);
    let m = gw.metrics();
    assert!(m.contains("\nwasp_worker_restarts_total 1\n"), "{m}");
    assert!(m.contains("\nwasp_panics_total 1\n"), "{m}");
    assert!(gw.log_contains("worker thread died"));
    assert!(gw.log_contains("injected fault: worker"));
    assert!(gw.log_contains("worker restarted"));
    assert!(!gw.log_contains("panicked at"), "default hook printed: {:#?}", gw.logs.lock().unwrap());
}

#[test]
fn after_a_restart_every_new_connection_is_answered() {
    let o = Origin::echo();
    let gw = Gateway::start_with(&config_with(&[("echo", vec![o.addr])], ""), &["--workers", "2"], &[FAULTS]);
    kill_a_worker(&gw);
    let restarted =
        wait_until(Duration::from_secs(15), || gw.metrics().contains("\nwasp_worker_restarts_total 1\n").then_some(()));
    assert!(restarted.is_some(), "{}", gw.metrics());
    assert_eq!(http_get(gw.admin, "/readyz").status, 200);
    assert_eq!(listening_sockets(gw.public.port()), 2);

    // New connections are spread over both sockets by the kernel; none may
    // be refused, reset or left unanswered.
    let addr = gw.public;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..100).filter_map(|i| try_get(addr, &format!("/echo/{t}/{i}")).err()).collect::<Vec<_>>()
            })
        })
        .collect();
    let failures: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(failures.is_empty(), "{} of 400 failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    let m = gw.metrics();
    assert!(m.contains("\nwasp_panics_total 1\n"), "{m}");
    push_api_answers(&gw);
}

#[test]
fn a_dying_worker_closes_its_connections() {
    let o = Origin::echo();
    let gw = Gateway::start_with(&config_with(&[("echo", vec![o.addr])], ""), &["--workers", "1"], &[FAULTS]);
    // A kept-alive client connection, and (behind it) a pooled connection
    // to the origin: both belong to the worker about to die.
    let mut kept = connect(gw.public);
    let mut kbuf = Vec::new();
    kept.write_all(b"GET /echo/a HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut kept, &mut kbuf, false).unwrap().status, 200);
    let before = open_sockets(&gw);

    kill_a_worker(&gw);
    assert!(ended(&mut kept), "the client of a dead worker sees the end, not silence");
    let restarted =
        wait_until(Duration::from_secs(15), || gw.metrics().contains("\nwasp_worker_restarts_total 1\n").then_some(()));
    assert!(restarted.is_some(), "{}", gw.metrics());
    // The client socket and the pooled upstream one are closed; the old
    // listener was swapped for a new one: no descriptor leaked.
    let after = wait_until(Duration::from_secs(5), || {
        let n = open_sockets(&gw);
        (n + 2 <= before).then_some(n)
    });
    assert!(after.is_some(), "sockets before {before}, now {}", open_sockets(&gw));
    assert!(gw.metrics().contains("\nwasp_open_connections 0\n"));
    assert_eq!(try_get(gw.public, "/echo/b"), Ok(200));
    push_api_answers(&gw);
}

#[test]
fn faults_are_off_without_the_env_var() {
    let gw = Gateway::start_with(&config_with(&[], ""), &["--workers", "1"], &[]);
    assert_eq!(http_get(gw.public, "/__wasp_fault/task").status, 404);
    assert_eq!(http_get(gw.public, "/__wasp_fault/worker").status, 404);
    assert!(gw.metrics().contains("\nwasp_panics_total 0\n"));
}

#[test]
fn shutdown_is_not_a_death() {
    let o = Origin::echo();
    let mut gw = Gateway::start_with(&config_with(&[("echo", vec![o.addr])], ""), &["--workers", "2"], &[FAULTS]);
    assert_eq!(http_get(gw.public, "/echo/x").status, 200);
    gw.signal(SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(!gw.log_contains("worker thread died") && !gw.log_contains("restart"), "{:#?}", gw.logs.lock().unwrap());
}
