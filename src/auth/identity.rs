//! Who a request or a connection was let in as, and how the services learn
//! it: `X-Wasp-Consumer`, `X-Wasp-Subject` and `X-Wasp-Claim-*` headers (names
//! a client can never set: every `x-wasp-*` header from a client is
//! removed), and an `identity` object in `$connect`.

use std::sync::Arc;

/// How the credential was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ApiKey,
    Jwt,
    Introspection,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::ApiKey => "api_key",
            Method::Jwt => "jwt",
            Method::Introspection => "introspection",
        }
    }
}

/// A claim given to the services.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub name: Box<str>,
    /// `x-wasp-claim-<name>`, lower case, `_` as `-`.
    pub header: Box<str>,
    pub value: Box<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub method: Method,
    /// The consumer an API key belongs to.
    pub consumer: Option<Arc<str>>,
    /// A token's `sub`.
    pub subject: Option<Box<str>>,
    pub scopes: Box<[Box<str>]>,
    /// The claims the configuration names that the token has, with values
    /// that are safe in a header.
    pub claims: Box<[Claim]>,
    /// A token's `exp` (Unix seconds); `None` for API keys.
    pub exp: Option<u64>,
}

impl Identity {
    /// An API key's consumer, with the scopes its configuration gives it.
    pub fn consumer(name: Arc<str>, scopes: &[String]) -> Identity {
        Identity {
            method: Method::ApiKey,
            consumer: Some(name),
            subject: None,
            scopes: scopes.iter().map(|s| s.as_str().into()).collect(),
            claims: Box::new([]),
            exp: None,
        }
    }

    /// From a verified token's claims (or an introspection answer):
    /// `sub`, `exp`, scopes from `scope` (space-separated) or `scp` (an
    /// array), and the claims in `wanted`.
    pub fn from_claims(
        method: Method,
        claims: &serde_json::Map<String, serde_json::Value>,
        wanted: &[String],
    ) -> Identity {
        use serde_json::Value;
        let mut scopes: Vec<Box<str>> = Vec::new();
        match claims.get("scope") {
            Some(Value::String(s)) => scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(Into::into)),
            Some(Value::Array(a)) => scopes.extend(a.iter().filter_map(Value::as_str).map(Into::into)),
            _ => {}
        }
        match claims.get("scp") {
            Some(Value::Array(a)) => scopes.extend(a.iter().filter_map(Value::as_str).map(Into::into)),
            Some(Value::String(s)) => scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(Into::into)),
            _ => {}
        }
        // Kept as it is (a renewal compares it); only a header-safe one
        // becomes `X-Wasp-Subject`.
        let subject = claims.get("sub").and_then(Value::as_str).filter(|s| s.len() <= 1024).map(Into::into);
        let exp = claims.get("exp").and_then(seconds);
        let mut out = Vec::new();
        for name in wanted {
            let text = match claims.get(name) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            };
            // A value that cannot be a header's is left out, not mangled.
            if header_safe(&text) {
                let header = format!("x-wasp-claim-{}", name.to_ascii_lowercase().replace('_', "-")).into();
                out.push(Claim { name: name.as_str().into(), header, value: text.into() });
            }
        }
        Identity { method, consumer: None, subject, scopes: scopes.into(), claims: out.into(), exp }
    }

    /// The first of `required` this identity does not hold.
    pub fn missing_scope<'a>(&self, required: &'a [String]) -> Option<&'a str> {
        required.iter().find(|r| !self.scopes.iter().any(|s| **s == ***r)).map(String::as_str)
    }

    /// `(name, value)` of every header the services get.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let consumer = self.consumer.as_deref().map(|c| ("x-wasp-consumer", c));
        let subject = self.subject.as_deref().filter(|s| header_safe(s)).map(|s| ("x-wasp-subject", s));
        consumer.into_iter().chain(subject).chain(self.claims.iter().map(|c| (&*c.header, &*c.value)))
    }

    /// The identity as a JSON object, for `$connect`.
    pub fn json(&self) -> String {
        let s = |v: &str| serde_json::Value::from(v).to_string();
        let opt = |v: Option<&str>| v.map_or("null".to_string(), s);
        let scopes: Vec<String> = self.scopes.iter().map(|x| s(x)).collect();
        let claims: Vec<String> = self.claims.iter().map(|c| format!("{}:{}", s(&c.name), s(&c.value))).collect();
        format!(
            r#"{{"method":"{}","consumer":{},"subject":{},"scopes":[{}],"claims":{{{}}},"expires_at":{}}}"#,
            self.method.as_str(),
            opt(self.consumer.as_deref()),
            opt(self.subject.as_deref()),
            scopes.join(","),
            claims.join(","),
            self.exp.map_or("null".to_string(), |e| e.to_string())
        )
    }
}

/// Visible ASCII and inner spaces, 1 byte to 1 KiB: what a header value
/// may hold without escaping and arrives as sent (HTTP trims the edges of a
/// value, so `"alice "` would reach the service as `alice`: left out).
fn header_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

/// A NumericDate (RFC 7519 2): whole or fractional seconds, rounded down.
pub fn seconds(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15).map(|f| f as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let id = Identity::from_claims(Method::Jwt, &claims(serde_json::json!({"scope": "a b  c"})), &[]);
        assert_eq!(&*id.scopes, &["a".into(), "b".into(), "c".into()] as &[Box<str>]);
        let id = Identity::from_claims(Method::Jwt, &claims(serde_json::json!({"scp": ["x", 3, "y"]})), &[]);
        assert_eq!(id.missing_scope(&["x".into(), "y".into()]), None);
        assert_eq!(id.missing_scope(&["x".into(), "z".into()]), Some("z"));
    }

    #[test]
    fn claims_become_headers_only_when_safe() {
        let c = claims(serde_json::json!({"sub": "u1", "email": "a@b", "tenant_id": 7, "bad": "x\r\ny", "exp": 10}));
        let want = ["email".to_string(), "tenant_id".into(), "bad".into(), "absent".into()];
        let id = Identity::from_claims(Method::Jwt, &c, &want);
        let h: Vec<_> = id.headers().collect();
        assert_eq!(h, vec![("x-wasp-subject", "u1"), ("x-wasp-claim-email", "a@b"), ("x-wasp-claim-tenant-id", "7")]);
        assert_eq!(id.exp, Some(10));
        assert!(id.json().contains(r#""claims":{"email":"a@b","tenant_id":"7"}"#), "{}", id.json());
    }
}
