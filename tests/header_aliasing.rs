//! Header aliasing over real sockets: names a CGI, WSGI or PHP-FPM backend
//! reads as another header (`X_Forwarded_For` and `X-Forwarded-For` both
//! become `HTTP_X_FORWARDED_FOR`), and the gateway's own `X-Wasp-*` names,
//! which clients may neither send to a service or an integration nor receive
//! from one. Each test states the bytes sent and what the peer may not see.

mod common;
use common::ws::{upgrade_raw, WsClient};
use common::*;
use std::io::Write;

/// An echo origin behind a gateway with `extra` config sections.
fn gateway(extra: &str) -> (Origin, Gateway) {
    let o = Origin::echo();
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], extra));
    (o, gw)
}

/// The names of the header lines the origin received.
fn names(seen: &Seen) -> Vec<String> {
    seen.head.lines().skip(1).filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase())).collect()
}

/// A request with `headers` (each `Name: value\r\n`) and a fixed request id.
fn request(headers: &str) -> Vec<u8> {
    format!("GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\n{headers}Connection: close\r\n\r\n").into_bytes()
}

/// The exact answer to a request refused for an underscored header name.
const UNDERSCORE_400: &str = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 139\r\nx-request-id: r1\r\nconnection: close\r\n\r\n{\"error\":\"bad_request\",\"status\":400,\"message\":\"a header name contains '_' (refused by headers.underscores = \\\"reject\\\")\",\"request_id\":\"r1\"}";

/// The whole answer to `bytes`, as text, read until the gateway closes.
fn wire(gw: &Gateway, bytes: &[u8]) -> String {
    let mut s = connect(gw.public);
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).expect("an answer");
    assert!(closed(&mut s), "the connection is closed after a refusal");
    format!("{}{}", r.head, r.text())
}

#[test]
fn an_underscored_header_name_is_refused_by_default() {
    let (o, gw) = gateway("");
    for h in ["X-Internal_User: admin\r\n", "x_forwarded_for: 1.2.3.4\r\n", "My_Header: 1\r\n", "_: 1\r\n"] {
        assert_eq!(wire(&gw, &request(h)), UNDERSCORE_400, "{h:?}");
    }
    assert!(o.requests().is_empty(), "none of these reached the service");
    let r = raw(gw.public, &request("X-Internal-User: admin\r\nX-Ok: 1\r\n"));
    assert_eq!(r.status, 200, "names without '_' still pass");
    let seen = o.last();
    assert_eq!((seen.header("x-internal-user"), seen.header("x-ok").as_deref()), (None, Some("1")));
}

#[test]
fn drop_removes_underscored_headers_before_the_service() {
    let (o, gw) = gateway("[headers]\nunderscores = \"drop\"\n");
    let r = raw(gw.public, &request("X-Internal_User: admin\r\nMy_Header: 1\r\nX-Ok: yes\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = o.last();
    assert!(names(&seen).iter().all(|n| !n.contains('_')), "{}", seen.head);
    assert_eq!(seen.header("x-internal-user"), None);
    assert_eq!(seen.header("x-ok").as_deref(), Some("yes"), "other headers pass");
}

#[test]
fn allow_forwards_underscores_but_protected_patterns_match_them_as_dashes() {
    let (o, gw) = gateway("[headers]\nunderscores = \"allow\"\n");
    let r = raw(gw.public, &request("X-Internal_User: admin\r\nx_internal_role: root\r\nMy_Header: 1\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = o.last();
    for name in ["x-internal_user", "x-internal-user", "x_internal_role", "x-internal-role"] {
        assert_eq!(seen.header(name), None, "{name} reached the service: {}", seen.head);
    }
    assert_eq!(seen.header("my_header").as_deref(), Some("1"), "allow forwards other underscored names");

    // A pattern written with '_' protects the dashed spelling too.
    let (o, gw) = gateway("[headers]\nunderscores = \"allow\"\nprotected = [\"db_password\"]\n");
    let r = raw(gw.public, &request("DB-Password: x\r\nDb_Password: y\r\n"));
    assert_eq!(r.status, 200);
    assert!(names(&o.last()).iter().all(|n| !n.starts_with("db")), "{}", o.last().head);
}

#[test]
fn forwarding_header_aliases_never_reach_the_service() {
    let aliases = "X_Forwarded_For: 1.2.3.4\r\nX_Forwarded_Host: evil.example\r\nX_Forwarded_Proto: https\r\nX_Request_Id: forged\r\n";
    let (o, gw) = gateway("");
    assert_eq!(wire(&gw, &request(aliases)), UNDERSCORE_400);
    assert!(o.requests().is_empty());

    // Allowed, the aliases are removed and the gateway's own values set; even
    // from a trusted proxy an alias is not read as the real header.
    for trusted in ["", "trusted_proxies = [\"127.0.0.1\"]\n"] {
        let extra = format!("{trusted}[headers]\nunderscores = \"allow\"\n");
        let o = Origin::echo();
        let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], &extra));
        assert_eq!(raw(gw.public, &request(aliases)).status, 200);
        let seen = o.last();
        assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"), "{}", seen.head);
        assert_eq!(seen.headers_named("x-forwarded-for"), 1);
        assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("t"));
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(seen.header("x-request-id").as_deref(), Some("r1"));
        assert!(names(&seen).iter().all(|n| !n.contains('_')), "{}", seen.head);
        assert!(!seen.head.contains("1.2.3.4") && !seen.head.contains("evil") && !seen.head.contains("forged"));
    }
}

#[test]
fn clients_cannot_send_x_wasp_headers_to_services() {
    // Even with the configurable protection emptied.
    let (o, gw) = gateway("[headers]\nprotected = []\n");
    let sent = "X-Wasp-Route: x\r\nX-Wasp-Connection-Id: y\r\nx-wasp-groups: admin\r\nX-Internal-User: u\r\n";
    let r = raw(gw.public, &request(sent));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = o.last();
    assert!(names(&seen).iter().all(|n| !n.starts_with("x-wasp")), "{}", seen.head);
    assert_eq!(seen.header("x-internal-user").as_deref(), Some("u"), "the list is empty: x-internal-* passes");

    // With underscores allowed, an alias of an X-Wasp-* name is removed too.
    let (o, gw) = gateway("[headers]\nprotected = []\nunderscores = \"allow\"\n");
    let r = raw(gw.public, &request("X_Wasp_Endpoint: z\r\nx-wasp_route: x\r\nMy_Header: 1\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = o.last();
    assert!(names(&seen).iter().all(|n| !n.starts_with("x-wasp") && !n.starts_with("x_wasp")), "{}", seen.head);
    assert_eq!(seen.header("my_header").as_deref(), Some("1"));
}

/// A backend for `$connect` (answers with groups) and one route.
fn integration_backend() -> Origin {
    Origin::start(|s| {
        if s.request_line().contains("/connect") {
            Reply::Raw(b"HTTP/1.1 200 OK\r\nx-wasp-groups: room1\r\ncontent-length: 0\r\n\r\n".to_vec())
        } else {
            Reply::Raw(ok_response(b"{\"ok\":true}"))
        }
    })
}

fn ws_config(b: &Origin) -> String {
    format!(
        "[server]\nworkers = 1\n[endpoints.chat]\npath = \"/ws/chat\"\nroute_selection = \"$.action\"\n\
         [endpoints.chat.routes.\"$connect\"]\nhttp = [\"http://{b}/connect\"]\n\
         [endpoints.chat.routes.send]\nhttp = [\"http://{b}/messages\"]\n",
        b = b.addr
    )
}

/// A GET on the admin listener, with a `Host` it answers to.
fn admin_get(gw: &Gateway, path: &str) -> Resp {
    raw(gw.admin, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
}

#[test]
fn clients_cannot_send_x_wasp_headers_to_integrations() {
    let b = integration_backend();
    let gw = Gateway::start(&ws_config(&b));
    // An underscored alias is refused before `$connect` is called.
    let (_s, head, _) = upgrade_raw(gw.public, "/ws/chat", "X_Wasp_Route: x\r\n");
    assert!(head.starts_with("HTTP/1.1 400 ") && head.contains("x-request-id: "), "{head}");
    assert!(b.requests().is_empty(), "$connect was called");
    let mut c = WsClient::connect_with(
        gw.public,
        "/ws/chat",
        "X-Wasp-Route: x\r\nX-Wasp-Connection-Id: y\r\nX-Wasp-Groups: admin\r\nX-Client: 7\r\n",
    );
    let connect = b.wait_for("/connect");
    let body = String::from_utf8_lossy(&connect.body).into_owned();
    assert!(body.contains(r#""x-client":"7""#), "{body}");
    assert!(!body.to_ascii_lowercase().contains("x-wasp"), "client X-Wasp-* in the $connect body: {body}");
    assert_eq!(connect.header("x-wasp-connection-id"), Some(c.id()));
    assert_eq!(connect.headers_named("x-wasp-route"), 1);
    assert_eq!(connect.header("x-wasp-route").as_deref(), Some("$connect"));

    c.send_text(r#"{"action":"send"}"#);
    let event = b.wait_for("/messages");
    assert_eq!(event.header("x-wasp-connection-id"), Some(c.id()));
    assert_eq!((event.headers_named("x-wasp-route"), event.header("x-wasp-route").as_deref()), (1, Some("send")));
    let info = admin_get(&gw, &format!("/connections/{}", c.id()));
    assert!(info.text().contains(r#""groups":["room1"]"#), "only $connect's groups: {}", info.text());
}

#[test]
fn services_cannot_send_x_wasp_headers_to_clients() {
    let o = Origin::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nX-Wasp-Anything: secret\r\ncontent-type: text/plain\r\nx-wasp-connection-id: forged\r\nX_Wasp_Route: y\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], "[headers]\nprotected = []\n"));
    let mut s = connect(gw.public);
    s.write_all(b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).expect("an answer");
    assert_eq!(
        format!("{}{}", r.head, r.text()),
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-request-id: r1\r\ncontent-length: 2\r\n\r\nok"
    );

    // A service's 101 on a proxied upgrade is filtered the same way.
    let o = Origin::start(|_| {
        Reply::Upgrade(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\nX-Wasp-Connection-Id: forged\r\n\r\n".to_vec())
    });
    let gw = Gateway::start(&config_with(&[("echo", vec![o.addr])], ""));
    let mut s = connect(gw.public);
    s.write_all(b"GET /echo/x HTTP/1.1\r\nHost: t\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).expect("an answer");
    assert_eq!(r.status, 101, "{}", r.head);
    assert!(!r.head.to_ascii_lowercase().contains("x-wasp"), "{}", r.head);
}

/// Not an attack: the filtering must not take the gateway's own headers.
#[test]
fn the_gateway_still_sends_its_own_wasp_headers_and_reads_groups() {
    let b = integration_backend();
    let gw = Gateway::start(&ws_config(&b));
    let (_s, head, _) = upgrade_raw(gw.public, "/ws/chat", "X-Wasp-Connection-Id: forged\r\n");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let ids: Vec<&str> = head.lines().filter_map(|l| l.strip_prefix("x-wasp-connection-id: ")).collect();
    assert_eq!(ids.len(), 1, "{head}");
    assert_ne!(ids[0], "forged");
    let info = admin_get(&gw, &format!("/connections/{}", ids[0]));
    assert_eq!(info.status, 200, "the id on the 101 is the connection's");
    assert!(info.text().contains(r#""groups":["room1"]"#), "groups from $connect: {}", info.text());
}

#[test]
fn a_bad_underscores_value_is_a_config_error_naming_the_key() {
    let dir = temp_dir("underscores");
    let path = dir.join("wasp.toml");
    std::fs::write(&path, "[headers]\nunderscores = \"sometimes\"\n").unwrap();
    let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"headers.underscores (line 2): "sometimes" is not one of "reject", "drop", "allow""#),
        "{err}"
    );
}
