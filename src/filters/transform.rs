//! `transform`: jq programs on JSON bodies, compiled once per snapshot.
//!
//! A body is transformed when it is declared `application/json` (or
//! `…+json`) and has no `Content-Encoding`; it is buffered whole, up to
//! `limits.max_body_bytes`. Other bodies pass untouched and are counted
//! (`wasp_filter_actions_total{filter="transform",action="request_skipped"}`,
//! `response_skipped`). A program that yields no value, several values, or
//! an error gets the client a `502` JSON answer; a request body that is not
//! JSON, a `400`. The pipeline does the buffering (`pipeline/http/body.rs`
//! for requests, `targets/http` for responses); this filter holds the
//! programs and counts.

use super::{Action, Ctx, Filter, Request, Side};
use crate::config::TransformConfig;
use crate::metrics::Registry;
use crate::proto::jq::Program;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Debug)]
pub struct Transform {
    request: Option<Program>,
    response: Option<Program>,
    /// By side, then `applied`, `skipped`, `failed`.
    counters: [[Arc<AtomicU64>; 3]; 2],
}

const OUTCOMES: [&str; 3] = ["applied", "skipped", "failed"];

impl Transform {
    pub fn new(c: &TransformConfig, service: &str, registry: &Registry) -> Self {
        // Validated at load: a program that no longer compiles is a bug,
        // logged, and the side is left untransformed.
        let compile = |p: &Option<String>| {
            p.as_deref().and_then(|t| match Program::compile(t) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(service, error = %e, "transform program did not compile");
                    None
                }
            })
        };
        let counters = [
            ["request_applied", "request_skipped", "request_failed"],
            ["response_applied", "response_skipped", "response_failed"],
        ]
        .map(|side| side.map(|a| registry.filter_action(service, "transform", a)));
        Transform { request: compile(&c.request_body), response: compile(&c.response_body), counters }
    }
}

impl Filter for Transform {
    fn kind(&self) -> &'static str {
        "transform"
    }

    fn request(&self, _req: &Request<'_>, _ctx: &mut Ctx) -> Action {
        Action::Pass
    }

    fn request_program(&self) -> Option<&Program> {
        self.request.as_ref()
    }

    fn response_program(&self) -> Option<&Program> {
        self.response.as_ref()
    }

    fn body_outcome(&self, side: Side, outcome: &'static str) {
        let s = match side {
            Side::Request => 0,
            Side::Response => 1,
        };
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.counters[s][i].fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::jq::transformable;

    #[test]
    fn json_bodies_only() {
        assert!(transformable(Some(b"application/json"), None));
        assert!(transformable(Some(b"Application/JSON; charset=utf-8"), None));
        assert!(transformable(Some(b"application/problem+json"), Some(b"identity")));
        assert!(!transformable(Some(b"application/json"), Some(b"gzip")));
        assert!(!transformable(Some(b"text/plain"), None));
        assert!(!transformable(None, None));
        assert!(!transformable(Some(b"application/jsonx"), None));
    }
}
