//! What OAuth2 costs on the request path, without I/O:
//!
//! - `request_head_jwt/open` vs `request_head_jwt/cache_hit`: the whole
//!   request-head phase (parse, route, filters, upstream head) for a service
//!   without auth and for one with `auth = { jwt = … }` whose token this
//!   worker has verified before (the path every request after the first
//!   takes): the difference is the auth filter's cost per request.
//! - `jwt_first_verification/{RS256,ES256,EdDSA}`: a token seen for the
//!   first time (header, key choice, signature, claims), once per token and
//!   worker.
//!
//! The keys in `benches/keys/` were made for this benchmark only
//! (`openssl genpkey`); nothing trusts them. Run: `cargo bench --bench auth`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use std::sync::Arc;
use wasp::auth::cache::{self, Verdict};
use wasp::auth::jwks::{Family, Key, KeySet};
use wasp::auth::{jwt, Identity};
use wasp::config::auth::{Auth, JwtAuth};
use wasp::config::Config;
use wasp::metrics::Registry;
use wasp::pipeline::http::request::{prepare, ClientInfo};
use wasp::pipeline::snapshot::Snapshot;
use wasp::proto::http1::inline::IdGen;

fn head(service: &str, token: &str) -> String {
    format!(
        "GET /{service}/api/v1/users/42?fields=name,email HTTP/1.1\r\n\
Host: gw.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer {token}\r\n\
Connection: keep-alive\r\n\r\n"
    )
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn claims() -> serde_json::Value {
    serde_json::json!({"sub": "user-1", "iss": "https://idp.example", "aud": "feed", "exp": now() + 3600,
        "scope": "feed:read feed:write", "email": "u1@example.com"})
}

fn sign(alg: Algorithm, pem: &[u8], kid: &str) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
        _ => EncodingKey::from_ed_pem(pem),
    }
    .expect("bench key");
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims(), &key).expect("sign")
}

fn bench(c: &mut Criterion) {
    let cfg = Config::from_toml(
        "[services.open]\ninstances = [\"127.0.0.1:9001\"]\n\
         [services.feed]\ninstances = [\"127.0.0.1:9001\"]\n\
         auth = { jwt = { jwks_url = \"https://idp.example/jwks\", issuer = \"https://idp.example\", audience = \"feed\" }, scopes = [\"feed:read\"], claims = [\"email\"] }\n",
        "bench",
    )
    .expect("bench config");
    let snap = Snapshot::build(1, cfg.gateway, &Registry::new(1));
    let client = ClientInfo::new("10.1.2.3".parse().expect("ip"));
    let ids = IdGen::new(7);
    let mut out = Vec::with_capacity(4096);

    let rs_token = sign(Algorithm::RS256, include_bytes!("keys/rs256.pem"), "rs");
    // The token this worker verified before: what the filter finds.
    let Some(Auth::Bearer(b)) = snap.gateway.services.iter().find(|s| s.name == "feed").map(|s| s.auth.clone()) else {
        panic!("feed has jwt auth")
    };
    let claims = claims();
    let id = Identity::from_claims(wasp::auth::Method::Jwt, claims.as_object().expect("claims"), &["email".into()]);
    let ms = now() * 1000;
    cache::put(b.id, &rs_token, Verdict::Ok(Arc::new(id)), ms + 3_600_000, 10_000, ms);
    let open = head("open", &rs_token);
    let feed = head("feed", &rs_token);
    assert!(matches!(prepare(feed.as_bytes(), &snap, &client, &ids, &mut out), Ok(Some(_))));

    let mut g = c.benchmark_group("request_head_jwt");
    g.bench_function("open", |bn| {
        bn.iter(|| black_box(prepare(black_box(open.as_bytes()), &snap, &client, &ids, &mut out).is_ok()))
    });
    g.bench_function("cache_hit", |bn| {
        bn.iter(|| black_box(prepare(black_box(feed.as_bytes()), &snap, &client, &ids, &mut out).is_ok()))
    });
    g.finish();

    let jwt_cfg = JwtAuth {
        jwks_url: "https://idp.example/jwks".into(),
        issuer: Some("https://idp.example".into()),
        audience: vec!["feed".into()],
        algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
        leeway: std::time::Duration::from_secs(30),
        jwks_cache: std::time::Duration::from_secs(600),
    };
    let keys = KeySet {
        keys: vec![
            Key {
                kid: Some("rs".into()),
                alg: None,
                family: Family::Rsa,
                key: DecodingKey::from_rsa_pem(include_bytes!("keys/rs256.pub.pem")).expect("rsa"),
            },
            Key {
                kid: Some("es".into()),
                alg: None,
                family: Family::Ec,
                key: DecodingKey::from_ec_pem(include_bytes!("keys/es256.pub.pem")).expect("ec"),
            },
            Key {
                kid: Some("ed".into()),
                alg: None,
                family: Family::Okp,
                key: DecodingKey::from_ed_pem(include_bytes!("keys/ed25519.pub.pem")).expect("ed"),
            },
        ],
    };
    let tokens = [
        ("RS256", rs_token.clone()),
        ("ES256", sign(Algorithm::ES256, include_bytes!("keys/es256.pem"), "es")),
        ("EdDSA", sign(Algorithm::EdDSA, include_bytes!("keys/ed25519.pem"), "ed")),
    ];
    let wanted = ["email".to_string()];
    let mut g = c.benchmark_group("jwt_first_verification");
    for (name, token) in &tokens {
        let h = jwt::head(&jwt_cfg, token).expect("head");
        assert!(jwt::verify(&jwt_cfg, &keys, token, &h, &wanted).is_ok(), "{name} verifies");
        g.bench_function(*name, |bn| {
            bn.iter(|| {
                let h = jwt::head(&jwt_cfg, black_box(token)).expect("head");
                black_box(jwt::verify(&jwt_cfg, &keys, token, &h, &wanted).is_ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
