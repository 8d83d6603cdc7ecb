//! Bounds on WebSocket work and on what one push or one flood can cost,
//! over real sockets against the real binary: bytes in flight per
//! connection, connections per backend, oversized pushes, the access log
//! under a sink that never reads, and cleanup after a panicking session or
//! event task.

mod common;
use common::ws::WsClient;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A backend that answers every request after `delay` and keeps its
/// connections alive, counting how many are open at once.
struct SlowBackend {
    addr: SocketAddr,
    /// The most connections open at once.
    most: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl SlowBackend {
    fn start(delay: Duration) -> SlowBackend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (open, most, requests) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, m, r) = (open.clone(), most.clone(), requests.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let now = o.fetch_add(1, SeqCst) + 1;
                m.fetch_max(now, SeqCst);
                let (o, r) = (o.clone(), r.clone());
                std::thread::spawn(move || {
                    while read_request(&mut s, true).is_some() {
                        r.fetch_add(1, SeqCst);
                        std::thread::sleep(delay);
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
                            break;
                        }
                    }
                    o.fetch_sub(1, SeqCst);
                });
            }
        });
        SlowBackend { addr, most, requests }
    }
}

/// Open file descriptors of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A push-API write as the admin listener takes it without a token: a local
/// `Host`, and `application/json` (whatever the message's bytes are).
fn post(admin: SocketAddr, path: &str, body: &[u8]) -> Resp {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(admin, &req)
}

/// 1,000 invalid events against a `$error` backend that takes 3 s: the
/// backend never sees more connections than `limits.backend_connections`,
/// the gateway's descriptors stay bounded, the client gets its error
/// events, and a client that keeps flooding is closed with 1013.
#[test]
fn invalid_event_flood_is_bounded() {
    let slow = SlowBackend::start(Duration::from_secs(3));
    let cap = 16;
    let cfg = format!(
        "[server]\nworkers = 1\n[limits]\nbackend_connections = {cap}\n[endpoints.chat]\npath = \"/ws/chat\"\nroute_selection = \"$.action\"\n[endpoints.chat.routes.\"$error\"]\nhttp = [\"http://{}/error\"]\n",
        slow.addr
    );
    let gw = Gateway::start(&cfg);
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    let pid = gw.child.id();
    let baseline = fd_count(pid);
    let most_fds = Arc::new(AtomicUsize::new(baseline));
    let stop = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (most_fds, stop) = (most_fds.clone(), stop.clone());
        std::thread::spawn(move || {
            while stop.load(SeqCst) == 0 {
                most_fds.fetch_max(fd_count(pid), SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut flood = Vec::new();
    for i in 0..1000 {
        flood.extend_from_slice(&WsClient::frame(0x81, format!("not json {i}").as_bytes()));
    }
    // Written from another thread: the gateway may stop reading once it
    // closes, and this thread must keep reading meanwhile.
    let mut writer = c.stream.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        let _ = writer.write_all(&flood);
    });
    let mut errors = 0;
    let close = loop {
        let Some(f) = c.recv() else { break None };
        match f.opcode {
            1 if f.text().contains("\"error\":\"invalid_json\"") => errors += 1,
            8 => break f.close_code(),
            _ => {}
        }
    };
    let _ = w.join();
    // The calls already admitted still run against the slow backend.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(1, SeqCst);
    let _ = sampler.join();
    assert!(errors >= 1, "the client was told its events are invalid");
    assert!(matches!(close, Some(1008) | Some(1013)), "a flooding client is closed (1008/1013), got {close:?}");
    let most = slow.most.load(SeqCst);
    assert!(most <= cap, "the backend saw {most} connections at once; the cap is {cap}");
    assert!(slow.requests.load(SeqCst) >= 1, "$error calls did go out");
    let fds = most_fds.load(SeqCst);
    assert!(fds <= baseline + cap + 4, "descriptors grew from {baseline} to {fds}");
}

/// `send_queue_bytes` counts bytes waiting: one message larger than it is
/// still one message, not a slow reader.
#[test]
fn a_push_larger_than_the_send_queue_is_one_message() {
    let cfg = "[server]\nworkers = 1\n[endpoints.chat]\npath = \"/ws/chat\"\nmode = \"echo\"\nsend_queue_bytes = 65536\nmax_message_bytes = 200000\n";
    let gw = Gateway::start(cfg);
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    let big = vec![b'x'; 100_000];
    let r = post(gw.admin, &format!("/connections/{}", c.id()), &big);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"queued":1}"#));
    let f = c.recv_data().expect("the 100 KB message");
    assert_eq!((f.opcode, f.payload.len()), (1, big.len()));

    // Above max_message_bytes: refused with 413, the connection stays.
    let r = post(gw.admin, &format!("/connections/{}", c.id()), &vec![b'y'; 200_001]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("\"error\":\"message_too_large\""), "{}", r.text());
    let r = post(gw.admin, &format!("/connections/{}", c.id()), b"after");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.recv_text(), "after");
    c.send_text("still here");
    assert_eq!(c.recv_text(), "still here", "the echo endpoint answers: the connection is open");
}

/// A 2 MiB broadcast to an endpoint whose messages are at most 1 MiB is
/// refused with 413, and nobody is disconnected.
#[test]
fn an_oversized_broadcast_is_refused_and_disconnects_nobody() {
    let cfg =
        "[server]\nworkers = 2\n[endpoints.chat]\npath = \"/ws/chat\"\nmode = \"echo\"\nmax_message_bytes = 1048576\n";
    let gw = Gateway::start(cfg);
    let mut clients: Vec<WsClient> = (0..4).map(|_| WsClient::connect(gw.public, "/ws/chat")).collect();
    for c in &clients {
        let r = raw(
            gw.admin,
            format!("PUT /connections/{}/groups/all HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n", c.id())
                .as_bytes(),
        );
        assert_eq!(r.status, 200);
    }
    let huge = vec![b'z'; 2 * 1024 * 1024];
    let r = post(gw.admin, "/endpoints/chat/messages", &huge);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("\"error\":\"message_too_large\""), "{}", r.text());
    let r = post(gw.admin, "/groups/all/messages", &huge);
    assert_eq!(r.status, 413, "{}", r.text());
    let r = post(gw.admin, "/endpoints/chat/messages", b"small");
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"queued":4}"#));
    for c in &mut clients {
        assert_eq!(c.recv_text(), "small", "every client is still connected");
    }
}

/// HTTP dispatch to a service whose every allowed connection is busy is
/// answered at once with 503 `overloaded`; a freed connection serves again.
#[test]
fn http_dispatch_at_the_backend_connection_cap_is_503() {
    let slow = SlowBackend::start(Duration::from_secs(2));
    let cfg = config_with(&[("svc", vec![slow.addr])], "[limits]\nbackend_connections = 2");
    let gw = Gateway::start(&cfg);
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let public = gw.public;
            std::thread::spawn(move || http_get(public, "/svc/hold").status)
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(5);
    while slow.requests.load(SeqCst) < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(slow.requests.load(SeqCst), 2, "both held requests reached the backend");
    let r = http_get(gw.public, "/svc/third");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("\"error\":\"overloaded\""), "{}", r.text());
    for h in holders {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(http_get(gw.public, "/svc/again").status, 200, "the connections are free again");
    assert!(slow.most.load(SeqCst) <= 2);
}

/// A gateway whose stdout is a pipe nobody reads keeps serving: access-log
/// lines are dropped and counted instead of stalling the worker.
#[test]
fn a_log_sink_that_never_reads_does_not_stall_the_worker() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"ok")));
    let dir = temp_dir("log");
    let path = dir.join("wasp.toml");
    std::fs::write(&path, config_with(&[("svc", vec![origin.addr])], "")).unwrap();
    let mut child = std::process::Command::new(wasp_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Read up to the ready line, then never again (the pipe stays open).
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let ready = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "wasp exited before it was ready");
        if line.contains("wasp ready") {
            break line.clone();
        }
    };
    let field = |name: &str| -> SocketAddr {
        let start = ready.find(&format!("{name}=")).expect("field") + name.len() + 1;
        let rest = &ready[start..];
        rest[..rest.find([' ', '\n']).unwrap_or(rest.len())].parse().unwrap()
    };
    let (public, admin) = (field("public"), field("admin"));
    // Far more lines than the log queue and the pipe hold, pipelined.
    let total = 80_000;
    let batch = 500;
    let mut s = connect(public);
    let req = b"GET /svc/x HTTP/1.1\r\nHost: t\r\n\r\n".repeat(batch);
    let mut buf = Vec::new();
    let mut answered = 0;
    while answered < total {
        s.write_all(&req).unwrap();
        for _ in 0..batch {
            let r = read_response(&mut s, &mut buf, false).expect("the worker keeps answering");
            assert_eq!(r.status, 200);
            answered += 1;
        }
    }
    let m = String::from_utf8_lossy(&http_get(admin, "/metrics").body).into_owned();
    let dropped: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("wasp_log_lines_dropped_total ")?.trim().parse().ok())
        .expect("the drop counter is exported");
    assert!(dropped > 0, "lines were dropped, and counted");
    let _ = child.kill();
    let _ = child.wait();
    let mut rest = Vec::new();
    let _ = out.get_mut().read_to_end(&mut rest);
}

/// A session or an event task that panics (test-only fault injection) is
/// cleaned up by its guards: the connection leaves the table and the gauge,
/// and the event's bytes in flight are given back.
#[test]
#[cfg(debug_assertions)]
fn panicking_session_and_event_tasks_clean_up() {
    let b = Origin::start(|_| Reply::Raw(ok_response(b"{}")));
    // One event in flight at a time: a reservation never given back would
    // refuse every later event.
    let cfg = format!(
        "[server]\nworkers = 1\n[endpoints.chat]\npath = \"/ws/chat\"\nmax_message_bytes = 1024\nmax_frame_bytes = 1024\nmax_inflight_bytes = 1024\n[endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{b}/e\"]\nreply = true\n[endpoints.chat.routes.\"$disconnect\"]\nhttp = [\"http://{b}/gone\"]\n",
        b = b.addr
    );
    let gw = Gateway::start_with(&cfg, &[], &[("WASP_DEBUG_FAULTS", "1")]);
    let mut c = WsClient::connect(gw.public, "/ws/chat");
    c.send_text("\"__wasp_fault/event\"");
    let end = Instant::now() + Duration::from_secs(5);
    while metric(&gw, "wasp_panics_total", "") < 1 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(&gw, "wasp_panics_total", ""), 1, "the event task panicked");
    for i in 0..3 {
        c.send_text(&format!(r#"{{"n":{i}}}"#));
        assert_eq!(c.recv_text(), "{}", "event {i} after the panic is admitted");
    }

    assert_eq!(metric(&gw, "wasp_ws_connections ", ""), 1);
    c.send_text("\"__wasp_fault/session\"");
    let end = Instant::now() + Duration::from_secs(5);
    while metric(&gw, "wasp_panics_total", "") < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(&gw, "wasp_panics_total", ""), 2, "the session panicked");
    assert!(closed(&mut c.stream), "the panicked session's socket is closed");
    assert_eq!(metric(&gw, "wasp_ws_connections ", ""), 0, "the gauge counts it gone");
    let r = http_get(gw.admin, "/connections");
    assert_eq!(r.text(), r#"{"connections":[],"next":null}"#, "the table no longer has it");
    let end = Instant::now() + Duration::from_secs(5);
    let gone = loop {
        let seen = b.requests().into_iter().find(|s| s.request_line().contains("/gone"));
        if seen.is_some() || Instant::now() > end {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let body = String::from_utf8_lossy(&gone.expect("$disconnect was called").body).into_owned();
    assert!(body.contains("\"close_code\":1011"), "{body}");
}
