//! The built-in filters over real sockets: each test states the bytes a
//! client sends and the exact answer it gets, and what the service saw.

mod common;
use common::*;
use std::io::Write;
use std::time::Duration;

/// An echo origin as service `shop`, with `filters` (TOML) under it.
fn gateway(filters: &str, extra: &str) -> (Origin, Gateway) {
    let o = Origin::echo();
    let cfg = format!("{}{filters}\n", config_with(&[("shop", vec![o.addr])], extra));
    (o, Gateway::start(&cfg))
}

/// The whole answer to `bytes` on a new connection, head and body as text.
fn wire(gw: &Gateway, bytes: &str) -> String {
    let r = raw(gw.public, bytes.as_bytes());
    format!("{}{}", r.head, r.text())
}

fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\n{headers}Connection: close\r\n\r\n")
}

/// `403` for a request a filter refused, exactly.
fn forbidden(message: &str, extra_headers: &str) -> String {
    let body =
        format!(r#"{{"error":"forbidden","status":403,"message":"{message}","service":"shop","request_id":"r1"}}"#);
    format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\nx-request-id: r1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The names of the header lines the origin received, in order.
fn names(seen: &Seen) -> Vec<String> {
    seen.head.lines().skip(1).filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase())).collect()
}

#[test]
fn headers_sets_and_removes_request_headers() {
    let (o, gw) = gateway(
        "[[services.shop.filters]]\nkind = \"headers\"\nset = { \"X-Env\" = \"prod\", \"X-Team\" = \"a b\" }\nremove = [\"X-Debug\", \"Cookie\"]\n",
        "[headers]\nunderscores = \"allow\"\n",
    );
    let r = raw(
        gw.public,
        get("/shop/x", "X-Env: dev\r\nx-env: staging\r\nX-Debug: 1\r\nX_Debug: 2\r\nCookie: s=1\r\nX-Keep: k\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = o.last();
    assert_eq!(seen.headers_named("x-env"), 1, "set replaces every copy the client sent:\n{}", seen.head);
    assert_eq!(seen.header("x-env").as_deref(), Some("prod"));
    assert_eq!(seen.header("x-team").as_deref(), Some("a b"));
    assert_eq!(seen.header("x-keep").as_deref(), Some("k"));
    let n = names(&seen);
    for gone in ["x-debug", "x_debug", "cookie"] {
        assert!(!n.contains(&gone.to_string()), "{gone} was removed (also its `_` spelling):\n{}", seen.head);
    }
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "service=\"shop\",filter=\"headers\",action=\"changed\""), 1);
}

#[test]
fn response_headers_edit_the_answer_exactly() {
    let o = Origin::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nServer: apache/2.2 (leaky)\r\nCache-Control: max-age=60\r\nX-Powered-By: php\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let cfg = format!(
        "{}[[services.shop.filters]]\nkind = \"response_headers\"\nset = {{ \"Cache-Control\" = \"no-store\" }}\nremove = [\"Server\", \"X-Powered-By\"]\n",
        config_with(&[("shop", vec![o.addr])], "")
    );
    let gw = Gateway::start(&cfg);
    assert_eq!(
        wire(&gw, &get("/shop/", "")),
        "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nx-request-id: r1\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    // The gateway's own answers get them too: the service is gone now.
    let cfg2 = format!(
        "{}[[services.shop.filters]]\nkind = \"response_headers\"\nset = {{ \"Cache-Control\" = \"no-store\" }}\n",
        config_with(&[("shop", vec![dead_addr()])], "")
    );
    let gw2 = Gateway::start(&cfg2);
    let r = raw(gw2.public, get("/shop/", "").as_bytes());
    assert_eq!((r.status, r.header("cache-control").as_deref()), (503, Some("no-store")), "{}", r.head);
}

const CORS: &str = r#"[[services.shop.filters]]
kind = "block"
paths = ["/private/*"]
[[services.shop.filters]]
kind = "cors"
origins = ["https://app.example"]
methods = ["GET", "POST"]
headers = ["Content-Type", "Authorization"]
expose_headers = ["X-Total"]
credentials = true
max_age = "10m"
"#;

#[test]
fn cors_answers_a_preflight_itself() {
    let (o, gw) = gateway(CORS, "");
    let pre = "OPTIONS /shop/items HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n";
    assert_eq!(
        wire(&gw, pre),
        "HTTP/1.1 204 No Content\r\naccess-control-allow-origin: https://app.example\r\naccess-control-allow-credentials: true\r\naccess-control-allow-methods: GET, POST\r\naccess-control-allow-headers: Content-Type, Authorization\r\naccess-control-max-age: 600\r\nvary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\nx-request-id: r1\r\nconnection: close\r\n\r\n"
    );
    assert!(o.requests().is_empty(), "the service never sees a preflight");
    // Even for a path a later filter blocks: preflights are answered first.
    let pre_private = pre.replace("/shop/items", "/shop/private/x");
    assert!(wire(&gw, &pre_private).starts_with("HTTP/1.1 204 No Content\r\n"));
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "filter=\"cors\",action=\"answered\""), 2);
}

#[test]
fn cors_preflight_from_an_origin_not_allowed_is_refused_without_cors_headers() {
    let (o, gw) = gateway(CORS, "");
    for origin in ["https://evil.example", "https://app.example.evil.example", "http://app.example", "null"] {
        let pre = format!("OPTIONS /shop/items HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n");
        assert_eq!(
            wire(&gw, &pre),
            forbidden("CORS preflight from an origin this service does not allow", "vary: Origin\r\n"),
            "{origin}"
        );
    }
    assert!(o.requests().is_empty());
}

#[test]
fn cors_decorates_answers_for_allowed_origins_only() {
    let o = Origin::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\ncontent-length: 2\r\n\r\nok".to_vec())
    });
    let gw = Gateway::start(&format!("{}{CORS}", config_with(&[("shop", vec![o.addr])], "")));
    assert_eq!(
        wire(&gw, &get("/shop/items", "Origin: https://app.example\r\n")),
        "HTTP/1.1 200 OK\r\nvary: Origin\r\naccess-control-allow-origin: https://app.example\r\naccess-control-allow-credentials: true\r\naccess-control-expose-headers: X-Total\r\nx-request-id: r1\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    // Not allowed: no CORS header at all, the service's own `*` included.
    assert_eq!(
        wire(&gw, &get("/shop/items", "Origin: https://evil.example\r\n")),
        "HTTP/1.1 200 OK\r\nvary: Origin\r\nx-request-id: r1\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    // No Origin: not a CORS request.
    let r = raw(gw.public, get("/shop/items", "").as_bytes());
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
}

#[test]
fn cors_headers_stay_on_the_gateways_own_refusals() {
    let (o, gw) = gateway(CORS, "");
    assert_eq!(
        wire(&gw, &get("/shop/private/x", "Origin: https://app.example\r\n")),
        forbidden(
            "blocked by a filter of this service",
            "vary: Origin\r\naccess-control-allow-origin: https://app.example\r\naccess-control-allow-credentials: true\r\naccess-control-expose-headers: X-Total\r\n"
        )
    );
    assert!(o.requests().is_empty());
    // And on a 503 when no instance answers.
    let gw2 = Gateway::start(&format!("{}{CORS}", config_with(&[("shop", vec![dead_addr()])], "")));
    let r = raw(gw2.public, get("/shop/x", "Origin: https://app.example\r\n").as_bytes());
    assert_eq!(
        (r.status, r.header("access-control-allow-origin").as_deref()),
        (503, Some("https://app.example")),
        "{}",
        r.head
    );
}

#[test]
fn cors_any_origin_without_credentials_answers_star() {
    let (_o, gw) = gateway("[[services.shop.filters]]\nkind = \"cors\"\norigins = [\"*\"]\n", "");
    let r = raw(gw.public, get("/shop/", "Origin: https://whoever.example\r\n").as_bytes());
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some("*"), "{}", r.head);
    assert_eq!(r.header("access-control-allow-credentials"), None);
}

#[test]
fn block_refuses_when_every_condition_given_holds() {
    let (o, gw) = gateway(
        "[[services.shop.filters]]\nkind = \"block\"\nmethods = [\"TRACE\"]\n\
         [[services.shop.filters]]\nkind = \"block\"\nmethods = [\"POST\", \"DELETE\"]\npaths = [\"/admin/*\", \"/config\"]\n",
        "",
    );
    let req = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let blocked = forbidden("blocked by a filter of this service", "");
    // The first filter: TRACE anywhere, any case a lenient service would accept.
    assert_eq!(wire(&gw, &req("TRACE", "/shop/")), blocked);
    assert_eq!(wire(&gw, &req("trace", "/shop/x")), blocked);
    // The second: a listed method AND a listed path.
    for (m, p) in [
        ("POST", "/shop/admin"),
        ("POST", "/shop/admin/users"),
        ("DELETE", "/shop/config"),
        ("POST", "/shop/Admin/users"),
        ("POST", "/shop/%61dmin/users"),
        ("POST", "/shop/admin;jsessionid=1/users"),
        ("POST", "/shop/x/../admin/users"),
    ] {
        assert_eq!(wire(&gw, &req(m, p)), blocked, "{m} {p}");
    }
    assert!(o.requests().is_empty(), "nothing blocked reached the service");
    for (m, p) in [
        ("GET", "/shop/admin/users"),
        ("POST", "/shop/administrator"),
        ("POST", "/shop/config/x"),
        ("PUT", "/shop/admin"),
    ] {
        let r = raw(gw.public, req(m, p).as_bytes());
        assert_eq!(r.status, 200, "{m} {p} passes: {}", r.text());
    }
    assert_eq!(o.requests().len(), 4);
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "service=\"shop\",filter=\"block\",action=\"refused\""), 9);
}

#[test]
fn a_refused_request_without_body_keeps_the_connection() {
    let (o, gw) = gateway("[[services.shop.filters]]\nkind = \"block\"\npaths = [\"/no\"]\n", "");
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    s.write_all(b"GET /shop/no HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().status, 403);
    s.write_all(b"GET /shop/yes HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().status, 200);
    assert_eq!(o.requests().len(), 1);
    // With a body the client may still be sending: answered, then closed.
    let mut s = connect(gw.public);
    s.write_all(b"POST /shop/no HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!((r.status, r.header("connection").as_deref()), (403, Some("close")));
    assert!(closed(&mut s));
}

#[test]
fn allow_uses_the_client_address_through_trusted_proxies_only() {
    let filters = "[[services.shop.filters]]\nkind = \"allow\"\ncidrs = [\"10.0.0.0/8\"]\n";
    // Without trusted proxies: the peer (127.0.0.1) is the client; a
    // forwarded-for header proves nothing.
    let (o, gw) = gateway(filters, "");
    let refused = forbidden("not allowed by a filter of this service", "");
    assert_eq!(wire(&gw, &get("/shop/", "")), refused);
    assert_eq!(wire(&gw, &get("/shop/", "X-Forwarded-For: 10.1.2.3\r\n")), refused);
    assert!(o.requests().is_empty());
    // The peer is a trusted proxy: the right-most address it did not vouch for counts.
    let (o, gw) = gateway(filters, "trusted_proxies = [\"127.0.0.1\"]\n");
    assert_eq!(raw(gw.public, get("/shop/", "X-Forwarded-For: 10.1.2.3\r\n").as_bytes()).status, 200);
    assert_eq!(raw(gw.public, get("/shop/", "X-Forwarded-For: 10.1.2.3, 127.0.0.1\r\n").as_bytes()).status, 200);
    // A client cannot prepend its way in: 192.0.2.1 sent the header to the proxy.
    assert_eq!(wire(&gw, &get("/shop/", "X-Forwarded-For: 10.1.2.3, 192.0.2.1\r\n")), refused);
    assert_eq!(wire(&gw, &get("/shop/", "X-Forwarded-For: junk\r\n")), refused);
    assert_eq!(o.requests().len(), 2);
}

#[test]
fn allow_and_block_combine_as_documented() {
    // Allowed from loopback, but /internal/* is blocked for everyone.
    let (o, gw) = gateway(
        "[[services.shop.filters]]\nkind = \"allow\"\ncidrs = [\"127.0.0.1/32\", \"::1\"]\n\
         [[services.shop.filters]]\nkind = \"block\"\npaths = [\"/internal/*\"]\n",
        "",
    );
    assert_eq!(raw(gw.public, get("/shop/public", "").as_bytes()).status, 200);
    assert_eq!(wire(&gw, &get("/shop/internal/x", "")), forbidden("blocked by a filter of this service", ""));
    assert_eq!(o.requests().len(), 1);
}

#[test]
fn rewrite_keeps_the_query_string() {
    let (o, gw) = gateway("[[services.shop.filters]]\nkind = \"rewrite\"\npath = \"/v2{path}\"\n", "");
    for (sent, got) in [
        ("/shop/items?a=1&b=%20x", "GET /v2/items?a=1&b=%20x HTTP/1.1"),
        ("/shop/items", "GET /v2/items HTTP/1.1"),
        ("/shop/", "GET /v2/ HTTP/1.1"),
        ("/shop?q", "GET /v2/?q HTTP/1.1"),
        ("/shop/a/../b/./c?", "GET /v2/b/c? HTTP/1.1"),
    ] {
        assert_eq!(raw(gw.public, get(sent, "").as_bytes()).status, 200, "{sent}");
        assert_eq!(o.last().request_line(), got, "{sent}");
    }
}

#[test]
fn rewrite_into_a_directory_and_to_a_fixed_path() {
    let (o, gw) = gateway("[[services.shop.filters]]\nkind = \"rewrite\"\npath = \"/api/\"\n", "");
    assert_eq!(raw(gw.public, get("/shop/anything?x=1", "").as_bytes()).status, 200);
    assert_eq!(o.last().request_line(), "GET /api/?x=1 HTTP/1.1");
    let (o, gw) = gateway("[[services.shop.filters]]\nkind = \"rewrite\"\npath = \"/api/{path}.json\"\n", "");
    assert_eq!(raw(gw.public, get("/shop/users/1", "").as_bytes()).status, 200);
    assert_eq!(o.last().request_line(), "GET /api/users/1.json HTTP/1.1");
}

/// An admin API call; the answer's status and body.
fn admin(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = raw(
        gw.admin,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    (r.status, r.text())
}

#[test]
fn a_filter_change_applies_to_open_keep_alive_connections() {
    let (o, gw) = gateway("", "");
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    let ask = |s: &mut std::net::TcpStream, buf: &mut Vec<u8>| {
        s.write_all(b"GET /shop/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_response(s, buf, false).expect("answer")
    };
    assert_eq!(ask(&mut s, &mut buf).status, 200);
    assert_eq!(o.last().header("x-env"), None);
    let doc = format!(
        r#"{{"instances":["{}"],"filters":[{{"kind":"headers","set":{{"X-Env":"prod"}}}},{{"kind":"response_headers","set":{{"X-Filtered":"yes"}}}}]}}"#,
        o.addr
    );
    let (st, body) = admin(&gw, "PUT", "/services/shop", &doc);
    assert_eq!(st, 200, "{body}");
    // Same connection, next request: the new filters run.
    let r = ask(&mut s, &mut buf);
    assert_eq!((r.status, r.header("x-filtered").as_deref()), (200, Some("yes")));
    assert_eq!(o.last().header("x-env").as_deref(), Some("prod"));
    assert_eq!(o.last().conn, o.requests()[0].conn, "the client connection stayed open");
    // Versioned like the rest of the service: the diff shows the filters.
    let (st, diff) = admin(&gw, "GET", "/services/shop/diff?from=1&to=2", "");
    let diff: serde_json::Value = serde_json::from_str(&diff).unwrap();
    let d = diff["diff"].as_str().unwrap_or_default();
    assert!(st == 200 && d.contains("+") && d.contains("X-Env") && d.contains("response_headers"), "{diff}");
    // Removed again: gone on the same connection.
    let (st, _) = admin(&gw, "PUT", "/services/shop", &format!(r#"{{"instances":["{}"]}}"#, o.addr));
    assert_eq!(st, 200);
    let r = ask(&mut s, &mut buf);
    assert_eq!(r.header("x-filtered"), None);
    // And version 2 applied again: the filters return.
    let (st, body) = admin(&gw, "POST", "/services/shop/versions/2/apply", "");
    assert_eq!(st, 200, "{body}");
    let r = ask(&mut s, &mut buf);
    assert_eq!(r.header("x-filtered").as_deref(), Some("yes"));
}

#[test]
fn cors_star_with_credentials_is_refused_at_apply_with_its_pointer() {
    let (o, gw) = gateway("", "");
    let doc = format!(
        r#"{{"instances":["{}"],"filters":[{{"kind":"headers","set":{{"A":"1"}}}},{{"kind":"cors","origins":["*"],"credentials":true}}]}}"#,
        o.addr
    );
    let (st, body) = admin(&gw, "PUT", "/services/shop", &doc);
    assert_eq!(st, 422, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["pointer"], "/filters/1/origins/0", "the \"*\" itself: {body}");
    assert!(v["message"].as_str().unwrap().contains("credentials"), "{body}");
    // Nothing changed: the old version still serves, without filters.
    let r = raw(gw.public, get("/shop/", "Origin: https://x.example\r\n").as_bytes());
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
}

#[test]
fn bad_filter_configs_name_the_key() {
    let dir = temp_dir("filters-check");
    let cases = [
        ("kind = \"cors\"\norigins = [\"*\"]\ncredentials = true", "services.shop.filters.0.origins"),
        ("kind = \"headers\"\nset = { \"Content-Length\" = \"5\" }", "services.shop.filters.0.set"),
        ("kind = \"headers\"\nset = { \"X-Wasp-Route\" = \"x\" }", "services.shop.filters.0.set"),
        ("kind = \"response_headers\"\nremove = [\"Transfer-Encoding\"]", "services.shop.filters.0.remove"),
        ("kind = \"block\"", "services.shop.filters.0"),
        ("kind = \"block\"\npaths = [\"admin\"]", "services.shop.filters.0.paths"),
        ("kind = \"block\"\npaths = [\"/a*b\"]", "services.shop.filters.0.paths"),
        ("kind = \"allow\"\ncidrs = [\"10.0.0.0/33\"]", "services.shop.filters.0.cidrs"),
        ("kind = \"rewrite\"\npath = \"v2{path}\"", "services.shop.filters.0.path"),
        ("kind = \"rewrite\"\npath = \"/{path}{path}\"", "services.shop.filters.0.path"),
        ("kind = \"cors\"\norigins = [\"https://app.example/\"]", "services.shop.filters.0.origins"),
        ("kind = \"cors\"\norigins = [\"https://a.example\"]\nmax_age = \"2d\"", "services.shop.filters.0.max_age"),
        ("kind = \"teleport\"", "unknown variant `teleport`"),
        ("kind = \"cors\"\norigins = [\"https://a.example\"]\nset = { \"A\" = \"1\" }", "unknown field `set`"),
    ];
    for (i, (filter, key)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(
            &path,
            format!("[services.shop]\ninstances = [\"127.0.0.1:9\"]\n[[services.shop.filters]]\n{filter}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{filter:?} must be refused");
        assert!(err.contains(key), "{filter:?}: the message names {key}:\n{err}");
    }
}

#[test]
fn filters_never_see_requests_of_other_services() {
    let other = Origin::echo();
    let o = Origin::echo();
    let cfg = format!(
        "{}[[services.shop.filters]]\nkind = \"block\"\nmethods = [\"GET\"]\n",
        config_with(&[("shop", vec![o.addr]), ("other", vec![other.addr])], "")
    );
    let gw = Gateway::start(&cfg);
    assert_eq!(raw(gw.public, get("/shop/", "").as_bytes()).status, 403);
    assert_eq!(raw(gw.public, get("/other/", "").as_bytes()).status, 200);
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn method_conditions_cover_head_and_method_overrides() {
    let (o, gw) = gateway(
        "[[services.shop.filters]]\nkind = \"block\"\nmethods = [\"GET\", \"DELETE\"]\npaths = [\"/secret\"]\n",
        "",
    );
    let req = |m: &str, extra: &str| {
        format!("{m} /shop/secret HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    // HEAD is GET without a body: frameworks route it to the GET handler.
    assert_eq!(raw(gw.public, req("HEAD", "").as_bytes()).status, 403);
    // A POST that claims to be a DELETE, for frameworks that honour it.
    for h in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
        let r = raw(gw.public, req("POST", &format!("{h}: DELETE\r\n")).as_bytes());
        assert_eq!(r.status, 403, "{h}");
    }
    assert_eq!(raw(gw.public, req("POST", "").as_bytes()).status, 200);
    assert_eq!(o.requests().len(), 1);
    // An allow list is never wider than its methods: an override must be listed too.
    let (o, gw) = gateway("[[services.shop.filters]]\nkind = \"allow\"\nmethods = [\"GET\", \"POST\"]\n", "");
    assert_eq!(raw(gw.public, req("POST", "X-HTTP-Method-Override: DELETE\r\n").as_bytes()).status, 403);
    assert_eq!(raw(gw.public, req("POST", "X-HTTP-Method-Override: GET\r\n").as_bytes()).status, 200);
    assert_eq!(o.requests().len(), 1);
}

#[test]
fn a_too_large_body_for_a_filtered_service_gets_its_response_filters() {
    let (o, gw) = gateway(CORS, "[limits]\nmax_body_bytes = 1000\n");
    let r = raw(
        gw.public,
        b"POST /shop/upload HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\nContent-Length: 5000\r\n\r\n",
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some("https://app.example"), "{}", r.head);
    assert!(o.requests().is_empty());
}

#[test]
fn an_h2c_upgrade_is_forwarded_as_a_plain_request() {
    let (o, gw) = gateway("", "");
    let r = raw(
        gw.public,
        b"GET /shop/x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = o.last();
    assert_eq!((seen.header("upgrade"), seen.header("http2-settings"), seen.header("connection")), (None, None, None));
}
