//! The control thread: slow configuration work (DNS, SQLite commits, diffs)
//! runs off the admin listener's thread, applies and `SIGHUP` reloads are
//! serialized, and `reached_all_workers_us` waits for every worker's own
//! acknowledgement of the new snapshot.
//!
//! The debug-build faults used here: `WASP_DEBUG_CONTROL_DELAY_MS` (every
//! control job sleeps first, so the control thread is held busy) and
//! `WASP_DEBUG_FAULTS=1` with `GET /__wasp_fault/busy?ms=N` (the worker that
//! accepts it blocks its thread for N ms after answering).

mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One admin request; the answer's status and JSON body (Null when not JSON).
fn admin(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = connect(gw.admin);
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(bytes.as_bytes()).unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).expect("an admin answer");
    (r.status, serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn healthz_and_metrics_answer_while_the_control_thread_is_held() {
    let gw = Gateway::start_with(
        &config_with(&[("a", vec![dead_addr()])], ""),
        &[],
        &[("WASP_DEBUG_CONTROL_DELAY_MS", "2000")],
    );
    let done = Arc::new(AtomicBool::new(false));
    let (admin_addr, d2) = (gw.admin, done.clone());
    let put = std::thread::spawn(move || {
        let body = format!(r#"{{"instances":["{}"]}}"#, dead_addr());
        let req = format!(
            "PUT /services/b HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = connect(admin_addr);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false).expect("the PUT's answer");
        d2.store(true, Ordering::SeqCst);
        r.status
    });
    // The PUT has reached the admin listener and waits on the control thread.
    std::thread::sleep(Duration::from_millis(300));
    let health = http_get(gw.admin, "/healthz");
    assert_eq!(health.status, 200);
    let metrics = http_get(gw.admin, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("wasp_config_version"), "{}", metrics.text());
    let ready = http_get(gw.admin, "/readyz");
    assert_eq!(ready.status, 200);
    // Answered while the apply was still held on the control thread.
    assert!(!done.load(Ordering::SeqCst), "the PUT finished before /healthz was asked: nothing was held");
    assert_eq!(put.join().unwrap(), 200);
    let (status, v) = admin(&gw, "GET", "/services/b", "");
    assert_eq!(status, 200, "{v}");
}

/// `n` instances: one line each in the pretty JSON the diff compares.
fn many_instances(n: usize, port_base: u16) -> String {
    let list: Vec<String> =
        (0..n).map(|i| format!("\"127.0.0.{}:{}\"", 1 + i / 60000, port_base as usize + i % 60000)).collect();
    format!(r#"{{"instances":[{}]}}"#, list.join(","))
}

#[test]
fn diff_of_large_versions_is_413_and_small_ones_still_work() {
    let gw = Gateway::start(&config_with(&[], ""));
    // Two versions of 25,000 lines each: an n×m table would be 2.5 GB.
    assert_eq!(admin(&gw, "PUT", "/services/big", &many_instances(25_000, 1000)).0, 200);
    assert_eq!(admin(&gw, "PUT", "/services/big", &many_instances(25_000, 2000)).0, 200);
    let (status, v) = admin(&gw, "GET", "/services/big/diff?from=1&to=2", "");
    let shown: String = v.to_string().chars().take(300).collect();
    assert_eq!(status, 413, "{shown}");
    assert_eq!(v["error"], "diff_too_large", "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("20000 lines"), "{v}");
    // The gateway is alive and diffs of ordinary versions still answer.
    assert_eq!(http_get(gw.admin, "/healthz").status, 200);
    assert_eq!(admin(&gw, "PUT", "/services/small", r#"{"instances":["127.0.0.1:1"]}"#).0, 200);
    assert_eq!(admin(&gw, "PUT", "/services/small", r#"{"instances":["127.0.0.1:2"]}"#).0, 200);
    let (status, v) = admin(&gw, "GET", "/services/small/diff?from=1&to=2", "");
    assert_eq!(status, 200, "{v}");
    let d = v["diff"].as_str().unwrap();
    assert!(d.contains("- ") && d.contains("127.0.0.1:1") && d.contains("+ ") && d.contains("127.0.0.1:2"), "{d}");
}

/// The limit the file sets in round `i`: rounds only ever raise it, so a
/// snapshot assembled from an older file copy shows as a smaller limit.
fn uri_limit(i: usize) -> usize {
    2000 + 100 * i
}

fn race_file(i: usize, store: &std::path::Path) -> String {
    format!(
        "[server]\nworkers = 1\n[store]\npath = {:?}\n[limits]\nmax_uri_bytes = {}\n[services.fromfile]\ninstances = [\"127.0.0.1:{}\"]\n",
        store.display().to_string(),
        uri_limit(i),
        // The file's own service changes too: each reload commits to the store.
        20000 + i
    )
}

/// The answer to a request whose target is `len` bytes long.
fn uri_status(gw: &Gateway, len: usize) -> u16 {
    let path = format!("/nosuch/{}", "a".repeat(len - "/nosuch/".len()));
    http_get(gw.public, &path).status
}

#[test]
fn sighup_racing_api_applies_ends_as_some_order_of_the_two() {
    let store = temp_dir("race").join("store.db");
    let gw = Gateway::start(&race_file(0, &store));
    let ok_reloads = |gw: &Gateway| metric(gw, "wasp_config_reloads_total", "result=\"ok\"");
    for i in 1..=40 {
        let before = ok_reloads(&gw);
        let file = race_file(i, &store);
        std::fs::write(&gw.config_path, &file).unwrap();
        // The PUT and the SIGHUP leave together.
        let admin_addr = gw.admin;
        let put = std::thread::spawn(move || {
            let body = format!(r#"{{"instances":["127.0.0.1:{}"]}}"#, 30000 + i);
            let req = format!(
                "PUT /services/api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut s = connect(admin_addr);
            s.write_all(req.as_bytes()).unwrap();
            read_response(&mut s, &mut Vec::new(), false).expect("the PUT's answer").status
        });
        gw.signal(SIGHUP);
        assert_eq!(put.join().unwrap(), 200, "round {i}");
        // Both have swapped: the reload and the apply each changed something.
        let end = Instant::now() + Duration::from_secs(10);
        while ok_reloads(&gw) < before + 2 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(ok_reloads(&gw) >= before + 2, "round {i}: the reload did not finish");
        // Whatever the order, the running limits are the file's latest ...
        let limit = uri_limit(i);
        assert_ne!(uri_status(&gw, limit - 50), 414, "round {i}: an apply put an older file's limits back");
        assert_eq!(uri_status(&gw, limit + 50), 414, "round {i}");
        // ... and the services are the latest PUT's and the latest file's.
        let (_, v) = admin(&gw, "GET", "/services/api", "");
        assert_eq!(v["content"]["instances"][0], format!("127.0.0.1:{}", 30000 + i), "round {i}: {v}");
        let (_, v) = admin(&gw, "GET", "/services/fromfile", "");
        assert_eq!(v["content"]["instances"][0], format!("127.0.0.1:{}", 20000 + i), "round {i}: {v}");
    }
}

#[test]
fn reached_all_workers_waits_for_a_worker_held_busy() {
    let mut cfg = config_with(&[("a", vec![dead_addr()])], "");
    cfg = cfg.replace("workers = 1", "workers = 2");
    let gw = Gateway::start_with(&cfg, &[], &[("WASP_DEBUG_FAULTS", "1")]);
    let hold = Duration::from_millis(1500);
    let sent = Instant::now();
    // The worker that accepts this answers first, then blocks its thread.
    let held = raw(
        gw.public,
        format!("GET /__wasp_fault/busy?ms={} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", hold.as_millis())
            .as_bytes(),
    );
    assert_eq!(held.status, 200, "{}", held.text());
    let gap = sent.elapsed();
    let (status, v) = admin(&gw, "PUT", "/services/b", &format!(r#"{{"instances":["{}"]}}"#, dead_addr()));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["workers"], 2, "{v}");
    let reached = Duration::from_micros(v["reached_all_workers_us"].as_u64().expect("every worker acknowledged"));
    // The held worker acknowledged only once its thread ran again. The
    // margin is the time from the test's PUT to the apply's start.
    let floor = hold.saturating_sub(gap).saturating_sub(Duration::from_millis(100));
    assert!(reached >= floor, "reached {reached:?}, the worker was held {hold:?} from {gap:?} before the PUT: {v}");
    // Each worker's acknowledged version is a metric.
    let version = v["snapshot_version"].as_u64().unwrap();
    assert_eq!(metric(&gw, "wasp_worker_config_version", "worker=\"0\""), version);
    assert_eq!(metric(&gw, "wasp_worker_config_version", "worker=\"1\""), version);
}

#[test]
fn an_apply_names_a_worker_that_never_acknowledged() {
    let mut cfg = config_with(&[("a", vec![dead_addr()])], "");
    cfg = cfg.replace("workers = 1", "workers = 2");
    let gw = Gateway::start_with(&cfg, &[], &[("WASP_DEBUG_FAULTS", "1")]);
    // Held longer than an apply waits for acknowledgements (5 s).
    let held = raw(gw.public, b"GET /__wasp_fault/busy?ms=7000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(held.status, 200, "{}", held.text());
    let (status, v) = admin(&gw, "PUT", "/services/b", &format!(r#"{{"instances":["{}"]}}"#, dead_addr()));
    // Applied all the same; the figure is absent and the late worker named.
    assert_eq!(status, 200, "{v}");
    assert!(v["reached_all_workers_us"].is_null(), "{v}");
    let behind = v["workers_behind"].as_array().expect("workers_behind");
    assert_eq!(behind.len(), 1, "{v}");
    let late = behind[0].as_u64().unwrap();
    assert!(late < 2, "{v}");
    // The other worker already serves the new version; the held one catches
    // up once its thread runs again.
    let version = v["snapshot_version"].as_u64().unwrap();
    assert_eq!(metric(&gw, "wasp_worker_config_version", &format!("worker=\"{}\"", 1 - late)), version);
    let end = Instant::now() + Duration::from_secs(10);
    while metric(&gw, "wasp_worker_config_version", &format!("worker=\"{late}\"")) < version && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&gw, "wasp_worker_config_version", &format!("worker=\"{late}\"")), version);
}
