//! `[auth]`, `[consumers.NAME]` and a service's or endpoint's `auth`.

use super::model::{valid_service_name, ConfigError, Source};
use serde::Deserialize;

/// `[auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// The environment variable holding the HMAC secret API keys are
    /// stored under (file config only).
    pub key_secret_env: Option<String>,
}

/// `[consumers.NAME]`: who calls through the gateway.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSection {
    /// Per-consumer limits (the throttling issue gives them a meaning).
    pub limits: Option<toml::Table>,
    /// What the consumer's API keys may do (checked against a service's or
    /// endpoint's `auth.scopes` and a route's `scopes`).
    pub scopes: Option<Vec<String>>,
}

/// `auth = "none"` or `auth = { api_key = { header, query }, scopes = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AuthChoice {
    Word(String),
    Table(Box<AuthTable>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthTable {
    pub api_key: Option<ApiKeySection>,
    pub jwt: Option<JwtSection>,
    pub introspection: Option<IntrospectionSection>,
    /// Scopes every request (or upgrade) must hold.
    pub scopes: Option<Vec<String>>,
    /// Token claims given to the service as `X-Wasp-Claim-*` (OAuth2 only).
    pub claims: Option<Vec<String>>,
    /// WebSocket: how long a client whose token expired has to send a
    /// fresh one (`{"action":"$auth","token":…}`) before it is closed (1008).
    pub expiry_grace: Option<String>,
}

/// `jwt = { jwks_url, issuer, audience, algorithms, leeway, jwks_cache, query }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    /// One audience or a list: the token's `aud` must name one of them.
    pub audience: Option<OneOrMany>,
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp` and `nbf` (default `"30s"`).
    pub leeway: Option<String>,
    /// How long fetched keys are used before they are fetched again (default `"10m"`).
    pub jwks_cache: Option<String>,
    /// A query parameter that may carry the token (WebSocket clients).
    pub query: Option<String>,
}

/// `introspection = { url, client_id, client_secret_env, cache, cache_entries, query }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSection {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    /// How long an answer is used (default `"30s"`; never past the token's `exp`).
    pub cache: Option<String>,
    /// Answers kept per worker (default 10000).
    pub cache_entries: Option<usize>,
    pub query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    /// The request header carrying the key (default `X-Api-Key`).
    pub header: Option<String>,
    /// A query parameter carrying the key (removed before the request is
    /// logged, recorded or forwarded).
    pub query: Option<String>,
}

/// A validated consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    pub name: String,
    pub limits: Option<toml::Table>,
    /// `limits = { rate, burst }`: the consumer's own budget, on top of
    /// every service's and endpoint's rules.
    pub rate: Option<super::limits::RateRule>,
    pub scopes: Vec<String>,
}

/// How a service's requests or an endpoint's upgrades prove who they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    ApiKey(ApiKeyAuth),
    /// An OAuth2 access token (`Authorization: Bearer`).
    Bearer(std::sync::Arc<BearerAuth>),
}

impl Auth {
    /// The scopes every request must hold.
    pub fn scopes(&self) -> &[String] {
        match self {
            Auth::None => &[],
            Auth::ApiKey(a) => &a.scopes,
            Auth::Bearer(b) => &b.scopes,
        }
    }

    /// The query parameter that may carry the credential (taken out of
    /// what is forwarded and logged).
    pub fn query(&self) -> Option<&str> {
        match self {
            Auth::None => None,
            Auth::ApiKey(a) => a.query.as_deref(),
            Auth::Bearer(b) => b.query.as_deref(),
        }
    }
}

/// `jwt` or `introspection`: an OAuth2 access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerAuth {
    pub method: BearerMethod,
    /// A query parameter that may carry the token besides `Authorization`.
    pub query: Option<String>,
    pub scopes: Vec<String>,
    /// Claims forwarded as `X-Wasp-Claim-<Name>` (`_` becomes `-`).
    pub claims: Vec<String>,
    /// WebSocket: time to renew an expired token before the close.
    pub expiry_grace: std::time::Duration,
    /// A digest of everything above: verified tokens are remembered per
    /// configuration, so a token good for one audience is not taken for
    /// another, and a reload that changes nothing keeps the cache.
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BearerMethod {
    Jwt(JwtAuth),
    Introspection(IntrospectionAuth),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtAuth {
    pub jwks_url: String,
    pub issuer: Option<String>,
    /// Empty: `aud` is not checked.
    pub audience: Vec<String>,
    /// Names as in JWS (`RS256`, `ES256`, `EdDSA`, ...); never `none` or `HS*`.
    pub algorithms: Vec<String>,
    pub leeway: std::time::Duration,
    pub jwks_cache: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IntrospectionAuth {
    pub url: String,
    pub client_id: String,
    /// The variable holding the client secret (read when a request is made).
    pub client_secret_env: String,
    pub cache: std::time::Duration,
    pub cache_entries: usize,
}

/// The signature algorithms a JWT may use. HMAC ones are left out on
/// purpose: a key set of public keys cannot check them, and accepting them
/// is how a public key becomes a forging secret (HS/RS confusion).
pub const JWT_ALGORITHMS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyAuth {
    /// Lower case.
    pub header: Option<String>,
    pub query: Option<String>,
    pub scopes: Vec<String>,
}

/// The default name of the environment variable holding the key secret.
pub const DEFAULT_KEY_SECRET_ENV: &str = "WASP_KEY_SECRET";

pub(super) fn key_secret_env(src: &Source<'_>, a: &AuthSection) -> Result<String, ConfigError> {
    let name = a.key_secret_env.clone().unwrap_or_else(|| DEFAULT_KEY_SECRET_ENV.to_string());
    let ok = !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return src.err("auth.key_secret_env", None, "an environment variable's name (letters, digits, '_')");
    }
    Ok(name)
}

pub(super) fn consumer(src: &Source<'_>, name: &str, c: &ConsumerSection) -> Result<ConsumerConfig, ConfigError> {
    if !valid_service_name(name) {
        return src.err(
            &format!("consumers.{name}"),
            None,
            "consumer names use only letters, digits, '-', '_' and '.' (at most 64)",
        );
    }
    let scopes = scopes(src, &format!("consumers.{name}.scopes"), c.scopes.as_deref())?;
    let rate = match &c.limits {
        None => None,
        Some(t) => {
            let k = format!("consumers.{name}.limits");
            if let Some(other) = t.keys().find(|x| *x != "rate" && *x != "burst") {
                return src.err(&format!("{k}.{other}"), None, "unknown key: limits take rate and burst");
            }
            let rate = match t.get("rate") {
                None => None,
                Some(toml::Value::String(r)) => Some(r.as_str()),
                Some(_) => return src.err(&format!("{k}.rate"), None, "a string such as \"100/s\""),
            };
            let burst = match t.get("burst") {
                None => None,
                Some(toml::Value::Integer(b)) => Some(u32::try_from(*b).unwrap_or(0)),
                Some(_) => return src.err(&format!("{k}.burst"), None, "a whole number"),
            };
            match rate {
                None if burst.is_some() => return src.err(&format!("{k}.rate"), None, "is required with burst"),
                None => None,
                Some(r) => {
                    Some(super::limits::rate(src, &format!("{k}.rate"), Some(r), burst, super::limits::Per::Consumer)?)
                }
            }
        }
    };
    Ok(ConsumerConfig { name: name.to_string(), limits: c.limits.clone(), rate, scopes })
}

/// Scopes as written: visible ASCII without quotes or backslashes (they go
/// into JSON error events and `WWW-Authenticate` as they are).
pub(super) fn scopes(src: &Source<'_>, key: &str, v: Option<&[String]>) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for s in v.into_iter().flatten() {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return src.err(key, None, format!("{s:?} is not a scope (visible ASCII, no quotes)"));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

pub(super) fn auth(src: &Source<'_>, key: &str, a: Option<&AuthChoice>) -> Result<Auth, ConfigError> {
    let t = match a {
        None => return Ok(Auth::None),
        Some(AuthChoice::Word(w)) if w == "none" => return Ok(Auth::None),
        Some(AuthChoice::Word(w)) => {
            return src.err(key, None, format!("{w:?}: write \"none\" or {{ api_key = {{ header = \"X-Api-Key\" }} }}"))
        }
        Some(AuthChoice::Table(t)) => t,
    };
    let scopes = scopes(src, &format!("{key}.scopes"), t.scopes.as_deref())?;
    let methods = [t.api_key.is_some(), t.jwt.is_some(), t.introspection.is_some()].iter().filter(|m| **m).count();
    if methods > 1 {
        return src.err(key, None, "name one method: api_key, jwt or introspection");
    }
    if t.jwt.is_some() || t.introspection.is_some() {
        return super::oauth::bearer(src, key, t, scopes).map(|b| Auth::Bearer(std::sync::Arc::new(b)));
    }
    if t.expiry_grace.is_some() {
        return src.err(&format!("{key}.expiry_grace"), None, "applies to OAuth2 tokens (jwt or introspection)");
    }
    if t.claims.is_some() {
        return src.err(&format!("{key}.claims"), None, "claims come from OAuth2 tokens (jwt or introspection)");
    }
    let Some(k) = &t.api_key else {
        return src.err(
            key,
            None,
            "name a method: api_key = { header = \"X-Api-Key\" }, jwt = {...} or introspection = {...}",
        );
    };
    let header = match (&k.header, &k.query) {
        (None, None) => Some("x-api-key".to_string()),
        (h, _) => h.as_ref().map(|h| h.to_ascii_lowercase()),
    };
    if let Some(h) = &header {
        use crate::proto::http1::headers::{is_gateway_header, is_hop_by_hop, is_name, is_regenerated, is_tchar};
        let n = h.as_bytes();
        // Not a name the gateway writes itself (Host, X-Request-Id, the
        // forwarding headers, framing): a key there would be forwarded,
        // logged or echoed as that header.
        let own = is_hop_by_hop(n)
            || is_gateway_header(n)
            || is_regenerated(n)
            || is_name(n, b"transfer-encoding")
            || is_name(n, b"content-type");
        if n.is_empty() || n.len() > 128 || !n.iter().all(|b| is_tchar(*b)) || own {
            return src.err(&format!("{key}.api_key.header"), None, format!("{h:?} cannot carry a key"));
        }
    }
    if let Some(q) = &k.query {
        query_name(src, &format!("{key}.api_key.query"), q)?;
    }
    Ok(Auth::ApiKey(ApiKeyAuth { header, query: k.query.clone(), scopes }))
}

/// A query parameter's name that may carry a credential.
pub(super) fn query_name(src: &Source<'_>, key: &str, q: &str) -> Result<(), ConfigError> {
    let ok = !q.is_empty() && q.len() <= 64 && q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return src.err(key, None, format!("{q:?} is not a query parameter name"));
    }
    Ok(())
}
