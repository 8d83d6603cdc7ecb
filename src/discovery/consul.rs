//! `discovery = { consul = { url = "http://127.0.0.1:8500", service = "shop", tag = "v2" } }`:
//! the passing instances of a service in Consul's catalog.
//!
//! `GET /v1/health/service/:service?passing` as a blocking query
//! (<https://developer.hashicorp.com/consul/api-docs/features/blocking>):
//! each request carries the `X-Consul-Index` of the last answer and waits
//! up to `WAIT` for a change, so a change is seen as soon as Consul has it
//! without polling. As Consul's guidance asks, an index that goes backwards
//! (a restored or replaced agent) starts over from 0, an index of 0 is
//! taken as 1 (a 0 would make every query return at once), and queries are
//! spaced by at least `MIN_SPACING` whatever Consul answers.
//!
//! An instance's address is `Service.Address`, or `Node.Address` when that
//! is empty; an instance registered without a port (or with one no TCP
//! port can be) is not an HTTP instance and is left out. Redirects are not
//! followed while a token is sent (see `fetch`). The ACL token, if any, comes from an environment
//! variable (`token_env`, default `CONSUL_HTTP_TOKEN`), never from the
//! config, which is stored with every version.

use super::{Discovery, Next};
use crate::config::ConsulDiscovery;
use crate::fetch::{HttpClient, Request};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long Consul may hold a query waiting for a change.
const WAIT: Duration = Duration::from_secs(55);
/// Queries never start closer together than this.
const MIN_SPACING: Duration = Duration::from_millis(250);
/// After a failure, asked again this soon.
const RETRY: Duration = Duration::from_secs(2);
/// A catalog answer larger than this is refused (10,000 instances fit).
const MAX_BODY: usize = 16 << 20;

pub struct Consul {
    settings: ConsulDiscovery,
    http: HttpClient,
    /// `X-Consul-Index` of the last good answer (0: none yet).
    index: u64,
    /// When the last query started, and whether it failed.
    last: Option<(Instant, bool)>,
}

impl Consul {
    pub fn new(settings: ConsulDiscovery, http: HttpClient) -> Consul {
        Consul { settings, http, index: 0, last: None }
    }

    fn url(&self) -> String {
        let s = &self.settings;
        let mut url =
            format!("{}/v1/health/service/{}?passing&index={}&wait={}s", s.url, s.service, self.index, WAIT.as_secs());
        if let Some(tag) = &s.tag {
            url.push_str("&tag=");
            url.push_str(&encode(tag));
        }
        if let Some(dc) = &s.datacenter {
            url.push_str("&dc=");
            url.push_str(dc);
        }
        url
    }

    async fn ask(&mut self) -> Result<Vec<SocketAddr>, String> {
        let token = match std::env::var(&self.settings.token_env) {
            Ok(t) if !t.is_empty() => Some(t),
            Ok(_) => None,
            Err(std::env::VarError::NotPresent) if self.settings.token_env == "CONSUL_HTTP_TOKEN" => None,
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("consul: the token variable {} is not set", self.settings.token_env))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("consul: the token variable {} is not text", self.settings.token_env))
            }
        };
        let url = self.url();
        // Consul adds up to WAIT/16 of jitter to the wait; then the answer
        // itself must come.
        let mut req = Request::get(&url).timeout(WAIT + WAIT / 16 + Duration::from_secs(10));
        if let Some(t) = token {
            req = req.header("x-consul-token", t);
        }
        let got = self.http.fetch(req, MAX_BODY).await.map_err(|e| format!("consul: {e}"))?;
        if got.status != 200 {
            return Err(format!("consul: {url} answered {}: {}", got.status, snippet(&got.body)));
        }
        let entries: Vec<Entry> =
            serde_json::from_slice(&got.body).map_err(|e| format!("consul: {url}: not a health answer: {e}"))?;
        let mut addrs = super::Found::default();
        for e in &entries {
            // No port (0), or one no TCP port can be: not an HTTP instance.
            let Ok(port) = u16::try_from(e.service.port) else { continue };
            if port == 0 {
                continue;
            }
            let host = if e.service.address.is_empty() { &e.node.address } else { &e.service.address };
            super::resolve(host, port, &mut addrs)
                .await
                .map_err(|why| format!("consul: instance {:?}: {why}", e.service.id))?;
        }
        // Only an answer that was taken moves the index: a malformed one
        // is asked again, not waited past.
        let next = got.header("x-consul-index").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        self.index = if next < self.index { 0 } else { next.max(1) };
        Ok(addrs.into_vec())
    }
}

impl Discovery for Consul {
    fn next(&mut self) -> Next<'_> {
        Box::pin(async move {
            if let Some((at, failed)) = self.last {
                let gap = if failed { RETRY } else { MIN_SPACING };
                tokio::time::sleep_until((at + gap).into()).await;
            }
            let started = Instant::now();
            let answer = self.ask().await;
            if answer.is_err() {
                // A failed query does not say what changed: start over.
                self.index = 0;
            }
            self.last = Some((started, answer.is_err()));
            answer
        })
    }
}

/// One entry of `/v1/health/service/:service` (fields we read; Consul
/// sends many more).
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Node")]
    node: Node,
    #[serde(rename = "Service")]
    service: Service,
}

#[derive(Deserialize)]
struct Node {
    #[serde(rename = "Address", default)]
    address: String,
}

#[derive(Deserialize)]
struct Service {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Port", default)]
    port: i64,
}

/// `text` percent-encoded for a query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The start of an error body, for the log.
pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_are_encoded() {
        assert_eq!(super::encode("v2"), "v2");
        assert_eq!(super::encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
