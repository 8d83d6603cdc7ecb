//! The OAuth2 peer's own test (tests/common/oauth2.rs and
//! tests/peers/oauth2.mjs): every harness method against the real server, so a
//! gateway test that fails can trust the peer did what it was told.

#[path = "common/oauth2.rs"]
#[allow(dead_code)]
mod oauth2;

use oauth2::{decode_jwt, OAuth2Server};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn jwks_kids(s: &OAuth2Server) -> Vec<String> {
    s.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

#[test]
fn urls_and_discovery() {
    let s = OAuth2Server::start();
    assert_eq!(s.issuer(), format!("http://127.0.0.1:{}", s.port()));
    assert_eq!(s.jwks_url(), format!("{}/jwks", s.issuer()));
    assert_eq!(s.introspection_url(), format!("{}/introspect", s.issuer()));
    let (status, body) = s.request("GET", "/.well-known/openid-configuration", &[], b"");
    assert_eq!(status, 200);
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["issuer"], s.issuer());
    assert_eq!(d["jwks_uri"], s.jwks_url());
    assert_eq!(d["introspection_endpoint"], s.introspection_url());
    assert!(s.discovery_url().ends_with("/.well-known/openid-configuration"));
}

#[test]
fn tokens_for_each_algorithm() {
    let s = OAuth2Server::start();
    let kids = s.kids();
    let jwks = s.jwks();
    for (alg, kty) in [("RS256", "RSA"), ("ES256", "EC"), ("EdDSA", "OKP")] {
        let kid = kids[alg].as_str().unwrap();
        let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).expect("kid in /jwks");
        assert_eq!(key["kty"], kty);
        assert_eq!(key["alg"], alg);
        assert!(key.get("d").is_none(), "private part served: {key}");

        let t = s.token(
            alg,
            json!({"sub": "alice", "aud": "api", "scope": "read write", "scp": ["read", "write"], "email": "a@example.com"}),
            300,
        );
        let (h, p) = decode_jwt(&t);
        assert_eq!(h["alg"], alg);
        assert_eq!(h["kid"], kid);
        assert_eq!(h["typ"], "JWT");
        assert_eq!(p["iss"], s.issuer());
        assert_eq!(p["sub"], "alice");
        assert_eq!(p["aud"], "api");
        assert_eq!(p["scope"], "read write");
        assert_eq!(p["scp"], json!(["read", "write"]));
        assert_eq!(p["email"], "a@example.com");
        let iat = p["iat"].as_i64().unwrap();
        assert!((iat - now()).abs() < 60);
        assert_eq!(p["exp"].as_i64().unwrap(), iat + 300);
        assert_eq!(p["nbf"].as_i64().unwrap(), iat - 10);
    }
}

#[test]
fn claims_overridden_deleted_and_expired() {
    let s = OAuth2Server::start();
    let (_, p) = decode_jwt(&s.token("RS256", json!({"exp": null, "nbf": null, "iss": "https://other"}), 300));
    assert!(p.get("exp").is_none() && p.get("nbf").is_none(), "{p}");
    assert_eq!(p["iss"], "https://other");

    let (_, p) = decode_jwt(&s.token("ES256", json!({"aud": ["a", "b"], "nbf": now() + 3600}), -60));
    assert!(p["exp"].as_i64().unwrap() < now());
    assert_eq!(p["aud"], json!(["a", "b"]));

    let t = s.token_with_header("EdDSA", json!({"kid": null}), json!({}), 60);
    let (h, _) = decode_jwt(&t);
    assert!(h.get("kid").is_none(), "{h}");
    assert_eq!(h["alg"], "EdDSA");
    let (h, _) = decode_jwt(&s.token_with_header("RS256", json!({"kid": "nope"}), json!({}), 60));
    assert_eq!(h["kid"], "nope");
}

#[test]
fn rotation_replaces_the_kid() {
    let s = OAuth2Server::start();
    let before = s.kids();
    let old = before["RS256"].as_str().unwrap().to_string();
    assert!(jwks_kids(&s).contains(&old));
    let old_token = s.token("RS256", json!({"sub": "x"}), 300);

    let new = s.rotate("RS256");
    assert_ne!(new, old);
    let kids = jwks_kids(&s);
    assert!(kids.contains(&new) && !kids.contains(&old), "{kids:?}");
    assert_eq!(kids.len(), 3);
    let after = s.kids();
    assert_eq!(after["RS256"], new);
    assert_eq!(after["ES256"], before["ES256"]);
    assert_eq!(after["EdDSA"], before["EdDSA"]);
    assert_eq!(decode_jwt(&s.token("RS256", json!({}), 60)).0["kid"], new);
    // Tokens are still signed after rotation for the untouched algorithms.
    assert_eq!(decode_jwt(&s.token("ES256", json!({}), 60)).0["kid"], before["ES256"]);
    // The old token is still one this server issued.
    assert_eq!(s.introspect(&old_token, None).1["active"], true);
}

#[test]
fn introspection_and_deactivation() {
    let s = OAuth2Server::start();
    let t =
        s.token("ES256", json!({"sub": "bob", "scope": "read", "aud": "api", "client_id": "app", "email": "b@x"}), 300);
    let (status, v) = s.introspect(&t, Some(("gw", "s3cret")));
    assert_eq!(status, 200);
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], "bob");
    assert_eq!(v["scope"], "read");
    assert_eq!(v["aud"], "api");
    assert_eq!(v["client_id"], "app");
    assert_eq!(v["email"], "b@x");
    assert_eq!(v["iss"], s.issuer());
    assert!(v["exp"].as_i64().unwrap() > now());
    let st = s.stats();
    assert_eq!(st["introspect_auth"], "Basic Z3c6czNjcmV0"); // gw:s3cret
    assert_eq!(st["introspect_token"], t.as_str());

    s.deactivate(&t);
    assert_eq!(s.introspect(&t, None).1, json!({"active": false}));
    assert_eq!(s.introspect("garbage", None).1, json!({"active": false}));
    let expired = s.token("RS256", json!({}), -5);
    assert_eq!(s.introspect(&expired, None).1, json!({"active": false}));
    assert_eq!(s.stats()["introspect_auth"], Value::Null);

    // A token from the package's own /token endpoint introspects too, with
    // the client that asked for it.
    let form = b"grant_type=client_credentials&scope=read&aud=api";
    let headers = [
        ("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ("Authorization".to_string(), "Basic Y2xpOnNlYw==".to_string()), // cli:sec
    ];
    let (status, body) = s.request("POST", "/token", &headers, form);
    assert_eq!(status, 200, "{body}");
    let at = serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_string();
    let v = s.introspect(&at, None).1;
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "cli");
    assert_eq!(v["scope"], "read");
}

#[test]
fn counters_and_injected_failures() {
    let s = OAuth2Server::start();
    let st = s.stats();
    assert_eq!((st["jwks"].as_u64(), st["introspect"].as_u64()), (Some(0), Some(0)));
    s.jwks();
    s.jwks();
    s.introspect("x", None);
    let st = s.stats();
    assert_eq!((st["jwks"].as_u64(), st["introspect"].as_u64()), (Some(2), Some(1)));

    s.set_jwks_status(503);
    assert_eq!(s.request("GET", "/jwks", &[], b"").0, 503);
    s.set_jwks_status(0);
    assert_eq!(s.request("GET", "/jwks", &[], b"").0, 200);
    s.set_introspect_status(500);
    assert_eq!(s.introspect("x", None).0, 500);
    s.set_introspect_status(200);
    assert_eq!(s.introspect("x", None).0, 200);
    assert_eq!(s.stats()["jwks"], 4);
    assert_eq!(s.stats()["introspect"], 3);

    s.set_jwks_delay(300);
    let t0 = std::time::Instant::now();
    s.jwks();
    assert!(t0.elapsed() >= std::time::Duration::from_millis(290));
    s.set_jwks_delay(0);
    s.set_introspect_delay(200);
    let t0 = std::time::Instant::now();
    s.introspect("x", None);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(190));
    s.set_introspect_delay(0);

    s.reset_stats();
    assert_eq!(s.stats()["jwks"], 0);
}

#[test]
fn stop_closes_the_port() {
    let mut s = OAuth2Server::start();
    let port = s.port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    s.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    s.stop(); // twice is fine, and so is the drop after it
}
