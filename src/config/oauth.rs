//! A service's or endpoint's `auth = { jwt = {...} }` or
//! `auth = { introspection = {...} }`: OAuth2 access tokens.

use super::auth::{AuthTable, BearerAuth, BearerMethod, IntrospectionAuth, JwtAuth, OneOrMany, JWT_ALGORITHMS};
use super::duration::parse_duration;
use super::model::{ConfigError, Source};
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// Clock skew allowed on `exp` and `nbf` when not set.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// How long a key set is used before it is fetched again, when not set.
const DEFAULT_JWKS_CACHE: Duration = Duration::from_secs(600);
/// How long an introspection answer is used, when not set.
const DEFAULT_INTROSPECTION_CACHE: Duration = Duration::from_secs(30);
/// Time to renew an expired token on an open connection, when not set.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Introspection answers kept per worker, when not set.
const DEFAULT_CACHE_ENTRIES: usize = 10_000;

pub(super) fn bearer(
    src: &Source<'_>,
    key: &str,
    t: &AuthTable,
    scopes: Vec<String>,
) -> Result<BearerAuth, ConfigError> {
    let mut claims = Vec::new();
    for c in t.claims.iter().flatten() {
        // The claim's name becomes a header name's tail.
        let ok =
            !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return src.err(
                &format!("{key}.claims"),
                None,
                format!("{c:?}: claim names use letters, digits, '_', '-'"),
            );
        }
        // Two names that make one header (`tenant_id`, `Tenant-Id`) would
        // send it twice with two values.
        let header = |n: &str| n.to_ascii_lowercase().replace('_', "-");
        if let Some(other) = claims.iter().find(|o: &&String| header(o) == header(c)) {
            if other != c {
                return src.err(
                    &format!("{key}.claims"),
                    None,
                    format!("{other:?} and {c:?} would both be X-Wasp-Claim-{}", header(c)),
                );
            }
            continue;
        }
        claims.push(c.clone());
    }
    let (method, query) = if let Some(j) = &t.jwt {
        let k = format!("{key}.jwt");
        let jwks_url = url(src, &format!("{k}.jwks_url"), j.jwks_url.as_deref())?;
        let issuer = match &j.issuer {
            Some(i) if i.is_empty() || i.len() > 512 => {
                return src.err(&format!("{k}.issuer"), None, "1 to 512 characters")
            }
            i => i.clone(),
        };
        let audience = match &j.audience {
            None => Vec::new(),
            Some(OneOrMany::One(a)) => vec![a.clone()],
            Some(OneOrMany::Many(a)) if a.is_empty() => {
                return src.err(&format!("{k}.audience"), None, "name at least one audience (or leave the key out)")
            }
            Some(OneOrMany::Many(a)) => a.clone(),
        };
        if audience.iter().any(|a| a.is_empty() || a.len() > 512) {
            return src.err(&format!("{k}.audience"), None, "audiences have 1 to 512 characters");
        }
        let algorithms = match &j.algorithms {
            None => vec!["RS256".to_string()],
            Some(list) if list.is_empty() => {
                return src.err(&format!("{k}.algorithms"), None, "name at least one algorithm")
            }
            Some(list) => {
                for a in list {
                    if !JWT_ALGORITHMS.contains(&a.as_str()) {
                        let why = if a.eq_ignore_ascii_case("none") || a.to_ascii_uppercase().starts_with("HS") {
                            "is never accepted (unsigned, or a shared secret a public key set cannot check)"
                        } else {
                            "is not supported"
                        };
                        return src.err(
                            &format!("{k}.algorithms"),
                            None,
                            format!("{a:?} {why}; use some of {JWT_ALGORITHMS:?}"),
                        );
                    }
                }
                let mut l = list.clone();
                l.dedup();
                l
            }
        };
        let leeway = duration(src, &format!("{k}.leeway"), j.leeway.as_deref(), DEFAULT_LEEWAY, true)?;
        if leeway > Duration::from_secs(300) {
            return src.err(&format!("{k}.leeway"), None, "must be at most \"5m\" (it extends every token's life)");
        }
        let jwks_cache = duration(src, &format!("{k}.jwks_cache"), j.jwks_cache.as_deref(), DEFAULT_JWKS_CACHE, false)?;
        if jwks_cache < Duration::from_secs(10) {
            return src.err(&format!("{k}.jwks_cache"), None, "must be at least \"10s\"");
        }
        let method = BearerMethod::Jwt(JwtAuth { jwks_url, issuer, audience, algorithms, leeway, jwks_cache });
        (method, j.query.clone().map(|q| (format!("{k}.query"), q)))
    } else if let Some(i) = &t.introspection {
        let k = format!("{key}.introspection");
        let url = url(src, &format!("{k}.url"), i.url.as_deref())?;
        let client_id = match &i.client_id {
            Some(c)
                if !c.is_empty() && c.len() <= 256 && !c.contains(':') && c.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                c.clone()
            }
            Some(_) => return src.err(&format!("{k}.client_id"), None, "1 to 256 visible characters, no ':'"),
            None => return src.err(&format!("{k}.client_id"), None, "is required"),
        };
        let client_secret_env = match &i.client_secret_env {
            Some(e) if !e.is_empty() && e.len() <= 128 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                e.clone()
            }
            Some(_) => {
                return src.err(
                    &format!("{k}.client_secret_env"),
                    None,
                    "an environment variable's name (letters, digits, '_')",
                )
            }
            None => {
                return src.err(
                    &format!("{k}.client_secret_env"),
                    None,
                    "is required: the variable holding the client secret (never the secret itself)",
                )
            }
        };
        // Zero is allowed: every request asks the server.
        let cache = duration(src, &format!("{k}.cache"), i.cache.as_deref(), DEFAULT_INTROSPECTION_CACHE, true)?;
        let cache_entries = i.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
        if !(1..=1_000_000).contains(&cache_entries) {
            return src.err(&format!("{k}.cache_entries"), None, "must be between 1 and 1000000");
        }
        let method =
            BearerMethod::Introspection(IntrospectionAuth { url, client_id, client_secret_env, cache, cache_entries });
        (method, i.query.clone().map(|q| (format!("{k}.query"), q)))
    } else {
        return src.err(key, None, "name a method: jwt or introspection");
    };
    if let Some((k, q)) = &query {
        super::auth::query_name(src, k, q)?;
    }
    let query = query.map(|(_, q)| q);
    let expiry_grace = duration(src, &format!("{key}.expiry_grace"), t.expiry_grace.as_deref(), DEFAULT_GRACE, true)?;
    if expiry_grace > Duration::from_secs(3600) {
        return src.err(&format!("{key}.expiry_grace"), None, "must be at most \"1h\"");
    }
    let mut h = std::hash::DefaultHasher::new();
    (&method, &query, &scopes, &claims).hash(&mut h);
    Ok(BearerAuth { method, query, scopes, claims, expiry_grace, id: h.finish() })
}

fn duration(
    src: &Source<'_>,
    key: &str,
    v: Option<&str>,
    default: Duration,
    zero: bool,
) -> Result<Duration, ConfigError> {
    match v.map(parse_duration) {
        None => Ok(default),
        Some(Ok(d)) if d.is_zero() && !zero => src.err(key, None, "must be greater than zero"),
        Some(Ok(d)) if d > Duration::from_secs(30 * 86_400) => src.err(key, None, "must be at most 30 days (\"720h\")"),
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => src.err(key, None, e),
    }
}

/// A key set's or introspection endpoint's address: `http(s)://host[:port]/path`.
fn url(src: &Source<'_>, key: &str, v: Option<&str>) -> Result<String, ConfigError> {
    let Some(text) = v else { return src.err(key, None, "is required (\"https://issuer.example/jwks\")") };
    let url = match reqwest::Url::parse(text) {
        Ok(u) => u,
        Err(e) => return src.err(key, None, format!("{text:?} is not a URL: {e}")),
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return src.err(key, None, format!("{text:?} must be an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return src.err(key, None, "must not carry credentials (they would be stored with every version)");
    }
    if url.fragment().is_some() {
        return src.err(key, None, format!("{text:?} must not have a fragment"));
    }
    Ok(url.to_string())
}
