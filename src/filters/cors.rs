//! `cors`: answers browsers' preflights itself and decorates answers.
//!
//! - A request without `Origin` is not a CORS request: untouched.
//! - A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an
//!   allowed origin is answered `204` here with the allowed methods and
//!   headers; the service never sees it. From any other origin: `403`, with
//!   no CORS headers, so the browser blocks the real request.
//! - Any other request from an allowed origin goes to the service and its
//!   answer, or the gateway's own error answer (401, 403, 429, 502, ...),
//!   gets `Access-Control-Allow-Origin` and friends, so a browser can read
//!   it. An origin that is not allowed gets no CORS headers at all.
//! - The service's own `Access-Control-*` headers are dropped: the policy
//!   here is the only one. Every answer carries `Vary: Origin` (the response
//!   phase runs last, so no later filter takes it away).

use super::{Action, Answer, Ctx, Filter, Request};
use crate::config::CorsConfig;
use crate::error::{ErrorKind, ProxyError};
use crate::proto::http1::edits::HeaderEdits;
use crate::targets::ResponseView;

#[derive(Debug)]
pub struct Cors {
    origins: Vec<String>,
    any_origin: bool,
    credentials: bool,
    /// Prepared header values: `GET, POST`.
    methods: String,
    headers: String,
    expose: String,
    max_age: Option<String>,
}

/// The allowed `Origin` of this request, for the response phase.
struct AllowedOrigin(Box<[u8]>);

/// This filter answered the request (a preflight): its answer already says
/// everything, the response phase leaves it alone.
struct AnsweredPreflight;

impl Cors {
    pub fn new(c: &CorsConfig) -> Self {
        Cors {
            origins: c.origins.clone(),
            any_origin: c.any_origin,
            credentials: c.credentials,
            methods: c.methods.join(", "),
            headers: c.headers.join(", "),
            expose: c.expose_headers.join(", "),
            max_age: c.max_age.map(|d| d.as_secs().to_string()),
        }
    }

    fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.as_bytes() == origin)
    }

    /// `*` only when any origin may read and no credentials are involved.
    fn allow_origin<'a>(&self, origin: &'a [u8]) -> &'a [u8] {
        if self.any_origin && !self.credentials {
            b"*"
        } else {
            origin
        }
    }
}

impl Filter for Cors {
    fn kind(&self) -> &'static str {
        "cors"
    }

    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action {
        let Some(origin) = req.header("origin") else {
            return Action::Pass;
        };
        let allowed = self.allows(origin);
        let preflight = req.method == "OPTIONS" && req.header("access-control-request-method").is_some();
        if preflight {
            if !allowed {
                return Action::Reject(ProxyError::new(
                    ErrorKind::Forbidden,
                    "CORS preflight from an origin this service does not allow",
                ));
            }
            let mut a = Answer { status: 204, ..Answer::default() };
            let h = &mut a.headers;
            h.add("access-control-allow-origin", self.allow_origin(origin));
            if self.credentials {
                h.add("access-control-allow-credentials", b"true");
            }
            h.add("access-control-allow-methods", self.methods.as_bytes());
            if !self.headers.is_empty() {
                h.add("access-control-allow-headers", self.headers.as_bytes());
            }
            if let Some(age) = &self.max_age {
                h.add("access-control-max-age", age.as_bytes());
            }
            h.add("vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
            ctx.insert(AnsweredPreflight);
            return Action::Respond(a);
        }
        if !allowed {
            return Action::Pass;
        }
        ctx.insert(AllowedOrigin(origin.into()));
        Action::Changed
    }

    fn wants_response(&self) -> bool {
        true
    }

    fn response(&self, _resp: &ResponseView<'_>, ctx: &Ctx, edits: &mut HeaderEdits) {
        if ctx.get::<AnsweredPreflight>().is_some() {
            return;
        }
        // Every Access-Control-* the service (or a filter) wrote: this
        // filter is the policy (…-Allow-Private-Network included).
        edits.remove_prefix("access-control-");
        edits.add("vary", b"Origin");
        let Some(AllowedOrigin(origin)) = ctx.get::<AllowedOrigin>() else {
            return;
        };
        edits.add("access-control-allow-origin", self.allow_origin(origin));
        if self.credentials {
            edits.add("access-control-allow-credentials", b"true");
        }
        if !self.expose.is_empty() {
            edits.add("access-control-expose-headers", self.expose.as_bytes());
        }
    }
}
