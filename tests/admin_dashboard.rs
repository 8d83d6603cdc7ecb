//! The admin UI's server side over real sockets: the embedded files under
//! `/ui/` (caching, compression, security headers, who may fetch them), the
//! dashboard feed `GET /stats` (rates, percentiles, endpoint counters,
//! `since`), and the entity lists. The UI itself is driven in a real browser
//! by `tests/admin_ui.rs`.

mod common;
use common::ws::WsClient;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const TOKEN: &str = "dashboard-token-0123456789";

fn admin(gw: &Gateway, method: &str, path: &str, headers: &str) -> Resp {
    raw(
        gw.admin,
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 0\r\n\r\n").as_bytes(),
    )
}

fn stats(gw: &Gateway, query: &str) -> Value {
    let r = admin(gw, "GET", &format!("/stats{query}"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("stats JSON")
}

fn service<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["services"].as_array().and_then(|l| l.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

fn endpoint<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["endpoints"].as_array().and_then(|l| l.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

/// Polls `/stats` until `ok` holds (the sampler ticks once a second).
fn wait_stats(gw: &Gateway, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(12);
    loop {
        let s = stats(gw, "");
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < until, "{what}: {s}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn ui_files_are_embedded_cached_compressed_and_locked_down() {
    let gw = Gateway::start_with("[server]\nworkers = 1\n", &[], &[("WASP_ADMIN_TOKEN", TOKEN)]);
    // No token needed for the files (a navigation cannot send one) ...
    let r = admin(&gw, "GET", "/ui/", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    let html = r.text();
    assert!(html.contains("app.js") && !html.contains("<script>"), "no inline script: {html}");
    let csp = r.header("content-security-policy").expect("a CSP");
    for part in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    // WebSockets only to this host's public listener (the test console), not anywhere.
    let ws = format!("connect-src 'self' ws://127.0.0.1:{p} wss://127.0.0.1:{p};", p = gw.public.port());
    assert!(csp.contains(&ws) && !csp.contains(" ws: "), "{csp}");
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"));
    // ... but the API behind them does.
    assert_eq!(admin(&gw, "GET", "/stats", "").status, 401);
    assert_eq!(admin(&gw, "GET", "/services", "").status, 401);
    assert_eq!(admin(&gw, "GET", "/stats", &format!("Authorization: Bearer {TOKEN}\r\n")).status, 200);

    // ETag revalidation and gzip.
    let etag = r.header("etag").expect("an ETag");
    let again = admin(&gw, "GET", "/ui/app.js", "");
    assert_eq!(again.status, 200);
    assert!(again.header("content-type").is_some_and(|t| t.starts_with("text/javascript")));
    let tag = again.header("etag").expect("an ETag");
    assert_ne!(tag, etag, "each file its own tag");
    let not_modified = admin(&gw, "GET", "/ui/app.js", &format!("If-None-Match: {tag}\r\n"));
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    let zipped = admin(&gw, "GET", "/ui/app.js", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(zipped.header("content-encoding").as_deref(), Some("gzip"));
    assert!(zipped.body.len() < again.body.len(), "{} vs {}", zipped.body.len(), again.body.len());
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped.body[..]), &mut plain).expect("gzip");
    assert_eq!(plain, again.body, "the compressed file is the file");
    assert!(admin(&gw, "GET", "/ui/app.js", "Accept-Encoding: gzip;q=0\r\n").header("content-encoding").is_none());
    // Every vendored library is served with its licence.
    for f in ["vendor/preact.module.js", "vendor/hooks.module.js", "vendor/htm.module.js", "vendor/LICENSE-preact"] {
        assert_eq!(admin(&gw, "GET", &format!("/ui/{f}"), "").status, 200, "{f}");
    }
    // HEAD: the headers, no body.
    let head = raw(gw.admin, b"HEAD /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // Refusals: other methods, unknown files, other hosts and origins.
    assert_eq!(admin(&gw, "POST", "/ui/", "Content-Type: application/json\r\n").status, 405);
    assert_eq!(admin(&gw, "GET", "/ui/../Cargo.toml", "").status, 404);
    assert_eq!(admin(&gw, "GET", "/ui/nope.js", "").status, 404);
    let moved = admin(&gw, "GET", "/ui", "");
    assert_eq!((moved.status, moved.header("location").as_deref()), (308, Some("/ui/")));
    let rebound = raw(gw.admin, b"GET /ui/ HTTP/1.1\r\nHost: rebind.example:9901\r\nConnection: close\r\n\r\n");
    assert_eq!(rebound.status, 421, "DNS rebinding cannot read the UI either");
    let framed = admin(&gw, "GET", "/ui/", "Origin: http://evil.example\r\n");
    assert_eq!(framed.status, 403);
}

#[test]
fn stats_rates_percentiles_and_since() {
    // One fast and one slow service: the slow one's p50 is its delay.
    let fast = Origin::start(|_| Reply::Raw(ok_response(b"fast")));
    let slow = Origin::start(|_| Reply::Delay(Duration::from_millis(40), ok_response(b"slow")));
    let gw = Gateway::start(&config_with(&[("fast", vec![fast.addr]), ("slow", vec![slow.addr])], ""));
    let first = stats(&gw, "");
    assert_eq!(first["window_s"], 5);
    assert_eq!(first["gateway"]["listen"], gw.public.to_string());
    assert!(first["gateway"]["applied_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{first}");
    assert_eq!(service(&first, "fast")["instances"]["serving"], 1);

    // About 50 requests/s to `fast` for 3 s, 10/s to `slow`, a few 404s.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(3) {
        for _ in 0..5 {
            assert_eq!(http_get(gw.public, "/fast/x").status, 200);
            sent += 1;
        }
        assert_eq!(http_get(gw.public, "/slow/x").status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = wait_stats(&gw, "fast's rate seen", |s| service(s, "fast")["rps"].as_f64().unwrap_or(0.0) > 10.0);
    let f = service(&s, "fast");
    let sl = service(&s, "slow");
    let measured = sent as f64 / started.elapsed().as_secs_f64();
    let rps = f["rps"].as_f64().unwrap_or(0.0);
    assert!(rps <= measured * 1.3, "{rps} vs {measured} sent/s: {s}");
    let p50 = sl["p50_ms"].as_f64().expect("slow has a p50");
    assert!((35.0..80.0).contains(&p50), "slow p50 {p50}: {s}");
    assert!(f["p50_ms"].as_f64().is_some_and(|p| p < p50), "{s}");
    assert!(sl["p99_ms"].as_f64().is_some_and(|p| p >= p50), "{s}");
    assert_eq!(f["rps_5xx"], 0.0);

    // `since`: only newer samples; series aligned with `t`.
    let seq = s["seq"].as_u64().expect("seq");
    assert!(s["series"]["t"].as_array().is_some_and(|t| t.len() as u64 == seq.min(900)), "full history at first");
    let later = wait_stats(&gw, "a newer sample", |x| x["seq"].as_u64() > Some(seq));
    let newer = stats(&gw, &format!("?since={seq}"));
    let n = newer["series"]["t"].as_array().map_or(0, |t| t.len());
    assert!(n >= 1 && n as u64 <= newer["seq"].as_u64().unwrap_or(0) - seq, "{newer}");
    assert_eq!(newer["series"]["services"]["fast"]["rps"].as_array().map(|a| a.len()), Some(n));
    drop(later);
    assert_eq!(admin(&gw, "GET", "/stats?since=x", "").status, 422);
    assert_eq!(admin(&gw, "POST", "/stats", "Content-Type: application/json\r\n").status, 405);

    // Traffic stops: the rate falls back to 0 within the window.
    let idle = wait_stats(&gw, "fast idle again", |s| service(s, "fast")["rps"] == 0.0);
    assert_eq!(service(&idle, "fast")["p50_ms"], Value::Null, "no requests, no percentile");

    // Errors by class: a dead instance gives 502s.
    let (st, _) = put(&gw, "/services/fast", &format!(r#"{{"instances":["{}"]}}"#, dead_addr()));
    assert_eq!(st, 200);
    for _ in 0..20 {
        assert!(http_get(gw.public, "/fast/x").status >= 500);
    }
    wait_stats(&gw, "5xx seen", |s| service(s, "fast")["rps_5xx"].as_f64().unwrap_or(0.0) > 0.0);
}

fn put(gw: &Gateway, path: &str, body: &str) -> (u16, Value) {
    let r = raw(
        gw.admin,
        format!("PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
    );
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

#[test]
fn stats_count_websocket_events_messages_and_failures() {
    let backend = Origin::start(|seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"fail\"") {
            Reply::Raw(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec())
        } else {
            Reply::Raw(ok_response(b"{\"reply\":true}"))
        }
    });
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\n[endpoints.chat]\npath = \"/ws/chat\"\n\
         [endpoints.chat.routes.\"$default\"]\nhttp = [\"http://{}/events\"]\nreply = true\n",
        backend.addr
    ));
    let mut clients: Vec<WsClient> = (0..3).map(|_| WsClient::connect(gw.public, "/ws/chat")).collect();
    wait_stats(&gw, "3 open", |s| endpoint(s, "chat")["open"] == 3);
    for i in 0..10 {
        clients[0].send_text(&format!("{{\"n\":{i}}}"));
        assert!(clients[0].recv_text().contains("reply"));
    }
    clients[1].send_text("{\"fail\":1}");
    let e = clients[1].recv_text();
    assert!(e.contains("integration_failed"), "{e}");
    // Pushes count as messages out.
    let body = "{\"hi\":1}";
    let r = raw(
        gw.admin,
        format!("POST /endpoints/chat/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for c in &mut clients {
        assert!(c.recv_text().contains("hi"));
    }
    // 11 events, 1 failure and 13 messages (10 replies + 3 pushes), all
    // within a fraction of a second: one window holds them all, so the
    // rates stand as the counts do (the window's length divides them all).
    let rate = |e: &Value, k: &str| e[k].as_f64().unwrap_or(0.0);
    let s = wait_stats(&gw, "events, failures and pushes", |s| {
        let e = endpoint(s, "chat");
        rate(e, "failures_rps") > 0.0 && rate(e, "messages_rps") >= rate(e, "events_rps") * 12.0 / 11.0
    });
    let e = endpoint(&s, "chat");
    assert_eq!(e["path"], "/ws/chat");
    let events = rate(e, "events_rps");
    assert!((rate(e, "failures_rps") * 11.0 / events - 1.0).abs() < 0.05, "{e}");
    assert!((rate(e, "messages_rps") * 11.0 / events / 13.0 - 1.0).abs() < 0.05, "{e}");
    assert!(events * 5.0 >= 10.9, "at least 11 events in a window of 5 s or less: {e}");
    drop(clients);
    wait_stats(&gw, "all closed", |s| endpoint(s, "chat")["open"] == 0);
}

#[test]
fn lists_name_each_entity_with_its_active_version() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = Gateway::start(&config_with(&[("b-svc", vec![a.addr]), ("a-svc", vec![a.addr])], ""));
    let (st, _) = put(&gw, "/services/a-svc", &format!(r#"{{"instances":["{}"],"timeout":"3s"}}"#, a.addr));
    assert_eq!(st, 200);
    let r = admin(&gw, "GET", "/services", "");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    let names: Vec<&str> = v["services"].as_array().expect("list").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["a-svc", "b-svc"], "sorted by name");
    assert_eq!(v["services"][0]["version"], 2);
    assert_eq!(v["services"][1]["author"], "file");
    // A deleted service leaves the list.
    let del = raw(gw.admin, b"DELETE /services/b-svc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(del.status, 200);
    let v: Value = serde_json::from_slice(&admin(&gw, "GET", "/services", "").body).expect("JSON");
    assert_eq!(v["services"].as_array().map(|l| l.len()), Some(1));
    let v: Value = serde_json::from_slice(&admin(&gw, "GET", "/endpoints", "").body).expect("JSON");
    assert_eq!(v["endpoints"], serde_json::json!([]));
    let v: Value = serde_json::from_slice(&admin(&gw, "GET", "/consumers", "").body).expect("JSON");
    assert_eq!(v["consumers"], serde_json::json!([]));
    assert_eq!(admin(&gw, "DELETE", "/services", "Content-Type: application/json\r\n").status, 405);
}
