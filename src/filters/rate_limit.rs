//! `[[services.X.rate_limits]]` and a consumer's own `limits`: every rule
//! must pass, checked in the order written (a request refused by a rule has
//! spent the budgets of the rules before it). Over a limit: `429` with
//! `Retry-After`; every answer carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` of the tightest rule
//! (draft-ietf-httpapi-ratelimit-headers).
//!
//! Keys: `consumer` is the API key's consumer, else the token's subject
//! (the auth filter, which runs first, leaves it in the context); `ip` the
//! client address through `server.trusted_proxies`; `service` one budget for
//! the whole service; `connection` the client connection.

use super::api_key::Caller;
use super::{Action, Ctx, Filter, Request};
use crate::config::limits::Per;
use crate::config::{GatewayConfig, ServiceConfig};
use crate::error::{ErrorKind, ProxyError};
use crate::limits::table::Verdict;
use crate::limits::{self, Limit, Owner};
use crate::proto::http1::edits::HeaderEdits;
use crate::targets::ResponseView;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct RateLimit {
    rules: Vec<Arc<Limit>>,
    /// Consumers' own limits, by name.
    consumers: HashMap<String, Arc<Limit>>,
}

/// The consumer's own limit was spent for this request.
struct ConsumerSpent;

/// What the rules said about this request (for the response headers).
struct Spent {
    verdict: Verdict,
    limit: u32,
}

impl RateLimit {
    /// `None` when nothing limits the service's requests.
    pub fn build(service: &ServiceConfig, gateway: &GatewayConfig) -> Option<RateLimit> {
        let rules: Vec<Arc<Limit>> = service
            .rate_limits
            .iter()
            .enumerate()
            .map(|(i, r)| limits::limit(Owner::Service, &service.name, i, r))
            .collect();
        // A consumer's limit applies wherever it is let in.
        let consumers: HashMap<String, Arc<Limit>> = if service.auth == crate::config::auth::Auth::None {
            HashMap::new()
        } else {
            gateway
                .consumers
                .iter()
                .filter_map(|c| Some((c.name.clone(), limits::limit(Owner::Consumer, &c.name, 0, c.rate.as_ref()?))))
                .collect()
        };
        (!rules.is_empty() || !consumers.is_empty()).then_some(RateLimit { rules, consumers })
    }
}

/// The key of a request under a rule.
pub fn key_of(per: Per, caller: Option<&crate::auth::Identity>, ip: Option<std::net::IpAddr>, conn: u64) -> u64 {
    match per {
        Per::Consumer => match caller {
            Some(id) => match (&id.consumer, &id.subject) {
                (Some(c), _) => limits::key(&[b"c", c.as_bytes()]),
                (None, Some(s)) => limits::key(&[b"s", s.as_bytes()]),
                (None, None) => limits::key(&[b"?"]),
            },
            // Not let in by an auth filter (cannot happen once validated):
            // one shared budget.
            None => limits::key(&[b"?"]),
        },
        Per::Ip => match ip {
            Some(std::net::IpAddr::V4(a)) => limits::key(&[b"4", &a.octets()]),
            // One budget per /64: a host given a /64 picks any of its
            // addresses, so the whole prefix is one client.
            Some(std::net::IpAddr::V6(a)) => limits::key(&[b"6", &a.octets()[..8]]),
            // A trusted proxy forwarded garbage: one budget for all such.
            None => limits::key(&[b"?"]),
        },
        Per::Service => 1,
        Per::Connection => limits::key(&[b"n", &conn.to_le_bytes()]),
    }
}

impl Filter for RateLimit {
    fn kind(&self) -> &'static str {
        "rate_limit"
    }

    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action {
        let now = limits::now_ns();
        let caller = ctx.get::<Caller>().map(|c| c.0.clone());
        // A consumer's own limit is spent once per request, also when a
        // `route` filter hands it from one protected service to another.
        let consumer = match ctx.get::<ConsumerSpent>() {
            Some(_) => None,
            None => caller.as_ref().and_then(|c| c.consumer.as_deref()).and_then(|c| self.consumers.get(c)),
        };
        let rules = consumer
            .into_iter()
            .chain(&self.rules)
            .map(|l| (&**l, key_of(l.rule.per, caller.as_deref(), req.client_ip, req.connection)));
        let Some((verdict, limit)) = limits::check(rules, now) else { return Action::Pass };
        if consumer.is_some() && verdict.allowed {
            ctx.insert(ConsumerSpent);
        }
        ctx.insert(Spent { verdict, limit });
        if verdict.allowed {
            Action::Pass
        } else {
            Action::Reject(ProxyError::new(
                ErrorKind::Throttled,
                "rate limit exceeded; retry after Retry-After seconds",
            ))
        }
    }

    fn wants_response(&self) -> bool {
        true
    }

    fn response(&self, resp: &ResponseView<'_>, ctx: &Ctx, edits: &mut HeaderEdits) {
        let Some(s) = ctx.get::<Spent>() else { return };
        let secs = |ns: u64| ns.div_ceil(1_000_000_000).to_string();
        edits.add("ratelimit-limit", s.limit.to_string().as_bytes());
        edits.add("ratelimit-remaining", s.verdict.remaining.to_string().as_bytes());
        edits.add("ratelimit-reset", secs(s.verdict.reset_ns).as_bytes());
        if resp.status == 429 && !s.verdict.allowed {
            edits.add("retry-after", secs(s.verdict.retry_ns.max(1)).as_bytes());
        }
    }
}
