//! An endpoint as workers use it: the validated config plus lookup tables.

use crate::config::{EndpointConfig, GatewayConfig, MatchValue, RouteConfig};
use crate::proto::jq::Program;
use crate::targets::{HttpRoute, KafkaRoute, RouteTarget};

/// A program validated at load; one that no longer compiles is logged and
/// left out (the route then forwards events untransformed).
fn compiled(text: &str) -> Option<Program> {
    Program::compile(text).map_err(|e| tracing::error!(error = %e, "route transform did not compile")).ok()
}
use crate::limits::Owner;
use ahash::AHashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Endpoint {
    pub config: EndpointConfig,
    /// The routes of `config.routes`, in the same order, with their targets built.
    routes: Vec<Route>,
    by_key: AHashMap<String, usize>,
    /// `rate_limits` on the endpoint's events.
    pub limits: Vec<Arc<crate::limits::Limit>>,
    /// Consumers' own limits (when the endpoint has auth), by name.
    pub consumer_limits: AHashMap<String, Arc<crate::limits::Limit>>,
    /// Its counters (kept across reloads by the registry; `Router::build`
    /// sets them).
    pub stats: Arc<crate::metrics::EndpointStats>,
}

/// A route as workers use it: its config, the targets its events go to,
/// and its transformations, compiled.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    pub targets: Vec<Arc<dyn RouteTarget>>,
    /// `transform.request`: the event, before the targets see it.
    pub request_program: Option<Program>,
    /// `transform.reply`: the reply, before the client sees it.
    pub reply_program: Option<Program>,
    /// The route's own `rate_limits`.
    pub limits: Vec<Arc<crate::limits::Limit>>,
}

/// A built route reads as its config (`route.key`, `route.timeout`, ...).
impl std::ops::Deref for Route {
    type Target = RouteConfig;
    fn deref(&self) -> &RouteConfig {
        &self.config
    }
}

impl Endpoint {
    pub fn new(config: EndpointConfig, gateway: &GatewayConfig) -> Endpoint {
        let by_key = config.routes.iter().enumerate().map(|(i, r)| (r.key.clone(), i)).collect();
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                limits: r
                    .rate_limits
                    .iter()
                    .enumerate()
                    .map(|(i, l)| crate::limits::limit(Owner::Route, &format!("{}/{}", config.name, r.key), i, l))
                    .collect(),
                request_program: r.transform_request.as_deref().and_then(compiled),
                reply_program: r.transform_reply.as_deref().and_then(compiled),
                config: r.clone(),
                // HTTP targets first: `reply` answers with the first target's.
                targets: r
                    .http
                    .iter()
                    .map(|t| Arc::new(HttpRoute::new(t.clone(), gateway)) as Arc<dyn RouteTarget>)
                    .chain(r.kafka.iter().map(|t| Arc::new(KafkaRoute::new(t.clone())) as Arc<dyn RouteTarget>))
                    .collect(),
            })
            .collect();
        let limits = config
            .rate_limits
            .iter()
            .enumerate()
            .map(|(i, l)| crate::limits::limit(Owner::Endpoint, &config.name, i, l))
            .collect();
        let consumer_limits = if config.auth == crate::config::auth::Auth::None {
            AHashMap::new()
        } else {
            gateway
                .consumers
                .iter()
                .filter_map(|c| {
                    Some((c.name.clone(), crate::limits::limit(Owner::Consumer, &c.name, 0, c.rate.as_ref()?)))
                })
                .collect()
        };
        Endpoint {
            config,
            routes,
            by_key,
            limits,
            consumer_limits,
            stats: Arc::new(crate::metrics::EndpointStats::new(0)),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn route(&self, key: &str) -> Option<&Route> {
        self.by_key.get(key).map(|i| &self.routes[*i])
    }

    /// Picks the route for an event (already validated JSON): the first
    /// `match` route whose every path holds, else the route named by the
    /// value at `route_selection`, else `$default`.
    pub fn select(&self, event: &[u8]) -> Option<&Route> {
        for r in self.routes.iter().filter(|r| !r.matches.is_empty()) {
            let all = r.matches.iter().all(|(path, want)| match want {
                MatchValue::Str(s) => path.get_str(event).is_some_and(|v| v == s.as_str()),
                MatchValue::Raw(t) => path.get(event).is_some_and(|v| v.as_raw_str() == t),
            });
            if all {
                return Some(r);
            }
        }
        if let Some(sel) = &self.config.route_selection {
            if let Some(key) = sel.get_str(event) {
                if !key.starts_with('$') {
                    if let Some(r) = self.route(&key) {
                        return Some(r);
                    }
                }
            }
        }
        self.route("$default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn ep() -> Endpoint {
        let cfg = Config::from_toml(
            r#"
[endpoints.chat]
path = "/ws/chat"
route_selection = "$.action"
[endpoints.chat.routes.order_create]
match = { "$.type" = "order", "$.op" = "create" }
[endpoints.chat.routes.flagged]
match = { "$.n" = 7, "$.ok" = true }
[endpoints.chat.routes.send]
[endpoints.chat.routes."$default"]
"#,
            "t",
        )
        .unwrap();
        Endpoint::new(cfg.gateway.endpoints[0].clone(), &cfg.gateway)
    }

    #[test]
    fn selection_order() {
        let e = ep();
        let key = |j: &str| e.select(j.as_bytes()).map(|r| r.key.clone());
        assert_eq!(key(r#"{"action":"send"}"#).as_deref(), Some("send"));
        assert_eq!(key(r#"{"type":"order","op":"create","action":"send"}"#).as_deref(), Some("order_create"));
        assert_eq!(key(r#"{"type":"order","op":"delete"}"#).as_deref(), Some("$default"));
        assert_eq!(key(r#"{"n":7,"ok":true}"#).as_deref(), Some("flagged"));
        assert_eq!(key(r#"{"n":"7","ok":true}"#).as_deref(), Some("$default"), "a string is not the number 7");
        assert_eq!(key(r#"{"action":"$connect"}"#).as_deref(), Some("$default"), "clients cannot pick $-routes");
        assert_eq!(key(r#"[1,2]"#).as_deref(), Some("$default"));
    }
}
