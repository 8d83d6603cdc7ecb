//! The admin API is safe by default: what a web page in the operator's
//! browser can send (a "simple" cross-site request, a DNS-rebound `Host`)
//! is refused and changes nothing, with or without a token; a public admin
//! listener without a token never starts; tokens are checked by digest.

mod common;
use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One admin request with exactly these header lines (and `Connection: close`).
fn admin(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    raw(gw.admin, req.as_bytes())
}

/// The listener's own `Host` value, as a browser or curl on this box sends it.
fn own_host(gw: &Gateway) -> String {
    format!("127.0.0.1:{}", gw.admin.port())
}

/// The whole dynamic configuration, read the legitimate way.
fn export(gw: &Gateway) -> String {
    let host = own_host(gw);
    let r = admin(gw, "GET", "/config/export", &[("Host", &host)], "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// An error answer is JSON naming what was wrong.
fn assert_json_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{} {}", r.head, r.text());
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{}", r.head);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON body");
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

/// Runs `cmd` until it exits (output) or `limit` passes (killed: `None`).
fn run_until_exit(mut cmd: Command, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wasp");
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
            return Some((st, err));
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve_cmd(config: &str, admin_listen: &str) -> Command {
    let path = temp_dir("admin-safety").join("wasp.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(wasp_bin());
    cmd.args(["serve", "--config"]).arg(&path).args(["--listen", "127.0.0.1:0", "--admin-listen", admin_listen]);
    cmd.env_remove("WASP_ADMIN_TOKEN").env_remove("RUST_LOG");
    cmd
}

fn check_cmd(config: &str) -> Command {
    let path = temp_dir("admin-safety-check").join("wasp.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(wasp_bin());
    cmd.args(["check", "--config"]).arg(&path).env_remove("WASP_ADMIN_TOKEN");
    cmd
}

#[test]
fn cross_site_simple_post_is_refused_and_changes_nothing() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let before = export(&gw);
    assert!(before.contains("echo"), "{before}");
    let host = own_host(&gw);

    // Exactly what `fetch(url, {method: "POST", mode: "no-cors", body: "{}"})`
    // on http://evil.example sends: text/plain is a CORS-safelisted type, so
    // the browser sends it without asking first.
    let r = admin(
        &gw,
        "POST",
        "/config/import",
        &[("Host", &host), ("Content-Type", "text/plain;charset=UTF-8"), ("Origin", "http://evil.example")],
        "{}",
    );
    assert_json_error(&r, 403, "cross_origin");
    // Old browsers and some redirects send no Origin: the media type alone refuses it.
    let r = admin(&gw, "POST", "/config/import", &[("Host", &host), ("Content-Type", "text/plain")], "{}");
    assert_json_error(&r, 415, "unsupported_media_type");
    // A form post and a body with no media type at all.
    let r = admin(
        &gw,
        "POST",
        "/config/import",
        &[("Host", &host), ("Content-Type", "application/x-www-form-urlencoded")],
        "{}",
    );
    assert_json_error(&r, 415, "unsupported_media_type");
    let r = admin(&gw, "POST", "/config/import", &[("Host", &host)], "{}");
    assert_json_error(&r, 415, "unsupported_media_type");
    // A foreign Origin is refused even with the right media type.
    let r = admin(
        &gw,
        "POST",
        "/config/import",
        &[("Host", &host), ("Content-Type", "application/json"), ("Origin", "http://evil.example")],
        "{}",
    );
    assert_json_error(&r, 403, "cross_origin");
    // `null` (sandboxed frames, file: pages) is not this origin either.
    let r = admin(&gw, "GET", "/config/export", &[("Host", &host), ("Origin", "null")], "");
    assert_json_error(&r, 403, "cross_origin");

    assert_eq!(export(&gw), before, "nothing changed");
    assert_eq!(http_get(gw.public, "/echo/x").status, 200, "the service still routes");

    // The admin UI's own page (same origin) with JSON is served.
    let own_origin = format!("http://{host}");
    let r = admin(
        &gw,
        "POST",
        "/config/validate",
        &[("Host", &host), ("Origin", &own_origin), ("Content-Type", "application/json; charset=utf-8")],
        &before,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin(
        &gw,
        "POST",
        "/config/import",
        &[("Host", &host), ("Origin", &own_origin), ("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!export(&gw).contains("echo"), "a same-origin JSON import applies");
}

#[test]
fn dns_rebound_host_is_misdirected_but_loopback_hosts_are_served() {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("secret-svc", vec![o.addr])], ""));
    let port = gw.admin.port();

    // A page on rebind.example whose name now resolves to 127.0.0.1: the
    // browser calls it same-origin and sends its own name as Host.
    for host in ["rebind.example:9901".to_string(), format!("rebind.example:{port}"), "rebind.example".to_string()] {
        let r = admin(&gw, "GET", "/config/export", &[("Host", &host)], "");
        assert_json_error(&r, 421, "misdirected_request");
        assert!(!r.text().contains("secret-svc"), "{}", r.text());
    }
    let r = admin(
        &gw,
        "GET",
        "/services/secret-svc",
        &[("Host", "rebind.example:9901"), ("Origin", "http://rebind.example:9901")],
        "",
    );
    assert_json_error(&r, 421, "misdirected_request");
    // A name that only looks like an address is a name.
    for host in ["127.0.0.1.nip.io", "localhost.rebind.example", "localhost.", "0x7f000001", "127.1"] {
        let r = admin(&gw, "GET", "/config/export", &[("Host", host)], "");
        assert_json_error(&r, 421, "misdirected_request");
    }
    // No Host, two Hosts or a malformed one: 400 (RFC 9112 §3.2).
    let r = raw(gw.admin, b"GET /config/export HTTP/1.0\r\n\r\n");
    assert_json_error(&r, 400, "bad_host");
    let r = raw(gw.admin, b"GET /config/export HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: rebind.example\r\n\r\n");
    assert_json_error(&r, 400, "bad_host");
    for host in ["127.0.0.1:http", "127.0.0.1:99999", "[::1", "::1", "a b", ""] {
        let r = admin(&gw, "GET", "/config/export", &[("Host", host)], "");
        assert_json_error(&r, 400, "bad_host");
    }

    // IP literals and localhost, with or without a port, are served.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        format!("[::1]:{port}"),
        "10.1.2.3:9901".to_string(),
    ] {
        let r = admin(&gw, "GET", "/config/export", &[("Host", &host)], "");
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
        assert!(r.text().contains("secret-svc"));
    }
    // A load balancer or Prometheus may probe by name: health, readiness and
    // metrics expose nothing writable and are served whatever the Host.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = admin(&gw, "GET", path, &[("Host", "wasp-1.lb.example:9901")], "");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // The CLI reaches it by its address and sends JSON.
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .args(["config", "--admin", &format!("http://localhost:{port}"), "export"])
        .env_remove("WASP_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret-svc"));
}

#[test]
fn allowed_hosts_names_are_served_and_others_are_not() {
    let o = Origin::echo();
    let cfg = config_with(&[("echo", vec![o.addr])], "[admin]\nallowed_hosts = [\"wasp-admin.internal\", \"ops\"]\n");
    let gw = Gateway::start(&cfg);
    for host in ["wasp-admin.internal:9901", "WASP-Admin.Internal", "ops:1234"] {
        let r = admin(&gw, "GET", "/config/export", &[("Host", host)], "");
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
    }
    // Same-origin under an allowed name.
    let r = admin(
        &gw,
        "POST",
        "/config/validate",
        &[("Host", "ops:9901"), ("Origin", "http://ops:9901"), ("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for host in ["internal", "x.wasp-admin.internal", "opsx:9901"] {
        let r = admin(&gw, "GET", "/config/export", &[("Host", host)], "");
        assert_json_error(&r, 421, "misdirected_request");
    }
    // Entries are host names: a port, a scheme or a wildcard is a config error naming the key.
    for bad in ["\"wasp:9901\"", "\"http://wasp\"", "\"*.example\"", "\"\"", "\"a..b\""] {
        let out = check_cmd(&format!("[admin]\nallowed_hosts = [{bad}]\n")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("admin.allowed_hosts (line 2)"), "{bad}: {err}");
    }
}

#[test]
fn public_admin_listener_without_token_refuses_to_start() {
    let cfg = "[server]\nworkers = 1\n";
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let Some((st, err)) = run_until_exit(serve_cmd(cfg, listen), Duration::from_secs(15)) else {
            panic!("wasp started with the admin API on {listen} and no token");
        };
        assert!(!st.success());
        assert!(err.contains("server.admin_listen") && err.contains("admin.token"), "{err}");
        assert!(err.contains("WASP_ADMIN_TOKEN"), "{err}");
    }
    // `wasp check` reports the same thing.
    let out = check_cmd("[server]\nadmin_listen = \"0.0.0.0:9901\"\n").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("server.admin_listen") && err.contains("admin.token"), "{err}");
    let out = check_cmd("[server]\nadmin_listen = \"[::1]:9901\"\n").output().unwrap();
    assert!(out.status.success(), "IPv6 loopback is loopback: {}", String::from_utf8_lossy(&out.stderr));

    // With a token (from the file or the environment) it starts and the
    // token is required.
    let token = "public-admin-token-0123456789";
    let with_file = format!("{cfg}[admin]\ntoken = \"{token}\"\n");
    let mut gateways = Vec::new();
    gateways.push(Gateway::spawn(serve_cmd(&with_file, "0.0.0.0:0"), temp_dir("unused").join("x"), &[]));
    gateways.push(Gateway::spawn(
        serve_cmd(cfg, "0.0.0.0:0"),
        temp_dir("unused").join("x"),
        &[("WASP_ADMIN_TOKEN", token)],
    ));
    for gw in &gateways {
        let host = format!("127.0.0.1:{}", gw.admin.port());
        let r = admin(gw, "GET", "/config/export", &[("Host", &host)], "");
        assert_json_error(&r, 401, "unauthorized");
        let bearer = format!("Bearer {token}");
        let r = admin(gw, "GET", "/config/export", &[("Host", &host), ("Authorization", &bearer)], "");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn short_or_invisible_env_token_is_refused() {
    let cfg = "[server]\nworkers = 1\n";
    for bad in ["short", "0123456789abcde", "0123456789 abcdefgh", "0123456789abcdefé"] {
        let mut cmd = serve_cmd(cfg, "127.0.0.1:0");
        cmd.env("WASP_ADMIN_TOKEN", bad);
        let Some((st, err)) = run_until_exit(cmd, Duration::from_secs(15)) else {
            panic!("wasp started with WASP_ADMIN_TOKEN={bad:?}");
        };
        assert!(!st.success());
        assert!(err.contains("WASP_ADMIN_TOKEN") && err.contains("16 visible ASCII"), "{err}");
        let mut check = check_cmd(cfg);
        check.env("WASP_ADMIN_TOKEN", bad);
        let out = check.output().unwrap();
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("WASP_ADMIN_TOKEN"));
    }
}

#[test]
fn token_does_not_bypass_host_and_origin_and_wrong_tokens_are_401() {
    let token = "s3cret-token-0123456789";
    let o = Origin::echo();
    let mut cfg = config_with(&[("echo", vec![o.addr])], "");
    cfg.push_str(&format!("[admin]\ntoken = \"{token}\"\n"));
    let gw = Gateway::start(&cfg);
    let host = own_host(&gw);
    let bearer = format!("Bearer {token}");
    // Wrong tokens: same length, longer, shorter, a prefix, empty, other scheme.
    let same_len = format!("Bearer {}", "x".repeat(token.len()));
    let longer = format!("Bearer {token}0");
    let prefix = format!("Bearer {}", &token[..token.len() - 1]);
    let basic = format!("Basic {token}");
    for auth in [same_len.as_str(), longer.as_str(), prefix.as_str(), "Bearer ", "Bearer short", basic.as_str()] {
        let r = admin(&gw, "GET", "/config/export", &[("Host", &host), ("Authorization", auth)], "");
        assert_json_error(&r, 401, "unauthorized");
    }
    let r = admin(&gw, "GET", "/config/export", &[("Host", &host)], "");
    assert_json_error(&r, 401, "unauthorized");
    let r = admin(&gw, "GET", "/config/export", &[("Host", &host), ("Authorization", &bearer)], "");
    assert_eq!(r.status, 200, "{}", r.text());
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let lower = format!("bearer {token}");
    let r = admin(&gw, "GET", "/config/export", &[("Host", &host), ("Authorization", &lower)], "");
    assert_eq!(r.status, 200, "{}", r.text());

    // Defence in depth: a leaked token in a rebound or cross-site page is still refused.
    let r = admin(&gw, "GET", "/config/export", &[("Host", "rebind.example:9901"), ("Authorization", &bearer)], "");
    assert_json_error(&r, 421, "misdirected_request");
    let r = admin(
        &gw,
        "POST",
        "/config/import",
        &[
            ("Host", &host),
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_json_error(&r, 403, "cross_origin");
    assert!(export_with(&gw, &bearer).contains("echo"), "nothing changed");
    // Health, readiness and metrics stay open.
    assert_eq!(http_get(gw.admin, "/healthz").status, 200);
}

fn export_with(gw: &Gateway, bearer: &str) -> String {
    let host = own_host(gw);
    let r = admin(gw, "GET", "/config/export", &[("Host", &host), ("Authorization", bearer)], "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}
