//! `auth = { jwt = {...} }` or `auth = { introspection = {...} }`: a request
//! must carry an OAuth2 access token (`Authorization: Bearer`, or the
//! configured query parameter) that `crate::auth::bearer` accepts and that
//! holds the required scopes. The service gets `X-Wasp-Subject` and the
//! configured claims as `X-Wasp-Claim-*`, never the token in the query.
//!
//! The filter itself never waits: the request path awaits
//! [`Filter::prepare`]'s [`Pending`] first (a key set fetch, an
//! introspection call), then this filter decides from what it left.

use super::{Action, Ctx, Filter, Request};
use crate::auth::bearer::{self, Decision, Pending};
use crate::auth::{count, Fail};
use crate::config::auth::BearerAuth;
use crate::proto::http1::edits::HeaderEdits;
use crate::targets::ResponseView;
use std::sync::Arc;

#[derive(Debug)]
pub struct Bearer {
    auth: Arc<BearerAuth>,
    /// `WWW-Authenticate` on a 401 and a 403.
    challenge: Vec<u8>,
    scope_challenge: Vec<u8>,
}

impl Bearer {
    pub fn new(auth: &Arc<BearerAuth>) -> Bearer {
        Bearer {
            auth: auth.clone(),
            challenge: b"Bearer".to_vec(),
            scope_challenge: super::api_key::scope_challenge("Bearer", &auth.scopes).into_bytes(),
        }
    }

    /// The token in the request and the query without it (when it came in
    /// the query).
    fn token<'a>(&self, req: &Request<'a>) -> (Option<&'a str>, Option<String>) {
        let mut query = None;
        let mut token = req.header("authorization").and_then(bearer::from_authorization);
        if let Some(q) = &self.auth.query {
            let (v, rest) = super::api_key::take_param(req.query, q);
            if v.is_some() {
                query = Some(rest);
            }
            token = token.or(v);
        }
        // `?access_token=` is no token (and costs no introspection call).
        (token.filter(|t| !t.is_empty()), query)
    }
}

impl Filter for Bearer {
    fn kind(&self) -> &'static str {
        "auth"
    }

    fn prepare(&self, req: &Request<'_>) -> Option<Pending> {
        let token = self.token(req).0?;
        match bearer::check(&self.auth, token) {
            Decision::Ask => Some(bearer::begin(&self.auth, token)),
            _ => None,
        }
    }

    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action {
        let method = bearer::method(&self.auth);
        let (token, query) = self.token(req);
        if let Some(q) = query {
            // Never forwarded or logged, whatever happens next.
            ctx.query = Some(q);
        }
        // The service gets who, not the token.
        ctx.headers.remove("authorization");
        let Some(token) = token else {
            count(method, Err(Fail::Missing));
            return Action::Reject(Fail::Missing.error());
        };
        let id = match bearer::settled(&self.auth, token) {
            Ok(id) => id,
            Err(f) => {
                count(method, Err(f));
                return Action::Reject(f.error());
            }
        };
        if id.missing_scope(&self.auth.scopes).is_some() {
            count(method, Err(Fail::InsufficientScope));
            return Action::Reject(Fail::InsufficientScope.error());
        }
        count(method, Ok(()));
        for (n, v) in id.headers() {
            ctx.headers.set(n, v.as_bytes());
        }
        ctx.insert(super::api_key::Caller(id));
        Action::Changed
    }

    fn wants_response(&self) -> bool {
        true
    }

    fn response(&self, resp: &ResponseView<'_>, _ctx: &Ctx, edits: &mut HeaderEdits) {
        match resp.status {
            401 => edits.add("www-authenticate", &self.challenge),
            403 if !self.auth.scopes.is_empty() => edits.add("www-authenticate", &self.scope_challenge),
            _ => {}
        }
    }
}
