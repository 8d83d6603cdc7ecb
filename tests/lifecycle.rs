//! The process around the proxy: CLI, default config, reload, drain,
//! observability, systemd notification.

mod common;
use common::*;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

fn wasp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasp"))
}

#[test]
fn check_accepts_good_and_names_bad_key_and_line() {
    let dir = temp_dir("check");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[server]\nworkers = 2\n[services.echo]\ninstances = [\"127.0.0.1:9001\"]\n").unwrap();
    let out = wasp().args(["check", "--config"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 services"));

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nworkers = 2\n\n[services.echo]\ninstances = [\"127.0.0.1:9001\"]\ntimout = \"1s\"\n",
    )
    .unwrap();
    let out = wasp().args(["check", "--config"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timout") && err.contains("line 6"), "{err}");

    let bad = dir.join("bad2.toml");
    std::fs::write(&bad, "[server]\nlisten = \"localhost\"\n").unwrap();
    let out = wasp().args(["check", "--config"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("server.listen (line 2)"), "{err}");

    let out = wasp().args(["check", "--config", "/nonexistent/wasp.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn serve_runs_on_the_built_in_default() {
    let cmd = {
        let mut c = wasp();
        c.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--workers", "2"]);
        c
    };
    let gw = Gateway::spawn(cmd, "built-in".into(), &[]);
    // The demo service answers from its mock (tests/dev_mode.rs has the rest).
    let r = http_get(gw.public, "/demo/hello");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("hello from wasp"));
    assert_eq!(http_get(gw.admin, "/healthz").status, 200);
    let m = gw.metrics();
    assert_eq!(m.matches("wasp_io_driver{").count(), 2, "{m}");
}

#[test]
fn admin_health_ready_metrics_and_not_on_public() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let r = http_get(gw.admin, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"status":"ok"}"#));
    let r = http_get(gw.admin, "/readyz");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"config_version\":1"));
    for _ in 0..3 {
        http_get(gw.public, "/echo/x");
    }
    http_get(gw.public, "/missing/x");
    let m = gw.metrics();
    assert!(m.contains("wasp_requests_total{service=\"echo\",class=\"2xx\"} 3"), "{m}");
    assert!(m.contains("wasp_requests_total{service=\"-\",class=\"4xx\"} 1"), "{m}");
    assert!(m.contains("wasp_request_duration_seconds_count 4"), "{m}");
    assert!(m.contains("wasp_open_connections "));
    assert!(m.contains("wasp_upstream_errors_total 0"));
    assert!(m.contains("driver=\"io_uring\"") || m.contains("driver=\"epoll\""));
    // The admin endpoints are not routed on the public listener.
    assert_eq!(http_get(gw.public, "/metrics").status, 404);
    assert_eq!(http_get(gw.admin, "/nope").status, 404);
}

#[test]
fn access_log_lines_and_switch_off() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let r = raw(gw.public, b"GET /echo/logged?q=1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-me-1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(gw.wait_log("request_id=\"log-me-1\"", Duration::from_secs(3)));
    let line = gw.logs.lock().unwrap().iter().find(|l| l.contains("log-me-1")).cloned().unwrap();
    for field in
        ["method=\"GET\"", "path=\"/echo/logged?q=1\"", "service=\"echo\"", "status=200", "bytes=", "duration_us="]
    {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let mut cfg = config_with(&[("echo", vec![o.addr])], "");
    cfg.push_str("[log]\naccess = false\n");
    let quiet = Gateway::start(&cfg);
    raw(quiet.public, b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: silent-1\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!quiet.log_contains("silent-1"));

    let mut cfg = config_with(&[("echo", vec![o.addr])], "");
    cfg.push_str("[log]\nformat = \"json\"\n");
    let json = Gateway::start(&cfg);
    raw(json.public, b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: json-1\r\n\r\n");
    assert!(json.wait_log("\"request_id\":\"json-1\"", Duration::from_secs(3)), "{:?}", json.logs.lock().unwrap());
}

#[test]
fn sighup_swaps_snapshot_and_keeps_old_on_bad_file() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let slow = Origin::start(|_| Reply::Delay(Duration::from_millis(800), ok_response(b"slow")));
    let cfg = config_with(&[("svc", vec![a.addr]), ("slow", vec![slow.addr])], "");
    let gw = Gateway::start(&cfg);
    assert_eq!(http_get(gw.public, "/svc/").text(), "A");

    // An in-flight request and an open keep-alive connection survive the swap.
    let mut inflight = connect(gw.public);
    inflight.write_all(b"GET /slow/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut ka = connect(gw.public);
    let mut kbuf = Vec::new();
    ka.write_all(b"GET /svc/ HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut ka, &mut kbuf, false).unwrap().text(), "A");

    std::fs::write(&gw.config_path, config_with(&[("svc", vec![b.addr]), ("slow", vec![slow.addr])], "")).unwrap();
    gw.signal(SIGHUP);
    assert!(gw.wait_log("configuration reloaded", Duration::from_secs(5)));
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut inflight, &mut buf, false).unwrap().text(), "slow");
    assert_eq!(http_get(gw.public, "/svc/").text(), "B");
    ka.write_all(b"GET /svc/ HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut ka, &mut kbuf, false).unwrap().text(), "B", "same connection, new snapshot");
    assert!(http_get(gw.admin, "/readyz").text().contains("\"config_version\":2"));

    // A broken file is refused with a reason; the running version stays.
    std::fs::write(&gw.config_path, "[services.svc]\ninstances = [\"not an address\"]\n").unwrap();
    gw.signal(SIGHUP);
    assert!(gw.wait_log("reload rejected", Duration::from_secs(5)));
    assert!(gw.log_contains("services.svc.instances (line 2)"));
    assert_eq!(http_get(gw.public, "/svc/").text(), "B");
    assert!(gw.metrics().contains("wasp_config_reloads_total{result=\"failed\"} 1"));
}

#[test]
fn sigterm_drains_in_flight_then_exits_zero() {
    let slow = Origin::start(|_| Reply::Delay(Duration::from_millis(700), ok_response(b"done")));
    let mut gw = Gateway::start(&config_with(&[("slow", vec![slow.addr])], ""));
    let mut inflight = connect(gw.public);
    inflight.write_all(b"GET /slow/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    gw.signal(SIGTERM);
    let mut buf = Vec::new();
    let r = read_response(&mut inflight, &mut buf, false).expect("in-flight request finishes");
    assert_eq!(r.text(), "done");
    assert_eq!(r.header("connection").as_deref(), Some("close"), "draining closes kept-alive connections");
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(std::net::TcpStream::connect(gw.public).is_err(), "no longer accepting");
}

#[test]
fn sigint_also_stops_and_drain_timeout_bounds_the_wait() {
    let hang = Origin::start(|_| Reply::Delay(Duration::from_secs(30), ok_response(b"never")));
    let mut cfg = config_with(&[("hang", vec![hang.addr])], "");
    cfg.push_str("[timeouts]\ndrain = \"500ms\"\n");
    let mut gw = Gateway::start(&cfg);
    let mut s = connect(gw.public);
    s.write_all(b"GET /hang/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = std::time::Instant::now();
    gw.signal(SIGINT);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    assert!(t0.elapsed() < Duration::from_secs(5), "drain bounded by timeouts.drain");
}

#[test]
fn systemd_notify_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = temp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let o = Origin::echo();
    let mut gw = Gateway::start_with(
        &config_with(&[("echo", vec![o.addr])], ""),
        &[],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut msg = [0u8; 256];
    let n = sock.recv(&mut msg).unwrap();
    assert_eq!(&msg[..n], b"READY=1");
    gw.signal(SIGHUP);
    let n = sock.recv(&mut msg).unwrap();
    assert_eq!(&msg[..n], b"RELOADING=1");
    let n = sock.recv(&mut msg).unwrap();
    assert_eq!(&msg[..n], b"READY=1");
    gw.signal(SIGTERM);
    let n = sock.recv(&mut msg).unwrap();
    assert_eq!(&msg[..n], b"STOPPING=1");
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn workers_share_one_port() {
    let o = Origin::echo();
    let gw = Gateway::start_with(&config_with(&[("echo", vec![o.addr])], ""), &["--workers", "2"], &[]);
    for _ in 0..20 {
        assert_eq!(http_get(gw.public, "/echo/x").status, 200);
    }
    let m = gw.metrics();
    assert_eq!(m.matches("wasp_io_driver{").count(), 2);
    assert!(m.contains("wasp_connections_accepted_total 2"), "{m}");
}

#[test]
fn systemd_unit_is_notify_with_reload_and_limits() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/wasp.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "{line} missing");
    }
    assert!(unit.lines().any(|l| l.starts_with("LimitNOFILE=")));
    // The unit's ExecStart is the same command this test suite runs.
    assert!(unit.contains("ExecStart=/usr/local/bin/wasp serve --config /etc/wasp/wasp.toml"));
    // The example config it points at is valid.
    let out = wasp()
        .args(["check", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn admin_token_guards_the_admin_api_but_not_health() {
    let o = Origin::echo();
    let mut cfg = config_with(&[("echo", vec![o.addr])], "");
    cfg.push_str("[admin]\ntoken = \"s3cret-token-0123456789\"\n[endpoints.chat]\npath = \"/ws/chat\"\n");
    let gw = Gateway::start(&cfg);
    assert_eq!(http_get(gw.admin, "/healthz").status, 200);
    assert_eq!(http_get(gw.admin, "/metrics").status, 200);
    let r = http_get(gw.admin, "/connections");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("unauthorized"));
    let r = raw(
        gw.admin,
        b"GET /connections HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer wrong-token-0123456789\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    let r = raw(
        gw.admin,
        b"GET /connections HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret-token-0123456789\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The environment wins over the file.
    let gw = Gateway::start_with(&cfg, &[], &[("WASP_ADMIN_TOKEN", "from-env-token-0123456789")]);
    let r = raw(
        gw.admin,
        b"GET /connections HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer from-env-token-0123456789\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    // A short token is a config error naming the key.
    let dir = temp_dir("token");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[admin]\ntoken = \"short\"\n").unwrap();
    let out = wasp().args(["check", "--config"]).arg(&bad).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("admin.token (line 2)"));
}
