//! `auth = { api_key = { header, query } }`: a request must carry a live API
//! key (see `crate::auth`); its consumer's name goes to the service as
//! `X-Wasp-Consumer` (a name clients can never set: `X-Wasp-*` from a client
//! is removed). A key given in the query string is taken out of the
//! forwarded request (and of the access log's target).

use super::{Action, Ctx, Filter, Request};
use crate::auth::{count, Fail, Identity, Method};
use crate::config::auth::{ApiKeyAuth, ConsumerConfig};
use crate::error::{ErrorKind, ProxyError};
use crate::proto::http1::edits::HeaderEdits;
use crate::targets::ResponseView;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct ApiKey {
    auth: ApiKeyAuth,
    /// `WWW-Authenticate` on a 401: names where the key goes.
    challenge: Vec<u8>,
    /// The scopes of every consumer (when the service requires some).
    scopes: HashMap<String, Vec<String>>,
}

/// Who a request was let in as (for later phases: limits, logs).
pub struct Caller(pub Arc<Identity>);

/// `WWW-Authenticate`: where the key goes (`ApiKey header="x-api-key" query="api_key"`).
pub fn challenge(auth: &ApiKeyAuth) -> String {
    let mut c = "ApiKey".to_string();
    if let Some(h) = &auth.header {
        c.push_str(&format!(" header=\"{h}\""));
    }
    if let Some(q) = &auth.query {
        c.push_str(&format!(" query=\"{q}\""));
    }
    c
}

impl ApiKey {
    pub fn new(auth: &ApiKeyAuth, consumers: &[ConsumerConfig]) -> Self {
        let scopes = if auth.scopes.is_empty() {
            HashMap::new()
        } else {
            consumers.iter().map(|c| (c.name.clone(), c.scopes.clone())).collect()
        };
        ApiKey { auth: auth.clone(), challenge: challenge(auth).into_bytes(), scopes }
    }
}

/// The value of query parameter `name` (raw, not unescaped: keys are
/// URL-safe) and the query without it.
pub fn take_param<'a>(query: &'a str, name: &str) -> (Option<&'a str>, String) {
    let mut found = None;
    let mut rest: Vec<&str> = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k == name {
            found = found.or(Some(v));
        } else {
            rest.push(kv);
        }
    }
    (found, rest.join("&"))
}

impl Filter for ApiKey {
    fn kind(&self) -> &'static str {
        "auth"
    }

    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action {
        let mut key = self.auth.header.as_deref().and_then(|h| req.header(h));
        if let Some(q) = &self.auth.query {
            let (v, rest) = take_param(req.query, q);
            if v.is_some() {
                // Never forwarded, whatever happens next.
                ctx.query = Some(rest);
            }
            key = key.or(v.map(str::as_bytes));
        }
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            count(Method::ApiKey, Err(Fail::Missing));
            return Action::Reject(ProxyError::new(ErrorKind::Unauthorized, "an API key is required"));
        };
        // The service learns who, never the key (also when refused: a
        // route or record filter must not see it either).
        if let Some(h) = &self.auth.header {
            ctx.headers.remove(h);
        }
        match crate::auth::lookup(key) {
            Some(consumer) => {
                let scopes = self.scopes.get(&*consumer).map_or(&[][..], Vec::as_slice);
                let id = Identity::consumer(consumer, scopes);
                if id.missing_scope(&self.auth.scopes).is_some() {
                    count(Method::ApiKey, Err(Fail::InsufficientScope));
                    return Action::Reject(Fail::InsufficientScope.error());
                }
                count(Method::ApiKey, Ok(()));
                let id = Arc::new(id);
                for (n, v) in id.headers() {
                    ctx.headers.set(n, v.as_bytes());
                }
                ctx.insert(Caller(id));
                Action::Changed
            }
            None => {
                count(Method::ApiKey, Err(Fail::Invalid));
                Action::Reject(ProxyError::new(ErrorKind::Unauthorized, "the API key is not valid"))
            }
        }
    }

    fn wants_response(&self) -> bool {
        true
    }

    fn response(&self, resp: &ResponseView<'_>, _ctx: &Ctx, edits: &mut HeaderEdits) {
        if resp.status == 401 {
            edits.add("www-authenticate", &self.challenge);
        }
        if resp.status == 403 && !self.auth.scopes.is_empty() {
            edits.add("www-authenticate", scope_challenge("ApiKey", &self.auth.scopes).as_bytes());
        }
    }
}

/// `WWW-Authenticate` on a 403 for a missing scope (RFC 6750 3.1).
pub fn scope_challenge(scheme: &str, scopes: &[String]) -> String {
    format!("{scheme} error=\"insufficient_scope\", scope=\"{}\"", scopes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::take_param;

    #[test]
    fn a_query_key_is_taken_out() {
        assert_eq!(take_param("a=1&api_key=k&b=2", "api_key"), (Some("k"), "a=1&b=2".to_string()));
        assert_eq!(take_param("api_key=k", "api_key"), (Some("k"), String::new()));
        assert_eq!(take_param("a=1", "api_key"), (None, "a=1".to_string()));
        assert_eq!(take_param("api_key=x&api_key=y", "api_key"), (Some("x"), String::new()), "every copy goes");
    }
}
