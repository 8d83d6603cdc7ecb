//! `auth = { api_key = { header, query } }`: a request must carry a live API
//! key (see `crate::auth`); its consumer's name goes to the service as
//! `X-Wasp-Consumer` (a name clients can never set: `X-Wasp-*` from a client
//! is removed). A key given in the query string is taken out of the
//! forwarded request (and of the access log's target).

use super::{Action, Ctx, Filter, Request};
use crate::config::auth::ApiKeyAuth;
use crate::error::{ErrorKind, ProxyError};
use crate::proto::http1::edits::HeaderEdits;
use crate::targets::ResponseView;

#[derive(Debug)]
pub struct ApiKey {
    auth: ApiKeyAuth,
    /// `WWW-Authenticate` on a 401: names where the key goes.
    challenge: Vec<u8>,
}

/// The consumer a request was let in as (for later phases).
pub struct Consumer(pub std::sync::Arc<str>);

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
    pub fn new(auth: &ApiKeyAuth) -> Self {
        ApiKey { auth: auth.clone(), challenge: challenge(auth).into_bytes() }
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
            crate::auth::count(crate::auth::Outcome::Missing);
            return Action::Reject(ProxyError::new(ErrorKind::Unauthorized, "an API key is required"));
        };
        match crate::auth::lookup(key) {
            Some(consumer) => {
                crate::auth::count(crate::auth::Outcome::Ok);
                // The service learns who, never the key.
                if let Some(h) = &self.auth.header {
                    ctx.headers.remove(h);
                }
                ctx.headers.set("x-wasp-consumer", consumer.as_bytes());
                ctx.insert(Consumer(consumer));
                Action::Changed
            }
            None => {
                crate::auth::count(crate::auth::Outcome::Invalid);
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
    }
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
