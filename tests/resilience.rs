//! Resilience over real sockets: `p2c` sends less to a slow instance than
//! round robin does, `hash` keeps a key on its instance and moves about 1/N
//! of keys when an instance is added, outlier ejection takes a failing
//! instance out (never more than `max_ejected_percent`), and the circuit
//! answers `503 overloaded` at once instead of queueing without bound.

mod common;
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An origin answering its name after `delay`.
fn named_after(name: &'static str, delay: Duration) -> Origin {
    Origin::start(move |_| Reply::Delay(delay, ok_response(name.as_bytes())))
}

/// `n` GETs of `path` from `threads` clients at once (keep-alive each);
/// how many answers each body got.
fn load(
    gw: SocketAddr,
    path: &str,
    n: usize,
    threads: usize,
    header: impl Fn(usize) -> String + Sync,
) -> HashMap<String, usize> {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    std::thread::scope(|s| {
        for t in 0..threads {
            let counts = counts.clone();
            let header = &header;
            s.spawn(move || {
                let mut c = connect(gw);
                let mut buf = Vec::new();
                for i in (t..n).step_by(threads) {
                    use std::io::Write;
                    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{}\r\n", header(i));
                    if c.write_all(req.as_bytes()).is_err() {
                        c = connect(gw);
                        buf.clear();
                        c.write_all(req.as_bytes()).unwrap();
                    }
                    let r = read_response(&mut c, &mut buf, false).expect("an answer");
                    let key = if r.status == 200 { r.text() } else { r.status.to_string() };
                    *counts.lock().unwrap().entry(key).or_insert(0) += 1;
                }
            });
        }
    });
    Arc::try_unwrap(counts).unwrap().into_inner().unwrap()
}

#[test]
fn p2c_sends_a_slow_instance_far_less_than_round_robin() {
    let fast1 = named_after("fast1", Duration::from_millis(2));
    let fast2 = named_after("fast2", Duration::from_millis(2));
    let slow = named_after("slow", Duration::from_millis(20));
    let list = format!("[\"{}\", \"{}\", \"{}\"]", fast1.addr, fast2.addr, slow.addr);
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.rr]\ninstances = {list}\n[services.p2c]\ninstances = {list}\nbalance = \"p2c\"\n"
    ));
    let n = 600;
    let rr = load(gw.public, "/rr/", n, 6, |_| String::new());
    let p2c = load(gw.public, "/p2c/", n, 6, |_| String::new());
    let share = |m: &HashMap<String, usize>| *m.get("slow").unwrap_or(&0) as f64 / n as f64;
    // Round robin gives each instance a third; p2c gives the 10x slower
    // one less than a third of that.
    assert!(share(&rr) > 0.3, "round robin: {rr:?}");
    assert!(share(&p2c) < share(&rr) / 3.0, "p2c: {p2c:?} against round robin {rr:?}");
    assert_eq!(p2c.values().sum::<usize>(), n, "every request answered: {p2c:?}");
}

#[test]
fn hash_keeps_a_key_on_its_instance_and_an_added_instance_takes_about_one_nth() {
    let origins: Vec<Origin> = ["a", "b", "c", "d"].into_iter().map(|n| named_after(n, Duration::ZERO)).collect();
    let three = format!("[\"{}\", \"{}\", \"{}\"]", origins[0].addr, origins[1].addr, origins[2].addr);
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ninstances = {three}\nbalance = {{ hash = \"header:X-User\" }}\n"
    ));
    let users = 400;
    let owner = |gw: &Gateway| -> Vec<String> {
        (0..users)
            .map(|u| {
                let r = raw(
                    gw.public,
                    format!("GET /shop/ HTTP/1.1\r\nHost: t\r\nX-User: user-{u}\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                r.text()
            })
            .collect()
    };
    let before = owner(&gw);
    // The same key, the same instance, on new connections (either worker).
    assert_eq!(owner(&gw), before);
    for name in ["a", "b", "c"] {
        let n = before.iter().filter(|o| *o == name).count();
        assert!(n > users / 6, "{name} owns {n} of {users}: keys spread");
    }
    // A fourth instance through the admin API.
    let doc = format!(
        r#"{{"instances":["{}","{}","{}","{}"],"balance":{{"hash":"header:X-User"}}}}"#,
        origins[0].addr, origins[1].addr, origins[2].addr, origins[3].addr
    );
    let r = raw(
        gw.admin,
        format!("PUT /services/shop HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}", doc.len()).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let after = owner(&gw);
    let moved: Vec<usize> = (0..users).filter(|u| before[*u] != after[*u]).collect();
    assert!(moved.iter().all(|u| after[*u] == "d"), "keys moved only to the new instance");
    let share = moved.len() as f64 / users as f64;
    assert!((0.12..0.40).contains(&share), "{} of {users} keys moved (about a quarter expected)", moved.len());
}

/// An origin answering `503` to everything, counting requests.
fn sick() -> Origin {
    Origin::start(|_| Reply::Raw(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nsick".to_vec()))
}

fn instances_view(gw: &Gateway, service: &str) -> serde_json::Value {
    serde_json::from_slice(&http_get(gw.admin, &format!("/services/{service}/instances")).body).unwrap()
}

#[test]
fn a_failing_instance_is_ejected_then_tried_again() {
    let (a, b, bad) = (named_after("a", Duration::ZERO), named_after("b", Duration::ZERO), sick());
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ninstances = [\"{}\", \"{}\", \"{}\"]\n\
         [services.shop.outlier]\nconsecutive_failures = 3\nbase_ejection = \"1500ms\"\n",
        a.addr, b.addr, bad.addr
    ));
    let got = load(gw.public, "/shop/", 90, 3, |_| String::new());
    // Only the failures that ejected it reached clients (3 in a row, summed
    // over the workers), none after.
    let failed = *got.get("503").unwrap_or(&0);
    assert!((1..=4).contains(&failed), "{got:?}");
    let seen_by_bad = bad.requests().len();
    assert!(seen_by_bad <= 4, "the ejected instance got {seen_by_bad} requests");
    let view = instances_view(&gw, "shop");
    let bad_view =
        view["instances"].as_array().unwrap().iter().find(|i| i["address"] == bad.addr.to_string()).cloned().unwrap();
    assert_eq!(bad_view["state"], "ejected", "{view}");
    assert!(metric(&gw, "wasp_outlier_ejections_total", "service=\"shop\",result=\"ejected\"") >= 1);
    assert_eq!(metric(&gw, "wasp_instances", "service=\"shop\",state=\"ejected\""), 1);
    assert_eq!(metric(&gw, "wasp_instances", "service=\"shop\",state=\"serving\""), 2);
    // After the ejection it is tried again (and fails again: out for longer).
    std::thread::sleep(Duration::from_millis(1700));
    let _ = load(gw.public, "/shop/", 30, 1, |_| String::new());
    assert!(bad.requests().len() > seen_by_bad, "tried again after its ejection");
    assert!(metric(&gw, "wasp_outlier_ejections_total", "service=\"shop\",result=\"ejected\"") >= 2);
}

#[test]
fn when_every_instance_is_sick_traffic_still_goes_somewhere() {
    let (x, y) = (sick(), sick());
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.shop]\ninstances = [\"{}\", \"{}\"]\n\
         [services.shop.outlier]\nconsecutive_failures = 2\nbase_ejection = \"30s\"\n",
        x.addr, y.addr
    ));
    let got = load(gw.public, "/shop/", 40, 1, |_| String::new());
    assert_eq!(got.get("503"), Some(&40), "{got:?}");
    // 50 % of two: one out at most; the other keeps taking requests.
    let (nx, ny) = (x.requests().len(), y.requests().len());
    assert!(nx.min(ny) <= 3 && nx.max(ny) >= 36, "x {nx}, y {ny}");
    assert!(metric(&gw, "wasp_outlier_ejections_total", "service=\"shop\",result=\"refused\"") >= 1);
}

#[test]
fn the_circuit_answers_overloaded_at_once_instead_of_queueing() {
    let slow = named_after("slow", Duration::from_millis(1500));
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.shop]\ninstances = [\"{}\"]\nconnect_timeout = \"5s\"\n\
         [services.shop.circuit]\nmax_connections = 2\nmax_pending = 1\n",
        slow.addr
    ));
    let results = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..6 {
            let results = results.clone();
            s.spawn(move || {
                let started = Instant::now();
                let r = http_get(gw.public, "/shop/");
                results.lock().unwrap().push((r.status, r.text(), started.elapsed()));
            });
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    let results = results.lock().unwrap();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    // Two at the instance, one waiting (served when a place frees), three refused.
    assert_eq!((ok, refused.len()), (3, 3), "{results:?}");
    for r in &refused {
        assert!(r.1.contains("\"error\":\"overloaded\""), "{r:?}");
        assert!(r.2 < Duration::from_millis(1000), "refused at once, not after waiting: {r:?}");
    }
    assert!(metric(&gw, "wasp_circuit_refused_total", "service=\"shop\"") >= 3);
}

#[test]
fn resilience_settings_are_checked_naming_the_key() {
    let dir = temp_dir("res-check");
    let p = dir.join("c.toml");
    for (extra, key) in [
        ("balance = \"random\"", "services.shop.balance"),
        ("balance = { hash = \"query:x\" }", "services.shop.balance.hash"),
        ("balance = { hash = \"header:\" }", "services.shop.balance.hash"),
        ("[services.shop.circuit]\nmax_connections = 0", "services.shop.circuit.max_connections"),
        ("[services.shop.outlier]\nmax_ejected_percent = 101", "services.shop.outlier.max_ejected_percent"),
        ("[services.shop.outlier]\nbase_ejection = \"0s\"", "services.shop.outlier.base_ejection"),
        ("[services.shop.outlier]\nconsecutive = 3", "unknown field `consecutive`"),
        ("[services.shop.retry]\non = [\"500\"]", "services.shop.retry.on"),
    ] {
        std::fs::write(&p, format!("[services.shop]\ninstances = [\"127.0.0.1:9\"]\n{extra}\n")).unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{extra} -> want {key}: {err}");
    }
}

#[test]
fn health_checks_take_an_instance_out_and_bring_it_back() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let sick_b = Arc::new(AtomicBool::new(false));
    let a = Origin::start(|s| {
        let body: &[u8] = if s.request_line().contains("/healthz") { b"ok" } else { b"a" };
        Reply::Raw(ok_response(body))
    });
    let flag = sick_b.clone();
    let b = Origin::start(move |s| {
        if s.request_line().contains("/healthz") {
            if flag.load(Ordering::SeqCst) {
                return Reply::Raw(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n".to_vec());
            }
            return Reply::Raw(ok_response(b"ok"));
        }
        Reply::Raw(ok_response(b"b"))
    });
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ninstances = [\"{}\", \"{}\"]\n\
         [services.shop.health]\npath = \"/healthz\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nhealthy = 2\nunhealthy = 2\n",
        a.addr, b.addr
    ));
    let both = load(gw.public, "/shop/", 20, 1, |_| String::new());
    assert!(both.contains_key("a") && both.contains_key("b"), "{both:?}");
    let state = |gw: &Gateway| {
        let v = instances_view(gw, "shop");
        v["instances"].as_array().unwrap().iter().find(|i| i["address"] == b.addr.to_string()).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // B's checks start failing: out after 2 failures (2 x 200 ms, give or take a round).
    sick_b.store(true, Ordering::SeqCst);
    let t = Instant::now();
    while state(&gw) != "unhealthy" {
        assert!(t.elapsed() < Duration::from_secs(3), "not out after {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let took_out = t.elapsed();
    let only_a = load(gw.public, "/shop/", 20, 1, |_| String::new());
    assert_eq!(only_a.get("a"), Some(&20), "an unhealthy instance gets no traffic: {only_a:?}");
    // Passing again: back after 2 passes.
    sick_b.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while state(&gw) != "serving" {
        assert!(t.elapsed() < Duration::from_secs(3), "not back after {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = load(gw.public, "/shop/", 20, 1, |_| String::new());
    assert!(again.contains_key("b"), "{again:?}");
    // Checks are spread, one per instance per interval (not a burst per worker).
    let checks = |o: &Origin| o.requests().iter().filter(|s| s.request_line().contains("/healthz")).count();
    let (ca, start) = (checks(&a), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let per_2s = checks(&a) - ca;
    assert!((5..=14).contains(&per_2s), "{per_2s} checks of one instance in {:?}", start.elapsed());
    assert!(metric(&gw, "wasp_health_checks_total", "service=\"shop\",result=\"fail\"") >= 2);
    eprintln!("taken out after {took_out:?}");
}

#[test]
fn a_503_is_retried_on_another_instance_when_asked_and_the_budget_caps_it() {
    let good = named_after("good", Duration::ZERO);
    let bad = sick();
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n\
         [services.retrying]\ninstances = [\"{b}\", \"{g}\"]\n[services.retrying.retry]\non = [\"connect_failure\", \"503\"]\nattempts = 1\nbudget_percent = 100\n\
         [services.retrying.outlier]\nconsecutive_failures = 0\n\
         [services.plain]\ninstances = [\"{b}\", \"{g}\"]\n[services.plain.outlier]\nconsecutive_failures = 0\n",
        b = bad.addr,
        g = good.addr
    ));
    // Replayable GETs: every 503 went on to the good instance.
    let got = load(gw.public, "/retrying/", 40, 1, |_| String::new());
    assert_eq!(got.get("good"), Some(&40), "{got:?}");
    assert!(!bad.requests().is_empty(), "the sick instance was asked (and its 503 retried)");
    // Without `on = ["503"]`, the 503s reach the client.
    let plain = load(gw.public, "/plain/", 40, 1, |_| String::new());
    assert!(plain.get("503").is_some_and(|n| *n >= 10), "{plain:?}");
    // A POST is never sent twice: its 503 is the answer.
    let mut posts = 0;
    for _ in 0..20 {
        let r =
            raw(gw.public, b"POST /retrying/ HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        if r.status == 503 {
            posts += 1;
        }
    }
    assert!(posts >= 5, "POSTs that met the sick instance got its 503 ({posts} of 20)");
}

#[test]
fn when_every_instance_fails_the_budget_caps_the_retries() {
    let (x, y) = (sick(), sick());
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.shop]\ninstances = [\"{}\", \"{}\"]\n\
         [services.shop.retry]\non = [\"503\"]\nattempts = 3\nbudget_percent = 20\n[services.shop.outlier]\nconsecutive_failures = 0\n",
        x.addr, y.addr
    ));
    let n = 200;
    let got = load(gw.public, "/shop/", n, 2, |_| String::new());
    assert_eq!(got.get("503"), Some(&n), "{got:?}");
    let sent = x.requests().len() + y.requests().len();
    // 20 % of 200 requests, plus the one retry there from the start.
    assert!(sent <= n + n / 5 + 1, "{sent} requests reached the instances for {n} client requests");
    assert!(sent > n, "some retries were made");
    assert!(metric(&gw, "wasp_upstream_retries_total", "result=\"refused\"") > 0);
}

#[test]
fn without_connect_failure_in_on_a_dead_instance_is_not_failed_over() {
    let good = named_after("good", Duration::ZERO);
    let dead = dead_addr();
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.shop]\ninstances = [\"{dead}\", \"{}\"]\n[services.shop.retry]\non = []\n\
         [services.shop.outlier]\nconsecutive_failures = 0\n",
        good.addr
    ));
    // The dead instance is marked down for 2 s after a refusal, and tried
    // last meanwhile; over a few requests some meet it and fail.
    let mut failed = 0;
    for _ in 0..10 {
        if http_get(gw.public, "/shop/").status != 200 {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(failed >= 1, "a refused connect was failed over although `on` does not list it");
}

#[test]
fn the_instance_view_shows_requests_in_flight_and_latency() {
    let slow = named_after("slow", Duration::from_millis(800));
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ninstances = [\"{}\"]\nbalance = \"p2c\"\n",
        slow.addr
    ));
    let public = gw.public;
    let inflight = std::thread::spawn(move || {
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(move || http_get(public, "/shop/").status);
            }
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let during = instances_view(&gw, "shop");
    assert_eq!(during["instances"][0]["in_flight"], 3, "{during}");
    inflight.join().unwrap();
    let after = instances_view(&gw, "shop");
    assert_eq!(after["instances"][0]["in_flight"], 0, "{after}");
    let ms = after["instances"][0]["latency_ms"].as_f64().unwrap_or(0.0);
    assert!(ms >= 700.0, "EWMA time to the answer's head: {after}");
}

#[test]
fn hash_spreads_the_keys_of_an_instance_that_is_out_over_the_others() {
    let (a, b) = (named_after("a", Duration::ZERO), named_after("b", Duration::ZERO));
    let dead = dead_addr();
    // The dead instance sits between the two live ones in the list: the
    // next-in-list rule would hand all its keys to `b`.
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.shop]\ninstances = [\"{}\", \"{dead}\", \"{}\"]\nbalance = {{ hash = \"header:X-User\" }}\n",
        a.addr, b.addr
    ));
    let users = 600;
    let mut to_a = 0;
    for u in 0..users {
        let r = raw(
            gw.public,
            format!("GET /shop/ HTTP/1.1\r\nHost: t\r\nX-User: u{u}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        if r.text() == "a" {
            to_a += 1;
        }
    }
    // Each live instance: its own third plus half of the dead one's.
    let share = to_a as f64 / users as f64;
    assert!((0.40..0.60).contains(&share), "a took {to_a} of {users} keys");
}
