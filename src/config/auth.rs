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
}

/// `auth = "none"` or `auth = { api_key = { header, query }, scopes = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AuthChoice {
    Word(String),
    Table(AuthTable),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthTable {
    pub api_key: Option<ApiKeySection>,
    pub scopes: Option<Vec<String>>,
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
}

/// How a service's requests or an endpoint's upgrades prove who they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    ApiKey(ApiKeyAuth),
}

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
    Ok(ConsumerConfig { name: name.to_string(), limits: c.limits.clone() })
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
    let mut scopes = Vec::new();
    for s in t.scopes.iter().flatten() {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return src.err(&format!("{key}.scopes"), None, format!("{s:?} is not a scope (visible ASCII, no quotes)"));
        }
        scopes.push(s.clone());
    }
    let Some(k) = &t.api_key else {
        return src.err(key, None, "name a method: api_key = { header = \"X-Api-Key\" }");
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
        let ok = !q.is_empty() && q.len() <= 64 && q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return src.err(&format!("{key}.api_key.query"), None, format!("{q:?} is not a query parameter name"));
        }
    }
    Ok(Auth::ApiKey(ApiKeyAuth { header, query: k.query.clone(), scopes }))
}
