//! `[services.X.mock]` and `wasp dev` over real sockets: mock answers (JSON,
//! file, text, HEAD, unmatched), mocks only where no instance is configured
//! (outside dev mode), response filters on mock answers; dev mode's
//! `--override` (flag and variable), `--fallback` to a second wasp playing
//! the remote gateway, and the console line per request.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

fn get(addr: std::net::SocketAddr, path: &str) -> Resp {
    http_get(addr, path)
}

const PRICING: &str = r#"
[services.pricing.mock]
routes = [
  { method = "GET", path = "/price/*", status = 200, json = { price = 42, currency = "EUR" } },
  { method = "POST", path = "/orders", status = 201, body = "created", headers = { location = "/orders/1" } },
  { path = "/page", file = "mocks/page.html" },
  { path = "/teapot", status = 418, content_type = "application/problem+json", json = { title = "teapot" } },
]
"#;

fn mock_gateway(extra: &str) -> Gateway {
    let dir = temp_dir("mock");
    std::fs::create_dir_all(dir.join("mocks")).unwrap();
    std::fs::write(dir.join("mocks/page.html"), "<h1>mock page</h1>").unwrap();
    let path = dir.join("wasp.toml");
    std::fs::write(&path, format!("[server]\nworkers = 1\n{PRICING}{extra}")).unwrap();
    let mut cmd = Command::new(wasp_bin());
    cmd.args(["serve", "--config"]).arg(&path).args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    Gateway::spawn(cmd, path, &[])
}

#[test]
fn a_mock_answers_from_its_routes_and_says_so_when_none_matches() {
    let gw = mock_gateway("");
    let r = get(gw.public, "/pricing/price/7?x=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(r.header("x-wasp-mock").as_deref(), Some("pricing"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({"price": 42, "currency": "EUR"}));
    // HEAD answers like the GET route, without a body.
    let r = raw(gw.public, b"HEAD /pricing/price/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 0));
    // Method matters; headers and text bodies.
    let r =
        raw(gw.public, b"POST /pricing/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), "created");
    assert_eq!(r.header("location").as_deref(), Some("/orders/1"));
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain; charset=utf-8"));
    // A file, relative to the config file, its type from its extension.
    let r = get(gw.public, "/pricing/page");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>mock page</h1>"));
    assert_eq!(r.header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    // content_type wins.
    let r = get(gw.public, "/pricing/teapot");
    assert_eq!(r.status, 418);
    assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"));
    // Unmatched: a JSON 404 that says it is a mock.
    for path in ["/pricing/orders", "/pricing/price", "/pricing/PRICE/7"] {
        let r = get(gw.public, path);
        assert_eq!(r.status, 404, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "no_mock_route", "{path}");
        assert!(v["message"].as_str().unwrap().contains("mock of service \"pricing\""), "{v}");
    }
}

#[test]
fn a_mock_answers_keep_alive_requests_in_order_and_a_body_it_did_not_read_closes() {
    let gw = mock_gateway("");
    // Two requests pipelined on one connection: two answers, in order.
    let mut s = connect(gw.public);
    use std::io::Write;
    s.write_all(b"GET /pricing/price/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /pricing/page HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let a = read_response(&mut s, &mut buf, false).unwrap();
    let b = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!((a.status, b.status), (200, 200));
    assert!(b.text().contains("mock page"));
    // A body the mock does not read: answered, then the connection closes
    // (the next bytes would be body, not a request).
    let mut s = connect(gw.public);
    s.write_all(b"POST /pricing/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
}

#[test]
fn outside_dev_mode_a_mock_stands_in_only_for_a_service_without_instances() {
    let origin = Origin::start(|_| Reply::Raw(ok_response(b"real")));
    let gw = mock_gateway(&format!(
        "[services.shop]\ninstances = [\"{}\"]\n[services.shop.mock]\nroutes = [{{ path = \"/*\", body = \"mocked\" }}]\n\
         [[services.pricing.filters]]\nkind = \"response_headers\"\nset = {{ x-seen = \"yes\" }}\n",
        origin.addr
    ));
    assert_eq!(get(gw.public, "/shop/x").text(), "real");
    // Response filters run on the mock's answers too.
    let r = get(gw.public, "/pricing/price/1");
    assert_eq!(r.header("x-seen").as_deref(), Some("yes"), "{}", r.head);
}

#[test]
fn mock_settings_are_checked_naming_the_key() {
    let dir = temp_dir("mock-check");
    let p = dir.join("c.toml");
    for (mock, key) in [
        ("routes = [{ path = \"/x\", file = \"missing.json\" }]", "services.pricing.mock.routes.0.file"),
        ("routes = [{ path = \"x\" }]", "services.pricing.mock.routes.0.path"),
        ("routes = [{ status = 99 }]", "services.pricing.mock.routes.0.status"),
        ("routes = [{ status = 101 }]", "services.pricing.mock.routes.0.status"),
        ("routes = [{ json = 1, body = \"x\" }]", "give one of json, file and body"),
        ("routes = [{ headers = { content-length = \"5\" } }]", "services.pricing.mock.routes.0.headers"),
        ("routes = [{ headers = { \"a b\" = \"5\" } }]", "services.pricing.mock.routes.0.headers"),
        ("routes = [{ method = \"GE T\" }]", "services.pricing.mock.routes.0.method"),
        ("routes = [{ pth = \"/\" }]", "unknown field `pth`"),
    ] {
        std::fs::write(&p, format!("[services.pricing.mock]\n{mock}\n")).unwrap();
        let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{mock} -> want {key}: {err}");
    }
}

/// `wasp dev` on `config`, with `args` and `env`.
fn dev(config: &str, args: &[&str], env: &[(&str, &str)]) -> Gateway {
    let dir = temp_dir("dev");
    let path = dir.join("wasp.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(wasp_bin());
    cmd.args(["dev", "--config"]).arg(&path).args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    cmd.args(args);
    Gateway::spawn(cmd, path, env)
}

#[test]
fn dev_overrides_a_service_mocks_others_and_falls_back_to_another_gateway() {
    let local = Origin::start(|_| Reply::Raw(ok_response(b"local shop")));
    let local_pricing = Origin::start(|_| Reply::Raw(ok_response(b"local pricing")));
    let remote_billing = Origin::echo();
    // The remote gateway: a second wasp that knows billing and users.
    let remote = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.billing]\ninstances = [\"{0}\"]\n[services.users]\ninstances = [\"{0}\"]\n",
        remote_billing.addr
    ));
    let dead = dead_addr();
    let config = format!(
        "[server]\nworkers = 1\n[services.shop]\ninstances = [\"{dead}\"]\n[services.billing]\ninstances = [\"{dead}\"]\n\
         [[services.billing.filters]]\nkind = \"headers\"\nset = {{ x-local-filter = \"ran\" }}\n\
         [services.pricing]\ninstances = [\"{dead}\"]\n[services.pricing.mock]\nroutes = [{{ path = \"/*\", json = {{ mock = true }} }}]\n\
         [services.catalog]\n[services.catalog.mock]\nroutes = [{{ path = \"/*\", json = {{ catalog = \"mock\" }} }}]\n"
    );
    let fallback = format!("http://{}", remote.public);
    let gw = dev(
        &config,
        &["--override", &format!("shop={}", local.addr), "--fallback", &fallback],
        &[("WASP_OVERRIDE_PRICING", &local_pricing.addr.to_string())],
    );
    // Overridden by flag and by variable (the variable beats the mock).
    assert_eq!(get(gw.public, "/shop/cart").text(), "local shop");
    assert_eq!(get(gw.public, "/pricing/p/1").text(), "local pricing");
    // Mocked, not overridden: the mock.
    let r = get(gw.public, "/catalog/items");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["catalog"], "mock");
    // Neither: to the other gateway as /billing/..., query kept; its own
    // filters are the remote gateway's business, not run here.
    let r = get(gw.public, "/billing/invoices/9?year=2026");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = remote_billing.last();
    assert_eq!(seen.request_line(), "GET /invoices/9?year=2026 HTTP/1.1");
    assert_eq!(seen.header("x-local-filter"), None);
    // A name the local config does not know: to the other gateway too.
    assert_eq!(get(gw.public, "/users/me").status, 200);
    assert_eq!(remote_billing.last().request_line(), "GET /me HTTP/1.1");
    // Unknown to both: the remote gateway's own 404 comes back.
    let r = get(gw.public, "/nowhere/x");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("unknown_service"), "{}", r.text());

    // A console line per request saying where it went.
    for want in ["override", "mock", "fallback", "/billing/invoices/9?year=2026", &fallback] {
        assert!(
            gw.wait_log(want, Duration::from_secs(3)),
            "no console line with {want:?}: {:#?}",
            gw.logs.lock().unwrap()
        );
    }
    // The production store was not touched: dev mode uses memory.
    assert!(gw.log_contains("override") && !gw.log_contains("wasp::access"));
}

#[test]
fn dev_refuses_overrides_it_cannot_honour() {
    let dir = temp_dir("dev-bad");
    let p = dir.join("c.toml");
    std::fs::write(&p, "[services.shop]\ninstances = [\"127.0.0.1:9\"]\n").unwrap();
    for (args, want) in [
        (vec!["--override", "nope=127.0.0.1:3000"], "no service \"nope\""),
        (vec!["--override", "shop"], "SERVICE=HOST:PORT"),
        (vec!["--override", "shop=no-such-host.invalid:1"], "not a resolvable"),
        (vec!["--fallback", "https://x:1"], "http:// URL"),
    ] {
        let out = Command::new(wasp_bin())
            .args(["dev", "--config"])
            .arg(&p)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?} -> want {want}: {err}");
    }
}

#[test]
fn the_built_in_default_shows_a_mock_an_echo_endpoint_and_the_push_api() {
    let mut cmd = Command::new(wasp_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--workers", "1"]);
    let gw = Gateway::spawn(cmd, std::path::PathBuf::from("(built-in)"), &[]);
    let r = get(gw.public, "/demo/hello");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["message"], "hello from wasp");
    assert_eq!(get(gw.public, "/demo/nothing-here").status, 404);
    let mut ws = common::ws::WsClient::connect(gw.public, "/ws/echo");
    ws.send_text("{\"a\":1}");
    assert_eq!(ws.recv_text(), "{\"a\":1}");
    let push = "{\"hello\":\"from the push API\"}";
    let r = raw(
        gw.admin,
        format!(
            "POST /endpoints/echo/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{push}",
            push.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ws.recv_text(), push);
}

#[test]
fn every_file_in_config_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
            assert!(out.status.success(), "{}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 2, "default.toml and example.toml at least");
}

#[test]
fn a_mock_can_stand_in_for_a_slow_service_without_holding_the_worker() {
    let gw = Gateway::start(
        "[server]\nworkers = 1\n[services.slow.mock]\nroutes = [{ path = \"/slow\", body = \"late\", delay = \"400ms\" }, { path = \"/fast\", body = \"now\" }]\n",
    );
    let public = gw.public;
    let started = std::time::Instant::now();
    let slow = std::thread::spawn(move || (get(public, "/slow/slow").text(), std::time::Instant::now()));
    std::thread::sleep(Duration::from_millis(50));
    // The one worker answers another request meanwhile.
    assert_eq!(get(gw.public, "/slow/fast").text(), "now");
    let fast_done = started.elapsed();
    let (text, at) = slow.join().unwrap();
    assert_eq!(text, "late");
    assert!(at.duration_since(started) >= Duration::from_millis(400));
    assert!(fast_done < Duration::from_millis(350), "the worker was held: {fast_done:?}");
    let dir = temp_dir("mock-delay");
    let p = dir.join("c.toml");
    std::fs::write(&p, "[services.s.mock]\nroutes = [{ delay = \"2m\" }]\n").unwrap();
    let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.s.mock.routes.0.delay"));
}
