//! The harness against a real HTTP/1.1 server on loopback: counts, statuses,
//! chunked bodies, reconnects after `Connection: close`, and the JSON summary.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Answers every request: 200 with a length, a chunked 200 every third, and
/// a 503 + close every tenth (the client must reconnect).
fn server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let c3 = c2.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    while let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..p + 4);
                        let n = c3.fetch_add(1, Ordering::SeqCst) + 1;
                        let (resp, close): (&[u8], bool) = if n.is_multiple_of(10) {
                            (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy", true)
                        } else if n.is_multiple_of(3) {
                            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false)
                        } else {
                            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false)
                        };
                        if s.write_all(resp).is_err() || close {
                            return;
                        }
                    }
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    (addr, count)
}

#[test]
fn counts_requests_statuses_and_writes_json() {
    let (addr, count) = server();
    let out = Command::new(env!("CARGO_BIN_EXE_wasp-loadtest"))
        .args([&format!("http://{addr}/x"), "-c", "4", "-t", "2", "-n", "300", "--quiet", "--json", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("requests   300"), "{text}");
    let json_start = text.find('{').unwrap();
    let v: serde_json::Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(v["requests"], 300);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["status_5xx"], 30);
    assert_eq!(v["status_2xx"], 270);
    assert_eq!(v["body_bytes"].as_u64(), Some(300 * 5 - 30 * 5 + 30 * 4));
    assert!(v["latency"]["p99_us"].as_u64().unwrap() >= v["latency"]["p50_us"].as_u64().unwrap());
    assert_eq!(count.load(Ordering::SeqCst), 300);
}

#[test]
fn fixed_rate_is_held() {
    let (addr, _) = server();
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_wasp-loadtest"))
        .args([&format!("http://{addr}/x"), "-c", "2", "-R", "200", "-d", "1s", "--quiet", "--json", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    let n = v["requests"].as_u64().unwrap();
    assert!((150..=230).contains(&n), "about 200 requests in 1 s at 200/s, got {n}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasp-loadtest")).args(["https://x/", "-n", "1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
    let out =
        Command::new(env!("CARGO_BIN_EXE_wasp-loadtest")).args(["http://127.0.0.1:1/", "-d", "5"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unit"));
}
