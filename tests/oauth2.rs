//! OAuth2 over real sockets, against a real authorization server
//! (`oauth2-mock-server`, tests/common/oauth2.rs): JWTs verified against its
//! key set (RS256, ES256, EdDSA), RFC 7662 introspection, scopes, identity
//! headers, key rotation, a key server that goes down, and WebSocket
//! endpoints (header, query and subprotocol tokens, expiry and `$auth`).

mod common;
use base64::Engine;
use common::oauth2::OAuth2Server;
use common::ws::{upgrade_raw, WsClient};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn jwt_service(idp: &OAuth2Server, origin: std::net::SocketAddr, extra_auth: &str) -> String {
    format!(
        r#"[services.feed]
instances = ["{origin}"]
auth = {{ jwt = {{ jwks_url = "{jwks}", issuer = "{iss}", audience = "feed", algorithms = ["RS256", "ES256", "EdDSA"], leeway = "0s" }}{extra_auth} }}
[services.open]
instances = ["{origin}"]
"#,
        jwks = idp.jwks_url(),
        iss = idp.issuer(),
    )
}

fn get(gw: &Gateway, path: &str, token: Option<&str>) -> Resp {
    let h = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    raw(gw.public, format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{h}\r\n").as_bytes())
}

/// Claims for a token; a `jti` of its own, so two tokens made in the same
/// second with the same claims differ (RS256 signatures are deterministic).
fn claims(sub: &str, extra: Value) -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let jti = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut c = json!({"sub": sub, "aud": "feed", "scope": "feed:read", "jti": format!("t{jti}")});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn auth_metric(gw: &Gateway, method: &str, result: &str) -> u64 {
    metric(gw, "wasp_auth_total", &format!("method=\"{method}\",result=\"{result}\""))
}

#[test]
fn a_valid_token_of_each_algorithm_gets_in_and_the_service_learns_who() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = Gateway::start(&jwt_service(&idp, origin.addr, r#", claims = ["email", "tenant_id"]"#));
    for alg in ["RS256", "ES256", "EdDSA"] {
        let t = idp.token(alg, claims("user-1", json!({"email": "u1@example.com", "tenant_id": 42})), 300);
        let r = raw(
            gw.public,
            format!("GET /feed/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {t}\r\nX-Wasp-Subject: admin\r\nX-Wasp-Claim-Email: forged\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 200, "{alg}: {}", r.text());
        let seen = origin.last();
        assert_eq!(seen.header("x-wasp-subject").as_deref(), Some("user-1"), "{alg}");
        assert_eq!(seen.headers_named("x-wasp-subject"), 1, "a client's copy is gone");
        assert_eq!(seen.header("x-wasp-claim-email").as_deref(), Some("u1@example.com"));
        assert_eq!(seen.headers_named("x-wasp-claim-email"), 1);
        assert_eq!(seen.header("x-wasp-claim-tenant-id").as_deref(), Some("42"));
        assert_eq!(seen.header("authorization"), None, "the token is not forwarded");
    }
    assert_eq!(auth_metric(&gw, "jwt", "ok"), 3);
    let r = get(&gw, "/feed/x", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    assert!(r.text().contains(r#""error":"unauthorized""#), "{}", r.text());
    assert_eq!(get(&gw, "/open/x", None).status, 200, "a service without auth stays open");
    assert_eq!(auth_metric(&gw, "jwt", "missing"), 1);
}

#[test]
fn tokens_that_are_wrong_in_any_way_are_refused_with_their_reason_counted() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = Gateway::start(&jwt_service(&idp, origin.addr, ""));
    // Warm: the key set is fetched.
    assert_eq!(get(&gw, "/feed/x", Some(&idp.token("RS256", claims("u", json!({})), 300))).status, 200);
    let n = origin.requests().len();
    let t = now();
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", idp.token("RS256", claims("u", json!({})), -120), "expired"),
        ("not yet valid", idp.token("RS256", claims("u", json!({"nbf": t + 600})), 900), "not_yet_valid"),
        ("no exp", idp.token("RS256", claims("u", json!({"exp": null})), 300), "no_expiry"),
        ("wrong issuer", idp.token("RS256", claims("u", json!({"iss": "http://evil.example"})), 300), "wrong_issuer"),
        ("wrong audience", idp.token("RS256", claims("u", json!({"aud": "other"})), 300), "wrong_audience"),
        ("no audience", idp.token("RS256", claims("u", json!({"aud": null})), 300), "wrong_audience"),
        ("garbage", "not.a.jwt".to_string(), "malformed"),
    ];
    for (what, token, reason) in &cases {
        let before = auth_metric(&gw, "jwt", reason);
        let r = get(&gw, "/feed/x", Some(token));
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(auth_metric(&gw, "jwt", reason), before + 1, "{what} counted as {reason}");
    }
    // A signature that does not match: the payload of one token with the
    // signature of another.
    let a = idp.token("RS256", claims("u", json!({})), 300);
    let b = idp.token("RS256", claims("admin", json!({})), 300);
    let pa: Vec<&str> = a.split('.').collect();
    let pb: Vec<&str> = b.split('.').collect();
    let forged = format!("{}.{}.{}", pa[0], pb[1], pa[2]);
    assert_eq!(get(&gw, "/feed/x", Some(&forged)).status, 401);
    assert_eq!(auth_metric(&gw, "jwt", "bad_signature"), 1);

    // `alg: none`, unsigned, with a real kid.
    let kid = idp.kids()["RS256"].as_str().unwrap().to_string();
    let payload =
        b64(serde_json::to_string(&claims("admin", json!({"iss": idp.issuer(), "exp": t + 300}))).unwrap().as_bytes());
    let none = format!("{}.{payload}.", b64(format!(r#"{{"alg":"none","kid":"{kid}","typ":"JWT"}}"#).as_bytes()));
    assert_eq!(get(&gw, "/feed/x", Some(&none)).status, 401, "alg none");
    // HS256 signed with the RSA public key (as PEM-less JWK text and as n):
    // the classic key confusion.
    let jwks = idp.jwks();
    let rsa = jwks["keys"].as_array().unwrap().iter().find(|k| k["kty"] == "RSA").unwrap().clone();
    for secret in [rsa.to_string().into_bytes(), rsa["n"].as_str().unwrap().as_bytes().to_vec()] {
        use hmac::Mac;
        let head = b64(format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#).as_bytes());
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(format!("{head}.{payload}").as_bytes());
        let hs = format!("{head}.{payload}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(get(&gw, "/feed/x", Some(&hs)).status, 401, "HS256 with the public key");
    }
    assert_eq!(auth_metric(&gw, "jwt", "algorithm_not_allowed"), 2, "HS256 is refused before any key is used");
    assert!(auth_metric(&gw, "jwt", "malformed") >= 2, "alg none does not parse as an algorithm");
    assert_eq!(origin.requests().len(), n, "nothing refused reached the service");
}

#[test]
fn an_algorithm_the_configuration_does_not_list_is_refused() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let cfg = jwt_service(&idp, origin.addr, "").replace(r#"["RS256", "ES256", "EdDSA"]"#, r#"["RS256"]"#);
    let gw = Gateway::start(&cfg);
    assert_eq!(get(&gw, "/feed/x", Some(&idp.token("RS256", claims("u", json!({})), 300))).status, 200);
    let r = get(&gw, "/feed/x", Some(&idp.token("ES256", claims("u", json!({})), 300)));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(auth_metric(&gw, "jwt", "algorithm_not_allowed"), 1);
}

#[test]
fn scopes_are_required_per_service_from_scope_or_scp() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = Gateway::start(&jwt_service(&idp, origin.addr, r#", scopes = ["feed:read", "feed:list"]"#));
    let r = get(&gw, "/feed/x", Some(&idp.token("RS256", claims("u", json!({"scope": "feed:read"})), 300)));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains(r#""error":"insufficient_scope""#), "{}", r.text());
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(r#"Bearer error="insufficient_scope", scope="feed:read feed:list""#)
    );
    let t = idp.token("RS256", claims("u", json!({"scope": "feed:list other feed:read"})), 300);
    assert_eq!(get(&gw, "/feed/x", Some(&t)).status, 200);
    let t = idp.token("RS256", claims("u", json!({"scope": null, "scp": ["feed:read", "feed:list"]})), 300);
    assert_eq!(get(&gw, "/feed/x", Some(&t)).status, 200, "scp as an array");
    assert_eq!(auth_metric(&gw, "jwt", "insufficient_scope"), 1);
}

#[test]
fn a_rotated_key_is_fetched_once_and_made_up_kids_cannot_flood_the_key_server() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = Gateway::start(&format!("[server]\nworkers = 2\n{}", jwt_service(&idp, origin.addr, "")));
    assert_eq!(get(&gw, "/feed/x", Some(&idp.token("RS256", claims("u", json!({})), 300))).status, 200);
    // Early fetches are at most one per 10 s, the fetch at start included.
    std::thread::sleep(Duration::from_millis(10_500));
    let fetched = idp.stats()["jwks"].as_u64().unwrap();
    // The identity provider rotates: the first token of the new key waits for
    // one fetch and gets in.
    idp.rotate("RS256");
    let t = idp.token("RS256", claims("u", json!({})), 300);
    let started = Instant::now();
    let r = get(&gw, "/feed/x", Some(&t));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert_eq!(idp.stats()["jwks"].as_u64().unwrap(), fetched + 1);
    // 200 tokens with made-up kids within 10 s: at most one more fetch, and
    // none of them waits long.
    let head = b64(br#"{"alg":"RS256","kid":"made-up","typ":"JWT"}"#);
    let started = Instant::now();
    for i in 0..200 {
        let forged = format!("{head}.{}.c2ln", b64(format!(r#"{{"sub":"x{i}","exp":{}}}"#, now() + 60).as_bytes()));
        assert_eq!(get(&gw, "/feed/x", Some(&forged)).status, 401);
    }
    assert!(idp.stats()["jwks"].as_u64().unwrap() <= fetched + 2, "{}", idp.stats());
    assert!(started.elapsed() < Duration::from_secs(5), "refusals do not wait: {:?}", started.elapsed());
    assert!(auth_metric(&gw, "jwt", "unknown_key") >= 200);
}

#[test]
fn keys_already_fetched_keep_working_while_the_key_server_is_down_and_readyz_says_so() {
    let mut idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = Gateway::start(
        &jwt_service(&idp, origin.addr, r#""#).replace(r#"leeway = "0s""#, r#"leeway = "0s", jwks_cache = "10s""#),
    );
    let t = idp.token("ES256", claims("u", json!({})), 300);
    let t2 = idp.token("EdDSA", claims("v", json!({})), 300);
    assert_eq!(get(&gw, "/feed/x", Some(&t)).status, 200);
    idp.stop();
    // Past the key set's cache lifetime: its refresh fails, the keys stay.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(get(&gw, "/feed/x", Some(&t2)).status, 200, "a token never seen, verified with a kept key");
    assert_eq!(get(&gw, "/feed/x", Some(&t)).status, 200);
    let r = http_get(gw.admin, "/readyz");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    let s = &v["jwks"][idp.jwks_url()];
    assert_eq!(s["state"], "unreachable", "{v}");
    assert!(s["keys"].as_u64().unwrap() >= 3, "{v}");
    assert!(metric(&gw, "wasp_jwks_fetches_total", &format!("url=\"{}\",result=\"failed\"", idp.jwks_url())) >= 1);
}

#[test]
fn a_verified_token_is_remembered_only_until_it_expires() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = Gateway::start(&jwt_service(&idp, origin.addr, ""));
    let t = idp.token("RS256", claims("u", json!({})), 2);
    assert_eq!(get(&gw, "/feed/x", Some(&t)).status, 200);
    assert_eq!(get(&gw, "/feed/x", Some(&t)).status, 200);
    // `exp` is whole seconds: past it whatever the fraction.
    std::thread::sleep(Duration::from_millis(3500));
    let r = get(&gw, "/feed/x", Some(&t));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(auth_metric(&gw, "jwt", "expired"), 1);
}

fn introspection_service(idp: &OAuth2Server, origin: std::net::SocketAddr, cache: &str) -> String {
    format!(
        r#"[services.feed]
instances = ["{origin}"]
auth = {{ introspection = {{ url = "{url}", client_id = "wasp", client_secret_env = "WASP_TEST_INTROSPECTION_SECRET", cache = "{cache}" }}, claims = ["email"], scopes = ["feed:read"] }}
"#,
        url = idp.introspection_url(),
    )
}

#[test]
fn introspection_lets_active_tokens_in_remembers_answers_and_refuses_inactive_ones() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = Gateway::start_with(
        &introspection_service(&idp, origin.addr, "30s"),
        &[],
        &[("WASP_TEST_INTROSPECTION_SECRET", "s3cret:with&odd=chars")],
    );
    let t = idp.token("RS256", claims("user-9", json!({"email": "u9@example.com"})), 300);
    idp.reset_stats();
    for _ in 0..5 {
        let r = get(&gw, "/feed/x", Some(&t));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let seen = origin.last();
    assert_eq!(seen.header("x-wasp-subject").as_deref(), Some("user-9"));
    assert_eq!(seen.header("x-wasp-claim-email").as_deref(), Some("u9@example.com"));
    let stats = idp.stats();
    // Each worker remembers its own answers: one call per worker at most.
    assert!(stats["introspect"].as_u64().unwrap() <= 2, "five requests, two workers: {stats}");
    // RFC 6749 2.3.1: id and secret form-encoded, then Basic.
    let basic = base64::engine::general_purpose::STANDARD.encode("wasp:s3cret%3Awith%26odd%3Dchars");
    assert_eq!(stats["introspect_auth"], format!("Basic {basic}"), "{stats}");

    let inactive = idp.token("RS256", claims("user-9", json!({})), 300);
    idp.deactivate(&inactive);
    let r = get(&gw, "/feed/x", Some(&inactive));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("not active"), "{}", r.text());
    assert_eq!(get(&gw, "/feed/x", Some("garbage")).status, 401);
    let no_scope = idp.token("RS256", claims("user-9", json!({"scope": "other"})), 300);
    assert_eq!(get(&gw, "/feed/x", Some(&no_scope)).status, 403);
    assert_eq!(auth_metric(&gw, "introspection", "inactive"), 2);
    assert_eq!(auth_metric(&gw, "introspection", "ok"), 5);
}

#[test]
fn an_introspection_server_that_is_down_gets_503_and_is_named_in_readyz() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    // One worker: answers are remembered per worker.
    let gw = Gateway::start_with(
        &format!("[server]\nworkers = 1\n{}", introspection_service(&idp, origin.addr, "30s")),
        &[],
        &[("WASP_TEST_INTROSPECTION_SECRET", "s")],
    );
    let known = idp.token("RS256", claims("u", json!({})), 300);
    assert_eq!(get(&gw, "/feed/x", Some(&known)).status, 200);
    idp.set_introspect_status(503);
    let fresh = idp.token("RS256", claims("u", json!({})), 300);
    let r = get(&gw, "/feed/x", Some(&fresh));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains(r#""error":"auth_unavailable""#), "{}", r.text());
    assert_eq!(get(&gw, "/feed/x", Some(&known)).status, 200, "a remembered answer keeps working");
    let r = http_get(gw.admin, "/readyz");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(v["introspection"][idp.introspection_url()]["state"], "unreachable", "{v}");
    // A slow server: the request waits at most 2 s, then 503.
    idp.set_introspect_status(200);
    idp.set_introspect_delay(5000);
    let started = Instant::now();
    let slow = idp.token("RS256", claims("u", json!({})), 300);
    assert_eq!(get(&gw, "/feed/x", Some(&slow)).status, 503);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

fn ws_gateway(idp: &OAuth2Server, origin: std::net::SocketAddr, grace: &str) -> Gateway {
    Gateway::start(&format!(
        r#"[endpoints.feed]
path = "/ws/feed"
auth = {{ jwt = {{ jwks_url = "{jwks}", issuer = "{iss}", audience = "feed", algorithms = ["RS256"], leeway = "0s", query = "access_token" }}, claims = ["email"], expiry_grace = "{grace}" }}
[endpoints.feed.routes."$connect"]
http = ["http://{origin}/connect"]
[endpoints.feed.routes.publish]
match = {{ "$.type" = "publish" }}
http = ["http://{origin}/publish"]
scopes = ["feed:write"]
[endpoints.feed.routes."$default"]
http = ["http://{origin}/events"]
"#,
        jwks = idp.jwks_url(),
        iss = idp.issuer(),
    ))
}

#[test]
fn a_websocket_takes_its_token_from_a_header_the_query_or_a_subprotocol() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = ws_gateway(&idp, origin.addr, "30s");
    let t = idp.token("RS256", claims("user-1", json!({"email": "u1@example.com"})), 300);

    let (_, head, _) = upgrade_raw(gw.public, "/ws/feed", "");
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
    let (_, head, _) = upgrade_raw(gw.public, "/ws/feed", "Authorization: Bearer nope\r\n");
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(origin.requests().is_empty(), "$connect is not called for a refused upgrade");

    // A browser: the token as a subprotocol beside `wasp`, answered `wasp`.
    let (_, head, _) =
        upgrade_raw(gw.public, "/ws/feed", &format!("Sec-WebSocket-Protocol: wasp, wasp.bearer.{t}\r\n"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\nsec-websocket-protocol: wasp\r\n"), "{head}");
    let connect = origin.wait_for("/connect");
    let body = String::from_utf8_lossy(&connect.body).into_owned();
    assert!(!body.contains(&t), "the token never reaches $connect: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["identity"]["subject"], "user-1", "{v}");
    assert_eq!(v["identity"]["method"], "jwt", "{v}");
    assert_eq!(v["identity"]["claims"]["email"], "u1@example.com", "{v}");
    assert_eq!(v["headers"]["sec-websocket-protocol"], "wasp", "{v}");
    assert_eq!(connect.header("x-wasp-subject").as_deref(), Some("user-1"));

    // The query, and the header.
    let mut ws = WsClient::connect(gw.public, &format!("/ws/feed?room=2&access_token={t}"));
    let connect = origin.requests().into_iter().rev().find(|s| s.request_line().contains("/connect")).unwrap();
    let body = String::from_utf8_lossy(&connect.body).into_owned();
    assert!(body.contains(r#""query":"room=2""#) && !body.contains(&t), "{body}");
    ws.send_text(r#"{"type":"hello"}"#);
    let ev = origin.wait_for("/events");
    assert_eq!(ev.header("x-wasp-subject").as_deref(), Some("user-1"));
    assert_eq!(ev.header("x-wasp-claim-email").as_deref(), Some("u1@example.com"));
    let _ws2 = WsClient::connect_with(gw.public, "/ws/feed", &format!("Authorization: Bearer {t}\r\n"));
}

#[test]
fn a_route_names_the_scope_it_needs_in_an_error_event() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = ws_gateway(&idp, origin.addr, "30s");
    let reader = idp.token("RS256", claims("user-1", json!({"scope": "feed:read"})), 300);
    let mut ws = WsClient::connect_with(gw.public, "/ws/feed", &format!("Authorization: Bearer {reader}\r\n"));
    ws.send_text(r#"{"type":"publish","text":"hi"}"#);
    let ev: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ev["error"], "insufficient_scope", "{ev}");
    assert_eq!(ev["route"], "publish", "{ev}");
    assert!(ev["message"].as_str().unwrap().contains("feed:write"), "{ev}");
    assert!(origin.requests().iter().all(|s| !s.request_line().contains("/publish")));
    let writer = idp.token("RS256", claims("user-1", json!({"scope": "feed:read feed:write"})), 300);
    let mut ws = WsClient::connect_with(gw.public, "/ws/feed", &format!("Authorization: Bearer {writer}\r\n"));
    ws.send_text(r#"{"type":"publish","text":"hi"}"#);
    origin.wait_for("/publish");
}

#[test]
fn an_expired_token_closes_its_connection_after_the_grace_unless_renewed() {
    let idp = OAuth2Server::start();
    let origin = Origin::echo();
    let gw = ws_gateway(&idp, origin.addr, "1s");
    // Left to expire: an error event, then 1008 after the grace.
    let short = idp.token("RS256", claims("user-1", json!({})), 2);
    let mut ws = WsClient::connect_with(gw.public, "/ws/feed", &format!("Authorization: Bearer {short}\r\n"));
    let ev: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ev["error"], "token_expired", "{ev}");
    assert_eq!(ev["grace_ms"], 1000, "{ev}");
    ws.send_text(r#"{"type":"hello"}"#);
    let ev: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ev["error"], "token_expired", "an expired connection's events do not go through: {ev}");
    assert_eq!(ws.recv_close(), Some(1008));
    assert!(origin.requests().iter().all(|s| !s.request_line().contains("/events")));

    // Renewed in time with a token for the same subject: it stays.
    let short = idp.token("RS256", claims("user-2", json!({})), 2);
    let mut ws = WsClient::connect_with(gw.public, "/ws/feed", &format!("Authorization: Bearer {short}\r\n"));
    let other = idp.token("RS256", claims("someone-else", json!({})), 300);
    ws.send_text(&format!(r#"{{"action":"$auth","token":"{other}"}}"#));
    let ev: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ev["error"], "auth_failed", "another subject's token does not take over: {ev}");
    let fresh = idp.token("RS256", claims("user-2", json!({})), 300);
    ws.send_text(&format!(r#"{{"action":"$auth","token":"{fresh}"}}"#));
    let ev: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ev["type"], "auth", "{ev}");
    assert!(ev["expires_at"].as_i64().unwrap() > now() + 200, "{ev}");
    std::thread::sleep(Duration::from_secs(4));
    ws.send_text(r#"{"type":"hello"}"#);
    let seen = origin.wait_for("/events");
    assert_eq!(seen.header("x-wasp-subject").as_deref(), Some("user-2"));
}

#[test]
fn oauth2_settings_are_validated_naming_the_key() {
    let bad = [
        (
            r#"auth = { jwt = { jwks_url = "http://127.0.0.1:1/jwks", algorithms = ["HS256"] } }"#,
            "services.s.auth.jwt.algorithms",
        ),
        (
            r#"auth = { jwt = { jwks_url = "http://127.0.0.1:1/jwks", algorithms = ["none"] } }"#,
            "services.s.auth.jwt.algorithms",
        ),
        (r#"auth = { jwt = { jwks_url = "ftp://x/jwks" } }"#, "services.s.auth.jwt.jwks_url"),
        (r#"auth = { jwt = { jwks_url = "http://u:p@x/jwks" } }"#, "services.s.auth.jwt.jwks_url"),
        (r#"auth = { jwt = { jwks_url = "http://x/jwks", jwks_cache = "0s" } }"#, "services.s.auth.jwt.jwks_cache"),
        (r#"auth = { jwt = { jwks_url = "http://x/jwks", leeway = "1h" } }"#, "services.s.auth.jwt.leeway"),
        (r#"auth = { introspection = { url = "http://x/i", client_id = "a" } }"#, "client_secret_env"),
        (
            r#"auth = { introspection = { url = "http://x/i", client_id = "a", client_secret_env = "S", cache_entries = 0 } }"#,
            "cache_entries",
        ),
        (r#"auth = { jwt = { jwks_url = "http://x/jwks" }, api_key = {} }"#, "name one method"),
        (r#"auth = { api_key = {}, claims = ["email"] }"#, "services.s.auth.claims"),
        (r#"auth = { jwt = { jwks_url = "http://x/jwks" }, claims = ["a b"] }"#, "services.s.auth.claims"),
    ];
    for (auth, needle) in bad {
        let dir = temp_dir("oauth-cfg");
        let path = dir.join("wasp.toml");
        std::fs::write(&path, format!("[services.s]\ninstances = [\"127.0.0.1:9\"]\n{auth}\n")).unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{auth}: accepted");
        assert!(text.contains(needle), "{auth}: {text}");
    }
}

#[test]
fn the_example_auth_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/auth.toml");
    let out = std::process::Command::new(wasp_bin()).args(["check", "--config", path]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
