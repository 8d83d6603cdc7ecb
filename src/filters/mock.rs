//! `[services.X.mock]`: the gateway answers for a service that has no
//! instance — from the first route whose method and path glob match, or
//! with a JSON `404` that says it is a mock, so nobody mistakes the
//! stand-in for the real service.
//!
//! Built as the last filter of the service's chain when the service has a
//! mock and neither instances nor discovery (`wasp dev` arranges that for
//! every mocked service it does not override): the filters before it (CORS,
//! block, headers, record) run as they would for the real service, and its
//! answers go through the response filters like any other.

use super::route::glob_match_exact;
use super::{Action, Answer, Ctx, Filter, Request};
use crate::config::MockRoute;
use crate::proto::http1::edits::HeaderEdits;

#[derive(Debug)]
pub struct Mock {
    service: String,
    routes: Vec<MockRoute>,
}

impl Mock {
    pub fn new(service: &str, routes: &[MockRoute]) -> Mock {
        Mock { service: service.to_string(), routes: routes.to_vec() }
    }

    fn method_matches(route: &MockRoute, method: &str) -> bool {
        match &route.method {
            None => true,
            Some(m) => m.eq_ignore_ascii_case(method) || (m == "GET" && method.eq_ignore_ascii_case("HEAD")),
        }
    }
}

impl Filter for Mock {
    fn kind(&self) -> &'static str {
        "mock"
    }

    fn request(&self, req: &Request<'_>, _ctx: &mut Ctx) -> Action {
        // Matched as the service would read the path (`/%70rice` is `/price`).
        let path = decoded(req.path);
        let hit = self
            .routes
            .iter()
            .find(|r| Self::method_matches(r, req.method) && glob_match_exact(r.path.as_bytes(), path.as_bytes()));
        let mut headers = HeaderEdits::default();
        headers.add("x-wasp-mock", self.service.as_bytes());
        let Some(r) = hit else {
            headers.add("content-type", b"application/json");
            let body = serde_json::json!({
                "error": "no_mock_route",
                "message": format!(
                    "this is a mock of service {:?}: no mock route matches {} {}",
                    self.service, req.method, req.path
                ),
            });
            return Action::Respond(Answer {
                status: 404,
                headers,
                body: body.to_string().into_bytes(),
                ..Answer::default()
            });
        };
        if let Some(t) = &r.content_type {
            headers.add("content-type", t.as_bytes());
        }
        for (name, value) in &r.headers {
            headers.add(name, value.as_bytes());
        }
        Action::Respond(Answer { status: r.status, headers, body: r.body.to_vec(), delay: r.delay })
    }
}

/// `path` with its percent-escapes decoded once (case kept).
fn decoded(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}
