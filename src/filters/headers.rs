//! `headers` and `response_headers`: set and remove headers on the way to
//! the service or back to the client.
//!
//! Removal matches names folded (`X-Debug` also removes `x_debug`, which a
//! CGI-style backend reads as the same header). `set` replaces every copy.
//! Names the gateway writes itself (framing, forwarding, request id,
//! `X-Wasp-*`) are refused at config time.

use super::{Action, Ctx, Filter, Request};
use crate::config::HeaderRules;
use crate::proto::http1::edits::HeaderEdits;
use crate::targets::ResponseView;

/// The edits one rule set makes, prepared once per snapshot.
#[derive(Debug)]
struct Edits(HeaderEdits);

impl Edits {
    fn new(rules: &HeaderRules) -> Self {
        let mut e = HeaderEdits::default();
        for name in &rules.remove {
            e.remove(name);
        }
        for (name, value) in &rules.set {
            e.set(name, value.as_bytes());
        }
        Edits(e)
    }
}

#[derive(Debug)]
pub struct RequestHeaders(Edits);

impl RequestHeaders {
    pub fn new(rules: &HeaderRules) -> Self {
        RequestHeaders(Edits::new(rules))
    }
}

impl Filter for RequestHeaders {
    fn kind(&self) -> &'static str {
        "headers"
    }

    fn request(&self, _req: &Request<'_>, ctx: &mut Ctx) -> Action {
        ctx.headers.merge(&self.0 .0);
        Action::Changed
    }
}

#[derive(Debug)]
pub struct ResponseHeaders(Edits);

impl ResponseHeaders {
    pub fn new(rules: &HeaderRules) -> Self {
        ResponseHeaders(Edits::new(rules))
    }
}

impl Filter for ResponseHeaders {
    fn kind(&self) -> &'static str {
        "response_headers"
    }

    fn request(&self, _req: &Request<'_>, _ctx: &mut Ctx) -> Action {
        Action::Changed
    }

    fn wants_response(&self) -> bool {
        true
    }

    fn response(&self, _resp: &ResponseView<'_>, _ctx: &Ctx, edits: &mut HeaderEdits) {
        edits.merge(&self.0 .0);
    }
}
